"""Running a server's jobs on a Ray cluster (``lcmgraph serve --ray``).

The server keeps its API, WebSocket, SQLite queue, history and security; a
dispatcher on its event loop hands claimed jobs to N Ray actors, each an
Engine with its own model manager (remote.py), routing each job to a worker
that already holds its models (routing.py) and streaming events and output
files back (transfer.py). See docs/scale-out.md.

Nothing here imports Ray until a dispatcher starts: without ``--ray`` the
server never loads it (options.py is plain argparse and dataclasses).
"""

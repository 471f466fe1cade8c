"""Running jobs on a Ray cluster (``lcmgraph serve --ray``, ``lcmgraph run --sweep ... --ray``).

The server keeps its API, WebSocket, SQLite queue, history and security; a
dispatcher on its event loop (dispatcher.py) hands claimed jobs to N Ray
actors, each an Engine with its own model manager (remote.py), routing each
job to a worker that already holds its models (routing.py) and streaming
events and output files back (transfer.py). connect.py joins or starts Ray;
sweep_run.py spreads a CLI sweep's cells over workers. See docs/scale-out.md.

Nothing here imports Ray until a cluster is connected: without ``--ray``
nothing loads it (options.py is plain argparse and dataclasses).
"""

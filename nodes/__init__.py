"""lcmgraph's built-in node packs (installed as ``lcmgraph_nodes``).

Each sub-package is an ordinary node pack, registered through the
``lcmgraph.nodes`` entry-point group exactly like a third-party pack.
"""

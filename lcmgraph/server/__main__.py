"""``python -m lcmgraph.server [options]``: the same as ``lcmgraph serve``."""

import sys

from .cli import main

sys.exit(main())

"""lcmgraph: a node-graph engine for fast few-step image generation."""

from . import types
from .batch import RunRequest
from .context import Interrupted, NodeContext, RunControl
from .engine import Engine, EngineConfig
from .events import Event
from .executor import NodeFailed, RunInterrupted, RunResult
from .node import REQUIRED, Input, Node, Output
from .problems import Problem, WorkflowInvalid

__version__ = "0.1.0"

__all__ = [
    "Engine", "EngineConfig", "Event", "Input", "Interrupted", "Node", "NodeContext", "NodeFailed",
    "Output", "Problem", "REQUIRED", "RunControl", "RunInterrupted", "RunRequest", "RunResult",
    "WorkflowInvalid",
    "types",
]

"""lcmgraph: a node-graph engine for fast few-step image generation."""

from . import types
from .context import Interrupted, NodeContext, RunControl
from .engine import Engine, EngineConfig
from .events import Event
from .executor import RunRequest
from .node import REQUIRED, Input, Node, Output
from .prepare import Prepared
from .problems import Problem, WorkflowInvalid
from .results import NodeFailed, RunInterrupted, RunResult
from .runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "Engine", "EngineConfig", "Event", "Input", "Interrupted", "Node", "NodeContext", "NodeFailed",
    "Output", "Prepared", "Problem", "REQUIRED", "RunControl", "RunInterrupted", "RunRequest", "RunResult", "Runtime",
    "WorkflowInvalid",
    "types",
]

"""The declarative node API.

A node is a class that *declares* its inputs and outputs; the engine derives
validation, the editor's widgets and the API schema from those declarations.

    class EmptyLatent(Node):
        \"\"\"An all-zero latent batch to start text-to-image from.\"\"\"
        category = "latent"
        inputs = (
            Input("width", INT, default=512, min=64, max=4096, step=8),
            Input("height", INT, default=512, min=64, max=4096, step=8),
        )
        outputs = (Output("latent", LATENT),)

        def execute(self, ctx, width, height):
            return {"latent": ...}
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from . import types as T
from .workflow import Link

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marker for "this input has no default".
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Input:
    """One declared input socket / widget."""

    name: str
    type: str
    default: Any = REQUIRED
    optional: bool = False
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    multiline: bool = False
    description: str = ""
    #: Name of a configured file folder ("checkpoints", "loras", "input", ...):
    #: the value is a file name looked up there, and the cache key uses the
    #: file's identity rather than just its name.
    folder: str | None = None

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"input name {self.name!r} is not an identifier")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.type == T.ENUM and not self.choices:
            raise ValueError(f"enum input {self.name!r} needs choices")
        # Derived once: validation reads these for every input of every node.
        object.__setattr__(self, "_literal", T.is_literal_type(self.type))
        object.__setattr__(self, "_required", self.default is REQUIRED and not self.optional)
        if self.default is not REQUIRED and self.is_literal:
            problem = self.check_literal(self.default)
            if problem:
                raise ValueError(f"default of input {self.name!r}: {problem}")

    @property
    def is_literal(self) -> bool:
        """Whether a workflow may give this input as a literal (a widget)."""
        return self._literal

    @property
    def required(self) -> bool:
        return self._required

    def value_or_default(self, value: Any) -> Any:
        """The literal a node receives for a given ``value`` (None: omitted or
        null): the declared default when omitted, else the coerced value."""
        if value is None:
            return None if self.default is REQUIRED else self.default
        return self.coerce(value)

    def check_literal(self, value: Any) -> str | None:
        """Return a sentence describing why ``value`` is not acceptable, or None."""
        kind = self.type
        # Fast path for what nearly every literal is (a string, a finite number in
        # range): validation runs this for every literal of every node.
        t = type(value)
        if t is str:
            if kind == T.STRING:
                return None
        elif (t is int and (kind == T.INT or kind == T.FLOAT)) or (t is float and kind == T.FLOAT
                                                                   and -math.inf < value < math.inf):
            if (self.min is None or value >= self.min) and (self.max is None or value <= self.max):
                return None
        if kind == T.INT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"expected an integer, got {_describe(value)}"
            if isinstance(value, float) and not value.is_integer():
                return f"expected an integer, got {value!r}"
        elif kind == T.FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"expected a number, got {_describe(value)}"
            if isinstance(value, int) and abs(value) > _FLOAT_MAX:
                return f"expected a number, got {_show(value)}: too large for a float"
            if not math.isfinite(value):
                return f"expected a finite number, got {value!r}"
        elif kind == T.STRING:
            if not isinstance(value, str):
                return f"expected a string, got {_describe(value)}"
        elif kind == T.BOOLEAN:
            if not isinstance(value, bool):
                return f"expected true or false, got {_describe(value)}"
        elif kind == T.ENUM:
            if value not in self.choices:
                shown = ", ".join(repr(c) for c in self.choices[:12])
                more = ", ..." if len(self.choices) > 12 else ""
                return f"{value!r} is not one of {shown}{more}"
            return None
        else:
            return f"expects a link from a {kind} output, not a literal value"
        if kind in (T.INT, T.FLOAT):
            if self.min is not None and value < self.min:
                return f"{_show(value)} is below the minimum {_num(self.min)}"
            if self.max is not None and value > self.max:
                return f"{_show(value)} is above the maximum {_num(self.max)}"
        return None

    def coerce(self, value: Any) -> Any:
        """Normalise an accepted literal (``4.0`` for an INT becomes ``4``)."""
        if self.type == T.INT and isinstance(value, float):
            return int(value)
        if self.type == T.FLOAT and isinstance(value, int):
            return float(value)
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.default is not REQUIRED:
            out["default"] = self.default
        out["required"] = self.required
        out["widget"] = self.is_literal
        for key in ("min", "max", "step"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.multiline:
            out["multiline"] = True
        if self.folder:
            out["folder"] = self.folder
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Output:
    """One declared, named output socket.

    ``depends_on`` names the inputs this output is a function of, when that
    is fewer than all of them: its cache key then hashes only those, so a
    change elsewhere in the node does not invalidate what is computed from
    this output (ApplyLoRA's ``clip`` does not depend on the UNet ``weight``).
    ``None``: the output depends on every input.
    """

    name: str
    type: str
    description: str = ""
    depends_on: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"output name {self.name!r} is not an identifier")
        if self.depends_on is not None:
            object.__setattr__(self, "depends_on", tuple(self.depends_on))

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.description:
            out["description"] = self.description
        if self.depends_on is not None:
            out["depends_on"] = list(self.depends_on)
        return out


class Node:
    """Base class of every node type. Subclasses declare; the engine executes.

    Nodes hold no state: ``execute`` receives an execution context and the
    input values by name, and returns its outputs as a mapping by output name
    (or a tuple in declaration order). It must never mutate its inputs.
    """

    #: Name used in workflows; defaults to the class name.
    type_name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    category: ClassVar[str] = "misc"
    description: ClassVar[str] = ""
    #: Bump when the node's behaviour changes: it is part of the cache key.
    version: ClassVar[int] = 1
    #: Output nodes have side effects (saving a file) and always run when requested.
    output_node: ClassVar[bool] = False
    #: False for nodes whose result must not be reused (randomness, I/O that changes).
    cacheable: ClassVar[bool] = True
    inputs: ClassVar[Sequence[Input]] = ()
    outputs: ClassVar[Sequence[Output]] = ()
    #: Literal inputs whose values may differ between jobs that the server merges
    #: into one batch (a sampler: ``("seed", "guidance")``). ``None``: any literal
    #: may differ. Only a grouping hint: correctness never depends on it, since a
    #: node without ``execute_batch`` runs once per job, and ``execute_batch``
    #: refuses what it cannot merge.
    batch_inputs: ClassVar[tuple[str, ...] | None] = None
    #: Generation settings: a pack that saves images may record this node's
    #: literal inputs beside the workflow (the diffusion pack's PNG
    #: "parameters": prompt, seed, steps...), where a viewer reads them.
    record_parameters: ClassVar[bool] = False

    # Derived by __init_subclass__.
    input_map: ClassVar[Mapping[str, Input]] = {}
    output_map: ClassVar[Mapping[str, Output]] = {}
    #: Inputs a workflow must give (no default, not optional).
    required_inputs: ClassVar[tuple[Input, ...]] = ()
    #: Whether the class overrides ``check_inputs`` (validation skips the call otherwise).
    has_input_checks: ClassVar[bool] = False
    #: Whether the class overrides ``estimate`` (budget checks skip it otherwise).
    has_estimate: ClassVar[bool] = False
    #: Whether the class overrides ``referenced_files`` (validation and keys skip it otherwise).
    has_referenced_files: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__ or not cls.type_name:
            cls.type_name = cls.__name__
        if not cls.display_name or "display_name" not in cls.__dict__:
            cls.display_name = _spaced(cls.type_name)
        if "description" not in cls.__dict__ or not cls.description:
            cls.description = inspect.cleandoc(cls.__doc__ or "")
        cls.inputs = tuple(cls.inputs)
        cls.outputs = tuple(cls.outputs)
        cls.input_map = _unique(cls, "input", cls.inputs)
        cls.output_map = _unique(cls, "output", cls.outputs)
        cls.required_inputs = tuple(i for i in cls.inputs if i.required)
        cls.has_input_checks = cls.check_inputs.__func__ is not Node.check_inputs.__func__
        cls.has_estimate = cls.estimate.__func__ is not Node.estimate.__func__
        cls.has_referenced_files = cls.referenced_files.__func__ is not Node.referenced_files.__func__
        for out in cls.outputs:
            unknown = [n for n in out.depends_on or () if n not in cls.input_map]
            if unknown:
                raise ValueError(f"node {cls.__name__} output {out.name!r} depends on unknown input(s) "
                                 f"{', '.join(unknown)}")
        if cls.batch_inputs is not None:
            cls.batch_inputs = tuple(cls.batch_inputs)
            unknown = [n for n in cls.batch_inputs if n not in cls.input_map]
            if unknown:
                raise ValueError(f"node {cls.__name__} lists unknown batch_inputs {', '.join(unknown)}")

    def execute(self, ctx: Any, **inputs: Any) -> Mapping[str, Any] | tuple | None:
        # Abstract: the registry refuses a node class that does not override this.
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    def execute_batch(self, ctx: Any, inputs_list: list[dict[str, Any]]) -> list[Any] | None:
        """Optional: run this node for several jobs of a batch in one call.

        When jobs that run in lockstep (``Engine.run_batch``) reach this node
        with different inputs, the engine calls ``execute_batch`` once instead
        of ``execute`` per job. ``inputs_list`` holds one ``{input: value}``
        mapping per distinct set of inputs (jobs with equal inputs share one
        entry); ``ctx`` is a :class:`lcmgraph.batch.BatchContext`, whose
        ``progress`` reports to every job (``previews=[...]`` gives each entry
        its own preview). Return one result per entry, in order, each what
        ``execute`` would return for it; or ``None`` to refuse (inputs that
        cannot share one call, e.g. different step counts): the engine then
        runs ``execute`` per entry. If it raises, the engine also falls back
        to ``execute`` per entry, so a bad input fails only its own job. The
        results must equal what ``execute`` gives for each entry alone.
        """
        return None

    @classmethod
    def check_inputs(cls, literals: Mapping[str, Any]) -> list[tuple[str | None, str]]:
        """Cross-input checks on literal values before anything runs.

        Return ``(input_name_or_None, sentence)`` pairs. Only literals are
        given: linked inputs are unknown until execution.
        """
        return []

    @classmethod
    def referenced_files(cls, literals: Mapping[str, Any], file_check: Any) -> list[tuple[str, str, str | None]]:
        """Optional: files that literal values name inside them, beyond ``folder=``
        inputs (a prompt's ``embedding:NAME``), as ``(input, folder, file name)``.

        ``literals`` holds the literal inputs (defaults filled in; a linked
        input is absent), ``file_check(folder, name)`` says why a name does not
        resolve (None: it does). Validation reports every name that does not
        resolve, naming the input, and the cache key hashes each file's identity
        as it does for file inputs, so a changed file re-runs the node. A file
        name of None stands for "some file of ``folder``, unknown until the node
        runs" (the input is linked): the key then hashes the whole folder's.
        """
        return []

    @classmethod
    def estimate(cls, ctx: Any, literals: Mapping[str, Any], upstream: Mapping[str, Any]) -> Any:
        """Optional: what running this node would cost, before anything runs.

        ``literals`` are the literal inputs (defaults filled in), ``upstream``
        the facts the linked inputs' producers estimated (None when unknown).
        Return a :class:`lcmgraph.budget.Estimate`: facts about the outputs
        (for the nodes downstream) and the ``Usage`` of quantities a budget may
        limit ("pixels", "batch", "steps", "memory"). ``ctx.resolve_file``
        resolves file inputs. None: nothing known. See lcmgraph/budget.py.
        """
        return None

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return {
            "type": cls.type_name,
            "display_name": cls.display_name,
            "category": cls.category,
            "description": cls.description,
            "version": cls.version,
            "output_node": cls.output_node,
            "cacheable": cls.cacheable,
            "inputs": [i.schema() for i in cls.inputs],
            "outputs": [o.schema() for o in cls.outputs],
        }


def literal_inputs(cls: type[Node], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The literal each non-linked input of a node receives (defaults filled in, coerced)."""
    return {decl.name: decl.value_or_default(inputs.get(decl.name)) for decl in cls.inputs
            if not isinstance(inputs.get(decl.name), Link)}


def _unique(cls: type, what: str, items: Sequence[Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for item in items:
        if item.name in seen:
            raise ValueError(f"node {cls.__name__} declares {what} {item.name!r} twice")
        seen[item.name] = item
    return seen


def _spaced(name: str) -> str:
    """"ApplyLoRA" -> "Apply LoRA", "VAEDecode" -> "VAE Decode", "Img2Img" stays."""
    return re.sub(r"(?<=[a-z])(?=[A-Z][a-z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)


_FLOAT_MAX = 1.7976931348623157e308


def _show(value: Any) -> str:
    """A number for a message: huge integers by their size (their repr may be refused
    by Python's 4300-digit limit, and would drown the message anyway)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    return repr(value)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)

"""Socket types.

A type is a plain upper-case string so that plugin packs can introduce their
own (``"UPSCALE_MODEL"``) without touching the engine. The engine only knows
which types can be written as literals in a workflow (widgets) and which
must arrive over a link.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

MODEL = "MODEL"
CLIP = "CLIP"
VAE = "VAE"
CONDITIONING = "CONDITIONING"
LATENT = "LATENT"
IMAGE = "IMAGE"
MASK = "MASK"
CONTROL_NET = "CONTROL_NET"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
ENUM = "ENUM"
ANY = "*"

#: Types whose values may be written directly in a workflow (widgets).
LITERAL_TYPES = frozenset({INT, FLOAT, STRING, BOOLEAN, ENUM})

#: The types every engine knows; packs may use others.
BUILTIN_TYPES = (
    MODEL, CLIP, VAE, CONDITIONING, LATENT, IMAGE, MASK, CONTROL_NET,
    INT, FLOAT, STRING, BOOLEAN, ENUM,
)


def is_literal_type(type_name: str) -> bool:
    return type_name in LITERAL_TYPES


#: Which output types an input accepts besides its own type (and ``ANY``), by
#: input type. The one definition of the link rule: ``link_compatible`` reads
#: it, and the schema serves it (``link_rules``) to the editor and API clients.
ALSO_ACCEPTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    # A STRING output may drive an enum widget; the choice is checked at run time.
    ENUM: (STRING,),
    # An INT is a valid FLOAT (a "steps" primitive feeding a float widget).
    FLOAT: (INT,),
})


def link_rules() -> dict:
    """The link rule as data: a link is allowed when both ends have the same
    type, either end is ``any``, or the output's type is listed under the
    input's type in ``also_accepts``."""
    return {"any": ANY, "also_accepts": {k: list(v) for k, v in sorted(ALSO_ACCEPTS.items())}}


def link_compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of ``output_type`` may feed an input of ``input_type``."""
    if output_type == input_type or ANY in (output_type, input_type):
        return True
    return output_type in ALSO_ACCEPTS.get(input_type, ())

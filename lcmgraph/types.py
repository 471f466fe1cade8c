"""Socket types.

A type is a plain upper-case string so that plugin packs can introduce their
own (``"UPSCALE_MODEL"``) without touching the engine. The engine only knows
which types can be written as literals in a workflow (widgets) and which
must arrive over a link.
"""

from __future__ import annotations

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


def link_compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of ``output_type`` may feed an input of ``input_type``."""
    if output_type == input_type or ANY in (output_type, input_type):
        return True
    # A STRING output may drive an enum widget; the choice is checked at run time.
    if input_type == ENUM and output_type == STRING:
        return True
    # An INT is a valid FLOAT (a "steps" primitive feeding a float widget).
    return input_type == FLOAT and output_type == INT

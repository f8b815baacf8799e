"""What the document says of fields whose rules marshmallow's converter cannot read.

apispec turns a field's validators into JSON Schema where it knows them (lengths,
ranges, regexps); these say the rest: the dynamic variables' names and values, and
the printable names ``printable_name`` checks.
"""

import functools
import sys

from api.schemas import (
    MAX_VARIABLE_NAME,
    MAX_VARIABLE_TEXT,
    MAX_VARIABLES,
    RESERVED_NAMES,
    RESERVED_PREFIX,
    SAFE_INTEGER,
    VARIABLE_NAME,
    DynamicVariables,
    printable_name,
)
from api.webhook_schemas import NO_NUL

SURROGATES = range(0xD800, 0xE000)  # never in JSON text decoded whole; no pattern can hold one


def dynamic_variables(converter, field, **kwargs) -> dict:
    """Describe ``variables`` as the flat object of named scalars it accepts."""
    if not isinstance(field, DynamicVariables):
        return {}
    return {
        "type": "object",
        "maxProperties": MAX_VARIABLES,
        "propertyNames": {
            "maxLength": MAX_VARIABLE_NAME,
            "pattern": VARIABLE_NAME.regex.pattern,
            "not": {
                "description": "reserved: ElevenLabs' system__ names, and ours",
                "anyOf": [
                    {"pattern": rf"{RESERVED_PREFIX}[\s\S]*"},
                    {"enum": list(RESERVED_NAMES)},
                ],
            },
        },
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "maxLength": MAX_VARIABLE_TEXT, "pattern": NO_NUL},
                {"type": "boolean"},
                # A JSON integer past 2**53 loses digits in most consumers; a fraction does not.
                {"type": "integer", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER},
                {"type": "number", "not": {"type": "integer"}},
            ]
        },
    }


@functools.cache
def printable() -> str:
    """Return the pattern of a printable name: no character str.isprintable refuses, not blank."""
    refused = [c for c in range(sys.maxunicode + 1) if c != 0x20 and not chr(c).isprintable()]
    spans, first = [], None
    for number, code in enumerate(refused):
        first = code if first is None else first
        if number + 1 == len(refused) or refused[number + 1] != code + 1:
            spans.append((first, code))
            first = None
    unprintable = "".join(
        chr(low) if low == high else f"{chr(low)}-{chr(high)}"
        for low, high in _without(spans, SURROGATES)
    )
    # Lookaheads, not a [^…] class: generators expand a class into its ~900,000 characters.
    return rf"(?![\s\S]*[{unprintable}])(?! *$)[\s\S]*"


def _without(spans, gap: range):
    """Yield the spans with the code points of ``gap`` cut out."""
    for low, high in spans:
        if low < gap.start:
            yield low, min(high, gap.start - 1)
        if high >= gap.stop:
            yield max(low, gap.stop), high


def printable_names(converter, field, **kwargs) -> dict:
    """Give a field ``printable_name`` checks the pattern of what it accepts."""
    return {"pattern": printable()} if printable_name in field.validators else {}


ATTRIBUTE_FUNCTIONS = (dynamic_variables, printable_names)

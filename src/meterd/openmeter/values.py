"""Reading a meter's value out of a CloudEvent's `data`, at the meter's `valueProperty`.

Each path becomes a chain of small msgspec Structs, so reading a value is one C-speed
decode that skips every other key of `data`, and the raw `data` bytes stay untouched
for the event's metadata.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from meterd.openmeter.jsonpath import parse_path

# A number as JSON writes it; OpenMeter also takes such a number sent as a string.
_NUMERIC_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class ValueReader:
    """Reads the number at one JSONPath of the subset (`$.a`, `$.a.b`, `$['a-b']`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._keys = parse_path(path)
        self._decoder = msgspec.json.Decoder(_chain_type(self._keys))

    def read(self, data: bytes) -> float:
        """The value in the JSON object `data`; ValueError naming the path if there is none."""
        try:
            node: Any = self._decoder.decode(data)
        except msgspec.ValidationError as error:
            raise ValueError(_describe(self.path, str(error))) from None
        for _ in self._keys:
            if node is None:
                break
            node = node.v
        return _number(self.path, node)


def _chain_type(keys: tuple[str, ...]) -> type[msgspec.Struct]:
    leaf: Any = float | str | None
    for depth, key in reversed(list(enumerate(keys))):
        field = msgspec.field(default=None, name=key)
        leaf = msgspec.defstruct(f"Level{depth}", [("v", leaf | None, field)])
    result: type[msgspec.Struct] = leaf
    return result


def _number(path: str, value: float | str | None) -> float:
    if value is None:
        raise ValueError(f"data: has no value at {path} (the meter's valueProperty)")
    if isinstance(value, str):
        if not _NUMERIC_TEXT.fullmatch(value):
            raise ValueError(f"data: the value at {path} is {value[:40]!r}, not a number")
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"data: the value at {path} must be a finite number")
    return value


def _describe(path: str, message: str) -> str:
    # msgspec names the place as `$.v.v`: the chain's own field names, not the keys.
    text = message.split(" - at `", 1)[0]
    if text.startswith("Expected `float | str | null`"):
        got = text.rsplit("got ", 1)[-1].strip("`")
        return f"data: the value at {path} must be a number, got {_article(got)}"
    if text.startswith("Expected `object | null`"):
        return f"data: cannot follow {path}: a key on the way is not an object"
    return f"data: cannot read {path}: {text}"


def _article(kind: str) -> str:
    return {"bool": "true or false", "array": "an array", "object": "an object"}.get(kind, kind)

"""The JSONPath subset a meter's `valueProperty` may use.

Only a chain of object keys from the root, which is all OpenMeter's meters use in
practice: `$.tokens`, `$.usage.tokens`, `$['input-tokens']`, `$["a.b"]['c']`.
Array indexes, wildcards, filters and recursive descent are refused when the
config is loaded, so an event is never read by a path meterd cannot follow.
"""

from __future__ import annotations

import re

_DOT_KEY = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_BRACKET_KEY = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")
_ESCAPE = re.compile(r"\\(.)")

DEFAULT_VALUE_PROPERTY = "$.value"
SYNTAX = "a JSONPath of object keys such as $.tokens, $.usage.tokens or $['input-tokens']"


def parse_path(text: str) -> tuple[str, ...]:
    """The keys `text` leads through, root first; ValueError if it is not in the subset."""
    if not text.startswith("$"):
        raise ValueError(f"{text!r} does not start with $: expected {SYNTAX}")
    keys: list[str] = []
    at = 1
    while at < len(text):
        dotted = _DOT_KEY.match(text, at)
        bracketed = None if dotted else _BRACKET_KEY.match(text, at)
        if dotted:
            keys.append(dotted.group(1))
            at = dotted.end()
        elif bracketed:
            quoted = bracketed.group(1) if bracketed.group(1) is not None else bracketed.group(2)
            keys.append(_ESCAPE.sub(r"\1", quoted))
            at = bracketed.end()
        else:
            raise ValueError(f"{text!r} is not supported at character {at + 1}: expected {SYNTAX}")
    if not keys:
        raise ValueError(f"{text!r} names no key: expected {SYNTAX}")
    return tuple(keys)


def path_of(keys: tuple[str, ...]) -> str:
    """The canonical text of a key chain: dotted where it can be, bracketed otherwise."""
    parts = []
    for key in keys:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            parts.append("." + key)
        else:
            parts.append("['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']")
    return "$" + "".join(parts)


def follow(document: object, keys: tuple[str, ...]) -> object | None:
    """The value at `keys` in a decoded JSON document; None where the chain breaks."""
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document

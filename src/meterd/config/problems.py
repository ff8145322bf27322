"""Config problems: where they sit (a JSON path), how they read, in what order they are listed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import msgspec

from meterd.errors import MeterdError

# A place in the document: keys and array indexes from the top.
Location = tuple[str | int, ...]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


class ConfigProblem(NamedTuple):
    """One thing wrong with a config file, at a JSON path ("" for the file as a whole)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(MeterdError):
    """The configuration cannot be used."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{source}: cannot load config ({count} problem{'' if count == 1 else 's'})"
        super().__init__("\n".join([header, *map(str, self.problems)]), source=source)


def json_path(location: Location) -> str:
    """`events."api.calls".op`, `webhooks[0].url`: never shortened, so it leads to the key."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            key = part if _IDENTIFIER.fullmatch(part) else msgspec.json.encode(part).decode()
            path = f"{path}.{key}" if path else key
    return path


def quote(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return msgspec.json.encode(shown).decode()


def describe(value: object) -> str:
    """A JSON value as a message shows it: strings quoted, containers by kind."""
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return msgspec.json.encode(value).decode()


class Problems:
    """Problems found in one document: at most one per location, listed in document order.

    The first problem reported at a location wins, so a hand-written rule never repeats
    what the schema already said about the same value.
    """

    def __init__(self, document: object) -> None:
        self._document = document
        self._found: dict[Location, tuple[bool, str]] = {}

    def report(self, location: Location, message: str, *, unknown_key: bool = False) -> None:
        self._found.setdefault(location, (unknown_key, message))

    def __bool__(self) -> bool:
        return bool(self._found)

    def listed(self) -> list[ConfigProblem]:
        ordered = sorted(self._found.items(), key=lambda item: self._order(item[0], item[1][0]))
        return [ConfigProblem(json_path(location), message) for location, (_, message) in ordered]

    def _order(self, location: Location, unknown_key: bool) -> list[tuple[int, int]]:
        # A parent's problem comes before its children's, unknown keys before the known
        # ones, then document order (a missing key sorts after the keys present).
        order: list[tuple[int, int]] = []
        node = self._document
        for depth, part in enumerate(location):
            position = 0
            if isinstance(node, dict) and isinstance(part, str):
                keys = list(node)
                position = keys.index(part) if part in node else len(keys)
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int):
                position = part
                node = node[part] if part < len(node) else None
            last = depth == len(location) - 1
            order.append((-1 if unknown_key and last else 0, position))
        return order


def one_of(names: Iterable[str]) -> str:
    return ", ".join(names)

"""How the command line prints: tables of plain text, or JSON.

Every value is a `rich.text.Text`, never markup: an id like `evil[/bold]` or
`[link=https://...]` is printed as the characters it is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import click
import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Wide enough for any row meterd prints; rich then never folds a cell into the next line.
_PIPE_WIDTH = 1_000_000


def console() -> Console:
    """A console for stdout: fitted to a terminal's width, never cut when piped to a file."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=_PIPE_WIDTH, soft_wrap=True)


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    caption: str | None = None,
) -> None:
    table = Table(
        *headers,
        title=None if title is None else Text(title),
        caption=None if caption is None else Text(caption),
    )
    for row in rows:
        table.add_row(*(Text("" if value is None else str(value)) for value in row))
    console().print(table)


def print_json(value: object) -> None:
    """`value` (msgspec Structs, dicts, lists) as indented JSON on stdout."""
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2))

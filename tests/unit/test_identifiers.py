"""The identifier rule: what the fast schema refuses, the explanation names."""

from __future__ import annotations

import re

import msgspec
import pytest

from meterd.eventrules import Identifier
from meterd.identifiers import PATTERN, identifier_problem

_decode = msgspec.json.Decoder(Identifier).decode

REFUSED = [
    "c\n",  # a trailing newline: `$` instead of `\Z` would let it through
    "\nc",
    "a\tb",
    "a\x00b",
    "a\x7f",
    "a\x80b",  # C1 controls U+0080-U+009F
    "a\x85",  # NEXT LINE
    "a\x9f",
    "evil\u202ecod.exe",  # RIGHT-TO-LEFT OVERRIDE
    "a\u202ab",
    "a\u2066b",  # isolates U+2066-U+2069
    "a\u2069",
    "a\u2028b",  # LINE SEPARATOR
    "a\u2029b",  # PARAGRAPH SEPARATOR
    "\ufeffcus_1",  # BYTE ORDER MARK
    "",
    "x" * 257,
]
ACCEPTED = ["c", "sub_ABC123", "x" * 256, "kunde-ø-€", "客户", "a b", "a\u00a0b", "😀"]


@pytest.mark.parametrize("text", REFUSED)
def test_refused_identifiers_are_refused_by_both_paths(text: str) -> None:
    assert identifier_problem(text) is not None
    with pytest.raises(msgspec.ValidationError):
        _decode(msgspec.json.encode(text))


@pytest.mark.parametrize("text", ACCEPTED)
def test_ordinary_identifiers_pass_both_paths(text: str) -> None:
    assert identifier_problem(text) is None
    assert _decode(msgspec.json.encode(text)) == text


def test_a_trailing_newline_is_refused_and_named() -> None:
    assert re.search(PATTERN, "c\n") is None
    assert identifier_problem("c\n") == (
        "must not contain control characters or invisible formatting characters"
        " (U+000A at position 2)"
    )


def test_the_problem_names_the_character_in_plain_words() -> None:
    problem = identifier_problem("ab\u202ec")
    assert problem is not None
    assert "U+202E RIGHT-TO-LEFT OVERRIDE at position 3" in problem
    assert "\\x" not in problem and "[^" not in problem

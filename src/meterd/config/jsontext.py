"""Decoding the config file's JSON text, with problems placed at a line and column."""

from __future__ import annotations

import codecs
import re

import msgspec

from meterd.config.problems import ConfigError, ConfigProblem

_MALFORMED_JSON = re.compile(r"JSON is malformed: (.*) \(byte ([0-9]+)\)")


def decode_json(data: bytes, source: str) -> object:
    """The JSON value in `data`; raises ConfigError naming `source` if it is not JSON."""
    # Windows editors like to start UTF-8 files with a byte order mark.
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        where = _line_column(data, error.start)
        raise ConfigError(source, [ConfigProblem("", f"not UTF-8 text at {where}")]) from None
    if not data.strip():
        raise ConfigError(source, [ConfigProblem("", "the file is empty")])
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        raise ConfigError(source, [_json_problem(data, str(error))]) from None


def _json_problem(data: bytes, message: str) -> ConfigProblem:
    malformed = _MALFORMED_JSON.fullmatch(message)
    if malformed:
        where = _line_column(data, int(malformed.group(2)))
        return ConfigProblem("", f"invalid JSON at {where}: {malformed.group(1)}")
    if message == "Input data was truncated":
        where = _line_column(data, len(data))
        return ConfigProblem("", f"invalid JSON at {where}: the text ends before the JSON does")
    return ConfigProblem("", f"invalid JSON: {message}")


def _line_column(data: bytes, offset: int) -> str:
    before = data[:offset]
    line_start = before.rfind(b"\n") + 1
    line = before.count(b"\n") + 1
    column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
    return f"line {line}, column {column}"

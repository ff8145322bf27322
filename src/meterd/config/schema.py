"""The JSON Schema of `systemconfig.json`, and its errors said in plain words.

How to add a config key
-----------------------
1. Describe it in `systemconfig.schema.json` (draft 2020-12): its type, bounds, enum or
   pattern, with a "description" (editors show it). Objects keep
   `"additionalProperties": false`, so a typo is reported as an unknown key.
2. If a value needs words of its own, give its schema node a `"messages"` object mapping
   the failing keyword to a template: `"messages": {"pattern": "${value} is not a plan
   name: use ..."}`. `${value}` is the offending value as messages show it, `${allowed}`
   the enum's values, and any scalar keyword of the node works too (`${maximum}`).
   A node with a "pattern" must have a pattern message: a regex is never shown.
3. Rules a schema cannot say (a duration's range, a time zone that exists, names unique
   across a list, a name that must refer to another section) go in the section's module
   (`config/periods.py`, `config/meters.py`, `config/webhooks.py`, or a new one), which
   also builds the typed struct from `config/model.py`; `config/loader.py` calls it.

tests/unit/test_config_schema.py checks the schema itself and the shipped sample.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from string import Template
from typing import Any, cast

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from meterd.config.problems import Location, Problems, describe, one_of

SCHEMA_FILE = "systemconfig.schema.json"

_TYPE_WORDS = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_DEFAULT_MESSAGES = {
    "type": "expected ${expected}, got ${value}",
    "enum": "${value} is not one of ${allowed}",
    "const": "must be ${allowed}",
    "pattern": "${value} is not in the expected form",
    "minLength": "must not be shorter than ${minLength} characters",
    "maxLength": "must not be longer than ${maxLength} characters",
    "minimum": "${value} is too small: it must be at least ${minimum}",
    "maximum": "${value} is too large: it must be at most ${maximum}",
    "exclusiveMinimum": "${value} is too small: it must be more than ${exclusiveMinimum}",
    "exclusiveMaximum": "${value} is too large: it must be less than ${exclusiveMaximum}",
    "minItems": "must hold at least ${minItems} items",
    "maxItems": "must hold at most ${maxItems} items",
    "uniqueItems": "lists the same value twice",
    "minProperties": "must hold at least ${minProperties} keys",
    "maxProperties": "must hold at most ${maxProperties} keys",
}
_OTHER_MESSAGE = "is not a valid value here"


def schema_text() -> str:
    """The schema as shipped, for `meterd config schema` and editors."""
    return resources.files("meterd.config").joinpath(SCHEMA_FILE).read_text("utf-8")


@functools.cache
def schema() -> Mapping[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


def _is_integer(checker: object, instance: object) -> bool:
    # JSON Schema counts 1000.0 as an integer; meterd's counts are written without a point.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _pattern(validator: Validator, pattern: str, instance: object, node: Any) -> Iterator[Any]:
    # ECMA-262 regexes (JSON Schema's dialect) read "$" as the end of the text; Python's "$"
    # also matches before a final newline, which would let "api.calls\n" through.
    if isinstance(instance, str) and not re.search(_ecma_end(pattern), instance):
        yield ValidationError(f"{instance!r} does not match the pattern")


@functools.cache
def _ecma_end(pattern: str) -> str:
    return (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    )


_MeterdValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@functools.cache
def _validator() -> Validator:
    return _MeterdValidator(schema())  # type: ignore[no-any-return]


def check_document(document: object, problems: Problems) -> None:
    """Report every way `document` breaks the schema, in plain words."""
    for error in _validator().iter_errors(document):  # type: ignore[arg-type]
        for location, message, unknown_key in _translate(error):
            problems.report(location, message, unknown_key=unknown_key)


def _translate(error: ValidationError) -> Iterator[tuple[Location, str, bool]]:
    location: Location = tuple(error.absolute_path)
    node: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = str(error.validator)
    instance = error.instance
    if keyword == "required" and isinstance(instance, dict):
        for key in cast(list[str], error.validator_value):
            if key not in instance:
                yield (*location, key), "missing (required)", False
        return
    if keyword == "additionalProperties" and isinstance(instance, dict):
        for key in _unknown_keys(instance, node):
            yield (
                (*location, key),
                _unknown_key_message(key, list(node.get("properties", ()))),
                True,
            )
        return
    if "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        # A key failed: the path leads to the key itself, and the message says what is wrong.
        location = (*location, instance)
    yield location, _message(keyword, node, instance), False


def _unknown_keys(instance: Mapping[str, object], node: Mapping[str, Any]) -> list[str]:
    known = node.get("properties", {})
    patterns = list(node.get("patternProperties", {}))
    return [
        key
        for key in instance
        if key not in known and not any(re.search(pattern, key) for pattern in patterns)
    ]


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f'did you mean "{close[0]}"?' if close else f"expected one of {one_of(allowed)}"
    return f"unknown key ({hint})"


def _message(keyword: str, node: Mapping[str, Any], instance: object) -> str:
    template = node.get("messages", {}).get(keyword) or _DEFAULT_MESSAGES.get(keyword)
    if template is None:
        return _OTHER_MESSAGE
    words = {key: str(value) for key, value in node.items() if isinstance(value, int | str)}
    types = node.get("type", ())
    words["expected"] = " or ".join(
        _TYPE_WORDS[name] for name in ([types] if isinstance(types, str) else types)
    )
    words["allowed"] = one_of(map(describe_enum, node.get("enum", [node.get("const")])))
    words["value"] = describe(instance)
    return Template(template).safe_substitute(words)


def describe_enum(value: object) -> str:
    # Enum values are listed bare (sum, avg), as a user types them inside the quotes.
    return value if isinstance(value, str) else describe(value)

"""Imports flow one way: skins -> workers -> services -> storage -> the pure core.

A module may import its own layer and the layers below it, never one above; a skin
never imports another skin. To place a new module, add its name to one row of LAYERS.
Modules in no row (the Python client, `__main__`, modules landing in parallel work) are
not checked until they are placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meterd

# Top to bottom. A name covers the module and everything below it (meterd.http.*).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("skin", ("meterd.cli", "meterd.terminal", "meterd.http", "meterd.html")),
    (
        "worker",
        (
            "meterd.closing",
            "meterd.webhooks",
            "meterd.invoicing",
            "meterd.background",
            "meterd.alerts",
        ),
    ),
    (
        "service",
        (
            "meterd.usage",
            "meterd.meters.usage",
            "meterd.meters.query",
            "meterd.meters.prepare",
            "meterd.customers",
            "meterd.preview",
            "meterd.billing",
            "meterd.customer_list",
            "meterd.overview",
            "meterd.portal_tokens",
            "meterd.console_sessions",
            "meterd.keyring",
            "meterd.metrics",
            "meterd.entitlements",
            "meterd.corrections",
        ),
    ),
    ("storage", ("meterd.storage",)),
    (
        "core",
        (
            "meterd.config",
            "meterd.periods",
            "meterd.rollup",
            "meterd.aggregation",
            "meterd.ingest",
            "meterd.eventrules",
            "meterd.explain",
            "meterd.identifiers",
            "meterd.idempotency",
            "meterd.errors",
            "meterd.messages",
            "meterd.revisions",
            "meterd.limits",
            "meterd.pricing",
            "meterd.invoices",
            "meterd.durations",
            "meterd.timeutil",
            "meterd.apikeys",
            "meterd.settings",
            "meterd.logs",
            "meterd.meters.groups",
            "meterd.meters.values",
            "meterd.meters.windows",
            "meterd.meters.group_rollup",
            "meterd.openmeter",
        ),
    ),
]
# Skins that are one skin in several modules (the CLI prints through meterd.terminal).
SAME_SKIN = {"meterd.terminal": "meterd.cli"}
# What `meterd serve` starts: another skin may import these, never a skin's routes.
# The HTML surfaces' mounts (`meterd.html.app`) are what `meterd serve` adds to its app.
ENTRY_POINTS = (
    "meterd.http.app",
    "meterd.http.factory",
    "meterd.http.gc_tuning",
    "meterd.http.gil_tuning",
    "meterd.http.protocol",
    "meterd.html.app",
)

SOURCE = Path(meterd.__file__).parent


def placed(module: str) -> tuple[int, str] | None:
    """(layer rank, the LAYERS name that covers `module`), or None if it is not placed."""
    for rank, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return rank, name
    return None


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None if it may."""
    source, target = placed(importer), placed(imported)
    if source is None or target is None:
        return None
    (source_rank, source_name), (target_rank, target_name) = source, target
    if target_rank < source_rank:
        layer, above = LAYERS[source_rank][0], LAYERS[target_rank][0]
        return f"{importer} ({layer}) imports {imported} ({above}, a layer above)"
    if LAYERS[source_rank][0] == LAYERS[target_rank][0] == "skin":
        skins = {SAME_SKIN.get(name, name) for name in (source_name, target_name)}
        entry = any(imported == e or imported.startswith(e + ".") for e in ENTRY_POINTS)
        if len(skins) > 1 and not entry:
            return f"{importer} imports {imported}: a skin never imports another skin"
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> set[str]:
    """Every meterd module `source` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return {name for name in found if name == "meterd" or name.startswith("meterd.")}


def test_imports_flow_one_way() -> None:
    problems = sorted(
        problem
        for path in SOURCE.rglob("*.py")
        for imported in imports_of(path)
        if (problem := violation(module_name(path), imported)) is not None
    )
    assert problems == []


def test_every_layer_name_is_a_module_or_one_still_to_come() -> None:
    # A typo in LAYERS would quietly leave a module unchecked.
    expected_later = {"meterd.html", "meterd.invoicing"}
    for _, names in LAYERS:
        for name in names:
            relative = Path(*name.split(".")[1:])
            exists = (SOURCE / relative).is_dir() or (SOURCE / f"{relative}.py").is_file()
            assert exists or name in expected_later, name


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("meterd.storage.sqlite.store", "meterd.webhooks.delivery", False),
        ("meterd.storage.base", "meterd.http.app", False),
        ("meterd.config.loader", "meterd.storage.base", False),
        ("meterd.periods", "meterd.usage", False),
        ("meterd.usage", "meterd.closing", False),
        ("meterd.cli", "meterd.http.aggregations", False),
        ("meterd.http.app", "meterd.html.pages", False),
        ("meterd.http.app", "meterd.html.app", True),
        ("meterd.html.console.auth", "meterd.http.body", False),
        ("meterd.cli", "meterd.terminal", True),
        ("meterd.cli", "meterd.http.app.create_app", True),
        ("meterd.html.pages", "meterd.cli", False),
        ("meterd.http.app", "meterd.http.auth", True),
        ("meterd.http.app", "meterd.closing", True),
        ("meterd.closing", "meterd.webhooks.delivery", True),
        ("meterd.usage", "meterd.storage.base", True),
        ("meterd.storage.base", "meterd.config.model", True),
        ("meterd.aggregation", "meterd.rollup", True),
        ("meterd.client.sync", "meterd.http.app", True),  # the client is not placed: not checked
        ("meterd.corrections", "meterd.http.app", False),
        ("meterd.revisions", "meterd.storage.base", False),
        ("meterd.storage.base", "meterd.pricing", True),
    ],
)
def test_the_rule(importer: str, imported: str, allowed: bool) -> None:
    assert (violation(importer, imported) is None) is allowed


def test_relative_and_nested_imports_are_seen() -> None:
    source = (
        "from ..base import Store\n"
        "from . import rows\n"
        "def f():\n"
        "    import meterd.http.app\n"
        "    from meterd.webhooks.delivery import deliver\n"
    )
    found = imports_in(source, "meterd.storage.sqlite")
    assert "meterd.storage.base.Store" in found
    assert "meterd.storage.sqlite.rows" in found
    assert "meterd.http.app" in found
    assert "meterd.webhooks.delivery" in found

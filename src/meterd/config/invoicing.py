"""Hooks the `plans` and `invoicing` sections into a loaded config (called by loader.py)."""

from __future__ import annotations

import msgspec

from meterd.config.model import SystemConfig
from meterd.config.plans import Plan, PlanProblem, parse_invoicing, parse_plans
from meterd.config.problems import Problems


def with_plans(config: SystemConfig, document: object, problems: Problems) -> SystemConfig:
    """`config` with its plans and invoicing settings; what is wrong goes to `problems`."""
    if not isinstance(document, dict):
        return config
    plans: dict[str, Plan] = {}
    found: list[PlanProblem] = []
    if "plans" in document:
        plans, found = parse_plans(
            document["plans"],
            meters=config.events.keys(),
            periods=[period.name for period in config.periods],
        )
    invoicing = config.invoicing
    if "invoicing" in document:
        invoicing, more = parse_invoicing(document["invoicing"])
        found += more
    for problem in found:
        problems.report(problem.location, problem.message)
    return msgspec.structs.replace(config, plans=plans, invoicing=invoicing)

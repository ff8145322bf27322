"""Meters v2 (DESIGN §6, §7): dimensions, the ops rollups cannot fold, and the usage query.

`groups` and `values` are pure; `records` overlays their numbers on aggregation rows;
`usage` and `query` are services over a `Store`.
"""

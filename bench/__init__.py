"""meterd benchmarks: run with `python -m bench` (see README)."""

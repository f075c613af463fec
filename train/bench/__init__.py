"""The benchmark of `make bench` (train/benchmark.py): Sideways against BP, speed and memory.

`config` holds the workload, `runs` measures and writes the raw results, `summary` turns
them into figures and tables, `report` fills the page template (docs/performance.md) and
the terminal one with them.
"""

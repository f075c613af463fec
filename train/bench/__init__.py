"""The benchmark of `make bench` (train/benchmark.py): Sideways against BP, speed, memory
and time to accuracy.

`config` holds the workload, `runs` measures and writes the raw results, `summary` turns
them into figures and tables, `plots` draws the time-to-accuracy chart, `report` fills the
page template (docs/performance.md) and the terminal one with them.
"""

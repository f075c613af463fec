"""Raw results on disk: JSON written atomically, and read back.

The study rewrites `study.json` after every run and the benchmark writes `bench.json` once;
both go through `write_json`, so that an interrupted write never leaves half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(results: dict, path: str | os.PathLike, indent: int = 2) -> Path:
    """Writes `results` to `path` atomically (a temporary file beside it, then a rename),
    making its folder if needed; returns the path. NaN and infinities are written as
    JSON's extensions (NaN, Infinity), which `read_json` reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=indent, allow_nan=True) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> dict:
    """The results written by `write_json`."""
    return json.loads(Path(path).read_text())

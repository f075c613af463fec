"""Raw results and pages on disk: written atomically, and read back.

The study rewrites `study.json` after every run and the benchmark writes `bench.json` once;
both go through `write_json`, and every page and chart goes through `write_text` or
`replacing`, so that an interrupted write never leaves half a file. `read_json` reads raw
results back, and refuses in one line (`ResultsError`) a file that is missing, is not JSON,
or is some other command's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path


class ResultsError(ValueError):
    """Raw results that cannot be read, or that are another command's."""


def write_json(results: dict, path: str | os.PathLike, indent: int = 2) -> Path:
    """Writes `results` to `path` atomically (a temporary file beside it, then a rename),
    making its folder if needed; returns the path. NaN and infinities are written as
    JSON's extensions (NaN, Infinity), which `read_json` reads back."""
    return write_text(path, json.dumps(results, indent=indent, allow_nan=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8) to `path` atomically, making its folder if needed; returns
    the path."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`, with the same suffix (matplotlib reads the
    format from it), to write; then renames it to `path`. If the writing fails, `path` is
    left as it was and the temporary file removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | os.PathLike, keys: Sequence[str] = (), whose: str = "") -> dict:
    """The results written by `write_json`.

    Args:
        path: the file.
        keys: top-level entries the results must hold: those of the command that reads
            them (`whose`), which another command's results lack.
        whose: that command, for the error ("the benchmark's").

    Raises:
        ResultsError: one line naming the file: it is missing, not JSON, not an object,
            or lacks `keys`.
    """
    path = Path(path)
    what = f"{whose} raw results" if whose else "raw results"
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ResultsError(f"{path} {problem}; expected {what} (a JSON file).")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path} is not JSON ({error}); expected {what}.") from None
    if not isinstance(results, dict):
        raise ResultsError(f"{path} holds a JSON {type(results).__name__}; expected {what}.")
    missing = [key for key in keys if key not in results]
    if missing:
        raise ResultsError(
            f"{path} is not {what}: it has no {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, results)) or 'nothing'})."
        )
    return results


def same_file(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether the two paths name the same file (whether or not it exists)."""
    return Path(path).resolve() == Path(other).resolve()

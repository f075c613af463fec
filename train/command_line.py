"""The flag parsing every command of `train/` shares.

absl already reports a bad flag or a config override of the wrong type as one line
("FATAL Flags parsing error: ..."). An override that names no field of the config
(`--config.learning_rat=0.1`, a typo) reaches ml_collections as a missing attribute, which
it raises where it meets it: when the config flag is defined (the overrides are checked
against a default config file) or when the flags are parsed (against the file given). A
command defines its config flag with `define_config_file` and runs with
`app.run(main, flags_parser=parse)`, and either way the mistake is one line too, with
the field probably meant (of the names ml_collections finds close, the fewest edits away).

A config file that does not load is one line of absl's error as well, naming the file: one
that does not exist (with the file probably meant), a folder, or one whose import or
`get_config()` fails (with its error). ml_collections would defer the first kind to the
config's first use and let the others escape as tracebacks.
"""

from __future__ import annotations

import difflib
import functools
import glob
import os
import re
import select
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from absl import app, flags
from ml_collections import ConfigDict, config_flags

_UNKNOWN = re.compile(r"'([^'\\]+)\\?'")  # ml_collections: "'field'\nDid you mean ..."
_SUGGESTION = re.compile(r'Did you mean "([^"]+)" instead of')


def define_config_file(name: str, default: str | None, help_string: str, **kwargs):
    """`config_flags.DEFINE_config_file`, with an override of no field of the default
    config (in `sys.argv`) reported as one line of error, and so is a config file given on
    the command line that does not load (`_ConfigFileParser`)."""
    try:
        holder = config_flags.DEFINE_config_file(name, default, help_string, **kwargs)
    except (AttributeError, KeyError) as error:
        _unknown_field(error, sys.argv)
    flag = kwargs.get("flag_values", flags.FLAGS)[name]
    flag.parser = _ConfigFileParser(flag.parser)
    return holder


class _ConfigFileParser(flags.ArgumentParser):
    """ml_collections' parser of a config file argument ("path" or "path:variant"), with a
    file that does not load reported as a ValueError of one line, naming it: absl prints
    that as "FATAL Flags parsing error: flag --config=...: ..." and exits with status 1."""

    def __init__(self, parser: flags.ArgumentParser):
        self._parser = parser

    def parse(self, argument):
        if not isinstance(argument, str):
            return self._parser.parse(argument)
        path = argument.split(":", 1)[0]
        problem = _not_a_file(path)
        if problem:
            raise ValueError(problem)
        try:
            config = self._parser.parse(argument)
        except (TypeError, ValueError) as error:  # get_config's, re-raised with a traceback
            raise ValueError(_load_failure(error.__context__ or error)) from None
        except Exception as error:  # the file's own: a SyntaxError, an ImportError, ...
            raise ValueError(_load_failure(error)) from None
        try:
            getattr(config, "lock", None)
        except OSError as error:  # ml_collections defers an OSError to the config's first use
            raise ValueError(_load_failure(error.__cause__ or error)) from None
        return config

    def flag_type(self) -> str:
        return self._parser.flag_type()


def _not_a_file(path: str) -> str | None:
    """Why `path` cannot be a config file (empty, missing, a folder), or None."""
    expected = "a config file (a .py file with get_config())"
    if not path:
        return f"expected {expected}; got ''."
    if os.path.isdir(path):
        return f"{path} is a folder; expected {expected}."
    if os.path.exists(path):
        return None
    where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
    siblings = glob.glob(os.path.join(os.path.dirname(path), "*.py"))
    meant = difflib.get_close_matches(path, siblings, n=1)
    hint = f"; did you mean {meant[0]!r}?" if meant else "."
    return f"no such file: {path}{where}{hint}"


def _load_failure(error: BaseException) -> str:
    """One line for an error raised while loading a config file or running its get_config."""
    if isinstance(error, AttributeError) and getattr(error, "name", None) == "get_config":
        return "cannot load the config: it has no get_config()."
    text = " ".join(str(error).split())  # a SyntaxError's caret lines, say, on one line
    return f"cannot load the config: {type(error).__name__}: {text}"


def parse(argv: list[str]) -> list[str]:
    """absl's `parse_flags_with_usage`: returns the arguments left over; exits with status
    1 and one line of error for a bad flag or config override."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        _unknown_field(error, argv)


def command_of(module: str, *words: str) -> str:
    """The command line `python -m module [words] [--config=FILE] [--config.f=v ...]` of
    this process' config flag (without output paths): what runs the same workload again."""
    config_flag = flags.FLAGS["config"]
    words = [f"python -m {module}", *words]
    if config_flag.present:
        words.append(f"--config={config_flag.config_filename}")
    overrides = config_flags.get_override_values(config_flag).items()
    return " ".join(words + [f"--config.{k}={shlex.quote(str(v))}" for k, v in overrides])


def _unknown_field(error: Exception, argv: list[str]) -> NoReturn:
    """Writes the one line of an override of a field the config does not have, in absl's
    words, and exits with status 1; re-raises any other error. ml_collections raises an
    AttributeError for a missing field, a KeyError for a missing parent of one."""
    text = str(error)
    found = _UNKNOWN.search(text)
    if found is None:
        raise error
    field = found.group(1)
    names = rf"\.{re.escape(field)}(\.|$)"  # the override that goes through `field`
    flag = next((a.split("=")[0] for a in argv if re.search(names, a.split("=")[0])), field)
    meant = _field_meant(field, error, text)
    hint = f"; did you mean {meant!r}?" if meant else "."
    sys.stderr.write(
        f"FATAL Flags parsing error: {flag}: the config has no field {field!r}{hint}\n"
        "Pass --helpshort or --helpfull to see help on flags.\n"
    )
    sys.exit(1)


def _field_meant(field: str, error: Exception, text: str) -> str | None:
    """The field `field` was probably meant to be. ml_collections suggests the first of
    difflib's best (by ratio, then the later name in the alphabet: 'seedz' gets 'speed',
    not 'seeds'); among the names it finds as close, the fewest edits away wins here. The
    names come from the ConfigDict the error was raised in (its frame, if the error has
    one; otherwise ml_collections' own suggestion stands)."""
    frames, keys = error.__traceback__, None
    while frames is not None:
        owner = frames.tb_frame.f_locals.get("self")
        if isinstance(owner, ConfigDict):
            keys = [str(key) for key in owner.keys()]
        frames = frames.tb_next
    if keys is None:
        suggestion = _SUGGESTION.search(text)
        return suggestion.group(1) if suggestion else None
    close = difflib.get_close_matches(field, keys, n=len(keys), cutoff=0.75)  # ml_collections'
    return min(close, key=lambda key: _edits(field, key), default=None)


def _edits(a: str, b: str) -> int:
    """Levenshtein distance: the insertions, deletions and substitutions from `a` to `b`."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's stop), raised in the main thread as an interruption, so
    that what a command cleans up on Ctrl-C (an export's staging folder) is cleaned up."""


_STOPS: list[int] = []  # the signals `interruptible` has received
_REPORTED: list[bool] = []  # whether its one line is written
STOP_GRACE_S = 30.0  # seconds a stopped command has to end before `_watchdog` ends it


def _watchdog(resume: str) -> None:
    """Ends the process STOP_GRACE_S seconds after SIGINT or SIGTERM, or at a second one,
    with the one line and status of `interruptible`, where the main thread has not ended
    it: Python runs a signal's handler only between bytecodes, and a main thread blocked in
    C++ that lets go of Python's lock (a TensorFlow call that does not return) never gets
    there. The signal wakes this thread through `signal.set_wakeup_fd`. Ending so is a kill
    mid-epoch: the next run resumes from the last backup, as after kill -9. (C++ that
    keeps Python's lock, as MultiWorkerMirroredStrategy's wait for its peers, stops this
    thread too: `train.train` watches that wait from a process of its own.)"""
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    stops = (signal.SIGINT, signal.SIGTERM)

    def watch():
        while (signum := os.read(read, 1)[0]) not in stops:
            pass
        deadline = time.monotonic() + STOP_GRACE_S
        while (left := deadline - time.monotonic()) > 0:  # or at a second stop
            if select.select([read], [], [], left)[0] and os.read(read, 1)[0] in stops:
                break
        if not _REPORTED:
            sys.stderr.write(f"\ninterrupted: {resume}\n")
            sys.stderr.flush()
        os._exit(143 if signum == signal.SIGTERM else 130)

    threading.Thread(target=watch, name="stop-watchdog", daemon=True).start()


def stop_requested() -> bool:
    """Whether the command was sent SIGINT or SIGTERM. The KeyboardInterrupt the signal
    raises may be dropped (raised in a `__del__` or a weakref callback, Python prints and
    drops it) or turned into another error (raised in Python code that TensorFlow's C++
    calls, as while tracing): so long loops check this (`train.recipe`'s callback), and
    `interruptible` takes any error after a stop for the stop."""
    return bool(_STOPS)


def _quiet_after_a_stop(hook: Callable) -> Callable:
    """`hook` (`sys.unraisablehook` or `sys.excepthook`), silent once the command is
    stopping. The stop's KeyboardInterrupt, raised where Python prints an error and drops
    it (an object's `__del__`, a weakref callback, Python that TensorFlow's C++ calls back
    into), or the error it turns into there, printed a traceback before the one line."""

    def quiet(*args):
        if not _STOPS:
            hook(*args)

    return quiet


def interruptible(main: Callable[[list[str]], None], resume: str) -> Callable:
    """`main`, reporting Ctrl-C (SIGINT) or SIGTERM in one line, "interrupted: <resume>",
    with exit status 130 or 143 as a shell gives for them (it was a traceback of 20 to 250
    lines; SIGTERM said nothing and skipped the clean-up)."""

    @functools.wraps(main)
    def run(argv):
        def stop(signum, frame):
            if not _STOPS:  # what Python would print and drop from here on is the stop's
                sys.unraisablehook = _quiet_after_a_stop(sys.unraisablehook)
                sys.excepthook = _quiet_after_a_stop(sys.excepthook)
            _STOPS.append(signum)
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        _watchdog(resume)
        try:
            main(argv)
            if not _STOPS:
                return
            # Stopped, but its KeyboardInterrupt was dropped on the way and main went on.
        except (Exception, SystemExit):  # TensorFlow's C++, called back into, turns it
            if not _STOPS:  # into another error (which main may report: SystemExit)
                raise
        except KeyboardInterrupt:
            pass
        sys.stderr.write(f"\ninterrupted: {resume}\n")
        sys.stderr.flush()
        _REPORTED.append(True)
        sys.exit(143 if signal.SIGTERM in _STOPS else 130)

    return run

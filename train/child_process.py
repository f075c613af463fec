"""Work done in a fresh Python process with TensorFlow's thread pools sized for it.

TensorFlow sizes its inter-op and intra-op pools once per process, when its runtime starts
(`keras_sideways.threads`), so a measurement at other pools needs a process of its own.
`run("package.module:function", args, threads)` starts one, sizes the pools to `threads`
before anything imports TensorFlow's runtime, calls `function(args)` there and returns
its JSON result. The benchmark (`train/bench/runs.py`) and the study's real-time section
(`train/study/runs.py`) time their contenders this way.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


class ChildError(RuntimeError):
    """A child process that failed or ran past its timeout. Its message is one line (the
    commands print it as their error); `details` holds the end of the child's stderr."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


_ROOT = Path(__file__).resolve().parents[1]  # where `train` imports from, for the children
_RESULT = "RESULT "


def run(function: str, args: dict, threads: str = "0,0", timeout: int = 600) -> Any:
    """Calls `function` ("module:name") on `args` in a fresh process at `threads`.

    Args:
        function: the importable function, as "package.module:name"; it takes `args`
            and returns something JSON can write.
        args: its argument, JSON-ready.
        threads: TensorFlow's pools in the child, "inter,intra" (`keras_sideways.threads`).
        timeout: seconds before the child is killed.

    Returns:
        What `function` returned, read back from JSON.

    Raises:
        ChildError: the child failed (the message ends with the last line of its stderr,
            `details` holds its end) or ran past `timeout`.
    """
    code = (
        "import json, sys; from train import child_process; "
        f"print({_RESULT!r} + json.dumps(child_process.child(*json.loads(sys.argv[1]))))"
    )
    path = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as the commands do (train/__init__.py)
    try:  # (subprocess.run kills the child at the timeout)
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps([function, args, threads, os.getpid()])],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as late:  # a 34-line traceback from the commands
        stderr = late.stderr or b""  # what it wrote so far: bytes, even with text=True
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise ChildError(
            f"child process {function} ran past its timeout of {timeout} s and was stopped",
            stderr[-3000:],
        ) from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
    if done.returncode != 0 or not lines:
        last = ([line.strip() for line in done.stderr.splitlines() if line.strip()] or ["?"])[-1]
        raise ChildError(
            f"child process {function} failed (exit status {done.returncode}): {last}",
            done.stderr[-3000:],
        )
    return json.loads(lines[-1][len(_RESULT) :])


def child(function: str, args: dict, threads: str, parent: int) -> Any:
    """The child's side of `run`: sizes the pools, then calls `function(args)`; it dies
    with its parent, pid `parent` (a race or study killed left it running on, writing
    results)."""
    die_with_parent(parent)
    from keras_sideways import threads as thread_pools

    thread_pools.apply(thread_pools.parse(threads))  # before TensorFlow starts
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)(args)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def spawned_run(parent: int) -> None:
    """The initializer of `train.compare`'s run processes: they die with it
    (`die_with_parent`), and leave Ctrl-C to it (it kills them on one: a run of its own
    would print a traceback of its own)."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def die_with_parent(parent: int) -> None:
    """Makes this process exit when `parent` (its parent's pid) does, killed or not.

    `child` and `spawned_run` (`train.compare`'s runs) call it: without it, a compare killed
    with SIGKILL left its run training on, in the folder the same command, run again to
    resume, trains in; a race killed left its child writing results. On Linux the
    kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG), as if the whole process
    group had been killed, which resumes exactly; elsewhere a thread checks the parent's
    pid every second.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # it died before the call
                os._exit(1)
            return

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die_with_parent", daemon=True).start()

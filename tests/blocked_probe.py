"""Run in a subprocess by test_command_line.py: a command whose main thread is blocked in C.

    python blocked_probe.py GRACE_SECONDS

`command_line.interruptible` around a main that waits in C for a mutex it holds itself (a
signal does not interrupt `pthread_mutex_lock`; ctypes lets go of Python's lock): as a
command waits in a TensorFlow call that does not return. Python never runs the signal's
handler there; the stop's watchdog must end the process. Prints "blocked" once it waits.
"""

import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from train import command_line  # noqa: E402

command_line.STOP_GRACE_S = float(sys.argv[1])  # seconds


def main(argv):
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # a pthread_mutex_t (40 bytes on x86-64 glibc)
    libc.pthread_mutex_init(mutex, None)
    libc.pthread_mutex_lock(mutex)
    print("blocked", flush=True)
    libc.pthread_mutex_lock(mutex)  # locked again by its holder: waits, and no signal ends it


command_line.interruptible(main, "run it again.")(sys.argv[1:])

"""Worker processes that end with their parent: the process pools of ``simulate`` and ``convert``.

A pool's workers are forked children; if the parent is killed (``kill -9``, the
out-of-memory killer, a cluster's time limit) they would live on as orphans holding
their memory. Every worker of :func:`process_pool` asks the kernel to send it SIGTERM
when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``) and, where that is not
available, watches its parent from a thread and exits when it is gone.
"""

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

__all__ = ["check_workers", "process_pool", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


def check_workers(workers, *, zero=False):
    """``workers`` as given if it is None or an integer >= 1 (>= 0 where ``zero``), else ``ValueError``."""
    low = 0 if zero else 1
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < low):
        raise ValueError(f"workers must be an integer >= {low} (worker processes) or None (every core), "
                         f"got {workers!r}")
    return workers


def _watch(parent):
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def die_with_parent(parent):
    """Make this process end when ``parent`` (the pid that forked it) dies; a pool initializer.

    On Linux the kernel sends SIGTERM at the parent's death (``PR_SET_PDEATHSIG``); elsewhere
    a daemon thread checks ``os.getppid()`` every second. A parent that died before this
    call is caught by the check that follows.
    """
    done = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            done = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            done = False
    if not done:
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died between the fork and the call above
        os._exit(1)


def process_pool(workers):
    """A ``ProcessPoolExecutor`` of ``workers`` forked processes that end when this process dies."""
    return ProcessPoolExecutor(check_workers(workers), mp_context=get_context("fork"), initializer=die_with_parent,
                               initargs=(os.getpid(),))

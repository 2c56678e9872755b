"""Progress bars that read well both in a terminal and in an executed notebook."""

import sys

from tqdm import tqdm

__all__ = ["progress"]


def progress(iterable=None, *, total=None, desc=None, unit="it", disable=False, **kwargs):
    """A plain-text ``tqdm`` bar on stderr.

    In a terminal it redraws every second; elsewhere (papermill, CI logs), where every
    redraw becomes a new line, only every 30 seconds, so a rendered notebook shows the
    start, a few steps and the end. Plain ``tqdm`` rather than ``tqdm.auto``: widgets would
    need JavaScript from a CDN in the rendered book.
    """
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    kwargs.setdefault("mininterval", 1.0 if interactive else 30.0)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, **kwargs)

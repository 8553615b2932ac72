"""Progress on stderr: tqdm's bar on a terminal, plain periodic lines everywhere else.

A bar redraws itself with ``\\r`` several times a second; in a Slurm or CI log, a file or a pipe that is a
flood of half-lines. So when the stream is not a terminal, :func:`progress_bar` returns a tqdm that prints one
whole line (the same meter: count, percentage, elapsed, rate, postfix) every ``LSVIT_PROGRESS_INTERVAL``
seconds (default 30), nothing at all for work that ends sooner, and a last line when work that printed
any ends. Either way it is a tqdm: ``update``, ``set_postfix``, ``tqdm.write`` and iteration work as usual.
"""

import os
import sys
import time
from typing import Any

from tqdm import tqdm

DEFAULT_INTERVAL_S = 30.0
LINE_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)
OPEN_FORMAT = "{desc}: {n_fmt} {unit} [{elapsed}, {rate_fmt}{postfix}]"  # total unknown


def interval_s() -> float:
    """Seconds between plain progress lines: ``LSVIT_PROGRESS_INTERVAL``, else 30."""
    try:
        value = float(os.environ.get("LSVIT_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


class LineProgress(tqdm):
    """A tqdm that writes whole lines at most every ``interval`` seconds instead of redrawing one."""

    def __init__(self, *args: Any, interval: float | None = None, **kw: Any) -> None:
        self.interval = interval_s() if interval is None else interval
        self._lines, self._last, self._last_n = 0, time.monotonic(), 0
        # Nothing for the first interval (short work stays silent); the monitor thread refreshes no faster.
        kw.update(delay=self.interval, mininterval=self.interval, maxinterval=max(self.interval, 1.0))
        given = "bar_format" in kw
        super().__init__(*args, **kw)
        if not given:  # the meter without a bar of block characters
            self.bar_format = LINE_FORMAT if self.total else OPEN_FORMAT

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing its line: there is no line to clear
            return False
        now = time.monotonic()
        if self.n == 0 or now - self._last < self.interval:
            return False
        self._write(now)
        return True

    def _write(self, now: float) -> None:
        self._lines, self._last, self._last_n = self._lines + 1, now, self.n
        self.fp.write(self.__str__().strip() + "\n")
        self.fp.flush()

    def clear(self, nolock: bool = False) -> None:
        pass  # tqdm.write() clears bars before printing; a printed line stays

    def close(self) -> None:
        if not self.disable and self._lines and self.n != self._last_n:
            self._write(time.monotonic())  # how long work that reported progress ended up taking
        self.leave = False
        super().close()


def progress_bar(iterable: Any = None, **kw: Any) -> tqdm:
    """A tqdm bar on a terminal, else a :class:`LineProgress` (same arguments as ``tqdm``).

    Args:
        iterable: What to iterate over, as with ``tqdm(iterable)``.
        **kw: tqdm's options (``total``, ``desc``, ``unit``, ``disable``, ``file``, ...); ``file`` defaults to
            stderr.

    Returns:
        The progress object.
    """
    file = kw.setdefault("file", sys.stderr)
    tty = getattr(file, "isatty", lambda: False)()
    return tqdm(iterable, **kw) if tty else LineProgress(iterable, **kw)

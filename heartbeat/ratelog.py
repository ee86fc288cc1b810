"""Log lines that survive floods: at most one line per key per period, with a count.

A flood of junk (or of one recurring failure) must not become a flood of log lines.
:class:`RateLog` lets the first line of a key through, then counts the lines of that
key it suppresses until ``every_s`` has passed; the next line that gets through says
how many were suppressed since the previous one.  The clock is injected (tests pass
their own); nothing here configures logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

OVERFLOW_KEY = "(other)"


class RateLog:
    """``log(key, level, msg, *args)``: one line per ``key`` per ``every_s`` seconds.

    ``what`` names the lines in :meth:`flush`'s summary.

    Formatting is lazy, as with :mod:`logging`: a suppressed line costs a dict lookup
    and a clock read.  At most ``max_keys`` keys are tracked; beyond that, keys whose
    period has passed are forgotten, and if none has, new keys share one overflow
    key (so arbitrary keys cannot grow memory or the line count).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
        what: str = "",
    ) -> None:
        if every_s < 0:
            raise ValueError(f"every_s must not be negative, got {every_s}")
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self.max_keys = max_keys
        self.what = what  # names the lines in flush(): "<what>: N more <key> line(s) ..."
        self._last: dict[str, float] = {}  # key -> when its last line was written
        self._suppressed: dict[str, int] = {}
        self.lines = 0  # lines written
        self.suppressed_total = 0

    def admit(self, key: str) -> int | None:
        """None when a line for ``key`` is to be suppressed now (it is counted), else
        the number of lines of ``key`` suppressed since its previous line."""
        now = self.clock()
        last = self._last.get(key)
        if last is None and len(self._last) >= self.max_keys:
            self._forget(now)
            if len(self._last) >= self.max_keys:
                key = OVERFLOW_KEY
                last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self.suppressed_total += 1
            return None
        self._last[key] = now
        self.lines += 1
        return self._suppressed.pop(key, 0)

    def log(self, key: str, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless a line for ``key`` was logged less than ``every_s``
        ago; True if logged.  A line after suppressed ones ends with their count."""
        if not self.logger.isEnabledFor(level):
            return False
        suppressed = self.admit(key)
        if suppressed is None:
            return False
        if suppressed:
            msg += " (%d more like it suppressed in the last %s)"
            args = (*args, suppressed, _period(self.every_s))
        self.logger.log(level, msg, *args, stacklevel=2)
        return True

    def flush(self, level: int = logging.INFO) -> None:
        """Log one line per key with lines suppressed since its last one (at a stop)."""
        prefix = f"{self.what}: " if self.what else ""
        for key, count in sorted(self._suppressed.items()):
            self.logger.log(level, "%s%d more %s line(s) were suppressed", prefix, count, key)
            self.lines += 1
        self._suppressed.clear()

    def _forget(self, now: float) -> None:
        for key, last in list(self._last.items()):
            if now - last >= self.every_s and key != OVERFLOW_KEY:
                del self._last[key]
                count = self._suppressed.pop(key, 0)
                if count:  # still reported, with the overflow key's next line
                    self._suppressed[OVERFLOW_KEY] = self._suppressed.get(OVERFLOW_KEY, 0) + count


def _period(seconds: float) -> str:
    return f"{seconds:g}s"

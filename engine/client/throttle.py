"""At most one report per interval: the one rule by which the daemon batches its
Progress messages (engine/service.py) and the language server its $/progress
reports (blazedit_lsp/progress.py). No torch here."""

from __future__ import annotations

import time
from typing import Callable


class Throttle:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval, self._clock = interval, clock
        self._last = float("-inf")

    def ready(self) -> bool:
        """Whether a report may go out now; if so, the interval restarts."""
        now = self._clock()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

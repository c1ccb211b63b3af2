"""A run's wall-clock ``timeout`` (DESIGN.md, "Resource limits"): the one limit no kernel
interface enforces for a process tree, so the service stops the run itself."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Timeout:
    """Call ``stop`` after ``seconds`` of wall time (``None``: never); :attr:`fired` says whether it did.

    One timer thread, no polling; :meth:`cancel` once the run has ended."""

    def __init__(self, seconds: float | None, stop: Callable[[], None]) -> None:
        self.fired = False
        self._stop = stop
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        self._stop()

    def cancel(self) -> None:
        """Forget the timeout (the run ended first)."""
        if self._timer is not None:
            self._timer.cancel()

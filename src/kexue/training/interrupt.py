"""SIGINT and SIGTERM during training: finish the step, save a checkpoint, exit with ``128 + signal``.

:class:`SignalFlag` replaces the two handlers for the duration of ``Trainer.fit`` and only records
the signal; the loop reduces the flag across processes with the step's metrics, so every process
stops after the same step, saves, and raises :class:`TrainingInterrupted`. A second Ctrl-C aborts
at once (``KeyboardInterrupt``), for a user who does not want to wait for the checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

__all__ = ["SignalFlag", "TrainingInterrupted"]

logger = logging.getLogger(__name__)


class TrainingInterrupted(SystemExit):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved; exits with ``128 + signal``."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class SignalFlag:
    """Records SIGINT/SIGTERM during training instead of dying mid-step; a second SIGINT aborts."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.warning("received %s: saving a checkpoint after this step", signal.Signals(signum).name)
        self.signum = signum

    def __enter__(self) -> "SignalFlag":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)



"""Ctrl-C and SIGTERM during a search: the first stops Ray Tune gracefully, the second aborts.

Ray Tune's own SIGINT handler ends ``Tuner.fit()`` normally, as if the experiment were done,
so a caller cannot tell an interrupted search from a finished one. :func:`graceful_stop`
replaces it for the block: the first SIGINT or SIGTERM asks Tune to stop through its SIGUSR1
handler (Tune saves the experiment state one last time, so ``--resume`` continues it) and is
recorded in the yielded :class:`Interruption`; a second one raises :class:`KeyboardInterrupt`
at once. A signal that arrives before Tune's loop has started raises at once too: there is
nothing to save yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from mammo_ray.process import environment, signal_handlers

__all__ = ["Interruption", "graceful_stop"]

_TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


@dataclasses.dataclass
class Interruption:
    """Which signal stopped the block, if one did (``"SIGINT"`` or ``"SIGTERM"``)."""

    signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def graceful_stop(message: str) -> Iterator[Interruption]:
    """Run a ``Tuner.fit()`` inside; print ``message`` when the first signal stops it.

    Only the main thread can own signal handlers; elsewhere the block runs unguarded.
    """
    state = Interruption()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if state.requested:
            raise KeyboardInterrupt
        state.signal_name = signal.Signals(signum).name
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if not callable(tune_stop):
            raise KeyboardInterrupt
        print(message, file=sys.stderr, flush=True)
        tune_stop(signal.SIGUSR1, frame)

    handlers = {signal.SIGUSR1: signal.SIG_IGN, signal.SIGINT: on_signal, signal.SIGTERM: on_signal}
    with environment(**{_TUNE_SIGINT_ENV: "1"}), signal_handlers(handlers):
        yield state

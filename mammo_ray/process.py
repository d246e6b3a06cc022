"""Process-wide state set for a block and put back after it: signal handlers and environment
variables."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

__all__ = ["SignalHandler", "signal_handlers", "environment"]

SignalHandler = Callable[[int, FrameType | None], object] | int | None
"""What :func:`signal.signal` takes: a function, ``SIG_DFL`` or ``SIG_IGN``."""


@contextlib.contextmanager
def signal_handlers(handlers: Mapping[int, SignalHandler]) -> Iterator[bool]:
    """Install ``{signal number: handler}`` for the block, then restore the previous handlers.

    Only the main thread may own signal handlers: elsewhere nothing is installed. Yields whether
    the handlers were installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block; afterwards each is as it was (or unset).

    >>> with environment(MAMMO_RAY_EXAMPLE="1"):
    ...     os.environ["MAMMO_RAY_EXAMPLE"]
    '1'
    >>> "MAMMO_RAY_EXAMPLE" in os.environ
    False
    """
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

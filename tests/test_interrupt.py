"""Signals during a search (issue 8, item 1): graceful once, abort twice; SIGTERM as Ctrl-C."""

from __future__ import annotations

import os
import signal

import pytest

from mammo_ray.cli import run_cli
from mammo_ray.errors import Interrupted
from mammo_ray.search.interrupt import graceful_stop


def _raise(signum: int) -> None:
    os.kill(os.getpid(), signum)


def test_the_first_signal_asks_tune_to_stop_and_the_second_aborts(capsys):
    before = signal.getsignal(signal.SIGINT)
    stops = []
    with graceful_stop("stopping") as stop:
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        # What Tune's run loop does when it starts: its own SIGUSR1 handler.
        signal.signal(signal.SIGUSR1, lambda signum, frame: stops.append(signum))
        _raise(signal.SIGINT)
        assert stop.signal_name == "SIGINT" and stops == [signal.SIGUSR1]
        with pytest.raises(KeyboardInterrupt):
            _raise(signal.SIGINT)
    assert "stopping" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ


def test_a_signal_before_tune_runs_aborts_at_once():
    with pytest.raises(KeyboardInterrupt), graceful_stop("stopping") as stop:
        _raise(signal.SIGTERM)
    assert stop.signal_name == "SIGTERM"


def test_sigterm_ends_a_command_like_ctrl_c_with_exit_130(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def command(argv):
        _raise(signal.SIGTERM)
        return 0

    assert run_cli(command, []) == 130
    assert capsys.readouterr().err == "interrupted\n"

    def resumable(argv):
        raise Interrupted("continue it with: python -m mammo_ray.search --resume")

    assert run_cli(resumable, []) == 130
    err = capsys.readouterr().err
    assert err == "interrupted: continue it with: python -m mammo_ray.search --resume\n"
    assert signal.getsignal(signal.SIGTERM) is before

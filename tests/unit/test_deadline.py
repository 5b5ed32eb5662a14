"""Calls with a deadline: a wedged call is given up on, and never keeps the process from exiting."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from stream_scorer.kafka.deadline import CallTimedOut, DeadlineCaller


def test_returns_the_result_and_raises_the_exception_of_the_call():
    caller = DeadlineCaller("t")
    assert caller.call(lambda: "ok", timeout=5) == "ok"

    def boom() -> None:
        raise ValueError("from the call")

    with pytest.raises(ValueError, match="from the call"):
        caller.call(boom, timeout=5)
    assert caller.abandoned == 0


def test_a_wedged_call_times_out_and_the_next_call_runs_on_a_new_thread():
    caller = DeadlineCaller("t")
    release = threading.Event()
    threads: list[str] = []

    def wedged() -> None:
        threads.append(threading.current_thread().name)
        release.wait()

    t0 = time.monotonic()
    with pytest.raises(CallTimedOut):
        caller.call(wedged, timeout=0.2)
    assert time.monotonic() - t0 < 2.0
    assert caller.abandoned == 1
    # The first thread is still inside the wedged call: a call queued behind it would never run.
    assert caller.call(lambda: threading.current_thread().ident, timeout=2) != threading.get_ident()
    release.set()


def test_a_process_with_a_wedged_call_still_exits():
    code = (
        "import threading\n"
        "from stream_scorer.kafka.deadline import CallTimedOut, DeadlineCaller\n"
        "try:\n"
        "    DeadlineCaller('t').call(threading.Event().wait, timeout=0.2)\n"
        "except CallTimedOut:\n"
        "    print('timed out', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "timed out"

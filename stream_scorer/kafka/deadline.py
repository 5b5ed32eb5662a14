"""Run a blocking client call on a helper thread, and give up waiting for it after a deadline.

Some librdkafka transactional calls can block forever after the cluster went away, whatever
timeout they are given (confluentinc/librdkafka#5511, #5456). The worker makes such calls through
a :class:`DeadlineCaller` so a wedged call costs it a replaced producer, not the process.

The helper is a daemon thread, not a ``concurrent.futures`` pool: the interpreter joins pool
threads at exit, so one wedged call would keep a finished process from ever exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from stream_scorer.exceptions import StreamScorerError


class CallTimedOut(StreamScorerError):
    """The call did not return within its deadline; it may still be running on the helper."""


class _Job:
    __slots__ = ("call", "done", "error", "result")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class DeadlineCaller:
    """One daemon thread that runs the calls given to :meth:`call`, one at a time.

    After a call times out, the thread is left to it and the next call gets a new thread, so
    nothing ever queues behind a wedged call.

    >>> caller = DeadlineCaller("doc")
    >>> caller.call(lambda: 6 * 7, timeout=1.0)
    42
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.abandoned = 0
        """How many threads were left inside a call that never returned."""
        self._jobs: queue.SimpleQueue[_Job] | None = None

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Return ``fn()``'s result or raise its exception; raise :class:`CallTimedOut` after
        ``timeout`` seconds."""
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(self._jobs,), name=self.name, daemon=True).start()
        job = _Job(fn)
        self._jobs.put(job)
        if not job.done.wait(timeout):
            self._jobs = None  # the thread stays with the wedged call; the next call starts another
            self.abandoned += 1
            raise CallTimedOut(f"did not return within {timeout:.0f}s")
        if job.error is not None:
            raise job.error
        return job.result


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        job = jobs.get()
        try:
            job.result = job.call()
        except BaseException as exc:  # handed to the caller, who raises it
            job.error = exc
        job.done.set()
        del job

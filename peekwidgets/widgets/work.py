"""Long work of the dashboard (refits, rank profiles) off the kernel's main thread.

One :class:`Worker` per dashboard runs one job at a time in a background thread, so the views
stay interactive and keep showing the old fit until the new one is ready. A job submitted while
another runs waits in a single slot: a newer submission replaces it, and jobs never interleave.
:meth:`Worker.cancel` asks the running job to stop; a fit checks it after every sweep
(:meth:`Worker.check`, raising KeyboardInterrupt, which the engine turns into a clean stop with
the best factors kept).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Job", "Worker"]


@dataclass
class Job:
    """``run()`` in the background, then ``done(result)`` (also in the background thread).

    ``label`` names the work in the status line (``"fitting rank 8"``).
    """

    label: str
    run: Callable[[], object]
    done: Callable[[object], None]


class Worker:
    """Runs :class:`Job` s one at a time in a daemon thread.

    Parameters
    ----------
    on_error : callable
        ``on_error(exc)`` for an exception raised by a job (shown in the dashboard's error area).
    on_idle : callable, optional
        Called after the last queued job has finished.
    """

    def __init__(self, on_error: Callable[[BaseException], None],
                 on_idle: Callable[[], None] | None = None):
        self._on_error, self._on_idle = on_error, on_idle
        self._lock = threading.Lock()
        self._pending: Job | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.current: Job | None = None

    @property
    def busy(self) -> bool:
        """Whether a job runs or waits."""
        with self._lock:
            return self.current is not None or self._pending is not None

    def submit(self, job: Job) -> None:
        """Run ``job`` after the running one (replacing any job still waiting)."""
        with self._lock:
            self._pending = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="peekwidgets-worker",
                                                daemon=True)
                self._thread.start()

    def cancel(self) -> None:
        """Stop the running job at its next check and drop the waiting one."""
        with self._lock:
            self._pending = None
            if self.current is not None:
                self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Whether the running job was asked to stop."""
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise KeyboardInterrupt in the running job when it was cancelled."""
        if self._cancel.is_set():
            raise KeyboardInterrupt("cancelled from the dashboard")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job has finished; False when ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None or not thread.is_alive():
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            thread.join(left)

    def _loop(self):
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                self.current = job
                self._cancel.clear()
                if job is None:
                    self._thread = None
                    break
            try:
                job.done(job.run())
            except BaseException as exc:  # shown to the user; the thread lives on
                self._on_error(exc)
            finally:
                with self._lock:
                    self.current = None
        if self._on_idle is not None:
            self._on_idle()

"""A model activity that runs on its own thread: a workload, the idle machine's timeline.

``start()`` runs ``_run`` on a daemon thread until ``stop()``; ``_run`` loops while
``self._stop`` is not set (and waits on it between steps, so ``stop()`` ends it at once).
"""
from __future__ import annotations

import threading


class Background:
    thread_name = "model"
    _thread: threading.Thread | None = None
    _stop: threading.Event

    def _run(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

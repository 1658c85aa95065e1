"""Build the next steps' batches on a background thread while the accelerator runs this one.

Row building is numpy slicing of memory-mapped tokens and mostly waits on page-ins; the training
thread mostly waits on the GPU. Overlapping them keeps the data path off the step time. Items
come out in the order they were produced, so the run stays deterministic; each carries the
stream state *after* its rows, which is what a checkpoint taken after consuming it must save.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PrefetchError(RuntimeError):
    """The producer thread failed; the original exception is the cause."""


class Prefetcher(Generic[T]):
    def __init__(self, produce: Callable[[], T], depth: int = 2) -> None:
        self._produce = produce
        self._queue: queue.Queue[tuple[bool, T | BaseException]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dapt-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: tuple[bool, T | BaseException] = (True, self._produce())
            except BaseException as err:  # handed to the consumer, which re-raises it
                item = (False, err)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def get(self) -> T:
        ok, value = self._queue.get()
        if not ok:
            assert isinstance(value, BaseException)
            raise PrefetchError(f"building training batches failed: {value}") from value
        return value  # type: ignore[return-value]

    def close(self) -> None:
        """Stop producing and drop what was built ahead (it was never trained on)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)

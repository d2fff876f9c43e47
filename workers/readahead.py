"""Read ahead: a background thread produces the items of an iterator while
the caller works on the previous one (polars and pyarrow release the GIL
while reading, so reading overlaps embedding)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class ReadAhead(Generic[T]):
    """Iterate ``produce()`` in a thread, at most ``depth`` items ahead.

    An exception raised by the producer is re-raised to the consumer at the
    point where the item would have come. ``close()`` stops the thread."""

    def __init__(self, produce: Callable[[], Iterator[T]], depth: int = 1, name: str = "readahead") -> None:
        self._q: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[], Iterator[T]]) -> None:
        try:
            for item in produce():
                if not self._put(item):
                    return
        except BaseException as e:  # handed to the consumer, never lost
            self._put(e)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while True:
            try:
                item = self._q.get(timeout=0.1)
                break
            except queue.Empty:
                if self._closed.is_set():
                    raise StopIteration from None
        if item is _END:
            self._closed.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self._closed.set()
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop producing; pending items are dropped."""
        self._closed.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)

"""Read ahead and write behind: a background thread produces the items of an
iterator while the caller works on the previous one (polars and pyarrow
release the GIL while reading, so reading overlaps embedding), and another
writes the caller's results while it works on the next."""

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


class WriteBehind(Generic[T]):
    """Hand items to ``write`` on a thread, in order, at most ``depth`` behind
    the caller (parquet encoding and zstd release the GIL, so writing chunk n
    overlaps embedding chunk n+1).

    An exception raised by ``write`` is re-raised to the caller by the next
    ``put`` or by ``finish``; ``close()`` drops what is pending and waits for
    the item being written, so the caller may then abort the file safely."""

    def __init__(self, write: Callable[[T], None], depth: int = 2, name: str = "writebehind") -> None:
        self._q: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(write,), name=name, daemon=True)
        self._thread.start()

    def _run(self, write: Callable[[T], None]) -> None:
        while True:
            item = self._q.get()
            if item is _END or self._closed.is_set():
                return
            try:
                write(item)  # type: ignore[arg-type]
            except BaseException as e:  # handed to the caller, never lost
                self._error = e
                return

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        while True:
            self._raise()
            if not self._thread.is_alive():
                raise RuntimeError("writer thread stopped")
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every item is written; re-raise a write's error."""
        self.put(_END)  # type: ignore[arg-type]
        self._thread.join()
        self._raise()

    def close(self) -> None:
        """Stop writing: pending items are dropped; returns once the thread is done."""
        self._closed.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        try:
            self._q.put_nowait(_END)
        except queue.Full:
            pass
        self._thread.join()

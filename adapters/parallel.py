"""Converting a large national file in one process per core, in the file's order.

Records of a file are independent, so chunks of them go to worker processes
and come back in order, with a bounded number in flight (memory stays flat).
The adapter object itself is sent once to each worker. Converted records come
back serialised: pickling protobuf messages inside Converted wrappers costs
twice as much as their bytes.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from google.protobuf.message import Message

from adapters.base import Converted, Problem

# One converted record as it crosses the process boundary: its place, its message class and bytes
# (or None), its problems.
Packed = tuple[str, type[Message] | None, bytes, tuple[Problem, ...]]

_ADAPTER: Any = None


def ordered(
    adapter: Any, function: Callable[[Any, Any], Any], chunks: Iterable[Any], workers: int
) -> Iterator[Any]:
    """``function(adapter, chunk)`` for every chunk, computed in ``workers`` processes, in order.

    ``function`` must be a module-level function (it is pickled by name)."""
    context = multiprocessing.get_context("spawn")  # no fork: the caller may hold gRPC channels
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(adapter,))
    pending: deque[Future[Any]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(_call, function, chunk))
            if len(pending) > 2 * workers:  # bounded: memory stays flat
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def pack(converted: Iterable[Converted]) -> list[Packed]:
    return [
        (
            c.location,
            type(c.record) if c.record is not None else None,
            c.record.SerializeToString() if c.record is not None else b"",
            c.problems,
        )
        for c in converted
    ]


def unpack(packed: Iterable[Packed]) -> Iterator[Converted]:
    for location, kind, data, problems in packed:
        yield Converted(location, kind.FromString(data) if kind is not None else None, problems)


def _start(adapter: Any) -> None:
    global _ADAPTER
    _ADAPTER = adapter


def _call(function: Callable[[Any, Any], Any], chunk: Any) -> Any:
    return function(_ADAPTER, chunk)

"""What the JSON adapters share: reading a file of one record, a list, or a search response of
records, reporting a record of the wrong shape without stopping, and the adapter's settings."""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import ijson
from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import offer_pb2

from adapters import parallel
from adapters.base import Converted, Problem
from adapters.codelists import CodeLists
from adapters.limits import JsonGuard, LimitExceeded, json_fault, load_json, utf8_start

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
CHUNK_ITEMS = 500


class JsonAdapter:
    """Base of the adapters that read national JSON files into common records."""

    name = ""
    parallel_from_items: int | None = 5_000
    """Files of this many records or more are converted by one process per core (``workers``);
    None: always in one process."""

    def __init__(
        self,
        codelists: CodeLists,
        origin_participant_id: str,
        target_country_codes: tuple[str, ...] = (),
        workers: int | None = None,
        **_: Any,
    ) -> None:
        self.codelists = codelists
        self.workers = workers
        self.origin = origin_participant_id
        self.targets = tuple(target_country_codes)

    def offers_in(self, data: Any) -> tuple[list[Any], str]:
        """The records of a parsed file and the JSON path of each, with {i} for its index."""
        if isinstance(data, list):
            return data, "$[{i}]"
        return [data], "$"

    record_arrays: tuple[tuple[str, str], ...] = ()
    """Arrays of records inside a top-level object, read one record at a time: (the array's path
    as ijson writes it, e.g. "resultats", and each record's JSON path, e.g. "$.resultats[{i}]").
    A top-level array is always read so."""

    def unwrap(self, array: str, item: Any) -> Any:
        """The record an item of ``array`` holds (an Elasticsearch hit holds it in _source)."""
        return item

    def read(self, path: Path) -> Iterator[Converted]:
        """The records of a file, read as a stream: memory stays flat however large the file.

        The arrays of records (a top-level array, or one of ``record_arrays``) are decoded one
        record at a time; anything else is decoded whole and given to ``offers_in`` (a file of one
        record, or a shape the adapter recognises by its content). A file that stops being valid
        JSON part-way keeps the records read before the fault, and the fault is reported."""
        try:
            handle = path.open("rb")
        except OSError as exc:
            yield Converted(
                str(path), None, (Problem(str(path), "$", f"not readable ({type(exc).__name__})"),)
            )
            return
        with handle:
            not_utf8 = utf8_start(handle)
            if not_utf8:
                yield Converted(f"{path}:$", None, (Problem(f"{path}:$", "$", not_utf8),))
                return
            reader = _StreamedRecords(self, path, handle)
            yield from self._convert_all(reader.records())
            if reader.refused is not None:
                where, reason = reader.refused
                yield Converted(where, None, (Problem(where, "$", reason),))
                return
            if reader.error is not None:
                where = f"{path}:$" if reader.count == 0 else f"{path}: after record {reader.count}"
                yield Converted(
                    where,
                    None,
                    (Problem(where, "$", f"{reader.error}; records before it were read"),),
                )
                return
            if not reader.streamed:
                with _document_kept(reader.document):
                    yield from self._read(path, reader.document)

    def _read(self, path: Path, data: Any) -> Iterator[Converted]:
        offers, base = self.offers_in(data)
        # Each record's place in the file, e.g. "offres.json:$.resultats[12]".
        head, marker, tail = f"{path}:{base}".partition("{i}")
        yield from self._convert_all(
            (f"{head}{i}{tail}" if marker else head, offer) for i, offer in enumerate(offers)
        )

    def _convert_all(self, items: Iterable[tuple[str, Any]]) -> Iterator[Converted]:
        """Convert (place, item) pairs in order: in this process, or, once a file proves to hold
        ``parallel_from_items`` records, in one process per core (``workers``)."""
        items = iter(items)
        workers = self.workers if self.workers is not None else (os.cpu_count() or 1)
        if workers <= 1 or self.parallel_from_items is None:
            for where, item in items:
                yield from self._convert_reported(item, where)
            return
        first = list(itertools.islice(items, self.parallel_from_items))
        if len(first) < self.parallel_from_items:
            for where, item in first:
                yield from self._convert_reported(item, where)
            return
        everything = itertools.chain(first, items)
        del first
        chunks = iter(lambda: list(itertools.islice(everything, CHUNK_ITEMS)), [])
        for packed in parallel.ordered(self, _convert_chunk, chunks, workers):
            yield from parallel.unpack(packed)

    def _convert_reported(self, item: Any, where: str) -> Iterator[Converted]:
        try:
            yield from self.convert_item(item, where)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            # A value of the wrong JSON type deep inside: this record is reported, the file goes on.
            reason = f"unexpected structure ({type(exc).__name__}): a field has the wrong JSON type"
            yield Converted(where, None, (Problem(where, "$", reason),))
        except ArithmeticError as exc:
            # A number JSON allows and a double does not hold: 1e999 is read as infinity.
            reason = f"a number out of range ({type(exc).__name__})"
            yield Converted(where, None, (Problem(where, "$", reason),))

    def convert_item(self, item: Any, where: str) -> Iterator[Converted]:
        """The records of one item of the file (one offer; a candidate gives two records)."""
        yield self.convert(item, where)

    def convert(self, offer: Any, where: str) -> Converted:
        raise NotImplementedError

    def write(self, offer: offer_pb2.JobOffer) -> dict[str, Any]:
        raise NotImplementedError

    def round_trip(self, offer: offer_pb2.JobOffer, where: str) -> offer_pb2.JobOffer | None:
        """National → common → national → common, for the conformance check."""
        return self.convert(self.write(offer), where).record  # type: ignore[return-value]


class _StreamedRecords:
    """A JSON document's records, one at a time: the first array of records found (a top-level
    array, or one of the adapter's ``record_arrays``) is decoded item by item by ijson's C parser;
    a document with none is decoded whole into ``document``, for ``offers_in``. Every byte goes
    through a JsonGuard first: past a limit of adapters/limits.py, ``refused`` says which record
    and which limit, and nothing after it is read."""

    def __init__(self, adapter: JsonAdapter, path: Path, handle: BinaryIO) -> None:
        self.adapter = adapter
        self.path = path
        self.handle = handle
        self.arrays = {"": "$[{i}]", **dict(adapter.record_arrays)}
        self.document: Any = None
        self.streamed = False
        self.count = 0
        self.error: str | None = None
        self.refused: tuple[str, str] | None = None  # (the record's place, the limit passed)

    def records(self) -> Iterator[tuple[str, Any]]:
        start = self.handle.tell()
        where = f"{self.path}:$"
        try:
            # A top-level array is the array of records: no need to look further.
            array = "" if self.handle.read(64).lstrip().startswith(b"[") else None
            self.handle.seek(start)
            if array is None:
                array = self._first_array(JsonGuard(self.handle))
                self.handle.seek(start)
            if array is None:
                # Read whole: the document is one record to the guard, so at most MAX_RECORD_BYTES.
                self.document = load_json(self.handle)
                return
            head, _, tail = self.arrays[array].partition("{i}")
            # The array's items are the records: containers opened one level inside the array.
            guard = JsonGuard(self.handle, record_depth=array.count(".") + 2 if array else 1)
            items = ijson.items(guard, f"{array}.item" if array else "item", use_float=True)
            self.streamed = True
            for item in items:
                yield f"{self.path}:{head}{self.count}{tail}", self.adapter.unwrap(array, item)
                self.count += 1
        except LimitExceeded as exc:
            if self.streamed:
                where = f"{self.path}:{head}{max(guard.records - 1, self.count)}{tail}"
            self.refused = (where, f"refused: {exc}; the rest of the file is not read")
        except (ijson.JSONError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            self.error = json_fault(exc)

    def _first_array(self, guard: JsonGuard) -> str | None:
        """The path of the first array of records in the document (it stops reading there), or None."""
        for prefix, event, _ in ijson.parse(guard):
            if event == "start_array" and prefix in self.arrays:
                return str(prefix)
        return None


def _convert_chunk(adapter: JsonAdapter, items: list[tuple[str, Any]]) -> list[parallel.Packed]:
    """In a worker process: the records of a chunk of items, serialised."""
    return parallel.pack(c for where, item in items for c in adapter._convert_reported(item, where))


def timestamp(value: datetime) -> Timestamp:
    """What Timestamp.FromDatetime gives (a naive time read as UTC), at a tenth of its cost."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return Timestamp(seconds=(value - _EPOCH) // _SECOND, nanos=value.microsecond * 1000)


@contextmanager
def _document_kept(data: Any) -> Iterator[None]:
    """While a decoded document is converted, Python's cycle collector leaves it out of its rounds.

    The document lives until the read ends; each full collection, which converting records sets
    off again and again, walked all of it: 100,000 France Travail offers converted at 14,000/s
    with it, 16,900/s without (bench/adapter_france_travail.py)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

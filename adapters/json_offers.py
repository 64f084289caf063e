"""What the JSON adapters share: reading a file of one record, a list, or a search response of
records, reporting a record of the wrong shape without stopping, and the adapter's settings."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import offer_pb2

from adapters import parallel
from adapters.base import Converted, Problem
from adapters.codelists import CodeLists

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

    def read(self, path: Path) -> Iterator[Converted]:
        try:
            text = path.read_text(encoding="utf-8-sig")
            with _collector_paused():
                data = json.loads(text)
        except (OSError, ValueError) as exc:
            yield Converted(
                str(path), None, (Problem(str(path), "$", f"not readable JSON ({type(exc).__name__})"),)
            )
            return
        del text
        with _document_kept(data):
            yield from self._read(path, data)

    def _read(self, path: Path, data: Any) -> Iterator[Converted]:
        offers, base = self.offers_in(data)
        # Each record's place in the file, e.g. "offres.json:$.resultats[12]".
        head, marker, tail = f"{path}:{base}".partition("{i}")
        items = [(f"{head}{i}{tail}" if marker else head, offer) for i, offer in enumerate(offers)]
        workers = self.workers if self.workers is not None else (os.cpu_count() or 1)
        if workers <= 1 or self.parallel_from_items is None or len(items) < self.parallel_from_items:
            for where, item in items:
                yield from self._convert_reported(item, where)
            return
        chunks = (items[i : i + CHUNK_ITEMS] for i in range(0, len(items), CHUNK_ITEMS))
        for packed in parallel.ordered(self, _convert_chunk, chunks, workers):
            yield from parallel.unpack(packed)

    def _convert_reported(self, item: Any, where: str) -> Iterator[Converted]:
        try:
            yield from self.convert_item(item, where)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            # A value of the wrong JSON type deep inside: this record is reported, the file goes on.
            reason = f"unexpected structure ({type(exc).__name__}): a field has the wrong JSON type"
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


def _convert_chunk(adapter: JsonAdapter, items: list[tuple[str, Any]]) -> list[parallel.Packed]:
    """In a worker process: the records of a chunk of items, serialised."""
    return parallel.pack(c for where, item in items for c in adapter._convert_reported(item, where))


def timestamp(value: datetime) -> Timestamp:
    """What Timestamp.FromDatetime gives (a naive time read as UTC), at a tenth of its cost."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return Timestamp(seconds=(value - _EPOCH) // _SECOND, nanos=value.microsecond * 1000)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a document is decoded: the decoder's millions of new
    objects set it off again and again, each time walking the document so far. Decoding 100,000
    France Travail offers took 18.5 µs an offer with it, 14 without."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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

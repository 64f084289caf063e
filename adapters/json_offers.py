"""What the JSON adapters share: reading a file of one record, a list, or a search response of
records, reporting a record of the wrong shape without stopping, and the adapter's settings."""

from __future__ import annotations

import calendar
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import offer_pb2

from adapters import parallel
from adapters.base import Converted, Problem
from adapters.codelists import CodeLists

# Files of this many records or more are converted by one process per core (``workers``).
PARALLEL_FROM_ITEMS = 5_000
CHUNK_ITEMS = 500


class JsonAdapter:
    """Base of the adapters that read national JSON files into common records."""

    name = ""

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
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            yield Converted(
                str(path), None, (Problem(str(path), "$", f"not readable JSON ({type(exc).__name__})"),)
            )
            return
        offers, base = self.offers_in(data)
        items = [(f"{path}:{base.format(i=i)}", offer) for i, offer in enumerate(offers)]
        workers = self.workers if self.workers is not None else (os.cpu_count() or 1)
        if workers <= 1 or len(items) < PARALLEL_FROM_ITEMS:
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
    """What Timestamp.FromDatetime gives (a naive time read as UTC), at a fifth of its cost."""
    return Timestamp(seconds=calendar.timegm(value.utctimetuple()), nanos=value.microsecond * 1000)

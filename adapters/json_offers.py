"""What the JSON adapters share: reading a file of one record, a list, or a search response of
records, reporting a record of the wrong shape without stopping, and the adapter's settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import offer_pb2

from adapters.base import Converted, Problem
from adapters.codelists import CodeLists


class JsonAdapter:
    """Base of the adapters that read national JSON files into common records."""

    name = ""

    def __init__(
        self,
        codelists: CodeLists,
        origin_participant_id: str,
        target_country_codes: tuple[str, ...] = (),
        **_: Any,
    ) -> None:
        self.codelists = codelists
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
        for i, offer in enumerate(offers):
            where = f"{path}:{base.format(i=i)}"
            try:
                yield from self.convert_item(offer, where)
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


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts

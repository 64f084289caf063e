"""The adapter interface, its per-record report, and the registry of adapters by name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from google.protobuf.message import Message

ENTRY_POINT_GROUP = "spehub.adapters"


@dataclass(frozen=True)
class Problem:
    """Something an SPE's IT team must look at: where, which field, why.

    ``error`` problems skip the record (it is never altered to fit);
    ``warning`` ones keep it and say what was not carried over.
    """

    location: str
    field: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.location}: {self.field}: {self.reason} [{self.severity}]"


@dataclass(frozen=True)
class Converted:
    """One national record after conversion: the common record, or None if an error skipped it."""

    location: str
    record: Message | None
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.record is not None


class Problems:
    """Problems of one record: errors skip it, warnings keep it."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[Problem] = []

    def error(self, field: str, reason: str) -> None:
        self.items.append(Problem(self.where, field, reason))

    def warn(self, field: str, reason: str) -> None:
        self.items.append(Problem(self.where, field, reason, "warning"))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.items)

    def result(self, record: Any) -> Converted:
        """The record, unless an error stopped it; with every problem either way."""
        return Converted(self.where, None if self.failed else record, tuple(self.items))

    def results(self, *records: Message) -> Iterator[Converted]:
        """Several records from one source item (a candidate's profile and personal details): all of
        them, the first carrying the problems, or a single result with the problems if an error stopped them."""
        if self.failed:
            yield self.result(None)
            return
        yield self.result(records[0])
        for record in records[1:]:
            yield Converted(self.where, record)


class Adapter(Protocol):
    """Converts one national format to the common schema and back."""

    name: str

    def read(self, path: Path) -> Iterator[Converted]:
        """Every record of a national file, in order; bad ones carry problems and no record."""
        ...

    def write(self, record: Message) -> Any:
        """The national form of a common record."""
        ...


class AdapterError(Exception):
    """An adapter cannot be found or set up; the message says what to do."""


def available() -> list[str]:
    """Names of the installed adapters."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load(name: str, **options: Any) -> Adapter:
    """The adapter registered under ``name``, built with ``options``. Raises AdapterError."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()(**options)  # type: ignore[no-any-return]
    raise AdapterError(f"no adapter named {name!r}; installed: {', '.join(available()) or 'none'}")

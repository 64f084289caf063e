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
    ``warning`` ones keep it and say what was not carried over;
    ``review`` ones keep it but hold it for a person to decide (an occupation the
    resolver abstained on): the gateway does not publish it until then;
    ``local`` ones keep it at the SPE and never publish it (a candidate whose export row
    carries no consent the hub may act on: docs/onboarding.md).
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

    @property
    def held(self) -> Problem | None:
        """The problem a person must decide before the record may be published, if any."""
        return next((p for p in self.problems if p.severity == "review"), None)

    @property
    def local(self) -> Problem | None:
        """Why the record stays at the SPE and is never published (no consent), if it does."""
        return next((p for p in self.problems if p.severity == "local"), None)


@dataclass
class Tally:
    """What became of an export's rows (source items) on their way to the outbox."""

    rows: int = 0
    refused: int = 0  # a row the adapter could not convert (its report line says why)
    held: int = 0  # a row held for review (an occupation a person decides)
    local: int = 0  # a row kept at the SPE: no consent the hub may act on

    _states: dict[str, str] = field(default_factory=dict, repr=False)  # location → the row's worst
    _shown: set[str] = field(default_factory=set, repr=False)  # the current row's problems shown

    def see(self, converted: Converted) -> tuple[str, list[str]]:
        """One converted record: its state (``refused``, ``local``, ``held`` or ``ok``) and the
        lines of its problems not yet reported for its row (the records of a row carry the
        same ones). The row is counted at its worst state."""
        location = converted.location
        if location not in self._states:
            self._shown.clear()
        lines = [p for p in map(str, converted.problems) if p not in self._shown]
        self._shown.update(lines)
        if converted.record is None:
            state = "refused"
        elif converted.local is not None:
            state = "local"
        elif converted.held is not None:
            state = "held"
        else:
            state = "ok"
        order = ("ok", "local", "held", "refused")
        before = self._states.get(location)
        if before is None:
            self.rows += 1
        if before is None or order.index(before) < order.index(state):
            if before in ("refused", "held", "local"):
                setattr(self, before, getattr(self, before) - 1)
            if state != "ok":
                setattr(self, state, getattr(self, state) + 1)
            self._states[location] = state
        return state, lines


class Problems:
    """Problems of one record: errors skip it, warnings keep it."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[Problem] = []

    def error(self, field: str, reason: str) -> None:
        self.items.append(Problem(self.where, field, reason))

    def warn(self, field: str, reason: str) -> None:
        self.items.append(Problem(self.where, field, reason, "warning"))

    def hold(self, field: str, reason: str) -> None:
        """Keep the record but hold it for review (see Problem)."""
        self.items.append(Problem(self.where, field, reason, "review"))

    def occupation(self, occupation: Any, resolution: Any, field: str) -> None:
        """Apply a resolution to an Occupation, or say why not: an abstained title holds the record
        for review, any other failure is an error."""
        if resolution.isco08 is not None:
            resolution.apply(occupation)
        elif resolution.decision == "abstained" and resolution.suggestions:
            self.hold(field, resolution.how)
        else:
            self.error(field, resolution.how)

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
        held = tuple(p for p in self.items if p.severity == "review")
        for record in records[1:]:
            yield Converted(self.where, record, held)  # held with the first, if it is


def keep_resolutions(original: Any, again: Any) -> Any:
    """A record read back from the national form it was written to, with the original's record of
    how each occupation was resolved where the code came back the same: a format that carries the
    ISCO-08 code (HR Open, Europass) resolves it "by code" the second time, which is not a change
    of the record's content."""
    if again is None:
        return None
    for before, after in _occupations(original, again):
        if before.isco08_code == after.isco08_code:
            if before.HasField("resolution"):
                after.resolution.CopyFrom(before.resolution)
            else:
                after.ClearField("resolution")
    return again


def _occupations(a: Message, b: Message) -> Iterator[tuple[Any, Any]]:
    """The Occupation messages at the same places of two records (profiles' occupations, their
    work experiences' occupations, an offer's occupation)."""
    for fd in a.DESCRIPTOR.fields:
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            pairs = list(zip(getattr(a, fd.name), getattr(b, fd.name), strict=False))
        elif a.HasField(fd.name):
            pairs = [(getattr(a, fd.name), getattr(b, fd.name))]
        else:
            continue
        for x, y in pairs:
            if fd.message_type.name == "Occupation":
                yield x, y
            elif fd.message_type.full_name.startswith("spehub."):
                yield from _occupations(x, y)


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

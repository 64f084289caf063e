"""Corridor statistics for operators and the partnership's policy dialogue: counts only, no person.

Counts of profiles, offers, applications, selections, departures, returns and
reintegrations by origin country → destination country, mobility type, ISCO-08
major group and month. Profiles and cycle events count only under a consent
that is active and grants statistics; offers always count. A profile counts in
each corridor it asks for (each destination and mobility type it names; "any"
when it names none). Cells under the threshold (5) are suppressed: reported as
"<5" in tables, left out of metrics, so that no small group can be singled out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from spehub.v1 import common_pb2, consent_pb2, mobility_pb2

from hub.clock import Clock, from_us, to_us
from hub.domain import records
from hub.metrics import Families
from hub.store.engine import Store

THRESHOLD = 5
ANY = "any"
EVENT_KINDS: dict[int, str] = {
    mobility_pb2.MOBILITY_EVENT_TYPE_APPLICATION: "applications",
    mobility_pb2.MOBILITY_EVENT_TYPE_SELECTION: "selections",
    mobility_pb2.MOBILITY_EVENT_TYPE_DEPARTURE: "departures",
    mobility_pb2.MOBILITY_EVENT_TYPE_RETURN: "returns",
    mobility_pb2.MOBILITY_EVENT_TYPE_REINTEGRATION: "reintegrations",
}
KINDS = ("profiles", "offers", *EVENT_KINDS.values())
MOBILITY: dict[int, str] = {
    v: k.removeprefix("MOBILITY_TYPE_").lower() for k, v in common_pb2.MobilityType.items() if v
}


@dataclass(frozen=True, order=True)
class Corridor:
    kind: str
    origin_country: str
    destination_country: str
    mobility_type: str
    isco_major_group: str
    month: str  # YYYY-MM, or "" once summed over months


@dataclass(frozen=True)
class Cell:
    corridor: Corridor
    count: int

    @property
    def suppressed(self) -> bool:
        return self.count < THRESHOLD

    @property
    def shown(self) -> str:
        return f"<{THRESHOLD}" if self.suppressed else str(self.count)


def corridor_counts(store: Store, clock: Clock) -> Counter[Corridor]:
    """Every corridor cell with its count, by month (before suppression)."""
    counts: Counter[Corridor] = Counter()
    with store.unit_of_work() as uow:
        rows = uow.statistics.rows(
            records.purpose_bit(consent_pb2.PURPOSE_STATISTICS),
            consent_pb2.CONSENT_STATUS_ACTIVE,
            to_us(clock()),
        )
        for kind, origin, destination, mobility, isco, when, n in rows:
            month = (when if isinstance(when, date) else from_us(when).date()).strftime("%Y-%m")
            major = isco[:1] or ANY
            if kind == "profile":
                wanted = [MOBILITY[m] for m in MOBILITY if mobility & records.mobility_bit(m)] or [ANY]
                for mobility_name in wanted:
                    counts[Corridor("profiles", origin, destination or ANY, mobility_name, major, month)] += 1
            elif kind == "offer":
                counts[
                    Corridor("offers", origin or ANY, destination, MOBILITY.get(mobility, ANY), major, month)
                ] += n
            else:
                name = EVENT_KINDS.get(int(kind.removeprefix("event:")))
                if name:
                    counts[
                        Corridor(name, origin, destination, MOBILITY.get(mobility, ANY), major, month)
                    ] += n
    return counts


def cells(counts: Counter[Corridor], by_month: bool = True) -> list[Cell]:
    """Cells in a stable order; summed over months unless ``by_month``."""
    if not by_month:
        summed: Counter[Corridor] = Counter()
        for corridor, n in counts.items():
            summed[Corridor(*_without_month(corridor))] += n
        counts = summed
    return [Cell(c, n) for c, n in sorted(counts.items())]


def _without_month(c: Corridor) -> tuple[str, str, str, str, str, str]:
    return (c.kind, c.origin_country, c.destination_country, c.mobility_type, c.isco_major_group, "")


CORRIDOR_LABELS = ["kind", "origin_country", "destination_country", "mobility_type", "isco_major_group"]


def corridor_gauges(store: Store, clock: Clock) -> Callable[[], Families]:
    """``spehub_corridor_records``, the corridor statistics summed over months without the cells
    under the threshold: a GaugeSource's computation (hub.metrics.GaugeRefresher)."""

    def compute() -> Families:
        shown = [c for c in cells(corridor_counts(store, clock), by_month=False) if not c.suppressed]
        return {
            "spehub_corridor_records": (
                "Profiles, offers and mobility-cycle steps by corridor, under consents that allow "
                f"statistics; cells under {THRESHOLD} are not exported.",
                CORRIDOR_LABELS,
                [
                    (
                        [
                            c.corridor.kind,
                            c.corridor.origin_country,
                            c.corridor.destination_country,
                            c.corridor.mobility_type,
                            c.corridor.isco_major_group,
                        ],
                        float(c.count),
                    )
                    for c in shown
                ],
            )
        }

    return compute

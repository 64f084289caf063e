"""The mobility cycle as a state machine: which step may follow which, and who may record it.

A cycle is opened by the origin SPE's APPLICATION (its candidate, an offer)
and then moves one event at a time. The offer's origin (the destination
agency or employer's service) shortlists, selects, rejects and ends the
contract; the origin SPE applies, prepares, records the departure, the
return and the reintegration at home. REJECTION and REINTEGRATION end it.
"""

from __future__ import annotations

from enum import StrEnum

from spehub.v1 import mobility_pb2 as m

from hub.domain.records import Reason, RecordRejection


class Party(StrEnum):
    ORIGIN = "origin SPE"  # opened the cycle: the candidate's SPE
    DESTINATION = "offer's origin"  # published the offer


APPLICATION = m.MOBILITY_EVENT_TYPE_APPLICATION
SHORTLIST = m.MOBILITY_EVENT_TYPE_SHORTLIST
SELECTION = m.MOBILITY_EVENT_TYPE_SELECTION
REJECTION = m.MOBILITY_EVENT_TYPE_REJECTION
PREPARATION = m.MOBILITY_EVENT_TYPE_PREPARATION
DEPARTURE = m.MOBILITY_EVENT_TYPE_DEPARTURE
CONTRACT_END = m.MOBILITY_EVENT_TYPE_CONTRACT_END
RETURN = m.MOBILITY_EVENT_TYPE_RETURN
REINTEGRATION = m.MOBILITY_EVENT_TYPE_REINTEGRATION

# event -> (who records it, the steps it may follow; None: it opens a cycle)
RULES: dict[int, tuple[Party, frozenset[int | None]]] = {
    APPLICATION: (Party.ORIGIN, frozenset({None})),
    SHORTLIST: (Party.DESTINATION, frozenset({APPLICATION})),
    SELECTION: (Party.DESTINATION, frozenset({APPLICATION, SHORTLIST})),
    REJECTION: (Party.DESTINATION, frozenset({APPLICATION, SHORTLIST})),
    PREPARATION: (Party.ORIGIN, frozenset({SELECTION, PREPARATION})),
    DEPARTURE: (Party.ORIGIN, frozenset({SELECTION, PREPARATION})),
    CONTRACT_END: (Party.DESTINATION, frozenset({DEPARTURE})),
    RETURN: (Party.ORIGIN, frozenset({DEPARTURE, CONTRACT_END})),
    REINTEGRATION: (Party.ORIGIN, frozenset({RETURN})),
}
FINAL = frozenset({REJECTION, REINTEGRATION})


def name(event_type: int | None) -> str:
    """A step's name for messages: "SELECTION", or "no cycle yet"."""
    if event_type is None:
        return "no cycle yet"
    return m.MobilityEventType.Name(m.MobilityEventType.ValueType(event_type)).removeprefix(
        "MOBILITY_EVENT_TYPE_"
    )


def check_step(event_type: int, state: int | None, parties: frozenset[Party]) -> None:
    """Refuse a step that does not follow ``state`` or that the caller is not entitled to.

    ``parties`` are the roles the caller holds in the cycle (both when an SPE
    applies to its own offer). Raises RecordRejection (NOT_ENTITLED, INVALID_TRANSITION).
    """
    who, after = RULES[event_type]
    if who not in parties:
        raise RecordRejection(
            Reason.NOT_ENTITLED,
            f"{name(event_type)} is recorded by the {who.value} of the cycle, not by this participant",
            "type",
        )
    if state not in after:
        allowed = ", ".join(sorted(name(s) for s in after))
        ended = " (the cycle has ended)" if state in FINAL else ""
        raise RecordRejection(
            Reason.INVALID_TRANSITION,
            f"{name(event_type)} cannot follow {name(state)}{ended}; it follows {allowed}",
            "type",
        )

"""Identifier and code patterns match whole values: a trailing newline is not part of an id.

``re.match`` with ``$`` accepts ``"x\\n"`` (``$`` matches before a final newline); every
pattern the hub and the adapters validate with is matched whole (``fullmatch``).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import grpc
import pytest
from spehub.v1 import exchange_pb2, pool_pb2

import adapters
import hub
from hub.domain.records import PayloadKind
from tests.support.records import demo_profile

ROOT = Path(__file__).resolve().parent.parent
# A valid example of each validation pattern. A new pattern needs its example here.
VALID = {
    "ISCO08_UNIT": "9211",
    "ISCO08_PREFIX": "92",
    "PARTICIPANT_ID": "sn-anpej",
    "HEX64": "a" * 64,
    "KEY_ID": "sn-anpej-dev-1",
    "RECORD_ID": "p-1",
    "E164": "+221770000000",
    "PLAIN_NUMBER": "-12",
    "SANE_ID": "req-1",
    "LICENCE": "B",
    "OFFER_ID": "167ZKWX",
    "DOCUMENT_ID": "doc-1",
    "NACE": "A01.13",
    "PARTIAL_DATE": "1998-04-12",
    "SCRIPT": "Arab",
    "NAV_NACE": "C33.1.7",
    "DAY_FIRST": "01.03.2019",
    "AD_ID": "0b7c1a52-4f7e",
    "STYRK": "7411.11",
    "SN2007": "33.170",
    "_PARTICIPANT": "fr-francetravail",
    "_HEX64": "a" * 64,
}
# Patterns that find a part of larger text on purpose: the start of a free-text field, the PEM
# blocks of a key file, the words and gender tags of a job title, the tables and keys of the
# lines of a mapping file (to say which line is at fault).
PREFIX_READERS = {
    "HOURS",
    "EXPERIENCE",
    "DURATION",
    "_PEM_BLOCK",
    "GENDER_TAG",
    "_WORD",
    "_TABLE",
    "_KEY",
    "_PART",
}


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    found = []
    for package in (hub, adapters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, re.Pattern) and name not in PREFIX_READERS:
                    found.append((f"{info.name}.{name}", value))
    return found


@pytest.mark.parametrize(("where", "pattern"), _patterns(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_pattern_refuses_a_trailing_newline(where, pattern):
    example = VALID[where.rsplit(".", 1)[1]]
    assert pattern.fullmatch(example)
    for suffix in ("\n", "\r\n", " "):
        assert not pattern.fullmatch(example + suffix), f"{where} accepts {example + suffix!r}"


def test_patterns_are_matched_whole_wherever_they_are_used():
    """``.match`` on a validation pattern would stop at the end of the pattern, not of the value."""
    names = {where.rsplit(".", 1)[1] for where, _ in _patterns()}
    call = re.compile(r"\b(" + "|".join(sorted(names)) + r")\.(?:match|search)\(")
    inline = re.compile(r"re\.(?:match|search)\(r?[\"'][^\"']*\$[\"']")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("hub", "adapters")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if call.search(line) or inline.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("header.record_id", "x\n"), ("occupations[0].isco08_code", "9211\n")],
    ids=["record-id", "isco"],
)
def test_a_record_with_a_trailing_newline_is_refused(hub, connect, field, value):
    sn = connect("sn-anpej")
    profile = demo_profile("sn-anpej", "p-nl", "c-nl", 1, sn.clock())
    if field == "header.record_id":
        profile.header.record_id = value
    else:
        profile.occupations[0].isco08_code = value
    (result,) = sn.publish_one_batch([sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)])
    assert exchange_pb2.RecordOutcome.Name(result.outcome) == "RECORD_OUTCOME_REJECTED"
    assert result.field == field
    with hub.store.unit_of_work() as uow:
        assert uow.records.count_envelopes() == 0


def test_a_search_by_an_isco_prefix_with_a_newline_is_invalid(hub, connect):
    with pytest.raises(grpc.RpcError) as err:
        connect("fr-francetravail").pool.SearchProfiles(
            pool_pb2.SearchProfilesRequest(isco08_codes=["92\n"]), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

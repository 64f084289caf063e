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


# Examples the prefix readers find a number in, for the digits test.
PREFIX_EXAMPLES = {"HOURS": "35H00", "EXPERIENCE": "2 ans", "DURATION": "CDD - 6 mois"}
# Patterns of free text in any script on purpose: the words of a job title ("عامل", "٣" included).
UNICODE_TEXT = {"_WORD"}
# Decimal digits of other scripts that ``\d``, ``str.isdigit`` and ``int()`` take as digits.
OTHER_DIGITS = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "extended-arabic-indic": "۰۱۲۳۴۵۶۷۸۹",
    "fullwidth": "０１２３４５６７８９",
    "devanagari": "०१२३४५६७८९",
}


def _other_digits(text: str, script: str) -> str:
    return text.translate(str.maketrans("0123456789", OTHER_DIGITS[script]))


def _all_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Every module-level compiled pattern of hub and adapters, prefix readers included."""
    found = []
    for package in (hub, adapters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, re.Pattern):
                    found.append((f"{info.name}.{name}", value))
    return found


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    """The validation patterns: all but the prefix readers."""
    return [(where, p) for where, p in _all_patterns() if where.rsplit(".", 1)[1] not in PREFIX_READERS]


@pytest.mark.parametrize(("where", "pattern"), _patterns(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_pattern_refuses_a_trailing_newline(where, pattern):
    example = VALID[where.rsplit(".", 1)[1]]
    assert pattern.fullmatch(example)
    for suffix in ("\n", "\r\n", " "):
        assert not pattern.fullmatch(example + suffix), f"{where} accepts {example + suffix!r}"


@pytest.mark.parametrize(("where", "pattern"), _all_patterns(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_pattern_takes_the_digits_of_other_scripts(where, pattern):
    """Issue 25, item 5: ``\\d`` took "٩٢١١" as an ISCO-08 code, a code space of its own. Codes,
    numbers and dates are read with [0-9] (or under re.ASCII)."""
    name = where.rsplit(".", 1)[1]
    if name in UNICODE_TEXT:
        return
    if isinstance(pattern.pattern, str) and not pattern.flags & re.ASCII:  # bytes: ASCII classes
        classes = re.findall(r"(?<!\\)(?:\\\\)*\\([dDwW])", pattern.pattern)
        assert classes == [], f"{where} uses \\{classes[0]}: write [0-9] (or compile with re.ASCII)"
    example = VALID.get(name) or PREFIX_EXAMPLES.get(name)
    if example is None or not any(c.isdigit() for c in example):
        return
    assert pattern.search(example)
    find = pattern.search if name in PREFIX_READERS else pattern.fullmatch
    for script in OTHER_DIGITS:
        assert not find(_other_digits(example, script)), f"{where} takes {script} digits"


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


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        (PayloadKind.JOB_OFFER, "occupation.isco08_code", "٩٢١١"),
        (PayloadKind.JOB_OFFER, "occupation.isco08_code", "９２１１"),
        (PayloadKind.CANDIDATE_PROFILE, "occupations[0].isco08_code", "۹۲۱۱"),
        (PayloadKind.PERSONAL_DETAILS, "contacts[0].value", "+٢٢١٧٧٠٠٠٠٠٠٠"),
    ],
    ids=["offer-arabic-indic", "offer-fullwidth", "profile-extended-arabic-indic", "phone-arabic-indic"],
)
def test_a_record_with_the_digits_of_another_script_is_refused_naming_the_field(
    hub, connect, kind, field, value
):
    """An offer with isco08_code "٩٢١١" was ACCEPTED, matched by nothing and scored 1000 by matching."""
    from tests.support.records import demo_offer, demo_personal

    if kind == PayloadKind.JOB_OFFER:
        ft = connect("fr-francetravail")
        record = demo_offer("fr-francetravail", "o-digits", 1, ft.clock())
        record.occupation.isco08_code = value
        sender = ft
    elif kind == PayloadKind.CANDIDATE_PROFILE:
        sender = connect("sn-anpej")
        record = demo_profile("sn-anpej", "p-digits", "c-digits", 1, sender.clock())
        record.occupations[0].isco08_code = value
    else:
        sender = connect("sn-anpej")
        record = demo_personal("sn-anpej", "d-digits", "p-digits", "c-digits", 1, sender.clock())
        record.contacts[0].value = value
    (result,) = sender.publish_one_batch([sender.seal(record, kind)])
    assert exchange_pb2.RecordOutcome.Name(result.outcome) == "RECORD_OUTCOME_REJECTED"
    assert exchange_pb2.RejectionReason.Name(result.reason) == "REJECTION_REASON_INVALID_FIELD"
    assert result.field == field
    assert "ASCII digits" in result.message and value not in result.message
    with hub.store.unit_of_work() as uow:
        assert uow.records.count_envelopes() == 0


@pytest.mark.parametrize("prefix", ["٩٢", "９"])
def test_a_search_by_an_isco_prefix_not_in_ascii_digits_is_invalid(hub, connect, prefix):
    with pytest.raises(grpc.RpcError) as err:
        connect("fr-francetravail").pool.SearchOffers(
            pool_pb2.SearchOffersRequest(isco08_codes=[prefix]), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_page_token_with_the_digits_of_another_script_is_not_ours():
    """int() reads "٧", " 7", "7_0" and "+7" as numbers: none of them is a key a listing wrote."""
    import base64

    from hub.errors import InvalidRequestError
    from hub.services.paging import decode_token, encode_token

    assert decode_token(encode_token("offers", 7), "offers", 1) == (7,)
    for key in ("٧", "７", " 7", "7_0", "+7"):
        forged = base64.urlsafe_b64encode(f"offers:{key}".encode()).decode().rstrip("=")
        with pytest.raises(InvalidRequestError):
            decode_token(forged, "offers", 1)


def test_a_search_by_an_isco_prefix_with_a_newline_is_invalid(hub, connect):
    with pytest.raises(grpc.RpcError) as err:
        connect("fr-francetravail").pool.SearchProfiles(
            pool_pb2.SearchProfilesRequest(isco08_codes=["92\n"]), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

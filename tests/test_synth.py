"""Synthetic records: deterministic by seed, valid for the hub, realistic for the partnership."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import phonenumbers

from hub import synth
from hub.domain import consent_policy, records
from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_same_seed_same_records_other_seed_others():
    first = [tuple(r.SerializeToString() for r in c) for c in synth.candidates(7, 50, NOW)]
    again = [tuple(r.SerializeToString() for r in c) for c in synth.candidates(7, 50, NOW)]
    other = [tuple(r.SerializeToString() for r in c) for c in synth.candidates(8, 50, NOW)]
    assert first == again and first != other
    assert [o.SerializeToString() for o in synth.offers(7, 20, NOW)] == [
        o.SerializeToString() for o in synth.offers(7, 20, NOW)
    ]


def test_every_record_is_one_the_hub_accepts():
    for consent, profile, personal in synth.candidates(3, 600, NOW):
        for kind, record in (
            (PayloadKind.CONSENT, consent),
            (PayloadKind.CANDIDATE_PROFILE, profile),
            (PayloadKind.PERSONAL_DETAILS, personal),
        ):
            records.parse(kind, record.SerializeToString())  # raises on anything invalid
        origin = profile.residence_country_code
        for r in consent.recipients:  # the transfer basis the origin's law asks for
            assert consent_policy.transfer_problem(origin, r.country_code, r.transfer_basis) is None
        number = phonenumbers.parse(personal.contacts[0].value)
        assert phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) == origin
    for offer in synth.offers(3, 300, NOW):
        records.parse(PayloadKind.JOB_OFFER, offer.SerializeToString())


def test_the_spread_looks_like_the_partnership():
    made = list(synth.candidates(11, 2000, NOW))
    countries = Counter(p.residence_country_code for _, p, _ in made)
    assert set(countries) == set(synth.COUNTRIES) and min(countries.values()) == 200
    isco = Counter(p.occupations[0].isco08_code for _, p, _ in made)
    assert isco.most_common(1)[0][0] == "9211"  # farm work leads, as in seasonal programmes
    assert len(isco) > 20
    arabic = [d.family_name for _, p, d in made if p.residence_country_code in ("MA", "TN", "MR")]
    assert any(
        "\u0600" <= ch <= "\u06ff" for name in arabic for ch in name
    )  # Arabic script where exports use it
    accented = {d.family_name for _, p, d in made if p.residence_country_code == "ML"}
    assert "Traoré" in accented
    mobility = Counter(m for _, p, _ in made for m in p.mobility_types)
    assert mobility.most_common(1)[0][0] == 3  # seasonal first


def test_synth_command_writes_json_lines(tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert main(["synth", "candidates", "10", "--seed", "5", "--countries", "SN,MA", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["type"] for line in lines[:3]] == ["consent", "profile", "personal"] and len(lines) == 30
    assert {line["record"]["header"]["originParticipantId"] for line in lines} == {"sn-anpej", "ma-anapec"}


def test_synth_command_publishes_to_a_hub(hub, test_pki, capsys):
    target = ["--publish", "--pki", str(test_pki.root), "--hub", f"127.0.0.1:{hub.port}", "--seed", "2"]
    assert main(["synth", "candidates", "40", "--countries", "SN,MA,ML", *target]) == 0
    assert "120 accepted, 0 refused" in capsys.readouterr().out
    assert main(["synth", "offers", "12", *target]) == 0
    assert "12 accepted, 0 refused" in capsys.readouterr().out

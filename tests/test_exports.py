"""National exports onboarded with a mapping file only, consent included, end to end: export →
gateway send → a real hub → France Travail's pool search (issue 16).

The two exports in tests/fixtures/exports/ are the project's own, written in the shape of real
ones whose columns differ from the templates: Senegal's (French, ROAME codes, day-first dates)
and Morocco's (bilingual Arabic/French names, REM codes, CIN numbers).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from spehub.v1 import consent_pb2, pool_pb2, profile_pb2

from adapters.base import AdapterError
from adapters.languages import LanguageReader
from adapters.tabular import CONSENT_DATE_SKEW, Mapping, TabularAdapter
from hub.entrypoints.cli import main
from tests.support.gateways import tabular_send

EXPORTS = Path(__file__).resolve().parent / "fixtures" / "exports"
FT = "fr-francetravail"
KEY = b"s" * 32


def _recent(export: str, tmp_path: Path, days_ago: int = 5) -> Path:
    """A copy of a fixture export whose consent dates are a few days old (a consent lasts a year)."""
    mapping = Mapping.load(EXPORTS / f"{export}.toml")
    assert mapping.consent is not None
    source = EXPORTS / f"{export}.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=mapping.delimiter))
    column = rows[0].index(mapping.consent.date)
    day = (datetime.now(UTC) - timedelta(days=days_ago)).strftime(mapping.date_format)
    for row in rows[1:]:
        if row[column]:
            row[column] = day
    copy = tmp_path / source.name
    with copy.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=mapping.delimiter, lineterminator="\n").writerows(rows)
    return copy


def _send(export: Path, participant: str, mapping: Path, hub, test_pki, tmp_path: Path) -> int:
    outbox = tmp_path / f"{participant}.sqlite3"
    return main(tabular_send(export, participant, outbox, mapping, hub.port, test_pki, KEY))


def _visible_to_france_travail(connect) -> dict[str, profile_pb2.CandidateProfile]:
    ft = connect(FT)
    response = ft.pool.SearchProfiles(
        pool_pb2.SearchProfilesRequest(isco08_codes=["6", "7", "8", "9"], page_size=100), timeout=10
    )
    profiles = (profile_pb2.CandidateProfile.FromString(h.profile.payload) for h in response.profiles)
    return {p.header.origin_participant_id + "/" + p.header.record_id: p for p in profiles}


def test_two_national_exports_reach_france_travail_with_their_consent(
    hub, test_pki, connect, tmp_path, capsys
):
    senegal = _recent("sn-anpej-2026", tmp_path)
    morocco = _recent("ma-anapec-2026", tmp_path)
    # Senegal: 4 rows. Two consented, one without consent (kept local), one with a birth date
    # that is no date (31/02): the conversion refused it, so the exit code is 3 for a cron job.
    assert _send(senegal, "sn-anpej", EXPORTS / "sn-anpej-2026.toml", hub, test_pki, tmp_path) == 3
    out = capsys.readouterr().out
    assert "4 row(s): 1 refused, 0 held for review, 1 kept local (no consent); 6 new record(s)" in out
    assert "sent 6: 6 accepted" in out
    # Morocco: 3 rows, two consented, one kept local; nothing refused.
    assert _send(morocco, "ma-anapec", EXPORTS / "ma-anapec-2026.toml", hub, test_pki, tmp_path) == 0
    out = capsys.readouterr().out
    assert "3 row(s): 0 refused, 0 held for review, 1 kept local (no consent); 6 new record(s)" in out

    visible = _visible_to_france_travail(connect)
    adapter = TabularAdapter(hub_lists(), EXPORTS / "sn-anpej-2026.toml", KEY)
    expected = {
        f"sn-anpej/P-{adapter.pseudonym('DK-2026-00417')}",
        f"sn-anpej/P-{adapter.pseudonym('DK-2026-00418')}",
        f"ma-anapec/P-{adapter.pseudonym('BK123456')}",
        f"ma-anapec/P-{adapter.pseudonym('BK654321')}",
    }
    assert set(visible) == expected
    mason = visible[f"ma-anapec/P-{adapter.pseudonym('BK654321')}"]
    occupation = mason.occupations[0]
    assert (occupation.isco08_code, occupation.national_code.system, occupation.national_code.code) == (
        "7112",
        "REM",
        "BTP-1104",
    )  # the REM code is kept though the title decided
    assert {(lang.language_code, lang.level) for lang in mason.languages} == {("ar", 7), ("fr", 5)}
    # The rows kept local never reached the hub, not even their personal details.
    stored = {
        row[0]
        for row in hub.store.engine.connect().exec_driver_sql("SELECT record_id FROM records").fetchall()
    }
    for number in ("TH-2026-00051", "JA998877", "TH-2026-00052"):
        assert not {f"P-{adapter.pseudonym(number)}", f"D-{adapter.pseudonym(number)}"} & stored

    # A re-export: an unchanged row is a no-op; a corrected one is the next version, not a conflict.
    assert _send(morocco, "ma-anapec", EXPORTS / "ma-anapec-2026.toml", hub, test_pki, tmp_path) == 0
    assert "0 new record(s) signed and queued, 6 unchanged" in capsys.readouterr().out
    text = morocco.read_text(encoding="utf-8").replace("français courant", "français:C2")
    morocco.write_text(text, encoding="utf-8")
    assert _send(morocco, "ma-anapec", EXPORTS / "ma-anapec-2026.toml", hub, test_pki, tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 new record(s) signed and queued, 5 unchanged" in out and "1 accepted" in out
    again = _visible_to_france_travail(connect)[f"ma-anapec/P-{adapter.pseudonym('BK654321')}"]
    assert again.header.version == 2 and ("fr", 6) in {(x.language_code, x.level) for x in again.languages}


def hub_lists():
    from adapters.codelists import CodeLists

    return CodeLists.shipped()


def test_a_consent_names_what_the_form_covers_and_never_the_number(tmp_path):
    adapter = TabularAdapter(hub_lists(), EXPORTS / "ma-anapec-2026.toml", KEY)
    first, *_ = list(adapter.read(_recent("ma-anapec-2026", tmp_path)))
    consent = first.record
    assert isinstance(consent, consent_pb2.Consent) and not first.problems
    assert [g.purpose for g in consent.purposes] == [
        consent_pb2.PURPOSE_POOL_SEARCH,
        consent_pb2.PURPOSE_MATCHING,
    ]
    assert {g.notice_version for g in consent.purposes} == {"2025-B"}
    assert [r.country_code for r in consent.recipients] == ["FR", "ES"]
    assert all(r.transfer_basis == consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT for r in consent.recipients)
    assert len(consent.subject_ref) == 64 and "BK123456" not in consent.SerializeToString().decode("latin-1")
    assert consent.header.record_id == f"C-{adapter.pseudonym('BK123456')}"


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"Formulaire": "2019-A"}, "form version '2019-A' is not in [consent.forms] (2025-B)"),
        ({"Finalités": "البحث|التسويق"}, "'التسويق' is not a purpose form 2025-B covers"),
    ],
)
def test_a_consent_the_mapping_cannot_read_refuses_the_row(tmp_path, cells, reason):
    export = _recent("ma-anapec-2026", tmp_path)
    with export.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0].update(cells)
    with export.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    adapter = TabularAdapter(hub_lists(), EXPORTS / "ma-anapec-2026.toml", KEY)
    first = next(iter(adapter.read(export)))
    assert first.record is None and any(reason in p.reason for p in first.problems)


def test_an_expired_consent_keeps_the_row_local(tmp_path):
    adapter = TabularAdapter(hub_lists(), EXPORTS / "ma-anapec-2026.toml", KEY)
    results = list(adapter.read(_recent("ma-anapec-2026", tmp_path, days_ago=400)))
    assert all(r.local is not None for r in results)
    assert not any(isinstance(r.record, consent_pb2.Consent) for r in results)
    assert "has expired" in results[0].local.reason


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """[source]
participant_id = "sn-anpej"
country = "SN"
date_format = "%d/%m/%Y"
delimiter = ";"

[columns]
national_id = "N° dossier"
family_name = "Nom"
occupation_code = "Code ROAME"
"""


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (
            'telephone = "Tél. portable"\n',
            r"m.toml:11: \[columns\] has no key 'telephone'.*did you mean phone",
        ),
        ('phone = "Téléphone"\n', None),  # a column the header lacks: checked at read time
        (
            '[values.cefr]\n"courant" = "C1"\n',
            r"m.toml:11: \[values.cefr\] is never used: no column languages",
        ),
        ('[values.mobilty]\n"x" = "SEASONAL"\n', r"m.toml:11: .*did you mean values.mobility"),
        (
            "[consent]\ndate = 'd'\nform_version = 'v'\nforms = {}\nwhen = 'x'\n",
            r"m.toml:15: \[consent\] has no key 'when'",
        ),
    ],
)
def test_mapping_mistakes_stop_before_the_first_row_with_the_line(tmp_path, tail, message):
    path = _mapping(tmp_path, BASE + tail)
    if message is not None:
        with pytest.raises(AdapterError, match=message):
            Mapping.load(path)
        return
    adapter = TabularAdapter(hub_lists(), path, KEY)
    with pytest.raises(
        AdapterError,
        match=r"m.toml:11: columns.phone names the column 'Téléphone'.*did you mean Tél. portable",
    ):
        next(iter(adapter.read(EXPORTS / "sn-anpej-2026.csv")))


def test_a_mapping_mistake_is_exit_code_2_and_nothing_is_queued(hub, test_pki, tmp_path, capsys):
    path = _mapping(tmp_path, BASE + 'phone = "Téléphone"\n')
    assert _send(EXPORTS / "sn-anpej-2026.csv", "sn-anpej", path, hub, test_pki, tmp_path) == 2
    assert "did you mean Tél. portable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "code", "level"),
    [
        ("français:B2", "fr", "B2"),
        ("arabe:C2", "ar", "C2"),
        ("anglais courant", "en", "C1"),
        ("العربية:لغة أم", "ar", "NATIVE"),
        ("pt:língua materna", "pt", "NATIVE"),
        ("espagnol notions", "es", "A1"),
        ("wolof : langue maternelle", "wo", "NATIVE"),
        ("inglês fluente", "en", "C1"),
    ],
)
def test_language_names_and_level_words(text, code, level):
    entry = LanguageReader().entry(text)
    assert (entry.code, entry.level, entry.problem) == (code, level, "")


def test_a_mapping_overrides_language_names_and_level_words():
    reader = LanguageReader({"pulaar": "ff"}, {"courant": "B2"})
    assert (reader.entry("pulaar courant").code, reader.entry("pulaar courant").level) == ("ff", "B2")
    assert LanguageReader().entry("elvish:B2").problem.startswith("not a language")
    assert LanguageReader().entry("fr:so-so").problem.startswith("no CEFR level")


def test_adapter_check_counts_rows_and_records_apart(capsys, tmp_path):
    """Rows (refused, held, kept local) and records (up to three a row) are counted apart, each
    problem once; a refused row is exit code 1."""
    check = ["adapter", "check", "tabular", "--origin", "sn-anpej", "--mapping"]
    senegal, morocco_export = _recent("sn-anpej-2026", tmp_path), _recent("ma-anapec-2026", tmp_path)
    assert main([*check, str(EXPORTS / "sn-anpej-2026.toml"), str(senegal)]) == 1
    out = capsys.readouterr().out
    assert (
        "4 row(s), of which 1 refused, 0 held for review, 1 kept local (no consent); "
        "6 record(s) convert, validate and round-trip; 0 do not"
    ) in out
    assert out.count("no consent date") == 1  # once for the row, not once a record
    check[4] = "ma-anapec"
    morocco = [*check, str(EXPORTS / "ma-anapec-2026.toml"), "--json", str(morocco_export)]
    assert main(morocco) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {
        "rows": 3,
        "rows_refused": 0,
        "rows_held": 0,
        "rows_kept_local": 1,
        "converted": 6,
        "refused": 0,
    }


def test_a_row_that_loses_its_consent_withdraws_the_one_published(hub, test_pki, connect, tmp_path, capsys):
    """The export no longer carries a consent for a candidate it published: the gateway publishes
    its consent again as WITHDRAWN (a new version), and France Travail stops finding them. A row
    that never had a consent withdraws nothing."""
    morocco = _recent("ma-anapec-2026", tmp_path)
    mapping = EXPORTS / "ma-anapec-2026.toml"
    assert _send(morocco, "ma-anapec", mapping, hub, test_pki, tmp_path) == 0
    adapter = TabularAdapter(hub_lists(), mapping, KEY)
    mason = f"ma-anapec/P-{adapter.pseudonym('BK654321')}"
    assert mason in _visible_to_france_travail(connect)
    capsys.readouterr()
    with morocco.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["CIN"] == "BK654321":
            row["Date du consentement"] = ""
    with morocco.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert _send(morocco, "ma-anapec", mapping, hub, test_pki, tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 consent(s) withdrawn: their rows no longer carry one" in out and "1 accepted" in out
    visible = _visible_to_france_travail(connect)
    assert mason not in visible and f"ma-anapec/P-{adapter.pseudonym('BK123456')}" in visible
    # Sending again withdraws nothing more: the withdrawal is already the newest version.
    assert _send(morocco, "ma-anapec", mapping, hub, test_pki, tmp_path) == 0
    assert "withdrawn" not in capsys.readouterr().out


def test_a_consent_dated_ahead_refuses_the_row_naming_it(tmp_path):
    """200 days ahead is a mistake in the register, never a consent given: the row is refused,
    named by its line and the consent date's column. Tomorrow is within the skew (time zones)."""
    adapter = TabularAdapter(hub_lists(), EXPORTS / "ma-anapec-2026.toml", KEY)
    export = _recent("ma-anapec-2026", tmp_path, days_ago=-200)
    refused = [r for r in adapter.read(export) if r.record is None and r.local is None]
    assert [(p.location, p.field) for r in refused for p in r.problems] == [
        (f"{export}:2", "Date du consentement"),
        (f"{export}:3", "Date du consentement"),
    ]
    assert "200 day(s) after the export's date" in refused[0].problems[0].reason
    assert f"{CONSENT_DATE_SKEW.days} day" in refused[0].problems[0].reason
    tomorrow = list(adapter.read(_recent("ma-anapec-2026", tmp_path, days_ago=-1)))
    assert sum(isinstance(r.record, consent_pb2.Consent) for r in tomorrow) == 2


def _edited(mapping: Path, folder: Path, old: str, new: str) -> Path:
    folder.mkdir()
    copy = folder / mapping.name
    text = mapping.read_text(encoding="utf-8")
    assert old in text
    copy.write_text(text.replace(old, new), encoding="utf-8")
    return copy


def _visible_to_sweden(connect) -> int:
    se = connect("se-arbetsformedlingen")
    request = pool_pb2.SearchProfilesRequest(isco08_codes=["6", "7", "8", "9"], page_size=100)
    return len(se.pool.SearchProfiles(request, timeout=10).profiles)


FR_ES = 'recipients = ["FR", "ES"]'
WIDER = 'recipients = ["FR", "ES", "SE", "eu-eures"]'


def test_a_used_consent_form_cannot_be_widened_by_editing_the_mapping(
    hub, test_pki, connect, tmp_path, capsys
):
    """Issue 25, item 4: form 2026-1's recipients edited from FR, ES to FR, ES, SE, eu-eures and the
    same export sent again. The gateway refuses before signing anything, naming the form, the
    field and the change; Sweden finds nobody. The terms go under a new form version instead."""
    senegal = _recent("sn-anpej-2026", tmp_path)
    mapping = EXPORTS / "sn-anpej-2026.toml"
    outbox = tmp_path / "sn-anpej.sqlite3"
    assert _send(senegal, "sn-anpej", mapping, hub, test_pki, tmp_path) == 3
    assert "sent 6: 6 accepted" in capsys.readouterr().out
    signed = sqlite3.connect(outbox).execute("SELECT count(*) FROM outbox").fetchone()[0]

    wider = _edited(mapping, tmp_path / "wider", FR_ES, WIDER)
    assert _send(senegal, "sn-anpej", wider, hub, test_pki, tmp_path) == 2
    captured = capsys.readouterr()
    assert f"{wider}:39: consent form '2026-1'" in captured.err  # the line of recipients
    assert "its recipients changed from 'ES, FR' to 'ES, FR, SE, eu-eures'" in captured.err
    assert "new form version" in captured.err and "sent" not in captured.out
    assert sqlite3.connect(outbox).execute("SELECT count(*) FROM outbox").fetchone()[0] == signed
    assert _visible_to_sweden(connect) == 0

    # Narrowing a used form is a change too; so is any other field of it.
    narrower = _edited(mapping, tmp_path / "narrower", FR_ES, 'recipients = ["FR"]')
    assert _send(senegal, "sn-anpej", narrower, hub, test_pki, tmp_path) == 2
    assert "recipients changed from 'ES, FR' to 'FR'" in capsys.readouterr().err

    # An outbox that published before forms were recorded: the forms are read back from the
    # consents it signed, so the same edit is refused there too.
    db = sqlite3.connect(outbox)
    db.execute("DROP TABLE consent_forms")
    db.commit()
    db.close()
    assert _send(senegal, "sn-anpej", wider, hub, test_pki, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("consent form '2026-1'") == 1  # the other fields read back as they were
    assert "its recipients changed from 'ES, FR' to 'ES, FR, SE, eu-eures'" in err

    # The way to widen: a new form version, and the rows of the candidates who agreed to it.
    text = mapping.read_text(encoding="utf-8")
    form = text[text.index('[consent.forms."2026-1"]') : text.index("[values.purpose]")]
    new_form = tmp_path / "new-form.toml"
    new_form.write_text(
        text.replace(
            form, form + form.replace("2026-1", "2026-2").replace(FR_ES, WIDER.replace(', "eu-eures"', ""))
        ),
        encoding="utf-8",
    )
    assert _send(senegal, "sn-anpej", new_form, hub, test_pki, tmp_path) == 3
    assert "0 new record(s) signed and queued" in capsys.readouterr().out
    rows = senegal.read_text(encoding="utf-8").replace(";2026-1;CONS-DK-8812;", ";2026-2;CONS-DK-8812;")
    senegal.write_text(rows, encoding="utf-8")
    assert _send(senegal, "sn-anpej", new_form, hub, test_pki, tmp_path) == 3
    assert "sent 1: 1 accepted" in capsys.readouterr().out
    assert _visible_to_sweden(connect) == 1

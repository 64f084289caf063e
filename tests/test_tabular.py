"""Tabular exports of African SPEs through declarative mapping files (fixtures of our own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spehub.v1 import common_pb2, profile_pb2

from adapters.base import AdapterError, load
from adapters.france_travail import FranceTravailOffers
from adapters.tabular import Mapping, TabularAdapter
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples"
FIXTURES = ROOT / "tests" / "fixtures" / "tabular"
MAPPINGS = ROOT / "adapters" / "mappings"
KEY = b"k" * 32


def _read(codelists, mapping: str, fixture: str):
    adapter = TabularAdapter(codelists, MAPPINGS / f"{mapping}.toml", KEY)
    return adapter, list(adapter.read(FIXTURES / f"{fixture}.csv"))


def test_senegal_export_bom_semicolons_crlf_accents_day_first(codelists):
    adapter, results = _read(codelists, "sn-anpej", "senegal")
    good = [r.record for r in results if r.ok]
    profile, personal = good[0], good[1]
    assert isinstance(profile, profile_pb2.CandidateProfile) and isinstance(
        personal, profile_pb2.PersonalDetails
    )
    assert profile.occupations[0].isco08_code == "7512"  # ROAME D1102 + title, via the official mapping
    assert profile.occupations[0].national_code.system == "ROAME"
    assert [(lang.language_code, lang.level) for lang in profile.languages] == [
        ("wo", common_pb2.CEFR_LEVEL_NATIVE),
        ("fr", common_pb2.CEFR_LEVEL_B2),
    ]
    assert list(profile.mobility_types) == [
        common_pb2.MOBILITY_TYPE_SEASONAL,
        common_pb2.MOBILITY_TYPE_CIRCULAR,
    ]
    assert (profile.available_from.year, profile.available_from.month, profile.available_from.day) == (
        2027,
        3,
        1,
    )
    assert personal.given_names == "Aïssatou" and personal.contacts[0].value == "+221771234567"
    assert (personal.birth_date.day, personal.birth_date.month) == (3, 7)  # day first
    # The national number never leaves: records are keyed by its HMAC under the SPE's key.
    assert "SN-2024-0001" not in profile.SerializeToString().decode("utf-8", "ignore")
    assert profile.header.record_id == f"P-{adapter.pseudonym('SN-2024-0001')}"
    assert personal.profile_record_id == profile.header.record_id
    for record in good:
        kind = (
            PayloadKind.CANDIDATE_PROFILE
            if isinstance(record, profile_pb2.CandidateProfile)
            else PayloadKind.PERSONAL_DETAILS
        )
        records.parse(kind, record.SerializeToString())  # the hub accepts them


def test_bad_rows_are_reported_and_never_guessed(codelists):
    """A row without what the hub needs (an occupation, a key) is refused; an unreadable optional
    field (a birth date, a phone) is dropped with a warning naming it and the row converts."""
    _, results = _read(codelists, "sn-anpej", "senegal")
    reported = {r.location.rsplit(":", 1)[1]: r.problems for r in results if not r.ok}
    assert set(reported) == {"4", "6"}
    assert reported["4"][0].field == "code_metier" and "Z9999" in reported["4"][0].reason
    assert "line 2" in reported["6"][0].reason  # the same job-seeker twice
    dropped = {
        r.location.rsplit(":", 1)[1]: [(p.field, p.severity) for p in r.problems if p.severity != "local"]
        for r in results
        if r.ok and isinstance(r.record, profile_pb2.CandidateProfile)
    }
    assert dropped["5"] == [("date_naissance", "warning")]
    assert dropped["7"] == [("telephone", "warning")]
    birth = next(r for r in results if r.location.endswith(":5") and r.problems)
    assert "31/02" not in str(birth.problems)  # the value itself is not repeated
    assert sum(r.ok for r in results) == 8  # four rows, two records each


def test_morocco_export_arabic_script_and_isco_codes(codelists):
    _, results = _read(codelists, "ma-anapec", "morocco")
    profile, personal = results[0].record, results[1].record
    assert personal.family_name == "العلوي" and personal.contacts[0].value == "+212612345678"
    assert profile.languages[0].level == common_pb2.CEFR_LEVEL_NATIVE  # "لغة أم"
    assert list(profile.desired_country_codes) == ["ES", "FR"]
    assert not results[-1].ok and results[-1].problems[0].field == "isco"


def test_mapping_files_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[source]\nparticipant_id = "x"\ncountry = "SN"\ndate_format = "%d"\n[columns]\nnom = "nom"\n'
    )
    with pytest.raises(AdapterError, match=r"bad.toml:6: \[columns\] has no key 'nom'"):
        Mapping.load(bad)
    bad.write_text(
        '[source]\nparticipant_id = "x"\ncountry = "SN"\ndate_format = "%d"\n[columns]\nnational_id="a"\n'
    )
    with pytest.raises(AdapterError, match="needs"):
        Mapping.load(bad)
    bad.write_text(
        '[source]\nparticipant_id = "x"\ncountry = "SN"\ndate_format = "%d"\n[columns]\nnational_id="a"\nfamily_name="b"\noccupation_code="c"\n[values.mobility]\n"x" = "SOMETIMES"\n'.replace(
            "[values", 'mobility="m"\n[values'
        )
    )
    with pytest.raises(AdapterError, match="SOMETIMES"):
        Mapping.load(bad)
    head = '[source]\nparticipant_id = "x"\ncountry = "SN"\ndate_format = "%d"\n[columns]\nnational_id="a"\nfamily_name="b"\noccupation_code="c"\n'
    for tail, reason in (
        ('[offer_columns]\nsalary = "s"\n', "unknown fields \\['salary'\\]"),
        ('nationality="n"\n[values.country]\n"espagne" = "Spain"\n', "ISO 3166-1"),
        (
            'mobility="m"\n[values.mobility]\n"Saisonnier" = "SEASONAL"\n"saisonnier" = "SEASONAL"\n',
            "differ only by case",
        ),
    ):
        bad.write_text(head + tail)
        with pytest.raises(AdapterError, match=reason):
            Mapping.load(bad)
    bad.write_text(
        head.replace('occupation_code="c"', 'occupation_title="c"').replace(
            'date_format = "%d"', 'date_format = "%d"\noccupation_system = "TITLE"'
        )
    )
    assert Mapping.load(bad).occupation_system == "TITLE"  # job titles need no code column


@settings(max_examples=50, deadline=None)
@given(
    langs=st.lists(
        st.tuples(st.sampled_from(["fr", "en", "wo", "ar"]), st.sampled_from(["A1", "B2", "C1", "natif"])),
        max_size=3,
        unique_by=lambda t: t[0],
    ),
    countries=st.lists(st.sampled_from(["FR", "ES", "SE", "IT"]), max_size=3, unique=True),
    mobility=st.lists(
        st.sampled_from(["saisonnier", "temporaire", "permanent", "circulaire"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
)
def test_profile_round_trip_is_stable(codelists, langs, countries, mobility):
    adapter = TabularAdapter(codelists, MAPPINGS / "sn-anpej.toml", KEY)
    row = {
        "numero_demandeur": "SN-1",
        "nom": "Diop",
        "code_metier": "N4101",
        "langues": ",".join(f"{code}:{level}" for code, level in langs),
        "pays_souhaites": ",".join(countries),
        "mobilite": ",".join(mobility),
        "disponible_le": "15/06/2027",
    }
    first = next(iter(adapter.convert_row(row, "row"))).record
    assert first is not None
    assert adapter.round_trip(first, "again") == first


@pytest.mark.needs_samples
def test_registry_and_conformance_kit(codelists, tmp_path):
    assert (
        load("tabular", codelists=codelists, mapping=MAPPINGS / "sn-anpej.toml", subject_key=KEY).name
        == "tabular"
    )
    out = tmp_path / "codelists"
    assert main(["codelists", "import", str(SAMPLES / "crosswalks"), "--out", str(out)]) == 0
    check = [
        "adapter",
        "check",
        "tabular",
        "--origin",
        "sn-anpej",
        "--codelists",
        str(out),
        "--mapping",
        str(MAPPINGS / "sn-anpej.toml"),
    ]
    assert main([*check, str(FIXTURES / "senegal.csv")]) == 1  # four rows need fixing


def test_xlsx_export_gives_the_same_records_as_the_csv(codelists, tmp_path):
    """Spreadsheets are read too (first sheet, streamed); cells typed as text as SPEs type them."""
    import csv

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    with (FIXTURES / "senegal.csv").open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle, delimiter=";"):
            sheet.append(row)
    xlsx = tmp_path / "senegal.xlsx"
    book.save(xlsx)
    adapter = TabularAdapter(codelists, MAPPINGS / "sn-anpej.toml", KEY)
    from_csv = [(r.ok, r.record) for r in adapter.read(FIXTURES / "senegal.csv")]
    from_xlsx = [(r.ok, r.record) for r in adapter.read(xlsx)]
    assert from_xlsx == from_csv
    # A large spreadsheet goes to worker processes like a large CSV export, with the same result.
    in_workers = TabularAdapter(codelists, MAPPINGS / "sn-anpej.toml", KEY, workers=2)
    assert [(r.ok, r.record) for r in in_workers.read(xlsx)] == from_csv


# Every SPE of the partnership: (mapping, the good row's ISCO-08 group, its phone in E.164, the
# second row's column at fault). An occupation the lists do not know refuses the row; an optional
# field that cannot be read is dropped with a warning, and the row converts.
PARTNERS = [
    ("ml-anpe", "8341", "+22376123456", "type_mobilite"),
    ("bj-anpe", "7512", "+2290197123456", "code_metier_roame"),
    ("cm-fne", "8341", "+237677123456", "telephone"),
    ("tg-anpe", "7512", "+22890123456", "date_naissance"),
    ("tn-aneti", "7112", "+21620123456", "telephone"),
    ("mr-techghil", "7512", "+22222123456", "pays_souhaites"),
    ("gh-pec", "8341", "+233241234567", "isco_code"),
    ("cv-iefp", "7112", "+2389912345", "linguas"),
]


@pytest.mark.parametrize(("mapping", "isco", "phone", "bad_column"), PARTNERS)
def test_each_partner_mapping_reads_its_export(codelists, mapping, isco, phone, bad_column):
    """One mapping file per SPE, in the export's language: the good row gives two valid records,
    the bad one is reported at its column, and the profile round-trips."""
    adapter, results = _read(codelists, mapping, mapping)
    profile, personal, *second = results
    assert profile.ok and personal.ok, profile.problems
    assert profile.record.occupations[0].isco08_code == isco
    assert profile.record.residence_country_code == adapter.mapping.country
    assert [c.value for c in personal.record.contacts if c.type == profile_pb2.CONTACT_TYPE_PHONE] == [phone]
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.record.SerializeToString())
    records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())
    assert adapter.round_trip(profile.record, "again") == profile.record
    faults = [(p.field, p.severity) for p in second[0].problems if p.severity in ("error", "warning")]
    if bad_column in ("code_metier_roame", "isco_code"):  # no occupation at any level: refused
        assert len(second) == 1 and not second[0].ok and faults == [(bad_column, "error")]
    else:  # an optional field: dropped, the row converts into records the hub accepts
        assert [r.ok for r in second] == [True, True] and faults == [(bad_column, "warning")]
        records.parse(PayloadKind.CANDIDATE_PROFILE, second[0].record.SerializeToString())
        records.parse(PayloadKind.PERSONAL_DETAILS, second[1].record.SerializeToString())
    assert second[0].location.endswith(":3")


def test_every_mapping_file_has_a_tested_export():
    tested = {m for m, *_ in PARTNERS} | {"sn-anpej", "ma-anapec"}
    assert {p.stem for p in MAPPINGS.glob("*.toml")} == tested


def test_names_in_words_and_scripts_translate_to_country_codes(codelists):
    _, results = _read(codelists, "tn-aneti", "tn-aneti")
    profile = results[0].record
    assert list(profile.desired_country_codes) == ["DE", "FR"]  # "ألمانيا|France"
    assert results[1].record.family_name == "بن سالم"
    # A free-text title that is an ESCO label resolves ("maçon": 7112); the bad phone is dropped.
    assert results[0].record.occupations[0].resolution.method == "title"
    assert [p.field for p in results[2].problems if p.severity == "warning"] == ["telephone"]
    assert not results[3].record.contacts


def test_a_title_nobody_can_settle_holds_the_row_for_review(codelists, tmp_path):
    """Abstained: the row is neither refused nor published; the gateway holds it for a person,
    with the resolver's suggestions, and nothing is invented."""
    text = (
        (FIXTURES / "tn-aneti.csv").read_text(encoding="utf-8").replace(",maçon,", ",Bâtisseur de rêves,", 1)
    )
    path = tmp_path / "tn.csv"
    path.write_text(text, encoding="utf-8")
    adapter = TabularAdapter(codelists, MAPPINGS / "tn-aneti.toml", KEY)
    profile, personal, *_second = adapter.read(path)
    assert profile.ok and personal.ok
    assert profile.held is not None and profile.held.field == "profession" and personal.held is not None
    assert "held for review" in profile.held.reason
    assert (
        profile.record.occupations[0].isco08_code == ""
        and profile.record.occupations[0].title == "Bâtisseur de rêves"
    )


def test_senegal_golden(codelists):
    """Line 2 of the Senegal export → the expected common records → back to the export's columns."""
    from google.protobuf import json_format

    adapter, results = _read(codelists, "sn-anpej", "senegal")
    golden = ROOT / "tests" / "golden" / "tabular"
    profile = json_format.Parse(
        (golden / "senegal.2.profile.json").read_text("utf-8"), profile_pb2.CandidateProfile()
    )
    personal = json_format.Parse(
        (golden / "senegal.2.personal.json").read_text("utf-8"), profile_pb2.PersonalDetails()
    )
    assert (results[0].record, results[1].record) == (profile, personal)
    row = adapter.write(profile)
    assert (row["code_metier"], row["mobilite"], row["disponible_le"]) == (
        "D1102",
        "saisonnier,circulaire",
        "01/03/2027",
    )
    assert adapter.round_trip(profile, "again") == profile


def _outcome(results):
    return [(r.location, r.record.SerializeToString() if r.ok else None, r.problems) for r in results]


@pytest.mark.slow
def test_a_large_export_converted_by_worker_processes_gives_what_one_process_gives(codelists, tmp_path):
    """Chunks cross the process boundary and come back in file order; a job-seeker repeated within
    a chunk, across chunks, and bad rows are reported exactly as one process reports them."""
    senegal = (FIXTURES / "senegal.csv").read_text(encoding="utf-8-sig").splitlines()
    header, rows = senegal[0], senegal[1:]
    body = []
    for i in range(2 * 2_000 + 500):  # three chunks of CHUNK_ROWS
        row = rows[i % len(rows)]
        if row.strip():
            national = row.split(";", 1)[0]
            body.append(row.replace(national, f"{national}-{i // 7}", 1))  # each seeker seven times
    body.insert(3_000, "")  # a blank line is skipped by both
    export = tmp_path / "export.csv"
    export.write_text("\n".join([header, *body]) + "\n", encoding="utf-8")
    mapping = MAPPINGS / "sn-anpej.toml"
    one = _outcome(TabularAdapter(codelists, mapping, KEY, workers=1).read(export))
    two = _outcome(TabularAdapter(codelists, mapping, KEY, workers=2).read(export))
    assert one == two
    repeated = [p for _, _, problems in one for p in problems if "same job-seeker" in p.reason]
    assert repeated and sum(record is not None for _, record, _ in one) > 1_000
    # The first chunk holds lines 2..2001: a repeat just after it names a line inside it.
    lines = [(int(p.location.rsplit(":", 1)[1]), int(p.reason.rsplit(" ", 1)[1])) for p in repeated]
    assert any(line > 2_001 >= first for line, first in lines)


class _ParallelFranceTravail(FranceTravailOffers):
    """The France Travail adapter with the JSON adapters' worker processes (it does without them:
    one process is faster for its offers, but the others use them)."""

    parallel_from_items = 5_000


@pytest.mark.needs_samples
@pytest.mark.slow
def test_a_large_json_file_converted_by_worker_processes_gives_what_one_process_gives(
    codelists, tmp_path, monkeypatch
):
    import json

    from adapters import parallel

    sample = json.loads(
        (SAMPLES / "france_travail" / "ft_offer_167ZKWX_2024.json").read_text(encoding="utf-8")
    )
    offers = []
    for i in range(_ParallelFranceTravail.parallel_from_items + 7):
        offer = dict(sample, id=f"{i:07d}")
        if i % 1_000 == 3:
            offer["typeContrat"] = "XYZ"  # refused, with its reason
        if i == 4_321:
            offer["entreprise"] = "not an object"  # the wrong JSON type deep inside
        offers.append(offer)
    path = tmp_path / "offres.json"
    path.write_text(json.dumps({"resultats": offers}), encoding="utf-8")

    def outcome(workers):
        adapter = _ParallelFranceTravail(codelists, "fr-francetravail", ("SN",), workers=workers)
        return _outcome(adapter.read(path))

    pools, ordered = [], parallel.ordered
    monkeypatch.setattr(parallel, "ordered", lambda *args: pools.append(args[3]) or ordered(*args))
    one, two = outcome(1), outcome(2)
    assert pools == [2]  # the second went through two worker processes
    assert one == two and len(one) == len(offers)
    assert sum(record is None for _, record, _ in one) == 7  # six bad contracts, one bad structure
    assert one[4_321][0].endswith("$.resultats[4321]") and "unexpected structure" in one[4_321][2][0].reason


def test_digits_of_other_scripts_in_an_export(codelists, tmp_path):
    """Issue 25, item 5, as the adapters decide it (docs/adapters.md, "Digits"): a code or a date in
    Arabic-Indic digits is refused, named by its column; a phone number is read by libphonenumber,
    which reads any digits faithfully, and leaves in E.164 with ASCII digits."""
    header = (FIXTURES / "morocco.csv").read_text(encoding="utf-8").splitlines()[0]
    rows = [
        "BK1,العلوي,فاطمة,1994-06-18,0612345678,٦١١١,عاملة فلاحية,ar:لغة أم,ES,موسمي",
        "BK2,Benali,Youssef,١٩٩٤-06-18,٠٦١٢٣٤٥٦٧٨,6111,Ouvrier agricole,ar:لغة أم,ES,seasonal",
    ]
    path = tmp_path / "ma.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    adapter = TabularAdapter(codelists, MAPPINGS / "ma-anapec.toml", KEY)
    results = list(adapter.read(path))
    refused = [r for r in results if not r.ok]
    assert refused and {p.field for r in refused for p in r.problems} >= {"isco"}
    profile, personal = (
        r.record for r in results if r.ok and r.record.header.record_id.startswith(("P-", "D-"))
    )
    assert profile.occupations[0].isco08_code == "6111"
    assert personal.contacts[0].value == "+212612345678"
    assert not personal.HasField("birth_date") and not personal.birth_year
    assert any(p.field == "birth_date" for r in results for p in r.problems)

"""Property tests: no input makes a parser crash, and the rules answer for every input.

Every adapter returns results with problems, never an exception, whatever
the JSON, XML or CSV; record parsing refuses with a RecordRejection only; the
consent transfer rules answer for every country pair and basis.
"""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spehub.v1 import consent_pb2

from adapters.base import load
from adapters.tabular import TabularAdapter
from hub.domain import consent_policy, records
from hub.domain.records import PayloadKind, RecordRejection
from tests.support.gateways import ROOT

MAPPINGS = ROOT / "adapters" / "mappings"

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
# Objects shaped like each format, with random values: the parser sees its own field names.
FIELDS = {
    "france-travail-offers": [
        "id",
        "intitule",
        "romeCode",
        "appellationlibelle",
        "entreprise",
        "lieuTravail",
        "typeContrat",
        "nombrePostes",
        "dateActualisation",
        "competences",
        "formations",
    ],
    "jobtech-ads": [
        "id",
        "headline",
        "occupation",
        "employer",
        "workplace_address",
        "employment_type",
        "number_of_vacancies",
        "publication_date",
        "must_have",
        "removed",
    ],
    "eures-hropen": ["documentId", "positionProfiles", "person", "profiles", "validFrom", "statusCode"],
    "nav-ads": ["uuid", "status", "updated", "title", "properties", "employer", "location", "categoryList"],
    "france-travail-profiles": [
        "identifiant",
        "dateActualisation",
        "nom",
        "metiersRecherches",
        "langues",
        "experiences",
        "mobilite",
        "telephone",
        "permis",
    ],
}


@st.composite
def shaped(draw, adapter):  # type: ignore[no-untyped-def]
    keys = draw(st.lists(st.sampled_from(FIELDS[adapter]), unique=True))
    return {k: draw(JSON) for k in keys}


@FAST
@given(data=st.data())
def test_json_adapters_never_crash(codelists, tmp_path, data):
    for name in FIELDS:
        adapter = load(
            name, codelists=codelists, origin_participant_id="fr-francetravail", subject_key=b"k" * 32
        )
        item = data.draw(st.one_of(shaped(name), JSON))
        path = tmp_path / "in.json"
        path.write_text(json.dumps([item, item]), encoding="utf-8")
        results = list(adapter.read(path))
        assert results, name  # two items: at least one answer each, never silence
        for result in results:
            assert result.ok or result.problems  # a record, or the reasons there is none


@FAST
@given(text=st.text(max_size=400), cut=st.integers(min_value=0, max_value=3000))
def test_europass_never_crashes(codelists, tmp_path, text, cut):
    adapter = load(
        "europass-xml", codelists=codelists, origin_participant_id="sn-anpej", subject_key=b"k" * 32
    )
    sample = (
        '<?xml version="1.0"?><SkillsPassport xmlns="http://europass.cedefop.europa.eu/Europass">'
        "<DocumentInfo><DocumentType>ECV</DocumentType></DocumentInfo><LearnerInfo><Identification>"
        f"<PersonName><Surname>{text}</Surname></PersonName></Identification></LearnerInfo></SkillsPassport>"
    )
    path = tmp_path / "SN-1.xml"
    path.write_text(sample[:cut] if cut else text, encoding="utf-8")
    results = list(adapter.read(path))
    assert results  # a file always gets an answer
    for result in results:
        assert result.ok or result.problems


CELL = st.text(alphabet=string.printable + "éàûçÀ’ تونس", max_size=20)


@FAST
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(
                [
                    "numero_demandeur",
                    "nom",
                    "date_naissance",
                    "telephone",
                    "code_metier",
                    "intitule_metier",
                    "langues",
                    "mobilite",
                    "pays_souhaites",
                    "disponible_le",
                ]
            ),
            CELL,
        ),
        max_size=4,
    )
)
def test_tabular_rows_never_crash(codelists, rows):
    adapter = TabularAdapter(codelists, MAPPINGS / "sn-anpej.toml", b"k" * 32)
    answered = 0
    for i, row in enumerate(rows):
        results = list(adapter.convert_row(row, f"x:{i}"))
        assert results, row  # every row gets an answer: records, or the reasons there are none
        answered += 1
        for result in results:
            assert result.ok or result.problems
    assert answered == len(rows)


@FAST
@given(payload=st.binary(max_size=600), kind=st.sampled_from(list(PayloadKind)))
def test_record_parsing_refuses_with_a_reason_only(payload, kind):
    try:
        records.parse(kind, payload)
    except RecordRejection as exc:
        assert exc.reason and exc.message


@settings(max_examples=300, deadline=None)
@given(
    origin=st.sampled_from(["SN", "ML", "MA", "TN", "BJ", "CM", "GH", "TG", "CV", "MR", "FR", "SE"]),
    destination=st.sampled_from(["FR", "ES", "SE", "DE", "CA", "US", "SN", "MA", ""]),
    basis=st.sampled_from(list(consent_pb2.TransferBasis.values())),
)
def test_consent_transfer_rules_answer_for_every_input(origin, destination, basis):
    problem = consent_policy.transfer_problem(origin, destination, basis)
    assert problem is None or (isinstance(problem, str) and problem)
    if origin in ("TN", "BJ", "CM") and destination and destination != origin:
        # These laws ask for the data-protection authority's authorisation for any export.
        assert (problem is None) == (basis == consent_pb2.TRANSFER_BASIS_DPA_AUTHORISATION)

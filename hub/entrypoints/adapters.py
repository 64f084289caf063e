"""``spe-hub codelists …`` and ``spe-hub adapter …``: code-list import and the conformance kit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from google.protobuf import json_format

from adapters.base import Adapter, AdapterError, Converted, Tally, load
from adapters.codelists import CodeLists, integrity
from adapters.resolver import Answer, Resolver
from hub.domain import records
from hub.domain.records import PayloadKind, RecordRejection
from hub.entrypoints.options import adapter_help

DEFAULT_CODELISTS = Path(os.environ.get("SPEHUB_CODELISTS", "var/codelists"))
KIND_OF = {
    "JobOffer": PayloadKind.JOB_OFFER,
    "CandidateProfile": PayloadKind.CANDIDATE_PROFILE,
    "PersonalDetails": PayloadKind.PERSONAL_DETAILS,
    "Consent": PayloadKind.CONSENT,
}


def load_codelists(folder: str) -> CodeLists | None:
    """The current code lists of ``folder`` (lists imported there from newer publisher files), else
    the lists shipped with the hub when ``folder`` is the default one; None after saying on stderr
    why they cannot be used."""
    try:
        return CodeLists.load(Path(folder) / "current.json")
    except FileNotFoundError:
        if Path(folder) == DEFAULT_CODELISTS:
            return CodeLists.shipped()
        print(f"spe-hub: no code lists in {folder}: run `spe-hub codelists import FOLDER`", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"spe-hub: {exc}", file=sys.stderr)
    return None


def build_adapter(
    name: str,
    lists: CodeLists,
    origin: str,
    targets: list[str] | tuple[str, ...] = (),
    mapping: str = "",
    subject_key: bytes = b"",
    country: str = "",
) -> Adapter:
    """An adapter set up from command-line options (each adapter takes what it needs). Raises AdapterError."""
    options: dict[str, object] = {
        "codelists": lists,
        "origin_participant_id": origin,
        "target_country_codes": tuple(targets),
        "subject_key": subject_key,
        "default_country": country,
    }
    if mapping:
        options["mapping"] = Path(mapping)
    return load(name, **options)


def run_codelists(args: argparse.Namespace) -> int:
    if args.action == "import":
        try:
            lists = CodeLists.import_sources(Path(args.source))
        except (OSError, KeyError, ValueError) as exc:
            print(f"spe-hub codelists: cannot import from {args.source}: {exc}", file=sys.stderr)
            return 2
        if args.ship:
            path = lists.save_shipped()
            print(f"code lists version {lists.version} written to {path} (and SOURCES.md beside it)")
        else:
            path = lists.save(Path(args.out))
            print(f"code lists version {lists.version} written to {path} (and current.json)")
    else:
        loaded = load_codelists(args.out)
        if loaded is None:
            return 2
        lists = loaded
    report = integrity(lists)
    print(f"ISCO-08: {report.units} unit groups; missing parents: {len(report.missing_parents)}")
    for name, codes in report.dangling.items():
        print(f"  {name}: {len(codes)} target(s) not an ISCO-08 unit group {codes[:5] if codes else ''}")
    for name, n in report.unmapped.items():
        print(f"  {name}: {n} without a single ISCO-08 unit group")
    return 0 if report.ok else 1


def answer_json(title: str, answer: Answer) -> dict[str, object]:
    """The documented form of one resolution (docs/occupations.md, "spe-hub codelists resolve")."""
    best = answer.candidates[0] if answer.candidates else None
    return {
        "title": title,
        "isco08": answer.isco08,
        "level": answer.level,
        "decision": answer.decision,
        "score": answer.score,
        "esco_uri": answer.esco_uri,
        "label": best.label if best is not None and answer.decision == "unit_group" else "",
        "alternatives": [
            {"esco_uri": c.uri, "isco08": c.isco08, "label": c.label, "score": c.score}
            for c in answer.candidates[1:4]
            if answer.decision == "unit_group"
        ]
        or [
            {"esco_uri": c.uri, "isco08": c.isco08, "label": c.label, "score": c.score}
            for c in answer.candidates[:3]
            if answer.decision != "unit_group"
        ],
    }


def run_resolve(args: argparse.Namespace) -> int:
    lists = load_codelists(args.out)
    if lists is None:
        return 2
    titles = list(args.titles)
    if args.file:
        try:
            titles += [
                line.strip()
                for line in Path(args.file).read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
        except OSError as exc:
            print(f"spe-hub codelists: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    if not titles:
        print("spe-hub codelists resolve: give titles, or --file FILE", file=sys.stderr)
        return 2
    resolver = Resolver(lists)
    for title in titles:
        out = answer_json(title, resolver.resolve(title, args.lang))
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
            continue
        code = f"{out['isco08'] or '-':4} {out['level'] or '':9}"
        print(f"{title!r}: {code} {out['decision']:10} score {out['score']:.2f} {out['esco_uri']}")
        for alt in out["alternatives"]:  # type: ignore[attr-defined]
            print(f"    {alt['isco08']} {alt['score']:.2f} {alt['label']} <{alt['esco_uri']}>")
    return 0


def check_file(adapter: object, path: Path, tally: Tally | None = None) -> tuple[int, int, list[str]]:
    """Convert, validate against the schema rules, round-trip. Returns (good, bad, report lines)
    of the records; the rows (source items) are counted in ``tally``: refused, held for review,
    kept local. A record held for review or kept local is in neither count: its line says why."""
    good = bad = 0
    lines: list[str] = []
    tally = tally if tally is not None else Tally()
    for converted in adapter.read(path):  # type: ignore[attr-defined]
        state, shown = tally.see(converted)
        lines.extend(f"  {problem}" for problem in shown)
        # Refused, kept local (no consent: never published) or held for a person: not checked
        # for the hub; the report line says why.
        if state != "ok":
            continue
        problem = _validate_and_round_trip(adapter, converted)
        if problem:
            bad += 1
            lines.append(f"  {converted.location}: {problem} [error]")
        else:
            good += 1
    return good, bad, lines


def _validate_and_round_trip(adapter: object, converted: Converted) -> str:
    record = converted.record
    assert record is not None
    kind = KIND_OF[record.DESCRIPTOR.name]
    try:
        records.parse(kind, record.SerializeToString())
    except RecordRejection as exc:
        return f"not valid for the hub: {exc.field}: {exc.message}"
    again = adapter.round_trip(record, converted.location)  # type: ignore[attr-defined]
    if again != record:
        return "round trip changed the record (national → common → national → common): " + first_difference(
            record, again
        )
    return ""


# Fields whose values may be shown in a report: codes and words of the schema, never a person's
# names, contacts, dates of birth or free text.
SHOWN = frozenset(
    {
        "isco08_code",
        "code",
        "system",
        "language_code",
        "level",
        "country_code",
        "desired_country_codes",
        "mobility_types",
        "residence_country_code",
        "positions",
        "currency_code",
        "period",
        "method",
        "decision",
        "record_id",
        "version",
        "esco_uri",
        "nace_code",
        "eqf_level",
    }
)


def first_difference(before: object, after: object, path: str = "") -> str:
    """The path of the first field that differs between two records of one type, with both values
    when the field is one of SHOWN (codes), else "values not shown" (personal data stays out)."""
    if after is None:
        return "the record did not come back"
    for fd in before.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        name = f"{path}.{fd.name}" if path else fd.name
        a, b = getattr(before, fd.name), getattr(after, fd.name)
        if a == b:
            continue
        if fd.message_type is not None and not fd.is_repeated:
            return first_difference(a, b, name)
        if fd.message_type is not None:
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                if x != y:
                    return first_difference(x, y, f"{name}[{i}]")
            return f"{name}: {len(a)} item(s) before, {len(b)} after"
        if fd.name in SHOWN:
            return f"{name}: {list(a) if fd.is_repeated else a!r} became {list(b) if fd.is_repeated else b!r}"
        return f"{name} changed (values not shown)"
    return "the records differ in unknown fields"


def run_adapter(args: argparse.Namespace) -> int:
    lists = load_codelists(args.codelists)
    if lists is None:
        return 2
    try:
        # The check needs no real subject key: pseudonyms are not compared across runs.
        adapter = build_adapter(
            args.name, lists, args.origin, args.target, args.mapping, os.urandom(32), args.country
        )
    except AdapterError as exc:
        print(f"spe-hub adapter: {exc}")
        return 2
    total_good = total_bad = 0
    total = Tally()
    for name in args.files:
        tally = Tally()
        try:
            good, bad, lines = check_file(adapter, Path(name), tally)
        except AdapterError as exc:  # the mapping does not fit the export: no row was read
            print(f"spe-hub adapter: {exc}")
            return 2
        total_good, total_bad = total_good + good, total_bad + bad
        for key in ("rows", "refused", "held", "local"):
            setattr(total, key, getattr(total, key) + getattr(tally, key))
        print(
            f"{name}: {tally.rows} row(s), of which {tally.refused} refused, {tally.held} held for "
            f"review, {tally.local} kept local (no consent); {good} record(s) convert, validate and "
            f"round-trip; {bad} do not"
        )
        print("\n".join(lines) if lines else "  no problems")
    if args.json:
        print(
            json.dumps(
                {
                    "rows": total.rows,
                    "rows_refused": total.refused,
                    "rows_held": total.held,
                    "rows_kept_local": total.local,
                    "converted": total_good,
                    "refused": total_bad,
                }
            )
        )
    return 0 if total_bad == 0 and total.refused == 0 else 1


def dump(record: object) -> str:
    return json_format.MessageToJson(record, sort_keys=True, indent=2)  # type: ignore[arg-type]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("codelists", help="import occupation code lists and crosswalks, and check them")
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "import", help="read the publishers' files from a folder, write a versioned code list"
    )
    p.add_argument("source")
    p.add_argument("--out", default=str(DEFAULT_CODELISTS))
    p.add_argument(
        "--ship",
        action="store_true",
        help="write the lists shipped with the hub (adapters/data/codelists.json.gz and SOURCES.md) instead",
    )
    p = actions.add_parser("check", help="integrity of the current code list (exit 1 if broken)")
    p.add_argument("--out", default=str(DEFAULT_CODELISTS))
    parser.set_defaults(func=run_codelists)
    p = actions.add_parser(
        "resolve", help="ISCO-08 and ESCO for job titles as people write them (docs/occupations.md)"
    )
    p.add_argument("titles", nargs="*", metavar="TITLE")
    p.add_argument(
        "--lang", default="", choices=["", "fr", "en", "sv", "pt"], help="the titles' language, if known"
    )
    p.add_argument("--file", default="", help="a file of titles, one a line")
    p.add_argument("--json", action="store_true", help="one JSON object a title, a line each")
    p.add_argument("--out", default=str(DEFAULT_CODELISTS), help="the code lists' folder (default: shipped)")
    p.set_defaults(func=run_resolve)
    parser = sub.add_parser(
        "adapter", help="the conformance kit: convert, validate and round-trip national files"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "check", help="report, record by record, what an SPE's IT team must fix (exit 1 if any)"
    )
    p.add_argument("name", help=adapter_help())
    p.add_argument("files", nargs="+")
    p.add_argument("--origin", required=True, help="the publishing participant's id")
    p.add_argument(
        "--target", action="append", default=[], help="country the offers are addressed to (repeatable)"
    )
    p.add_argument("--codelists", default=str(DEFAULT_CODELISTS))
    p.add_argument("--mapping", default="", help="the mapping file, for the tabular adapter")
    p.add_argument("--country", default="", help="residence country when a CV gives none (europass-xml)")
    p.add_argument("--json", action="store_true", help="also print the counts as JSON")
    parser.set_defaults(func=run_adapter)

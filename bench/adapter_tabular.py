"""Tabular adapter: records/s and peak memory on a synthetic Senegal-format export of N rows.

Run: .venv/bin/python bench/adapter_tabular.py [--rows 200000 | --size-mb 1000] [--workers N]
Writes the export to a temporary folder (every row a different job-seeker:
numbers, names, birth dates, phones, occupations and languages vary), converts
it with the Senegal mapping, and prints the rate next to the single-process
rate of the same run, and the peak RSS (this process and its workers) next to
the RSS after loading the code lists: memory must stay flat as N grows.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.codelists import CodeLists  # noqa: E402
from adapters.tabular import TabularAdapter  # noqa: E402

HEADER = (
    "numero_demandeur;nom;prenoms;date_naissance;nationalite;telephone;courriel;code_metier;"
    "intitule_metier;langues;pays_souhaites;mobilite;disponible_le\n"
)
FAMILY = ("Ndiaye", "Diop", "Fall", "Sow", "Ba", "Gueye", "Faye", "Diallo", "Sarr", "Mbaye")
GIVEN = ("Aïssatou", "Mamadou", "Fatou", "Cheikh", "Awa", "Ousmane", "Mariama", "Ibrahima")
# ROME codes with an appellation that maps to one ISCO-08 unit group (exactMatch or closeMatch).
ROME = (
    ("N4101", ""),
    ("N4101", "Chauffeur / Chauffeuse de poids lourd"),
    ("K2204", "Agent / Agente de nettoyage industriel"),
    ("J1501", "Aide-soignant / Aide-soignante"),
    ("A1401", "Aide agricole en arboriculture"),
    ("A1414", "Chef d'exploitation en maraîchage-horticulture"),
    ("H2909", "Étancheur / Étancheuse en montage-assemblage mécanique"),
    ("G1602", "Chef de partie pâtissier / pâtissière"),
)
LANGUAGES = ("wo:natif,fr:B2", "fr:C1,en:A2", "wo:natif,fr:B1,es:A1", "ff:natif,fr:B2,en:B1")
COUNTRIES = ("FR,ES", "ES", "FR", "IT,FR,ES", "SE")
MOBILITY = ("saisonnier", "temporaire", "permanent", "saisonnier,circulaire")


def write_export(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)  # noqa: S311 - test data, not secrets
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER)
        for i in range(rows):
            f.write(
                f"SN-{i:09d};{rnd.choice(FAMILY)};{rnd.choice(GIVEN)};"
                f"{rnd.randint(1, 28):02d}/{rnd.randint(1, 12):02d}/{rnd.randint(1960, 2006)};SN;"
                f"{rnd.choice(('77', '78', '76', '70'))} {rnd.randint(100, 999)} {rnd.randint(10, 99)} "
                f"{rnd.randint(10, 99)};;{';'.join(rnd.choice(ROME))};{rnd.choice(LANGUAGES)};"
                f"{rnd.choice(COUNTRIES)};{rnd.choice(MOBILITY)};"
                f"{rnd.randint(1, 28):02d}/{rnd.randint(1, 12):02d}/2027\n"
            )


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run(adapter: TabularAdapter, path: Path) -> tuple[int, int, float]:
    start = time.perf_counter()
    good = bad = 0
    for converted in adapter.read(path):
        if converted.ok:
            good += 1
        else:
            bad += 1
    return good, bad, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--size-mb", type=int, default=0, help="make the export this large instead (rows follow)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--crosswalks", default=str(ROOT.parent / "shared" / "samples" / "crosswalks"))
    args = parser.parse_args()
    if args.size_mb:
        args.rows = args.size_mb * 1_000_000 // 105  # about 105 bytes a row
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        write_export(path, args.rows)
        lists = CodeLists.import_sources(Path(args.crosswalks))
        mapping = ROOT / "adapters" / "mappings" / "sn-anpej.toml"
        base = peak_mb()
        print(
            f"machine: {os.cpu_count()} cores; export {args.rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB"
        )
        single_rate = None
        if not args.size_mb:  # the one-process rate, the reference of this run
            good, bad, elapsed = run(TabularAdapter(lists, mapping, b"k" * 32, workers=1), path)
            single_rate = good / elapsed
            print(f"  1 process : {good:,} records ({bad} rows refused), {single_rate:,.0f} records/s")
        adapter = TabularAdapter(lists, mapping, b"k" * 32, workers=args.workers)
        good, bad, elapsed = run(adapter, path)
        rate = good / elapsed
        scale = f" = {rate / single_rate:.2f} x one process" if single_rate else ""
        print(
            f"  {args.workers} workers : {good:,} records ({bad} rows refused), {rate:,.0f} records/s{scale}; "
            f"target 20,000"
        )
        print(f"  peak RSS {peak_mb():.0f} MB per process (after loading the code lists {base:.0f} MB)")


if __name__ == "__main__":
    main()

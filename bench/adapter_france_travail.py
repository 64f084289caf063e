"""France Travail offer adapter: records/s on a synthetic "offres d'emploi v2" search response of N offers.

Run: .venv/bin/python bench/adapter_france_travail.py [--offers 100000] [--repeat 3]
The offers follow the API's field names (francetravail.io, "Offres d'emploi v2");
ids, dates, ROME appellations, places, contracts and hours vary. Prints the
rate and the peak RSS, which must not grow with the file (--size-mb 1000: a 1 GB file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.codelists import CodeLists  # noqa: E402
from adapters.france_travail import FranceTravailOffers  # noqa: E402

APPELLATIONS = (
    (
        "N4101",
        "Chauffeur / Chauffeuse de poids lourd",
        "Conduite de transport de marchandises sur longue distance",
    ),
    ("K2204", "Agent / Agente de nettoyage industriel", "Nettoyage de locaux"),
    ("J1501", "Aide-soignant / Aide-soignante", "Soins d'hygiène, de confort du patient"),
    ("A1401", "Aide agricole en arboriculture", "Aide agricole de production fruitière ou viticole"),
    ("G1602", "Chef de partie pâtissier / pâtissière", "Personnel de cuisine"),
)
PLACES = (
    ("13 - Marseille", "13001"),
    ("69 - Lyon", "69003"),
    ("84 - Avignon", "84000"),
    ("33 - Bordeaux", "33000"),
)
CONTRACTS = ("CDI", "CDD", "SAI", "MIS")


def offer(rnd: random.Random, i: int) -> dict[str, object]:
    rome, appellation, fiche = rnd.choice(APPELLATIONS)
    place, postal = rnd.choice(PLACES)
    return {
        "id": f"{100000 + i:06d}X",
        "intitule": appellation.split(" / ")[0],
        "description": "Poste saisonnier, logement possible. " * rnd.randint(1, 6),
        "dateCreation": "2026-10-01T08:00:00.000Z",
        "dateActualisation": f"2026-10-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:15:00.000Z",
        "lieuTravail": {"libelle": place, "codePostal": postal, "commune": postal},
        "romeCode": rome,
        "romeLibelle": fiche,
        "appellationlibelle": appellation,
        "entreprise": {"nom": f"Entreprise {i % 997}", "entrepriseAdaptee": False},
        "typeContrat": rnd.choice(CONTRACTS),
        "typeContratLibelle": "Contrat",
        "natureContrat": "Contrat travail",
        "experienceExige": rnd.choice("DE"),
        "experienceLibelle": f"{rnd.randint(1, 5)} An(s)",
        "competences": [{"code": "100", "libelle": "Respecter les règles d'hygiène", "exigence": "S"}],
        "formations": [{"niveauLibelle": "CAP, BEP et équivalents", "exigence": "S"}],
        "salaire": {"libelle": "Mensuel de 1900 Euros sur 12 mois"},
        "dureeTravailLibelle": f"{rnd.choice((35, 39))}H Travail en équipe",
        "nombrePostes": rnd.randint(1, 12),
        "codeNAF": "01.13Z",
        "secteurActiviteLibelle": "Culture de légumes",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument(
        "--size-mb", type=int, default=0, help="write offers until the file is this large instead"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--crosswalks", default=str(ROOT.parent / "shared" / "samples" / "crosswalks"))
    args = parser.parse_args()
    rnd = random.Random(7)  # noqa: S311 - test data, not secrets
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "offres.json"
        # Written one offer at a time, so that the peak RSS measured below is the adapter's.
        with path.open("w", encoding="utf-8") as out:
            out.write('{"resultats": [')
            i = 0
            while (args.size_mb and out.tell() < args.size_mb * 1_000_000) or (
                not args.size_mb and i < args.offers
            ):
                out.write(("," if i else "") + json.dumps(offer(rnd, i), ensure_ascii=False))
                i += 1
            out.write('], "filtresPossibles": []}')
        args.offers = i
        lists = CodeLists.import_sources(Path(args.crosswalks))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"machine: {os.cpu_count()} cores; {args.offers:,} offers, {path.stat().st_size / 1e6:,.0f} MB")
        # One process: the adapter does not use worker processes (they were slower for it).
        adapter = FranceTravailOffers(lists, "fr-francetravail", ("SN",))
        rates = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            good = bad = 0
            for converted in adapter.read(path):
                good, bad = good + converted.ok, bad + (not converted.ok)
            rates.append(good / (time.perf_counter() - start))
            print(f"  {good:,} records ({bad} refused), {rates[-1]:,.0f} records/s")
        print(f"  median of {args.repeat}: {statistics.median(rates):,.0f} records/s; target 20,000")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS {peak:.0f} MB (before reading {base:.0f} MB; the offers are read one at a time)")


if __name__ == "__main__":
    main()

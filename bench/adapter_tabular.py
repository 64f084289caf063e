"""Tabular adapter: rows/s and peak memory on a synthetic Senegal-format export of N rows.

Run: .venv/bin/python bench/adapter_tabular.py [--rows 200000 | --size-mb 1000]
Writes the export to a temporary folder, converts it with the Senegal mapping,
and prints the rate and the peak RSS next to the RSS after loading the code
lists (memory must stay flat as N grows).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.codelists import CodeLists  # noqa: E402
from adapters.tabular import TabularAdapter  # noqa: E402

HEADER = "numero_demandeur;nom;prenoms;date_naissance;nationalite;telephone;courriel;code_metier;intitule_metier;langues;pays_souhaites;mobilite;disponible_le\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--size-mb", type=int, default=0, help="make the export this large instead (rows follow)"
    )
    parser.add_argument("--crosswalks", default=str(ROOT.parent / "shared" / "samples" / "crosswalks"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        with path.open("w", encoding="utf-8") as f:
            f.write(HEADER)
            row = "SN-{:09d};Ndiaye;Aïssatou;03/07/1996;SN;77 123 45 67;;N4101;;wo:natif,fr:B2;FR,ES;saisonnier;01/03/2027\n"
            if args.size_mb:
                args.rows = args.size_mb * 1_000_000 // len(row.format(0).encode())
            for i in range(args.rows):
                f.write(row.format(i))
        lists = CodeLists.import_sources(Path(args.crosswalks))
        adapter = TabularAdapter(lists, ROOT / "adapters" / "mappings" / "sn-anpej.toml", b"k" * 32)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        records = sum(1 for c in adapter.read(path) if c.ok)
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{args.rows} rows ({path.stat().st_size / 1e6:.0f} MB): {records} records, "
            f"{args.rows / elapsed:,.0f} rows/s; peak RSS {peak:.0f} MB (after code lists {base:.0f} MB)"
        )


if __name__ == "__main__":
    main()

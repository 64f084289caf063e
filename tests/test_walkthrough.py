"""docs/walkthrough.md, run line by line against a real hub (so the walkthrough stays true)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from hub.entrypoints.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[list[str]]:
    readme = (ROOT / "docs" / "walkthrough.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- walkthrough:.*?-->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "docs/walkthrough.md has lost its walkthrough block"
    return [
        shlex.split(line)[1:] for line in block.group(1).splitlines() if line.startswith(".venv/bin/spe-hub ")
    ]


def test_the_readme_walkthrough_runs(hub, clock, test_pki, database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    # The commands sign with the real time; the hub's test clock must not lag behind it.
    clock.advance(minutes=1)
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("SPEHUB_TOKEN_KEYS", str(test_pki.root / "hub" / "token-keys"))
    monkeypatch.setenv("SPEHUB_TRUST_DOMAIN", "test.spehub.invalid")
    outputs = {}
    commands = _commands()
    assert len(commands) == 18
    for argv in commands:
        extra: list[str] = []
        if "--participant" in argv:
            extra = ["--pki", str(test_pki.root), "--hub", f"127.0.0.1:{hub.port}"]
            if argv[0] == "gateway":  # the code lists shipped with the hub
                extra += ["--outbox", str(tmp_path / "outbox.sqlite3")]
        code = main([*argv, *extra])
        captured = capsys.readouterr()
        out = captured.out
        assert code == 0, (argv, out, captured.err)
        outputs.setdefault(" ".join(argv[:2]), []).append(out)

    assert "1 candidate(s) for FT-198SAIS" in outputs["match candidates"][0]
    explained = outputs["match candidates"][0]
    assert "same ISCO-08 unit group as the offer (9211)" in explained
    assert "Skills: 1 of the 1 required; has Récolter des légumes." in explained
    assert "Destination: wants to work in FR." in explained
    before, after = outputs["match offers"]
    assert "FT-198SAIS" in before and "Experience: 0 months" in before
    assert "Experience: 8 months" in after  # the season in France, republished in version 2
    cycle = outputs["mobility cycle"][0]
    assert "now reintegration" in cycle
    steps = re.findall(r"\d{4}-\d{2}-\d{2}  (\S+)\s+by (\S+)", cycle)
    assert steps == [
        ("application", "ma-anapec"),
        ("shortlist", "fr-francetravail"),
        ("selection", "fr-francetravail"),
        ("preparation", "ma-anapec"),
        ("preparation", "ma-anapec"),
        ("departure", "ma-anapec"),
        ("contract_end", "fr-francetravail"),
        ("return", "ma-anapec"),
        ("reintegration", "ma-anapec"),
    ]
    stats = outputs["stats --all-months"][0]
    assert "MA→FR" in stats and "<5" in stats and not re.search(r"MA→FR.* [1-4]\s*$", stats, re.M)


def test_the_walkthroughs_refusals_are_as_the_readme_says(
    hub, clock, test_pki, tmp_path, monkeypatch, capsys
):
    """The two refusals the README quotes: a step out of order, and a step by the wrong party."""
    monkeypatch.chdir(ROOT)
    clock.advance(minutes=1)
    common = ["--pki", str(test_pki.root), "--hub", f"127.0.0.1:{hub.port}"]
    send = ["gateway", "send", "france-travail-offers", "docs/walkthrough/offre-saisonniere.json"]
    send += ["--participant", "fr-francetravail", "--offer-target", "MA"]
    assert main([*send, "--outbox", str(tmp_path / "o.sqlite3"), *common]) == 0
    for kind in ("consent", "profile"):
        path = f"docs/walkthrough/{kind}-ma-2041.json"
        assert main(["records", "publish", kind, path, "--participant", "ma-anapec", *common]) == 0
    ma = ["--application", "a9", "--participant", "ma-anapec", *common]
    ft = ["--application", "a9", "--origin", "ma-anapec", "--participant", "fr-francetravail", *common]
    apply = ["--profile", "p-ma-2041", "--offer-origin", "fr-francetravail", "--offer", "FT-198SAIS"]
    assert main(["mobility", "record", "application", *apply, *ma]) == 0
    assert main(["mobility", "record", "shortlist", *ft]) == 0
    capsys.readouterr()
    assert main(["mobility", "record", "departure", *ma]) == 1
    out = capsys.readouterr().out
    assert (
        "INVALID_TRANSITION" in out
        and "DEPARTURE cannot follow SHORTLIST; it follows PREPARATION, SELECTION" in out
    )
    assert main(["mobility", "record", "selection", *ma]) == 1
    out = capsys.readouterr().out
    assert "NOT_ENTITLED" in out and "recorded by the offer's origin" in out

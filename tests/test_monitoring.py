"""The monitoring kit: every metric the dashboard and the alert rules use is one the hub exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
BUILTIN = {"up", "time"}


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n.startswith(("spehub_", "grpc_server_"))} | ({"up"} & names)


def test_dashboard_and_rules_use_only_exported_metrics(hub):
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    exported = set(re.findall(r"^# TYPE (\S+)", body, re.M))
    exported |= {f"{n}_bucket" for n in exported} | {f"{n}_total" for n in exported}
    dashboard = json.loads((MONITORING / "grafana-spehub.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((MONITORING / "spehub-rules.yml").read_text(encoding="utf-8"))
    exprs += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    used = set().union(*(_metric_names(e) for e in exprs)) - BUILTIN
    assert used and used <= exported, sorted(used - exported)
    assert len(dashboard["panels"]) >= 10 and len({p["id"] for p in dashboard["panels"]}) == len(
        dashboard["panels"]
    )


def test_a_scrape_time_source_that_fails_says_so_instead_of_reporting_nothing(caplog):
    """The database down must not read as "no deletion overdue": the source reports 0 in
    spehub_metrics_source_up (SpeHubMetricsSourceDown), the failure is logged by type only, and
    the other sources still answer."""
    from prometheus_client import CollectorRegistry, generate_latest

    from hub.metrics import HubMetrics, watch_corridors, watch_overdue_deletions, watch_sources

    def down() -> dict[str, int]:
        raise ConnectionError("could not connect to server: user=secret host=db")

    metrics = HubMetrics(CollectorRegistry())
    watch_overdue_deletions(metrics, down)
    watch_corridors(metrics, lambda: [(("profiles", "SN", "FR", "seasonal", "9"), 7)])
    watch_sources(metrics)
    body = generate_latest(metrics.registry).decode()
    assert 'spehub_metrics_source_up{source="deletion_acks_overdue"} 0.0' in body
    assert 'spehub_metrics_source_up{source="corridors"} 1.0' in body
    assert "spehub_corridor_records{" in body
    assert "metrics source deletion_acks_overdue failed: ConnectionError" in caplog.text
    assert "secret" not in caplog.text


def test_every_alert_is_in_the_operations_alert_table():
    rules = yaml.safe_load((MONITORING / "spehub-rules.yml").read_text(encoding="utf-8"))
    readme = (MONITORING.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [r["alert"] for g in rules["groups"] for r in g["rules"] if f"| {r['alert']} |" not in readme]
    assert not missing, missing

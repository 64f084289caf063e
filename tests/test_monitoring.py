"""The monitoring kit: every metric the dashboard and the alert rules use is one the hub exports."""

from __future__ import annotations

import gzip
import json
import re
import time
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
    hub.gauges.refresh()  # the gauges read from the store, computed (in the background otherwise)
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


class _Time:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _samples(metrics, refresher) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What /metrics serves, by sample."""
    from prometheus_client.parser import text_string_to_metric_families

    from hub.metrics import exposition

    body = exposition(metrics.registry, refresher).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _overdue(n: float) -> dict:
    return {"spehub_deletion_acks_overdue": ("Overdue.", ["recipient"], [(["fr-francetravail"], n)])}


def test_a_source_that_fails_keeps_its_last_values_says_so_and_ages(caplog):
    """The database down must not read as "no deletion overdue": the source reports 0 in
    spehub_metrics_source_up (SpeHubMetricsSourceDown), its values stay with an age that grows
    (SpeHubMetricsStale), the failure is logged by type only and counted, the other sources still
    answer, and /metrics still serves."""
    from prometheus_client import CollectorRegistry

    from hub.bootstrap import serve_metrics
    from hub.metrics import GaugeRefresher, GaugeSource, HubMetrics

    clock, state = _Time(), {"down": False}

    def overdue() -> dict:
        if state["down"]:
            raise ConnectionError("could not connect to server: user=secret host=db")
        return _overdue(2)

    def corridors() -> dict:
        return {"spehub_corridor_records": ("Cells.", ["kind"], [(["profiles"], 7)])}

    metrics = HubMetrics(CollectorRegistry())
    refresher = GaugeRefresher(
        [GaugeSource("deletion_acks_overdue", 15, overdue), GaugeSource("corridors", 300, corridors)],
        metrics.source_failures,
        now=clock,
    )
    metrics.registry.register(refresher)
    before = _samples(metrics, refresher)
    assert ("spehub_deletion_acks_overdue", (("recipient", "fr-francetravail"),)) not in before
    assert ("spehub_metrics_source_up", (("source", "corridors"),)) not in before  # not tried yet

    refresher.refresh()
    clock.now += 100
    state["down"] = True
    refresher.refresh("deletion_acks_overdue")
    clock.now += 50
    after = _samples(metrics, refresher)
    assert after[("spehub_metrics_source_up", (("source", "deletion_acks_overdue"),))] == 0
    assert after[("spehub_metrics_source_up", (("source", "corridors"),))] == 1
    assert (
        after[("spehub_deletion_acks_overdue", (("recipient", "fr-francetravail"),))] == 2
    )  # the last value
    assert after[("spehub_metrics_source_age_seconds", (("source", "deletion_acks_overdue"),))] == 150
    assert after[("spehub_metrics_source_age_seconds", (("source", "corridors"),))] == 150
    assert after[("spehub_metrics_source_failures_total", (("source", "deletion_acks_overdue"),))] == 1
    assert after[("spehub_metrics_source_interval_seconds", (("source", "corridors"),))] == 300
    assert after[("spehub_corridor_records", (("kind", "profiles"),))] == 7
    assert "metrics source deletion_acks_overdue failed: ConnectionError" in caplog.text
    assert "secret" not in caplog.text

    http = serve_metrics("127.0.0.1", 0, metrics.registry, refresher)
    url = f"http://127.0.0.1:{http.server_port}/metrics"
    try:
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        zipped = urllib.request.urlopen(
            urllib.request.Request(url, headers={"Accept-Encoding": "gzip"}), timeout=5
        ).read()
    finally:
        http.shutdown()
        http.server_close()
    assert 'spehub_metrics_source_up{source="deletion_acks_overdue"} 0.0' in body
    assert 'spehub_deletion_acks_overdue{recipient="fr-francetravail"} 2.0' in body
    assert gzip.decompress(zipped).decode() == body  # as Prometheus asks for it

    state["down"] = False
    refresher.refresh("deletion_acks_overdue")
    fresh = _samples(metrics, refresher)
    assert fresh[("spehub_metrics_source_age_seconds", (("source", "deletion_acks_overdue"),))] == 0
    assert fresh[("spehub_metrics_source_up", (("source", "deletion_acks_overdue"),))] == 1


def test_a_source_that_never_answered_ages_from_the_start_and_a_crash_does_not_stop_its_thread():
    from prometheus_client import CollectorRegistry

    from hub.errors import StoreUnavailableError
    from hub.metrics import GaugeRefresher, GaugeSource, HubMetrics

    clock, calls = _Time(), []

    def broken() -> dict:
        calls.append(1)
        raise RuntimeError("a bug")

    def election() -> bool:
        raise StoreUnavailableError("the database did not answer (OperationalError)")

    metrics = HubMetrics(CollectorRegistry())
    refresher = GaugeRefresher(
        [GaugeSource("operational_gauges", 0.01, broken)], metrics.source_failures, now=clock
    )
    metrics.registry.register(refresher)
    refresher.start()
    try:
        deadline = time.monotonic() + 30
        while len(calls) < 3:  # the thread goes on after a failure
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        refresher.stop()
    clock.now += 40
    samples = _samples(metrics, refresher)
    assert samples[("spehub_metrics_source_age_seconds", (("source", "operational_gauges"),))] == 40
    assert samples[("spehub_metrics_source_up", (("source", "operational_gauges"),))] == 0
    assert samples[("spehub_metrics_source_failures_total", (("source", "operational_gauges"),))] >= 3

    # The election failing (the database away) is that source's failure, not a silence.
    metrics = HubMetrics(CollectorRegistry())
    refresher = GaugeRefresher(
        [GaugeSource("deletion_acks_overdue", 15, lambda: _overdue(1))],
        metrics.source_failures,
        election,
        clock,
    )
    metrics.registry.register(refresher)
    refresher.refresh()
    samples = _samples(metrics, refresher)
    assert samples[("spehub_metrics_source_up", (("source", "deletion_acks_overdue"),))] == 0
    assert ("spehub_deletion_acks_overdue", (("recipient", "fr-francetravail"),)) not in samples


def test_only_the_elected_process_exports_the_gauges_read_from_the_store():
    """With several processes on one database, one computes the store's gauges and exports them;
    the others export none (they would otherwise be computed, and summed, once per process)."""
    from prometheus_client import CollectorRegistry

    from hub.metrics import GaugeRefresher, GaugeSource, HubMetrics

    leads, computed = {"now": False}, []

    def overdue() -> dict:
        computed.append(1)
        return _overdue(3)

    metrics = HubMetrics(CollectorRegistry())
    refresher = GaugeRefresher(
        [GaugeSource("deletion_acks_overdue", 15, overdue)], metrics.source_failures, lambda: leads["now"]
    )
    metrics.registry.register(refresher)
    refresher.refresh()
    samples = _samples(metrics, refresher)
    assert computed == []
    assert samples[("spehub_metrics_leader", ())] == 0
    assert not any(name.startswith(("spehub_deletion", "spehub_metrics_source")) for name, _ in samples)

    leads["now"] = True  # the leader went away: this one took the lock over
    refresher.refresh()
    samples = _samples(metrics, refresher)
    assert computed == [1]
    assert samples[("spehub_metrics_leader", ())] == 1
    assert samples[("spehub_deletion_acks_overdue", (("recipient", "fr-francetravail"),))] == 3

    leads["now"] = False  # and lost it again: its last values go with it
    refresher.refresh()
    samples = _samples(metrics, refresher)
    assert ("spehub_deletion_acks_overdue", (("recipient", "fr-francetravail"),)) not in samples


def test_one_process_per_database_holds_the_metrics_lock_until_it_goes(database_url):
    """hub.store.leader on two engines, as two processes have: one leads, the other takes over when
    the first goes (PostgreSQL); SQLite's single process always leads."""
    from hub.store.engine import Store
    from hub.store.leader import Leadership
    from hub.store.sql import METRICS_LOCK

    first, second = Store(database_url), Store(database_url)
    a, b = Leadership(first.engine), Leadership(second.engine)
    try:
        if first.is_sqlite:
            assert a.held() and b.held()
            return
        assert a.held()
        assert not b.held()
        assert a.held() and not b.held()  # asked again: the same
        # The database ends the leader's session (a restart, an idle timeout): the lock goes with
        # it, and the leader's next question takes it again on a new connection, without an error.
        with first.engine.begin() as conn:
            ended = conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = %(lock)s AND objid::int = hashtext(current_schema()) AND granted",
                {"lock": METRICS_LOCK},
            ).all()
        assert ended == [(True,)]
        assert a.held()
        assert not b.held()
        a.close()
        assert b.held()
        b.close()
        assert not a.held() and not b.held()  # closed: neither leads again (the hub stops)
    finally:
        a.close()
        b.close()
        first.close()
        second.close()


def test_every_alert_is_in_the_operations_alert_table():
    rules = yaml.safe_load((MONITORING / "spehub-rules.yml").read_text(encoding="utf-8"))
    readme = (MONITORING.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [r["alert"] for g in rules["groups"] for r in g["rules"] if f"| {r['alert']} |" not in readme]
    assert not missing, missing

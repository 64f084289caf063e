"""SPEHUB_PROCESSES: ``spe-hub serve`` starts several serving processes on one port (SO_REUSEPORT).

The settings are refused where several processes cannot work (SQLite, port 0); on PostgreSQL a
real supervisor starts real processes, connections land on each, every record published through
them is stored once, SIGTERM stops them all, and a process that dies takes the others down with it
(so that the service manager restarts a whole hub, not a hub with a process missing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spehub.v1 import exchange_pb2

from hub import synth
from hub.client import authorized_channel
from hub.config import Settings
from hub.domain.records import PayloadKind
from hub.errors import ConfigError
from hub.store.engine import Store
from hub.supervisor import child_environment
from tests.support.hubs import TRUST_DOMAIN, Participant
from tests.support.processes import HubProcess, free_port, hub_env

PG = os.environ.get("SPEHUB_TEST_DATABASE_URL", "").startswith("postgresql")
SN = "sn-anpej"


def test_several_processes_need_postgresql():
    with pytest.raises(ConfigError, match="SPEHUB_PROCESSES above 1 needs a PostgreSQL"):
        Settings.from_env({"SPEHUB_PROCESSES": "2", "SPEHUB_DATABASE_URL": "sqlite:///x.sqlite3"})


def test_several_processes_need_a_fixed_port():
    with pytest.raises(ConfigError, match="needs a fixed port in SPEHUB_LISTEN"):
        Settings.from_env(
            {
                "SPEHUB_PROCESSES": "2",
                "SPEHUB_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/test",
                "SPEHUB_LISTEN": "127.0.0.1:0",
            }
        )


def test_every_process_needs_a_metrics_port():
    with pytest.raises(ConfigError, match="leaves no room for the metrics ports of 3 processes"):
        Settings.from_env(
            {
                "SPEHUB_PROCESSES": "3",
                "SPEHUB_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/test",
                "SPEHUB_METRICS_LISTEN": "127.0.0.1:65534",
            }
        )


def test_process_count_is_bounded():
    with pytest.raises(ConfigError, match="SPEHUB_PROCESSES must be between 1 and 64, not 65"):
        Settings.from_env({"SPEHUB_PROCESSES": "65"})


def test_each_process_gets_its_own_metrics_port_and_only_the_first_ranks():
    settings = Settings(
        processes=3,
        database_url="postgresql+psycopg://postgres@127.0.0.1/test",
        listen_address="127.0.0.1:50051",
        metrics_address="127.0.0.1:9464",
    )
    envs = [child_environment(settings, {"SPEHUB_PROCESSES": "3"}, i) for i in range(3)]
    assert [e["SPEHUB_METRICS_LISTEN"] for e in envs] == [f"127.0.0.1:{9464 + i}" for i in range(3)]
    assert [e["SPEHUB_PROCESS_INDEX"] for e in envs] == ["0", "1", "2"]
    assert {e["SPEHUB_PROCESSES"] for e in envs} == {"1"}  # a child never starts children
    assert "SPEHUB_MATCH_RANKING_SECONDS" not in envs[0]
    assert envs[1]["SPEHUB_MATCH_RANKING_SECONDS"] == envs[2]["SPEHUB_MATCH_RANKING_SECONDS"] == "0"
    off = Settings(**{**settings.__dict__, "metrics_address": ""})
    assert "SPEHUB_METRICS_LISTEN" not in child_environment(off, {}, 1)


@pytest.mark.processes
def test_a_port_in_use_is_refused_without_the_shared_port_setting(test_pki, database_url, tmp_path):
    """Only the processes of one supervisor share a port: a hub started alone on a port already
    served fails to start instead of silently sharing it."""
    env = hub_env(test_pki.root, database_url, f"sqlite:///{tmp_path / 'keys.sqlite3'}", TRUST_DOMAIN)
    port = free_port()
    env.update(SPEHUB_LISTEN=f"127.0.0.1:{port}", SPEHUB_METRICS_LISTEN="")
    first = _start(env, tmp_path / "first.log")
    try:
        _wait_serving(test_pki, port, first, tmp_path / "first.log")
        second = _start(env, tmp_path / "second.log")
        assert second.wait(60) == 2
        output = (tmp_path / "second.log").read_text()
        assert output.splitlines()[-1] == (
            f"spe-hub serve: cannot listen on 127.0.0.1:{port} (SPEHUB_LISTEN): Address already in use"
        )
        assert "Traceback" not in output
    finally:
        first.terminate()
        first.wait(30)


@pytest.mark.processes
def test_sigterm_the_moment_the_hub_reports_serving_stops_it_gracefully(test_pki, database_url, tmp_path):
    """A service manager may stop the hub as soon as its health check says SERVING: the signal
    handlers are in place by then, so the hub drains and exits 0 rather than dying of the signal."""
    env = hub_env(test_pki.root, database_url, f"sqlite:///{tmp_path / 'keys.sqlite3'}", TRUST_DOMAIN)
    port = free_port()
    env.update(SPEHUB_LISTEN=f"127.0.0.1:{port}", SPEHUB_METRICS_LISTEN=f"127.0.0.1:{free_port()}")
    log = tmp_path / "hub.log"
    proc = _start(env, log)
    folder = test_pki.participant_dir(SN)
    creds = grpc.ssl_channel_credentials(
        test_pki.ca_pem, (folder / "client-key.pem").read_bytes(), (folder / "client.pem").read_bytes()
    )
    try:
        deadline = time.monotonic() + 90
        serving = False
        while not serving and proc.poll() is None and time.monotonic() < deadline:
            # A new channel each time: a channel that failed to connect waits out a back-off.
            with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
                try:
                    status = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    serving = status.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    time.sleep(0.005)
        assert serving, log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
        assert '"msg": "stopped"' in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "hub.entrypoints.cli", "serve"],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _channel(test_pki, port: int, pid: str) -> grpc.Channel:
    folder = test_pki.participant_dir(pid)
    return authorized_channel(
        f"127.0.0.1:{port}",
        test_pki.ca_pem,
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
        (),
        # A connection of its own: gRPC would otherwise share one between channels to one address.
        options=[("grpc.use_local_subchannel_pool", 1)],
    )


def _wait_serving(test_pki, port: int, proc: subprocess.Popen[str], log: Path) -> None:
    HubProcess(proc, port, log).wait_serving(test_pki.root, timeout=90)


def _published(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("spehub_records_published_total{") and 'outcome="accepted"' in line
    )


def _pids_of_children(supervisor: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False)
    return sorted(int(pid) for pid in out.stdout.split())


@pytest.fixture
def supervised(test_pki, database_url, tmp_path) -> Iterator[tuple[subprocess.Popen[str], int, int, Path]]:
    if not PG:
        pytest.skip("needs PostgreSQL (SPEHUB_TEST_DATABASE_URL): several serving processes refuse SQLite")
    port, metrics = free_port(), free_port()
    while metrics + 1 == port or _in_use(metrics + 1):
        metrics = free_port()
    env = hub_env(
        test_pki.root,
        database_url,
        f"sqlite:///{tmp_path / 'keys.sqlite3'}",
        TRUST_DOMAIN,
        SPEHUB_PROCESSES="2",
        SPEHUB_LISTEN=f"127.0.0.1:{port}",
        SPEHUB_METRICS_LISTEN=f"127.0.0.1:{metrics}",
    )
    log = tmp_path / "hub.log"
    proc = _start(env, log)
    try:
        _wait_serving(test_pki, port, proc, log)
        for i in (0, 1):  # each process answers on its own metrics port once it serves
            deadline = time.monotonic() + 60
            while True:
                try:
                    _published(metrics + i)
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                    time.sleep(0.3)
        yield proc, port, metrics, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.processes
@pytest.mark.postgres
def test_processes_share_the_port_and_store_each_record_once(supervised, test_pki, database_url, clock):
    proc, port, metrics, _log = supervised
    now = synth.now_utc()
    candidates = list(synth.candidates(3, 40, now, ("SN",)))
    # A connection per batch (40 of them): the kernel picks the process of each new connection, so
    # both get some. Every other batch is sent again on its connection and answers DUPLICATE.
    outcomes: list[int] = []
    for i, (consent, profile, _personal) in enumerate(candidates):
        with _channel(test_pki, port, SN) as channel:
            sn = Participant(SN, channel, *_signing(test_pki), clock)
            batch = [sn.seal(consent, PayloadKind.CONSENT), sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
            outcomes += [r.outcome for r in sn.publish_one_batch(batch)]
            if i % 2:
                outcomes += [r.outcome for r in sn.publish_one_batch(batch)]
    served = [_published(metrics), _published(metrics + 1)]
    assert all(n > 0 for n in served), f"one process served every connection: {served}"
    assert sum(served) == 2 * len(candidates)
    accepted = outcomes.count(exchange_pb2.RECORD_OUTCOME_ACCEPTED)
    assert accepted == 2 * len(candidates)
    assert outcomes.count(exchange_pb2.RECORD_OUTCOME_DUPLICATE) == len(outcomes) - accepted
    store = Store(database_url)
    try:
        with store.unit_of_work() as uow:
            assert uow.records.count_envelopes() == 2 * len(candidates)
    finally:
        store.close()
    children = _pids_of_children(proc.pid)
    assert len(children) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "a serving process outlived the stop"


def _leader_view(metrics_port: int) -> tuple[float | None, bool]:
    """(spehub_metrics_leader, whether the store's gauges are exported) on one process."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    leader = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("spehub_metrics_leader ")
    ]
    return (leader[0] if leader else None), "# TYPE spehub_delivery_backlog gauge" in text


@pytest.mark.processes
@pytest.mark.postgres
def test_one_process_computes_and_exports_the_gauges_read_from_the_store(supervised):
    """The processes do not each count the pool and the corridors: the one holding the metrics
    lock does, and only it exports those gauges (a sum over processes counts each value once)."""
    _proc, _port, metrics, log = supervised
    deadline = time.monotonic() + 60
    while True:
        views = [_leader_view(metrics + i) for i in (0, 1)]
        if all(leader is not None for leader, _ in views):  # both asked for the lock once
            break
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.3)
    assert sorted(leader for leader, _ in views) == [0.0, 1.0]
    assert [exported for _, exported in views] == [leader == 1.0 for leader, _ in views]


@pytest.mark.processes
@pytest.mark.postgres
def test_a_process_that_dies_stops_the_others(supervised):
    proc, _port, _metrics, log = supervised
    children = _pids_of_children(proc.pid)
    assert len(children) == 2
    os.kill(children[1], signal.SIGKILL)
    assert proc.wait(60) == 1
    assert not Path(f"/proc/{children[0]}").exists() or _zombie(children[0])
    assert "ended unasked" in log.read_text()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _signing(test_pki) -> tuple[bytes, str]:
    folder = test_pki.participant_dir(SN)
    return (folder / "signing-key.pem").read_bytes(), (folder / "key-id").read_text().strip()

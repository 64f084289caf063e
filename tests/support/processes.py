"""Real hub processes for tests: ``spe-hub serve`` started with its settings in the environment."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pki_env(pki: Path) -> dict[str, str]:
    """The settings naming a hub's material in a PKI of the ``spe-hub dev-pki`` layout."""
    return {
        "SPEHUB_TLS_CERT": str(pki / "hub" / "server.pem"),
        "SPEHUB_TLS_KEY": str(pki / "hub" / "server-key.pem"),
        "SPEHUB_CLIENT_CA": str(pki / "ca.pem"),
        "SPEHUB_REGISTRY": str(pki / "registry.json"),
        "SPEHUB_TOKEN_KEYS": str(pki / "hub" / "token-keys"),
        "SPEHUB_MASTER_KEY_FILE": str(pki / "hub" / "master.key"),
    }


def hub_env(
    pki: Path, database_url: str, keystore_url: str, trust_domain: str, **extra: str
) -> dict[str, str]:
    """The environment of a hub process on the test PKI."""
    env = {
        **os.environ,
        "SPEHUB_DATABASE_URL": database_url,
        "SPEHUB_KEYSTORE_URL": keystore_url,
        **pki_env(pki),
        "SPEHUB_TRUST_DOMAIN": trust_domain,
        "SPEHUB_GRACE_SECONDS": "2",
        "SPEHUB_RATE_LIMIT_PER_SECOND": "10000",
        "SPEHUB_RATE_LIMIT_BURST": "10000",
        **extra,
    }
    env.pop("SPEHUB_ENV", None)
    return env


@dataclass
class HubProcess:
    """One ``spe-hub serve`` process."""

    proc: subprocess.Popen[str]
    port: int
    log: Path

    @classmethod
    def start(cls, env: dict[str, str], log: Path, cwd: Path, nofile: int | None = None) -> HubProcess:
        """Start ``spe-hub serve`` and wait until it serves; ``nofile``: its descriptor limit
        (RLIMIT_NOFILE), lowered before it starts."""
        port = free_port()
        env = {
            **env,
            "SPEHUB_LISTEN": f"127.0.0.1:{port}",
            "SPEHUB_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        }
        handle = log.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.entrypoints.cli", "serve"],
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=None
            if nofile is None
            else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
        hub = cls(proc, port, log)
        hub.wait_serving(Path(env["SPEHUB_CLIENT_CA"]).parent)
        return hub

    def wait_serving(self, pki: Path, timeout: float = 60.0) -> None:
        folder = pki / "participants" / "sn-anpej"
        creds = grpc.ssl_channel_credentials(
            (pki / "ca.pem").read_bytes(),
            (folder / "client-key.pem").read_bytes(),
            (folder / "client.pem").read_bytes(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited: {self.log.read_text()[-2000:]}")
            with grpc.secure_channel(f"127.0.0.1:{self.port}", creds) as channel:
                try:
                    status = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"hub not serving after {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class TcpProxy:
    """A loopback TCP proxy that a test can cut (the database "goes away") and restore."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        import threading

        self.target = (target_host, target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = int(self.server.getsockname()[1])
        self.open = True
        self.flowing = threading.Event()  # cleared: bytes are held, as on a stalled network
        self.flowing.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # an idle connection stays open, as a real route keeps it
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.open = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.open = True

    def pause(self) -> None:
        """Stall every connection, new ones too: accepted, but nothing goes through either way (no
        reset, no close: what a dead route or a frozen database host looks like)."""
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.flowing.set()
        self.cut()
        self.server.close()


@contextlib.contextmanager
def database_behind_proxy(prefix: str) -> Iterator[tuple[TcpProxy, str]]:
    """A fresh schema of the test PostgreSQL (SPEHUB_TEST_DATABASE_URL), reached through a TcpProxy
    the test can cut: yields (proxy, database URL through it). Skips the test without PostgreSQL."""
    import pytest
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get("SPEHUB_TEST_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        pytest.skip("needs a database over the network (set SPEHUB_TEST_DATABASE_URL to PostgreSQL)")
    url = make_url(base)
    proxy = TcpProxy(url.port or 5432, url.host or "127.0.0.1")
    schema = f"{prefix}_{os.urandom(6).hex()}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    through = url.set(port=proxy.port).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield proxy, through.render_as_string(hide_password=False)
    finally:
        proxy.close()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

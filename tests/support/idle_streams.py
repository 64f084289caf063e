"""A hostile crowd of idle streams, for the availability test and bench/idle_streams.py.

Run as a process of its own (``python -m tests.support.idle_streams PORT PKI_DIR STREAMS``): it opens
STREAMS Subscribe and health Watch streams (rounded up), spread over every participant of the
PKI, plus ``--revoked-streams`` from each revoked certificate in the folder's ``revoked/``, on the
asyncio client so that it needs no thread per stream. Each stream counts as open once the hub
has sent its initial metadata (the interceptor sends it once the stream holds its slot). It
prints one JSON line ``{"open": N, "refused": {code: count}}``, then holds every stream until
its standard input closes or ``--hold`` seconds pass, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spehub.v1 import delivery_pb2, delivery_pb2_grpc, directory_pb2, directory_pb2_grpc

from hub import pki
from hub.client import authorized_channel


def _credentials(ca: bytes, cert: bytes, key: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


OPTIONS = (("grpc.ssl_target_name_override", "localhost"),)


async def _token(channel: grpc.aio.Channel) -> str | None:
    try:
        response = await directory_pb2_grpc.DirectoryServiceStub(channel).IssueToken(
            directory_pb2.IssueTokenRequest(scopes=["subscribe"]), timeout=10
        )
    except grpc.aio.AioRpcError:
        return None  # an operator has no subscribe scope; a revoked certificate has no token at all
    return str(response.access_token)


async def _hold(call: grpc.aio.Call, opened: asyncio.Queue[str]) -> None:
    try:
        await call.initial_metadata()
        # A refused call also ends with (trailing-only) metadata: wait a moment for its status.
        done = await asyncio.wait_for(asyncio.shield(call.code()), 0.5)
        await opened.put(done.name)
    except TimeoutError:
        await opened.put("OPEN")
    except grpc.aio.AioRpcError as exc:
        await opened.put(exc.code().name)


async def crowd(port: int, pki: Path, streams: int, revoked_streams: int, hold: float) -> None:
    ca = (pki / "ca.pem").read_bytes()
    folders = sorted((pki / "participants").iterdir())
    per_participant = -(-streams // len(folders))
    identities = [
        (per_participant, (f / "client.pem").read_bytes(), (f / "client-key.pem").read_bytes())
        for f in folders
    ]
    for cert in sorted((pki / "revoked").glob("*-cert.pem")):
        key = cert.with_name(cert.name.replace("-cert.pem", "-key.pem"))
        identities.append((revoked_streams, cert.read_bytes(), key.read_bytes()))
    channels = []
    calls: list[grpc.aio.Call] = []
    opened: asyncio.Queue[str] = asyncio.Queue()
    for count, cert, key in identities:
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", _credentials(ca, cert, key), options=OPTIONS)
        channels.append(channel)
        token = await _token(channel)
        health = health_pb2_grpc.HealthStub(channel)
        delivery = delivery_pb2_grpc.DeliveryServiceStub(channel)
        for i in range(count):
            if token is not None and i % 2 == 0:
                call = delivery.Subscribe(
                    delivery_pb2.SubscribeRequest(), metadata=(("authorization", f"Bearer {token}"),)
                )
            else:
                call = health.Watch(health_pb2.HealthCheckRequest())
            calls.append(call)
    holders = [asyncio.ensure_future(_hold(call, opened)) for call in calls]
    await asyncio.wait_for(asyncio.gather(*holders), timeout=120)
    outcomes = Counter(opened.get_nowait() for _ in range(opened.qsize()))
    print(json.dumps({"open": outcomes.pop("OPEN", 0), "refused": dict(outcomes)}), flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=hold)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()


def pki_with_revoked_certificate(root: Path, trust_domain: str) -> Path:
    """A development PKI in ``root`` whose registry revokes a second certificate of sn-anpej,
    kept in ``root/revoked/`` for the crowd to use."""
    pki.generate_dev_pki(root, trust_domain=trust_domain)
    ca_cert = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((root / "ca-key.pem").read_bytes(), None)
    ca = pki.Issued((root / "ca.pem").read_bytes(), (root / "ca-key.pem").read_bytes(), ca_cert, ca_key)  # type: ignore[arg-type]
    revoked = pki.issue(ca, "sn-anpej", uris=(f"spiffe://{trust_domain}/participant/sn-anpej",))
    (root / "revoked").mkdir()
    (root / "revoked" / "sn-anpej-cert.pem").write_bytes(revoked.cert_pem)
    (root / "revoked" / "sn-anpej-key.pem").write_bytes(revoked.key_pem)
    registry = json.loads((root / "registry.json").read_text())
    registry["revoked_certificates"] = [hashlib.sha256(revoked.cert.public_bytes(Encoding.DER)).hexdigest()]
    (root / "registry.json").write_text(json.dumps(registry))
    return root


@contextmanager
def started_crowd(port: int, root: Path, streams: int, revoked_streams: int) -> Iterator[dict[str, Any]]:
    """The crowd in a process of its own; yields its summary while it holds its streams."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.idle_streams",
            str(port),
            str(root),
            str(streams),
            "--revoked-streams",
            str(revoked_streams),
            "--hold",
            "240",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the crowd of idle streams exited before opening its streams")
        yield json.loads(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def unary_latencies(port: int, root: Path, rounds: int) -> tuple[list[float], Counter[str]]:
    """Every participant's cheap unary calls (ListParticipants), ``rounds`` each, in turn:
    the seconds each successful call took, and the status codes of the ones that failed."""
    ca = (root / "ca.pem").read_bytes()
    stubs = []
    channels = []
    for folder in sorted((root / "participants").iterdir()):
        channel = authorized_channel(
            f"127.0.0.1:{port}",
            ca,
            (folder / "client.pem").read_bytes(),
            (folder / "client-key.pem").read_bytes(),
            ("directory",),
        )
        channels.append(channel)
        stubs.append(directory_pb2_grpc.DirectoryServiceStub(channel))
    took: list[float] = []
    failed: Counter[str] = Counter()
    try:
        for stub in stubs:  # the first call of each fetches its token: not measured
            stub.ListParticipants(directory_pb2.ListParticipantsRequest(), timeout=30)
        for _ in range(rounds):
            for stub in stubs:
                started = time.perf_counter()
                try:
                    stub.ListParticipants(directory_pb2.ListParticipantsRequest(), timeout=10)
                except grpc.RpcError as exc:
                    failed[exc.code().name] += 1
                    continue
                took.append(time.perf_counter() - started)
    finally:
        for channel in channels:
            channel.close()
    return took, failed


def thread_count(pid: int) -> int:
    """The threads of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no thread count for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("pki", type=Path)
    parser.add_argument("streams", type=int)
    parser.add_argument(
        "--revoked-streams", type=int, default=20, help="streams tried per revoked certificate"
    )
    parser.add_argument("--hold", type=float, default=300.0, help="seconds to hold the streams at most")
    args = parser.parse_args()
    asyncio.run(crowd(args.port, args.pki, args.streams, args.revoked_streams, args.hold))


if __name__ == "__main__":
    main()

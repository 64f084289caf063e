"""Shared fixtures: a PKI minted per test session, a real hub on port 0 over real mTLS, per test.

The database is a fresh SQLite file per test, or, when SPEHUB_TEST_DATABASE_URL
names a PostgreSQL database, a fresh schema in it per test (dropped afterwards).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters.codelists import CodeLists
from hub import pki
from hub.bootstrap import Hub
from tests.support.hubs import (
    PARTICIPANTS,
    SAMPLES,
    TRUST_DOMAIN,
    FakeClock,
    Participant,
    TestPki,
    make_participant,
    started_hub,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A clone without ../shared (as a user gets the project) skips the tests that read its samples."""
    if SAMPLES.is_dir():
        return
    skip = pytest.mark.skip(
        reason="needs ../shared/samples (the publishers' real-format samples, present in CI): absent here"
    )
    for item in items:
        if "needs_samples" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """Minted for this session: never the developer's certs/dev."""
    root = tmp_path_factory.mktemp("pki")
    pki.generate_dev_pki(root, PARTICIPANTS, trust_domain=TRUST_DOMAIN)
    registry = json.loads((root / "registry.json").read_text())
    for p in registry["participants"]:
        if p["id"] == "tn-aneti":
            p["status"] = "suspended"
    (root / "registry.json").write_text(json.dumps(registry))
    # Reload the CA so tests can issue odd certificates from it.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_key = serialization.load_pem_private_key((root / "ca-key.pem").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    ca = pki.Issued((root / "ca.pem").read_bytes(), (root / "ca-key.pem").read_bytes(), ca_cert, ca_key)  # type: ignore[arg-type]
    return TestPki(root, ca)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("SPEHUB_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'hub.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hub(test_pki: TestPki, database_url: str, clock: FakeClock) -> Iterator[Hub]:
    with started_hub(test_pki, database_url, clock) as running:
        yield running


@pytest.fixture
def connect(hub: Hub, test_pki: TestPki, clock: FakeClock) -> Iterator[object]:
    made: list[Participant] = []

    def _connect(pid: str, scopes: tuple[str, ...] = ()) -> Participant:
        made.append(make_participant(hub.port, test_pki, pid, clock, scopes))
        return made[-1]

    yield _connect
    for p in made:
        p.channel.close()


@pytest.fixture(scope="session")
def codelists() -> CodeLists:
    """The code lists shipped with the hub (built from the publishers' files; tests/test_adapters.py
    checks they are what the importer builds from ../shared/samples/crosswalks)."""
    return CodeLists.shipped()

"""Dependencies point inward: only hub.api (and the entry points) import grpc, only hub.store imports SQLAlchemy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


# package -> import prefixes it must not use
RULES = {
    "hub.domain": (
        "grpc",
        "grpc_health",
        "grpc_reflection",
        "sqlalchemy",
        "prometheus_client",
        "hub.api",
        "hub.store",
        "hub.services",
        "hub.bootstrap",
    ),
    "hub.store": ("grpc", "hub.api", "hub.services", "hub.bootstrap"),
    "hub.services": ("grpc", "sqlalchemy", "hub.api", "hub.bootstrap"),
    "hub.api": ("sqlalchemy", "hub.store", "hub.bootstrap"),
    # The gateway and the client are what an SPE runs: they talk to the hub over the wire only.
    "hub.gateway": ("sqlalchemy", "hub.store", "hub.services", "hub.api", "hub.bootstrap", "hub.entrypoints"),
    "hub.client": ("sqlalchemy", "hub.store", "hub.services", "hub.api", "hub.bootstrap", "hub.entrypoints"),
    # Adapters depend only on the schema (and their own code lists).
    "adapters": ("grpc", "sqlalchemy", "hub", "prometheus_client"),
}


@pytest.mark.parametrize("package", sorted(RULES))
def test_layer_imports(package):
    files = _modules(package)
    assert files, f"no modules found for {package}"
    offenders = []
    for path in files:
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in RULES[package]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_rule_catches_an_offender(tmp_path):
    """The check itself works: a module importing grpc is found."""
    bad = tmp_path / "m.py"
    bad.write_text("import grpc\nfrom sqlalchemy import select\n")
    assert _imports(bad) == {"grpc", "sqlalchemy"}


def test_tests_share_helpers_through_tests_support_only():
    """A test module imports what it shares from tests/support/, never from another test module
    or from conftest.py (whose fixtures pytest provides by name)."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for name in _imports(path):
            if name == "tests.conftest" or name.startswith("tests.test_"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    for path in sorted((ROOT / "tests" / "support").glob("*.py")):
        for name in _imports(path):
            if name.startswith("tests.") and not name.startswith("tests.support"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_one_composition_root_reads_the_settings_and_builds_the_store():
    """Only hub.bootstrap (and `serve` in the CLI, which hands the settings to it) reads SPEHUB_*
    into Settings or builds a Store: every other command goes through bootstrap.open_store."""
    offenders = []
    for path in sorted((ROOT / "hub" / "entrypoints").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "Store(" in text or ("Settings.from_env" in text and path.name != "cli.py"):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_services_reach_the_database_only_through_repositories():
    """A service calls uow.<repository>.<method>; it never takes the connection and writes SQL."""
    offenders = []
    for path in _modules("hub.services"):
        text = path.read_text(encoding="utf-8")
        for needle in (
            "uow.conn",
            ".conn.execute",
            "exec_driver_sql",
            ".engine.connect",
            "self.store.engine",
        ):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)} uses {needle}")
    assert not offenders, "\n".join(offenders)

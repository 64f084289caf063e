"""Access tokens and scopes on the real wire: every refusal asserts the code and that nothing was stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import logging
import threading
import uuid
from datetime import timedelta

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from spehub.v1 import (
    directory_pb2,
    directory_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
    pool_pb2,
    pool_pb2_grpc,
)

from hub import pki
from hub.api.scopes import METHOD_SCOPES
from hub.client import secure_channel
from hub.domain.records import PayloadKind
from hub.domain.tokens import thumbprint
from tests.support.hubs import TRUST_DOMAIN, raw_channel
from tests.support.records import demo_profile

SN = "sn-anpej"
ISSUER = f"spiffe://{TRUST_DOMAIN}/hub"
KID = "dev-hub-token-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hub_key(test_pki) -> ec.EllipticCurvePrivateKey:
    return serialization.load_pem_private_key(
        (test_pki.root / "hub" / "token-keys" / f"{KID}.pem").read_bytes(), None
    )


def _thumb(test_pki, pid=SN) -> str:
    cert = x509.load_pem_x509_certificate((test_pki.participant_dir(pid) / "client.pem").read_bytes())
    return thumbprint(cert.public_bytes(serialization.Encoding.DER))


def _claims(test_pki, clock, pid=SN, **overrides):
    now = int(clock().timestamp())
    claims = {
        "iss": ISSUER,
        "aud": "spehub",
        "sub": pid,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "publish search subscribe consent directory",
        "cnf": {"x5t#S256": _thumb(test_pki, pid)},
    }
    for key, value in overrides.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _token(test_pki, clock, headers=None, key=None, alg="ES256", **overrides) -> str:
    header = {"kid": KID, "typ": "at+jwt", **(headers or {})}
    return jwt.encode(
        _claims(test_pki, clock, **overrides), key or _hub_key(test_pki), algorithm=alg, headers=header
    )


def _unsigned(test_pki, clock) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": KID}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(test_pki, clock)).encode())}."


def _hs256_with_public_key(test_pki, clock) -> str:
    """The classic confusion attack: HMAC keyed with the hub's public key bytes."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": KID}
    public = (
        _hub_key(test_pki)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(test_pki, clock)).encode())}"
    )
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _signed_raw(test_pki, header: bytes, payload: bytes) -> str:
    """A token of any header and payload bytes, with a valid ES256 signature of the hub's key: only
    what the hub reads after the signature can refuse it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    signing_input = f"{_b64(header)}.{_b64(payload)}"
    r, s = decode_dss_signature(_hub_key(test_pki).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


_HEADER = json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": KID}).encode()

# Tokens signed with the hub's own key that still do not parse or validate (issue 25, item 8): an
# exp of 10**12 once overflowed datetime and the call ended INTERNAL, with a traceback in the log.
MALFORMED_TOKENS = {
    "exp-10**12": (lambda p, c: _token(p, c, exp=10**12), "exp is out of range"),
    "exp-10**30": (lambda p, c: _token(p, c, exp=10**30), "exp is out of range"),
    "exp-a-string": (lambda p, c: _token(p, c, exp=str(int(c().timestamp()) + 300)), "exp must be a whole"),
    "exp-true": (lambda p, c: _token(p, c, exp=True), "exp must be a whole"),
    "nbf-huge": (lambda p, c: _token(p, c, nbf=10**20), "nbf is out of range"),
    "iat-negative": (lambda p, c: _token(p, c, iat=-(10**12)), "iat is out of range"),
    "payload-not-json": (lambda p, c: _signed_raw(p, _HEADER, b"\xff{not json"), "access token refused"),
    "payload-a-list": (lambda p, c: _signed_raw(p, _HEADER, b"[1, 2]"), "access token refused"),
    "payload-nested-deep": (
        lambda p, c: _signed_raw(p, _HEADER, b'{"exp": ' + b"[" * 1100 + b"]" * 1100 + b"}"),
        "access token refused",
    ),
    "header-huge": (
        lambda p, c: _token(p, c, headers={"pad": "x" * 4000}),
        "longer than 4096 characters",
    ),
    "header-nested-deep": (
        lambda p, c: _signed_raw(
            p,
            b'{"alg": "ES256", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}",
            json.dumps(_claims(p, c)).encode(),
        ),
        "not a JWT",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_TOKENS))
def test_a_malformed_token_is_unauthenticated_with_no_traceback(
    hub, raw, test_pki, clock, connect, caplog, case
):
    make, message = MALFORMED_TOKENS[case]
    with caplog.at_level(logging.INFO, logger="spehub"):
        err = _publish_with(hub, raw, make(test_pki, clock), connect)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert message in err.details()
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.fixture
def raw(hub, test_pki):
    """An mTLS channel of sn-anpej with no token plugin: the test sets the metadata."""
    channel = raw_channel(hub.port, test_pki, SN)
    yield channel
    channel.close()


def _publish_with(hub, channel, token: str | None, connect) -> grpc.RpcError:
    """Publish one valid signed profile with ``token``; return the error and check nothing was stored."""
    sn = connect(SN)
    env = sn.seal(demo_profile(SN, "p-auth", "c-1", 1, sn.clock()), PayloadKind.CANDIDATE_PROFILE)
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        list(
            stub.Publish(iter([exchange_pb2.PublishRequest(envelopes=[env])]), metadata=metadata, timeout=10)
        )
    with hub.store.unit_of_work() as uow:
        assert uow.records.count_envelopes() == 0
    return err.value


BAD_TOKENS = {
    "alg-none": (lambda p, c: _unsigned(p, c), "algorithm"),
    "hs256-with-public-key": (lambda p, c: _hs256_with_public_key(p, c), "algorithm"),
    "rs256-outside-allow-list": (
        lambda p, c: _token(
            p, c, key=rsa.generate_private_key(public_exponent=65537, key_size=2048), alg="RS256"
        ),
        "algorithm",
    ),
    "signed-by-another-key": (
        lambda p, c: _token(p, c, key=ec.generate_private_key(ec.SECP256R1())),
        "signature",
    ),
    "missing-exp": (lambda p, c: _token(p, c, exp=None), "'exp'"),
    "missing-jti": (lambda p, c: _token(p, c, jti=None), "'jti'"),
    "missing-iat": (lambda p, c: _token(p, c, iat=None), "'iat'"),
    "missing-aud": (lambda p, c: _token(p, c, aud=None), "'aud'"),
    "wrong-aud": (lambda p, c: _token(p, c, aud="someone-else"), "audience"),
    "wrong-iss": (lambda p, c: _token(p, c, iss="spiffe://evil/hub"), "issued"),
    "expired-beyond-leeway": (
        lambda p, c: _token(p, c, exp=int((c() - timedelta(seconds=31)).timestamp())),
        "expired",
    ),
    "iat-in-the-future": (
        lambda p, c: _token(p, c, iat=int((c() + timedelta(seconds=120)).timestamp())),
        "not valid yet",
    ),
    "nbf-in-the-future": (
        lambda p, c: _token(p, c, nbf=int((c() + timedelta(seconds=120)).timestamp())),
        "not valid yet",
    ),
    "wrong-typ": (lambda p, c: _token(p, c, headers={"typ": "JWT"}), "typ"),
    "unknown-kid": (lambda p, c: _token(p, c, headers={"kid": "hub-token-99"}), "kid"),
    "jwk-header": (lambda p, c: _token(p, c, headers={"jwk": {"kty": "EC"}}), "jwk"),
    "x5u-header": (lambda p, c: _token(p, c, headers={"x5u": "http://127.0.0.1:9/cert"}), "x5u"),
    "other-certificate": (
        lambda p, c: _token(p, c, cnf={"x5t#S256": _b64(b"x" * 32)}),
        "another client certificate",
    ),
    "no-binding": (lambda p, c: _token(p, c, cnf=None), "another client certificate"),
    "issued-to-another-participant": (
        lambda p, c: _token(p, c, sub="ml-anpe"),
        "another participant",
    ),
    "not-a-jwt": (lambda p, c: "hello", "not a JWT"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_is_unauthenticated_and_nothing_is_stored(hub, raw, test_pki, clock, connect, case):
    make, message = BAD_TOKENS[case]
    err = _publish_with(hub, raw, make(test_pki, clock), connect)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
    assert message in err.details()


def test_missing_token_is_unauthenticated(hub, raw, connect):
    err = _publish_with(hub, raw, None, connect)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "IssueToken" in err.details()


def test_expired_just_inside_the_leeway_is_accepted_and_just_outside_refused(
    hub, raw, test_pki, clock, connect
):
    """The token check allows LEEWAY_SECONDS (30) of clock difference, and not one second more."""
    stub = pool_pb2_grpc.PoolServiceStub(raw)
    inside = _token(test_pki, clock, exp=int((clock() - timedelta(seconds=20)).timestamp()))
    answer = stub.SearchOffers(
        pool_pb2.SearchOffersRequest(), metadata=[("authorization", f"Bearer {inside}")], timeout=10
    )
    assert isinstance(answer, pool_pb2.SearchOffersResponse)
    outside = _token(test_pki, clock, exp=int((clock() - timedelta(seconds=31)).timestamp()))
    with pytest.raises(grpc.RpcError) as refused:
        stub.SearchOffers(
            pool_pb2.SearchOffersRequest(), metadata=[("authorization", f"Bearer {outside}")], timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_jku_header_is_refused_and_nothing_is_fetched(hub, raw, test_pki, clock, connect):
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = _token(test_pki, clock, headers={"jku": f"http://127.0.0.1:{server.server_port}/jwks.json"})
        err = _publish_with(hub, raw, token, connect)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "jku" in err.details()
    finally:
        server.shutdown()
    assert hits == []


def test_token_presented_over_another_certificate_of_the_same_participant(hub, test_pki, connect):
    """A token obtained over certificate A and replayed over certificate B (same participant) is refused."""
    first = raw_channel(hub.port, test_pki, SN)
    token = (
        directory_pb2_grpc.DirectoryServiceStub(first)
        .IssueToken(directory_pb2.IssueTokenRequest(), timeout=10)
        .access_token
    )
    other = pki.issue(test_pki.ca, SN, uris=(f"spiffe://{TRUST_DOMAIN}/participant/{SN}",))
    second = secure_channel(f"127.0.0.1:{hub.port}", test_pki.ca_pem, other.cert_pem, other.key_pem)
    err = _publish_with(hub, second, token, connect)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "another client certificate" in err.details()
    first.close()
    second.close()


def test_missing_scope_is_permission_denied(hub, connect):
    sn = connect(SN, scopes=("directory",))
    with pytest.raises(grpc.RpcError) as err:
        sn.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'search'" in err.value.details()


def test_scopes_beyond_the_kind_are_not_issued(hub, test_pki):
    channel = raw_channel(hub.port, test_pki, "op-hub")
    with pytest.raises(grpc.RpcError) as err:
        directory_pb2_grpc.DirectoryServiceStub(channel).IssueToken(
            directory_pb2.IssueTokenRequest(scopes=["search"]), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not granted" in err.value.details()
    channel.close()


def test_operators_administer_but_do_not_read_records(hub, connect):
    operator = connect("op-hub")
    for call in (
        lambda: operator.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10),
        lambda: operator.exchange.GetRecord(
            exchange_pb2.GetRecordRequest(origin_participant_id=SN, payload_type=1, record_id="p-1"),
            timeout=10,
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listing = directory_pb2_grpc.DirectoryServiceStub(operator.channel).ListParticipants(
        directory_pb2.ListParticipantsRequest(), timeout=10
    )
    assert SN in {p.id for p in listing.participants}


def test_admin_token_is_single_use(hub, test_pki):
    channel = raw_channel(hub.port, test_pki, "op-hub")
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    token = stub.IssueToken(directory_pb2.IssueTokenRequest(scopes=["admin"]), timeout=10).access_token
    metadata = [("authorization", f"Bearer {token}")]
    request = directory_pb2.SetParticipantStatusRequest(
        participant_id="ml-anpe", status=directory_pb2.PARTICIPANT_STATUS_SUSPENDED
    )
    assert stub.SetParticipantStatus(request, metadata=metadata, timeout=10).participant.status == (
        directory_pb2.PARTICIPANT_STATUS_SUSPENDED
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.SetParticipantStatus(request, metadata=metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in err.value.details()
    channel.close()


def test_every_spehub_method_has_a_scope_rule():
    """Every method of every service the server registers is in the scope table, and nothing else is."""
    from google.protobuf import descriptor_pool

    from hub.api.server import SERVICE_NAMES

    methods = {
        f"/{name}/{method.name}"
        for name in SERVICE_NAMES
        for method in descriptor_pool.Default().FindServiceByName(name).methods
    }
    assert methods == set(METHOD_SCOPES)

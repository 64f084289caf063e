"""Who is calling, and may they make this call.

1. The TLS layer has verified the client certificate chain (require_client_auth).
2. The certificate's only URI SAN, ``spiffe://<trust domain>/participant/<id>``,
   must name a registered participant (a second URI, or any URI outside the
   hub's trust domain, is refused); the certificate must not be revoked; the
   participant must be active.
3. Every spehub call but IssueToken carries ``authorization: Bearer <token>``:
   a hub access token bound to this very certificate, issued to this
   participant, with the scope the method needs (hub.api.scopes). Admin
   calls' tokens are single-use.

Health checking and reflection are not spehub methods: health Check answers
any certificate step 1 accepted; health Watch and reflection need step 2 but
no token (hub.api.interceptor).

Step 1 fails at the handshake (the client sees UNAVAILABLE); steps 2 and 3 give
UNAUTHENTICATED, or PERMISSION_DENIED for a suspended participant or a missing
scope. Messages say what to fix and carry no secret.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hub.api.scopes import METHOD_SCOPES, SINGLE_USE_METHODS
from hub.clock import Clock
from hub.domain.directory import Participant
from hub.domain.tokens import TokenService, thumbprint
from hub.errors import AuthenticationError, PermissionDeniedError
from hub.services.directory import DirectoryProvider


@dataclass(frozen=True)
class PeerCertificate:
    uris: tuple[str, ...]
    sha256_hex: str
    thumbprint: str


@dataclass(frozen=True)
class Caller:
    participant: Participant
    scopes: frozenset[str]
    certificate: PeerCertificate


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("spehub_caller", default=None)


def current_call() -> Caller:
    """The authorised caller of the RPC being served.

    Raises AuthenticationError outside an authorised handler (fail closed).
    """
    caller = _CALLER.get()
    if caller is None:
        raise AuthenticationError("no authenticated participant for this call")
    return caller


def current_caller() -> Participant:
    """The participant of the RPC being served (see current_call)."""
    return current_call().participant


def set_caller(caller: Caller) -> contextvars.Token[Caller | None]:
    return _CALLER.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _CALLER.reset(token)


@lru_cache(maxsize=1024)
def _peer_certificate(pem: bytes) -> PeerCertificate:
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(Encoding.DER)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = tuple(ext.value.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = ()
    return PeerCertificate(uris, hashlib.sha256(der).hexdigest(), thumbprint(der))


def _certificate(context: grpc.ServicerContext) -> PeerCertificate:
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        raise AuthenticationError("a client certificate is required (mTLS)")
    return _peer_certificate(pems[0])


def _bearer(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
            raise AuthenticationError("authorization metadata must be 'Bearer <access token>'")
    raise AuthenticationError(
        "an access token is required: call DirectoryService.IssueToken, then send 'authorization: Bearer <token>'"
    )


class Authenticator:
    """Maps a call to an authorised caller, or refuses it."""

    def __init__(
        self,
        directories: DirectoryProvider,
        tokens: TokenService,
        clock: Clock,
        consume_token_id: Callable[[str, datetime], bool],
    ) -> None:
        self.directories = directories
        self.tokens = tokens
        self.clock = clock
        self.consume_token_id = consume_token_id

    def certificate_key(self, context: grpc.ServicerContext) -> str:
        """The key a call without a participant (the open health check) is rate-limited by:
        its client certificate's fingerprint."""
        return "certificate:" + _certificate(context).sha256_hex

    def identify_caller(self, context: grpc.ServicerContext) -> Caller:
        """A registered, active participant with a certificate that is not revoked, without a token
        (health Watch, reflection). Raises AuthenticationError or PermissionDeniedError."""
        participant, cert = self.identify(context)
        return Caller(participant, frozenset(), cert)

    def identify(self, context: grpc.ServicerContext) -> tuple[Participant, PeerCertificate]:
        """The participant behind the connection's client certificate."""
        cert = _certificate(context)
        directory = self.directories.current()
        # A certificate of this hub's CA names one participant of this trust domain and nothing else
        # (an X.509-SVID has exactly one URI SAN): a URI of another trust domain beside ours could make
        # another system that trusts the same CA read it as one of its own identities.
        foreign = [u for u in cert.uris if not u.startswith(f"spiffe://{directory.trust_domain}/")]
        if foreign:
            raise AuthenticationError(
                f"the client certificate carries {len(foreign)} URI SAN(s) outside the hub's trust domain "
                f"{directory.trust_domain!r}; it must carry only {directory.uri_prefix}<participant id>"
            )
        if len(cert.uris) != 1 or not cert.uris[0].startswith(directory.uri_prefix):
            raise AuthenticationError(
                f"the client certificate must carry exactly one URI SAN {directory.uri_prefix}<participant id> "
                f"(it carries {len(cert.uris)}); ask the hub operator for a certificate"
            )
        participant = directory.participant_for_uri(cert.uris[0])
        if participant is None:
            pid = cert.uris[0][len(directory.uri_prefix) :]
            raise AuthenticationError(f"participant {pid!r} is not registered in the hub's directory")
        if cert.sha256_hex in directory.revoked_certificates:
            raise AuthenticationError(
                f"this client certificate of {participant.id!r} was revoked; use the replacement certificate"
            )
        if not participant.active:
            raise PermissionDeniedError(
                f"participant {participant.id!r} is suspended; contact the hub operator"
            )
        return participant, cert

    def authorize(self, context: grpc.ServicerContext, method: str) -> Caller:
        """Identify the caller and check its token and scope for ``method``."""
        participant, cert = self.identify(context)
        if method not in METHOD_SCOPES:
            raise PermissionDeniedError(f"{method} is not open to participants")
        scope = METHOD_SCOPES[method]
        if scope is None:
            return Caller(participant, frozenset(), cert)
        claims = self.tokens.verify(_bearer(context), cert.thumbprint, self.clock())
        if claims.participant_id != participant.id:
            raise AuthenticationError("the access token was issued to another participant")
        if scope not in claims.scopes:
            raise PermissionDeniedError(
                f"this call needs the {scope!r} scope; the token has {sorted(claims.scopes)}"
            )
        if method in SINGLE_USE_METHODS and not self.consume_token_id(claims.jti, claims.expires_at):
            raise AuthenticationError(
                "this access token was already used for an admin call; ask for a new one"
            )
        return Caller(participant, claims.scopes, cert)

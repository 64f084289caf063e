"""Access tokens: short-lived JWTs (RFC 9068 profile) bound to the client certificate (RFC 8705).

The hub issues them to a participant authenticated by mTLS and checks them on
every call. Verification fails closed, each failure with its own reason:

- header: ``alg`` must be in the allow-list (ES256 only), ``typ`` must be
  ``at+jwt``, ``kid`` must name a hub key; ``jku``, ``x5u``, ``jwk``, ``x5c``
  and ``crit`` are refused outright (nothing is ever fetched);
- claims: ``iss``, ``aud``, ``sub``, ``exp``, ``iat``, ``jti`` are required;
  times are whole seconds from the epoch to MAX_TIME_SECONDS, checked
  against the injected clock with a leeway of LEEWAY_SECONDS (``exp``
  past, ``iat`` or ``nbf`` in the future);
- binding: ``cnf.x5t#S256`` must equal the SHA-256 thumbprint of the client
  certificate of the connection presenting the token.

A token that cannot be read at all (not JSON, nested past the parser's limit) is refused like
any other: every failure is an AuthenticationError, never an internal error.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from hub.domain import signing
from hub.domain.directory import Participant, ParticipantKind
from hub.errors import AuthenticationError, ConfigError, PermissionDeniedError, SignatureError

ALGORITHMS = ["ES256"]
TOKEN_TYPE = "at+jwt"  # noqa: S105 (a JWT "typ", not a secret)
AUDIENCE = "spehub"
LEEWAY_SECONDS = 30
TTL_SECONDS = 300
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
TIME_CLAIMS = ("exp", "iat", "nbf")
# The times a token may carry: from the epoch to 9999-12-30, the last day a datetime holds in any
# time zone. A larger exp (10**12) once overflowed datetime and failed the call with INTERNAL.
MAX_TIME_SECONDS = 253_402_214_400
# The hub's tokens are about 700 characters; a much longer one was not issued here and is not parsed.
MAX_TOKEN_CHARS = 4096

SCOPES_BY_KIND: dict[ParticipantKind, frozenset[str]] = {
    ParticipantKind.ORIGIN_SPE: frozenset({"publish", "search", "subscribe", "consent", "directory"}),
    ParticipantKind.DESTINATION_AGENCY: frozenset({"publish", "search", "subscribe", "directory"}),
    # Operators administer the hub; they get no scope that reads records.
    ParticipantKind.OPERATOR: frozenset({"directory", "admin"}),
}


def thumbprint(cert_der: bytes) -> str:
    """RFC 8705 x5t#S256: base64url (no padding) of the SHA-256 of the DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha256(cert_der).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class HubKey:
    """One of the hub's own keys (tokens, directory exports)."""

    key_id: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


class HubKeyRing:
    """The hub's signing keys: the newest signs, all verify (rotation with ``kid``)."""

    def __init__(self, keys: Iterable[HubKey]) -> None:
        self.keys = {k.key_id: k for k in keys}
        if not self.keys:
            raise ConfigError("no hub token key: put at least one <kid>.pem in SPEHUB_TOKEN_KEYS")
        self.signing = self.keys[max(self.keys)]

    @classmethod
    def load(cls, folder: Path) -> HubKeyRing:
        """Every ``<kid>.pem`` in ``folder``; the key id is the file name, the lexically last signs."""
        if not folder.is_dir():
            raise ConfigError(f"SPEHUB_TOKEN_KEYS {folder} is not a folder of <kid>.pem files")
        keys = []
        for path in sorted(folder.glob("*.pem")):
            try:
                keys.append(HubKey(path.stem, signing.load_private_key(path.read_bytes(), str(path))))
            except SignatureError as exc:
                raise ConfigError(str(exc)) from exc
        return cls(keys)


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    participant_id: str
    scopes: frozenset[str]
    jti: str
    expires_at: datetime
    thumbprint: str


# What a crafted token can make the JWT library raise besides its own errors (a JSON nesting
# deeper than the parser's recursion limit, a number it cannot convert): refused, never INTERNAL.
_UNREADABLE = (ValueError, TypeError, OverflowError, RecursionError)


class TokenService:
    """Issues and verifies the hub's access tokens."""

    def __init__(self, keys: HubKeyRing, issuer: str, ttl_seconds: int = TTL_SECONDS) -> None:
        self.keys = keys
        self.issuer = issuer
        self.ttl = timedelta(seconds=ttl_seconds)
        self.leeway = timedelta(seconds=LEEWAY_SECONDS)

    def issue(
        self, participant: Participant, wanted: Iterable[str], cert_thumbprint: str, now: datetime
    ) -> tuple[str, datetime, frozenset[str]]:
        """A token for ``participant``. Returns (token, expiry, scopes).

        Raises PermissionDeniedError if a scope asked for is not allowed to
        the participant's kind.
        """
        allowed = SCOPES_BY_KIND[participant.kind]
        asked = frozenset(wanted) or allowed
        refused = asked - allowed
        if refused:
            raise PermissionDeniedError(
                f"scopes {sorted(refused)} are not granted to a {participant.kind.value} participant; "
                f"allowed: {sorted(allowed)}"
            )
        expires = now + self.ttl
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": participant.id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
            "scope": " ".join(sorted(asked)),
            "cnf": {"x5t#S256": cert_thumbprint},
        }
        key = self.keys.signing
        token = jwt.encode(
            claims, key.private_key, algorithm="ES256", headers={"kid": key.key_id, "typ": TOKEN_TYPE}
        )
        return token, expires, asked

    def verify(self, token: str, cert_thumbprint: str, now: datetime) -> Claims:
        """Check a presented token. Raises AuthenticationError saying what is wrong."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationError(
                f"the access token is longer than {MAX_TOKEN_CHARS} characters; this hub issues none that long"
            )
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, *_UNREADABLE):
            raise AuthenticationError("the access token is not a JWT") from None
        present = [h for h in FORBIDDEN_HEADERS if h in header]
        if present:
            raise AuthenticationError(
                f"access token header {present} is not accepted (keys are never fetched)"
            )
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError(
                f"access token algorithm {header.get('alg')!r} is not allowed; use {ALGORITHMS}"
            )
        if header.get("typ") != TOKEN_TYPE:
            raise AuthenticationError(f"access token typ must be {TOKEN_TYPE!r}")
        key = self.keys.keys.get(str(header.get("kid")))
        if key is None:
            raise AuthenticationError("access token kid is not a key of this hub; ask for a new token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=ALGORITHMS,
                audience=AUDIENCE,
                issuer=self.issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    # Times are checked below against the hub's clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"access token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(f"access token audience must be {AUDIENCE!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("access token was not issued by this hub") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("access token signature does not verify") from None
        except (jwt.InvalidTokenError, *_UNREADABLE) as exc:
            raise AuthenticationError(f"access token refused ({type(exc).__name__})") from None
        stamp = now.timestamp()
        leeway = self.leeway.total_seconds()
        for name in TIME_CLAIMS:
            value = claims.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                raise AuthenticationError(f"access token {name} must be a whole number of seconds")
            if not 0 <= value <= MAX_TIME_SECONDS:
                raise AuthenticationError(
                    f"access token {name} is out of range (0 to {MAX_TIME_SECONDS} seconds since 1970)"
                )
        if claims["exp"] + leeway <= stamp:
            raise AuthenticationError("access token expired; ask for a new one")
        if claims["iat"] - leeway > stamp or claims.get("nbf", 0) - leeway > stamp:
            raise AuthenticationError("access token is not valid yet (iat/nbf in the future)")
        bound = (claims.get("cnf") or {}).get("x5t#S256") if isinstance(claims.get("cnf"), dict) else None
        if bound != cert_thumbprint:
            raise AuthenticationError("access token is bound to another client certificate")
        scope = claims.get("scope", "")
        return Claims(
            participant_id=str(claims["sub"]),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(claims["exp"], now.tzinfo),
            thumbprint=cert_thumbprint,
        )

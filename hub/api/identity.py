"""Who is calling: the participant named by the URI SAN of the verified client certificate.

The TLS layer has already verified the certificate chain against the
participants' CA (require_client_auth). Here the certificate's URI SAN
``spiffe://<trust domain>/participant/<id>`` must name exactly one registered,
active participant; a certificate with only a CN is refused.
"""

from __future__ import annotations

import contextvars
from functools import lru_cache

import grpc
from cryptography import x509

from hub.domain.directory import Directory, Participant
from hub.errors import AuthenticationError

_CALLER: contextvars.ContextVar[Participant | None] = contextvars.ContextVar("spehub_caller", default=None)


def current_caller() -> Participant:
    """The authenticated participant of the RPC being served.

    Raises AuthenticationError if called outside an authenticated handler
    (fail closed: a handler that was not wrapped cannot see a caller).
    """
    caller = _CALLER.get()
    if caller is None:
        raise AuthenticationError("no authenticated participant for this call")
    return caller


@lru_cache(maxsize=1024)
def _uri_sans(pem: bytes) -> tuple[str, ...]:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


class Authenticator:
    """Maps a call's TLS peer to a participant of the directory."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def identify(self, context: grpc.ServicerContext) -> Participant:
        """The calling participant. Raises AuthenticationError saying what is wrong with the certificate."""
        auth = context.auth_context()
        pems = auth.get("x509_pem_cert")
        if not pems:
            raise AuthenticationError("a client certificate is required (mTLS)")
        ours = [u for u in _uri_sans(pems[0]) if u.startswith(self.directory.uri_prefix)]
        if len(ours) != 1:
            raise AuthenticationError(
                "the client certificate must carry exactly one URI SAN "
                f"{self.directory.uri_prefix}<participant id>; ask the hub operator for a certificate"
            )
        participant = self.directory.participant_for_uri(ours[0])
        if participant is None:
            pid = ours[0][len(self.directory.uri_prefix) :]
            raise AuthenticationError(f"participant {pid!r} is not registered in the hub's directory")
        if not participant.active:
            raise AuthenticationError(
                f"participant {participant.id!r} is suspended; contact the hub operator"
            )
        return participant


def set_caller(participant: Participant) -> contextvars.Token[Participant | None]:
    return _CALLER.set(participant)


def reset_caller(token: contextvars.Token[Participant | None]) -> None:
    _CALLER.reset(token)

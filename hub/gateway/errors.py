"""The gateway's errors, in the hub's error hierarchy."""

from __future__ import annotations

from hub.errors import HubError


class GatewayError(HubError):
    """Something the gateway cannot do, said so a person can act on it: a review that does not
    exist, an alias file of another kind, a directory export whose signature does not verify."""

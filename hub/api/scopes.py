"""Which scope each RPC needs. A spehub method missing from this table is refused (fail closed)."""

from __future__ import annotations

# None: mTLS identity only (the call that obtains a token).
METHOD_SCOPES: dict[str, str | None] = {
    "/spehub.v1.DirectoryService/IssueToken": None,
    "/spehub.v1.DirectoryService/GetParticipant": "directory",
    "/spehub.v1.DirectoryService/ListParticipants": "directory",
    "/spehub.v1.DirectoryService/ExportDirectory": "directory",
    "/spehub.v1.DirectoryService/SetParticipantStatus": "admin",
    "/spehub.v1.DirectoryService/RevokeSigningKey": "admin",
    "/spehub.v1.DirectoryService/RevokeCertificate": "admin",
    "/spehub.v1.ExchangeService/Publish": "publish",
    "/spehub.v1.ExchangeService/GetRecord": "search",
    "/spehub.v1.ExchangeService/WithdrawRecord": "publish",
    "/spehub.v1.PoolService/SearchProfiles": "search",
    "/spehub.v1.PoolService/SearchOffers": "search",
    "/spehub.v1.PoolService/MatchCandidates": "search",
    "/spehub.v1.PoolService/MatchOffers": "search",
    "/spehub.v1.MobilityService/GetCycle": "search",
    "/spehub.v1.MobilityService/ListCycles": "search",
    "/spehub.v1.DeliveryService/Subscribe": "subscribe",
    "/spehub.v1.DeliveryService/Acknowledge": "subscribe",
    "/spehub.v1.AuditService/SubjectAccessReport": "consent",
}

# Acts whose token is good for one call only: a replayed token id is refused.
SINGLE_USE_METHODS = frozenset(
    {
        "/spehub.v1.DirectoryService/SetParticipantStatus",
        "/spehub.v1.DirectoryService/RevokeSigningKey",
        "/spehub.v1.DirectoryService/RevokeCertificate",
    }
)

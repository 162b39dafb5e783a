"""Who an HTTPS client is: the agency its client certificate names, as NATS maps a certificate
to its user (`verify_and_map`: the e-mail SAN `<agency id>@<country>.nrm-hub`,
services/runtime/permissions.py user_name). The TLS handshake has already checked the
certificate against the hub's CA; this only reads the name, and admits only agencies of this
hub's registry (not its services, operators or peers)."""

from __future__ import annotations

from typing import Any

from services.agencies.registry import AgencyRegistry
from services.runtime.permissions import user_name


def certificate_emails(peer_certificate: dict[str, Any] | None) -> list[str]:
    """The e-mail SANs of a certificate as `ssl.SSLSocket.getpeercert()` gives it."""
    if not peer_certificate:
        return []
    return [
        str(value) for kind, value in peer_certificate.get("subjectAltName", ()) if kind == "email"
    ]


def agency_of(peer_certificate: dict[str, Any] | None, registry: AgencyRegistry) -> str | None:
    """The agency id the certificate names, or None: no agency of this hub, or more than one
    name (a certificate must name exactly one user, as NATS requires)."""
    emails = certificate_emails(peer_certificate)
    if len(emails) != 1:
        return None
    agency_id, at, domain = emails[0].partition("@")
    if not at or registry.get(agency_id) is None:
        return None
    if user_name(agency_id, registry.country) != emails[0] or not domain:
        return None
    return agency_id

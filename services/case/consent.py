"""Consent in force and what it covers (confidentiality SOP).

The latest `consent.recorded` of a case is in force until withdrawn or expired. Custody
(releases), the referral service (cross-border transfers, shared fields) and statistics
(public tables) each ask the same questions of it.

A child cannot consent alone to the release of their personal data: for a child only a
guardian's consent, or a basis that is not consent (vital interests, a legal obligation),
is in force. Assistance (referrals) never depends on consent, a child's neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from enum import StrEnum

from contracts.events import ConsentRecorded
from contracts.vocabulary import DataPurpose, LegalBasis, PersonalField
from services.agencies.registry import Agency
from services.case.case import Case


class ConsentGap(StrEnum):
    """Why no consent is in force. The values are those of `AccessRefusal` and
    `TransferRefusal`, so each service names the gap in its own vocabulary."""

    NO_CONSENT = "no_consent"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_EXPIRED = "consent_expired"
    GUARDIAN_CONSENT_REQUIRED = "guardian_consent_required"


# The legal bases on which a child's personal data may be released.
CHILD_LEGAL_BASES = frozenset(
    {LegalBasis.GUARDIAN_CONSENT, LegalBasis.VITAL_INTERESTS, LegalBasis.LEGAL_OBLIGATION}
)


def basis_valid_for(is_child: bool, basis: LegalBasis) -> bool:
    """An adult's own informed consent, or any basis; for a child, not their own consent."""
    return not is_child or basis in CHILD_LEGAL_BASES


def unexpired(expires_at: dt.datetime | None, at: dt.datetime) -> bool:
    """A consent without an end date never expires; one ends at its `expires_at`."""
    return expires_at is None or expires_at > at


def consent_in_force(case: Case, now: dt.datetime) -> ConsentRecorded | ConsentGap:
    """The consent in force at `now`, or the first reason there is none."""
    consent = case.consent
    if consent is None:
        return ConsentGap.NO_CONSENT
    if case.consent_withdrawn:
        return ConsentGap.CONSENT_WITHDRAWN
    if not unexpired(consent.expires_at, now):
        return ConsentGap.CONSENT_EXPIRED
    if not basis_valid_for(case.record.is_child, consent.legal_basis):
        return ConsentGap.GUARDIAN_CONSENT_REQUIRED
    return consent


def covers_purpose(consent: ConsentRecorded, purpose: DataPurpose) -> bool:
    return purpose in consent.purposes


def names_agency(consent: ConsentRecorded, agency: Agency) -> bool:
    """The consent names the agency, by its id or by its kind."""
    return agency.id in consent.recipients or agency.kind in consent.recipient_kinds


def names_country(consent: ConsentRecorded, country: str) -> bool:
    """The consent allows sending to this country (ISO code, as the registry spells it)."""
    return country in consent.recipient_countries


def not_withheld(
    fields: Iterable[PersonalField], withheld: Collection[PersonalField]
) -> tuple[PersonalField, ...]:
    """The fields the person did not withhold, in the order given: no basis for sharing,
    not even a referral, ever gives a withheld field."""
    return tuple(f for f in fields if f not in withheld)

"""identifier service: opens and answers `screening.submit`, seals the personal data field by
field under the case key, keeps the blind index, records consent and erasure of its cases,
and their ownership, transfers, closure and reopening; decides presumed victims' cases and
reviews of non-identifications (services/identifier/presumed.py, review.py); records criminal
proceedings linked to its cases (services/identifier/proceedings.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import services.identifier.domain as domain
import services.identifier.followups as followups
import services.identifier.presumed as presumed
import services.identifier.proceedings as proceedings
import services.identifier.review as review
from contracts.commands import (
    AcceptCaseTransfer,
    CloseCase,
    DecideScreening,
    DeclineCaseTransfer,
    EraseCase,
    RecordConsent,
    ReopenCase,
    RequestCaseTransfer,
    ScreeningInterview,
    SubmitScreening,
    WithdrawConsent,
)
from contracts.events import Event, LikelyDuplicateFound
from contracts.public_key_sealing import key_id, public_key_b64, read_private_key
from contracts.replies import CommandAccepted
from contracts.sealed import seal
from contracts.subjects import INTAKE_KEY_SUBJECT
from services.agencies.registry import Agency
from services.case.case import Case, fold_case
from services.case.ids import case_id_for_screening, consent_id_for_command
from services.case.plan_reader import read_case_plan
from services.case.referrals import ACTIVE
from services.identifier.blind_index import BlindIndex, blind_index
from services.identifier.intake import open_interview
from services.runtime.case_keys import CaseKeys, KeyCustodyError, read_key_ring, read_secret
from services.runtime.command_ledger import fingerprint, first_use
from services.runtime.eventstore import History
from services.runtime.messaging import ServiceHost
from services.runtime.topology import BLIND_INDEX_BUCKET, CASE_KEYS_BUCKET
from services.runtime.writer import Outcome

SERVICE = "identifier"


@dataclass(frozen=True)
class Admitted:
    """A screening as the identifier takes it: from an agency that may identify, with its
    personal data opened (in memory only, for this command)."""

    command: SubmitScreening
    interview: ScreeningInterview
    agency: Agency


CaseRule = Callable[[Case | None, Any, Agency | None], list[Event]]
CaseCommandHandler = Callable[[Any], Awaitable[tuple[str, Outcome]]]


def register(host: ServiceHost) -> None:
    runtime = host.runtime
    settings = runtime.settings
    ring_file = settings.key_encryption_key_file
    read_key_ring(ring_file)  # fail at start, naming the file, rather than on first use
    try:
        intake_key = read_private_key(settings.intake_private_key_file)
    except ValueError as exc:
        raise KeyCustodyError(f"NRM_INTAKE_KEY_FILE: intake key: {exc}") from None
    index_secret = read_secret(
        settings.blind_index_secret_file, "NRM_BLIND_INDEX_KEY_FILE: blind-index key"
    )
    keys: list[CaseKeys] = []
    indexes: list[BlindIndex] = []

    async def case_keys() -> CaseKeys:
        if not keys:
            keys.append(CaseKeys(await runtime.bucket(CASE_KEYS_BUCKET), ring_file))
        return keys[0]

    async def index() -> BlindIndex:
        if not indexes:
            indexes.append(BlindIndex(await runtime.bucket(BLIND_INDEX_BUCKET)))
        return indexes[0]

    def admit(command: SubmitScreening) -> Admitted:
        """Who may identify, then the personal data opened and validated: once, before the
        ledger and the handler both use it (that refusal is not hidden behind the sealing's)."""
        agency = domain.check_may_identify(
            runtime.registry.get(command.agency_id), command.agency_id
        )
        return Admitted(command, open_interview(command, intake_key), agency)

    def screening_meaning(admitted: Admitted) -> str:
        """The ledger's fingerprint of a screening: a retry re-seals the personal data (new
        ciphertext), so its clear content counts instead, keyed like the blind index so the
        ledger holds nothing a dictionary could open without the hub's key."""
        clear = admitted.interview.personal_data.model_dump_json(exclude_none=True)
        keyed = hmac.new(index_secret, b"nrm-command/1|" + clear.encode(), hashlib.sha256)
        facts = fingerprint(admitted.command, exclude=frozenset({"personal_data"}))
        return f"{facts}.{keyed.hexdigest()}"

    async def submit_screening(admitted: Admitted) -> CommandAccepted:
        command, interview, agency = admitted.command, admitted.interview, admitted.agency
        case_id = str(case_id_for_screening(command.command_id))
        assert runtime.store is not None, "not connected"
        # A first use of the command id has no record yet: read only for a retry.
        recorded = (
            ()
            if first_use()
            else (await runtime.store.load("case", case_id)).caused_by(str(command.command_id))
        )
        if recorded:  # a retry: answered from the record, the blind index is not asked again
            return CommandAccepted(
                command_id=command.command_id,
                aggregate_id=case_id,
                event_ids=tuple(UUID(e.envelope.id) for e in recorded),
                duplicate=True,
                likely_duplicate_of=tuple(
                    earlier
                    for e in recorded
                    if isinstance(e.event, LikelyDuplicateFound)
                    for earlier in e.event.earlier_case_ids
                ),
            )

        async def indexed() -> list[str]:
            dob = interview.personal_data.date_of_birth
            if dob is None:
                return []
            digest = blind_index(index_secret, interview.personal_data.full_name, dob)
            return await (await index()).add(digest, case_id)

        # The case's key and the blind index are independent: asked side by side.
        (version, key), earlier = await asyncio.gather(
            (await case_keys()).key_for(case_id), indexed()
        )
        sealed = {
            name: seal(key, case_id, name.value, version, value)
            for name, value in interview.personal_data.present_fields().items()
        }
        consent_id = consent_id_for_command(command.command_id)

        due = runtime.clock() + dt.timedelta(days=settings.identification_decision_days)

        def decide(_history: History) -> list[Event]:
            return domain.decide_intake(
                interview, agency, case_id, consent_id, sealed, earlier, decision_due=due
            )

        outcome = await runtime.writer(SERVICE).execute(
            "case",
            case_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=decide,
        )
        return CommandAccepted(
            command_id=command.command_id,
            aggregate_id=case_id,
            event_ids=outcome.event_ids,
            duplicate=outcome.duplicate,
            likely_duplicate_of=tuple(sorted(UUID(c) for c in earlier if c != case_id)),
        )

    def on_case(rule: CaseRule) -> CaseCommandHandler:
        async def handle(command: Any) -> tuple[str, Outcome]:
            case_id = str(command.case_id)
            agency = runtime.registry.get(command.agency_id)
            outcome = await runtime.writer(SERVICE).execute(
                "case",
                case_id,
                cause=str(command.command_id),
                correlation=str(command.command_id),
                decide=lambda history: rule(
                    fold_case([e.event for e in history.events]), command, agency
                ),
            )
            return case_id, outcome

        return handle

    host.command(SubmitScreening, submit_screening, screening_meaning, admit)
    host.command(
        RecordConsent,
        on_case(
            lambda case, cmd, agency: domain.decide_record_consent(
                case, cmd, agency, consent_id_for_command(cmd.command_id)
            )
        ),
    )
    host.command(WithdrawConsent, on_case(domain.decide_withdraw_consent))
    host.command(EraseCase, on_case(domain.decide_erase))

    # --- case lifecycle: ownership, transfer, closure
    async def active_referrals(case_id: str) -> list[UUID]:
        """The case's referrals still requested, waitlisted or accepted: every attempt of
        every need, found through the case's need events (services/case/plan_reader.py).
        Read before the append: a referral requested in between is not seen."""
        assert runtime.store is not None, "not connected"
        referrals = (await read_case_plan(runtime.store, case_id)).referrals()
        return sorted(r for r, referral in referrals.items() if referral.status in ACTIVE)

    async def close_case(command: CloseCase) -> tuple[str, Outcome]:
        active = await active_referrals(str(command.case_id))
        return await on_case(
            lambda case, cmd, agency: domain.decide_close(case, cmd, agency, active)
        )(command)

    host.command(
        RequestCaseTransfer,
        on_case(
            lambda case, cmd, agency: domain.decide_request_transfer(
                case, cmd, agency, runtime.registry.get(cmd.to_agency)
            )
        ),
    )
    host.command(AcceptCaseTransfer, on_case(domain.decide_accept_transfer))
    host.command(DeclineCaseTransfer, on_case(domain.decide_decline_transfer))
    host.command(CloseCase, close_case)
    host.command(ReopenCase, on_case(domain.decide_reopen))
    followups.register(host)  # followup.schedule / followup.record and their projection
    # Presumed victims decided later; review of a non-identification.
    host.command(DecideScreening, on_case(presumed.decide_screening_outcome))
    review.register(host, SERVICE)
    proceedings.register(host)  # criminal proceedings linked to cases (proceeding.*)
    intake_public = intake_key.public_key()
    host.answer(
        INTAKE_KEY_SUBJECT,
        lambda: {"kid": key_id(intake_public), "public_key": public_key_b64(intake_public)},
    )
    host.needs_bucket(CASE_KEYS_BUCKET)
    host.needs_bucket(BLIND_INDEX_BUCKET)

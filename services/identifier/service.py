"""identifier service: answers `screening.submit`, seals the personal data, records the case."""

from __future__ import annotations

from contracts.commands import SubmitScreening
from contracts.events import Event
from contracts.sealed import seal
from services.identifier.domain import check_may_identify, decide_screening
from services.runtime.case_keys import CaseKeys, read_key_encryption_key
from services.runtime.eventstore import History
from services.runtime.messaging import ServiceHost
from services.runtime.topology import CASE_KEYS_BUCKET
from services.runtime.writer import Outcome, derived_id

SERVICE = "identifier"


def register(host: ServiceHost) -> None:
    runtime = host.runtime
    kek = read_key_encryption_key(runtime.settings.key_encryption_key_file)
    keys: list[CaseKeys] = []

    async def case_keys() -> CaseKeys:
        if not keys:
            keys.append(CaseKeys(await runtime.jetstream.key_value(CASE_KEYS_BUCKET), kek))
        return keys[0]

    async def submit_screening(command: SubmitScreening) -> tuple[str, Outcome]:
        agency = check_may_identify(runtime.registry.get(command.agency_id), command.agency_id)
        case_id = str(derived_id("case", str(command.command_id)))
        version, key = await (await case_keys()).key_for(case_id)
        sealed = {
            name: seal(key, case_id, name.value, version, value)
            for name, value in command.personal_data.present_fields().items()
        }

        def decide(_history: History) -> list[Event]:
            return [decide_screening(command, agency, case_id, sealed)]

        outcome = await runtime.writer(SERVICE).execute(
            "case",
            case_id,
            cause=str(command.command_id),
            correlation=str(command.command_id),
            decide=decide,
        )
        return case_id, outcome

    host.command(SubmitScreening, submit_screening)
    host.needs_bucket(CASE_KEYS_BUCKET)

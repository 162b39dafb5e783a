"""Opening a submitted screening: the personal data arrives sealed to the hub's intake key and
is validated only once opened. Every problem is a rejection naming the field, never a value."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from contracts.commands import ScreeningInterview, SubmitScreening
from contracts.public_key_sealing import PublicKeySealingError, intake_info, open_sealed_to
from contracts.replies import CommandRejection, ErrorCode, reject
from services.runtime.command_body import BodyError, read_json
from services.runtime.messaging import validation_errors


def open_interview(command: SubmitScreening, intake_key: X25519PrivateKey) -> ScreeningInterview:
    info = intake_info(str(command.command_id), command.agency_id)
    try:
        clear = open_sealed_to(intake_key, info, command.personal_data)
        # The same limits as a command body: the sealed content is just as untrusted.
        personal_data: Any = read_json(clear)
    except PublicKeySealingError:
        raise reject(
            "personal_data",
            ErrorCode.INVALID_FIELD,
            "does not open with the hub's intake key for this command_id and agency_id",
        ) from None
    except BodyError as exc:
        raise reject(
            "personal_data", ErrorCode.INVALID_FIELD, f"sealed content: {exc.reason}"
        ) from None
    facts = command.model_dump(exclude={"personal_data"})
    try:
        return ScreeningInterview.model_validate({**facts, "personal_data": personal_data})
    except ValidationError as exc:
        raise CommandRejection(*validation_errors(exc)) from None

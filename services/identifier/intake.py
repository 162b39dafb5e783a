"""Opening a submitted screening: the personal data arrives sealed to the hub's intake key and
is validated only once opened. Every problem is a rejection naming the field, never a value."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from contracts.commands import ScreeningInterview, SubmitScreening
from contracts.public_key_sealing import PublicKeySealingError, intake_info, open_sealed_to
from contracts.replies import CommandRejection, ErrorCode, reject
from services.runtime.messaging import validation_errors


def open_interview(command: SubmitScreening, intake_key: X25519PrivateKey) -> ScreeningInterview:
    info = intake_info(str(command.command_id), command.agency_id)
    try:
        clear = open_sealed_to(intake_key, info, command.personal_data)
        personal_data: Any = json.loads(clear)
    except PublicKeySealingError:
        raise reject(
            "personal_data",
            ErrorCode.INVALID_FIELD,
            "does not open with the hub's intake key for this command_id and agency_id",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise reject(
            "personal_data", ErrorCode.INVALID_FIELD, "sealed content is not JSON"
        ) from None
    facts = command.model_dump(exclude={"personal_data"})
    try:
        return ScreeningInterview.model_validate({**facts, "personal_data": personal_data})
    except ValidationError as exc:
        raise CommandRejection(*validation_errors(exc)) from None

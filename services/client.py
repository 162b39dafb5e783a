"""The client an agency system uses (and the demo and tests): send commands, get the replies,
seal personal data to the hub, follow referrals, and open the fields it is entitled to with
its own private key. Personal data leaves this client only sealed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError

from contracts.commands import (
    Command,
    RegisterAgencyKey,
    RequestAccess,
    ScreeningInterview,
    SubmitScreening,
)
from contracts.events import Event, ReferralRequested
from contracts.public_key_sealing import (
    intake_info,
    open_sealed_to,
    public_key_b64,
    public_key_from_b64,
    release_info,
    seal_to,
)
from contracts.replies import AccessReleased
from contracts.sealed import b64decode, open_with_field_key
from contracts.subjects import INTAKE_KEY_SUBJECT, agency_command_subject
from contracts.vocabulary import DataPurpose, PersonalField
from services.runtime.stored_messages import decoded_event, read_feed


class AccessRefusedError(Exception):
    """The hub refused a request for personal data; `reason` is the refusal code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


ConnectAs = Callable[[str], Awaitable[Client]]


class HubClient:
    """Sends each command on its agency's own subject (`nrm.cmd.<command>.<agency id>`): on a
    secured hub the connection must be that agency's. `connect_as` (optional) opens one
    connection per agency, for a client that acts for several (the demo, tests); without it
    every command goes over `nc`."""

    def __init__(
        self, nc: Client, timeout: float = 5.0, *, connect_as: ConnectAs | None = None
    ) -> None:
        self._nc = nc
        self._timeout = timeout
        self._intake_key: X25519PublicKey | None = None
        self._connect_as = connect_as
        self._agencies: dict[str, Client] = {}

    @property
    def connection(self) -> Client:
        return self._nc

    async def connection_for(self, agency_id: str) -> Client:
        """The connection commands of `agency_id` go over."""
        if self._connect_as is None:
            return self._nc
        if agency_id not in self._agencies:
            self._agencies[agency_id] = await self._connect_as(agency_id)
        return self._agencies[agency_id]

    async def close(self) -> None:
        """Close the per-agency connections this client opened (never `nc`)."""
        agencies, self._agencies = self._agencies, {}
        for nc in agencies.values():
            await nc.close()

    async def send_raw(self, subject: str, body: bytes, nc: Client | None = None) -> dict[str, Any]:
        """The reply envelope (a CloudEvent) as a dict."""
        reply = await (nc or self._nc).request(subject, body, timeout=self._timeout)
        envelope: dict[str, Any] = json.loads(reply.data)
        return envelope

    async def intake_key(self, nc: Client | None = None) -> X25519PublicKey:
        """The hub's intake public key (asked once; identifying agencies may ask)."""
        if self._intake_key is None:
            reply = await (nc or self._nc).request(INTAKE_KEY_SUBJECT, b"", timeout=self._timeout)
            self._intake_key = public_key_from_b64(json.loads(reply.data)["public_key"])
        return self._intake_key

    async def sealed(self, interview: ScreeningInterview) -> SubmitScreening:
        """The interview as it may travel: personal data sealed to the hub's intake key."""
        info = intake_info(str(interview.command_id), interview.agency_id)
        clear = interview.personal_data.model_dump_json(exclude_none=True).encode()
        facts = interview.model_dump(exclude={"personal_data"})
        nc = await self.connection_for(interview.agency_id)
        personal_data = seal_to(await self.intake_key(nc), info, clear)
        return SubmitScreening.model_validate({**facts, "personal_data": personal_data})

    async def send(self, command: Command) -> dict[str, Any]:
        """The reply's data: {"status": "accepted", ...} or {"status": "rejected", ...}. A
        `ScreeningInterview` is sealed first."""
        if isinstance(command, ScreeningInterview):
            command = await self.sealed(command)
        envelope = await self.send_raw(
            agency_command_subject(type(command), command.agency_id),
            command.model_dump_json().encode(),
            await self.connection_for(command.agency_id),
        )
        data: dict[str, Any] = envelope["data"]
        return data

    async def register_agency_key(
        self, registrar: str, agency_id: str, public_key: X25519PublicKey
    ) -> dict[str, Any]:
        """As the coordinating body `registrar`: record `agency_id`'s public key."""
        command = RegisterAgencyKey(
            command_id=uuid.uuid4(),
            agency_id=registrar,
            for_agency=agency_id,
            public_key=public_key_b64(public_key),
        )
        return await self.send(command)

    async def send_until_answered(self, command: Command, within: float = 30.0) -> dict[str, Any]:
        """Send, and resend the same command (same command_id, so it is applied at most once)
        while the hub is unreachable, restarting or answers `unavailable`, until it gives a
        definite answer or `within` passes."""
        deadline = time.monotonic() + within
        delay = 0.1
        while True:
            try:
                reply = await self.send(command)
                if not _unavailable(reply) or time.monotonic() + delay > deadline:
                    return reply
            except (NoRespondersError, TimeoutError, ConnectionClosedError):
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class AgencyClient(HubClient):
    """An agency with its own X25519 key pair (`nrm agency keygen`)."""

    def __init__(
        self, nc: Client, agency_id: str, private_key: X25519PrivateKey, timeout: float = 5.0
    ) -> None:
        super().__init__(nc, timeout)
        self.agency_id = agency_id
        self._private_key = private_key

    @property
    def public_key(self) -> X25519PublicKey:
        return self._private_key.public_key()

    async def feed(self) -> list[Event]:
        """Every event in this agency's own feed (NRM_FEEDS, the only part of the hub an
        agency may read: a consumer named after it, on its feed): referrals addressed to it,
        the referral events of the cases it identified, unmet needs it is told of. A feed
        message that is not an event is skipped (the reader's policy)."""
        found = []
        for message in await read_feed(self._nc, self.agency_id, self._timeout):
            stored = decoded_event(message)
            if stored is not None:
                found.append(stored.event)
        return found

    async def referrals(self) -> list[ReferralRequested]:
        """Every referral addressed to this agency as provider so far, from its feed (not
        those it made as the identifying agency, which its feed also has)."""
        return [
            e
            for e in await self.feed()
            if isinstance(e, ReferralRequested) and e.provider_id == self.agency_id
        ]

    async def open_fields(
        self,
        case_id: uuid.UUID,
        purpose: DataPurpose,
        fields: frozenset[PersonalField] = frozenset(),
    ) -> dict[PersonalField, str]:
        """Ask for the field keys, open them with this agency's private key, and open the
        case's sealed fields. Raises `AccessRefusedError` with the hub's reason."""
        request = RequestAccess(
            command_id=uuid.uuid4(),
            agency_id=self.agency_id,
            case_id=case_id,
            purpose=purpose,
            fields=fields,
        )
        reply = await self.send_until_answered(request)  # same request id: decided once
        if reply.get("status") == "denied":
            raise AccessRefusedError(reply["reason"])
        if reply.get("status") != "released":
            raise AccessRefusedError("; ".join(e["reason"] for e in reply["errors"]))
        released = AccessReleased.model_validate(reply)
        info = release_info(str(case_id), str(request.command_id), self.agency_id)
        keys = json.loads(open_sealed_to(self._private_key, info, released.sealed_field_keys))
        return {
            PersonalField(name): open_with_field_key(
                b64decode(encoded, name), str(case_id), name, released.sealed_fields[name]
            )
            for name, encoded in keys["field_keys"].items()
        }


def _unavailable(reply: dict[str, Any]) -> bool:
    errors = reply.get("errors") or []
    return reply.get("status") == "rejected" and all(e["code"] == "unavailable" for e in errors)

"""Reading what the hub wrote, straight from JetStream, for assertions."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from pydantic import ValidationError

from contracts.commands import Consent, CriteriaAnswers, PersonalData, ScreeningInterview
from contracts.envelope import Envelope
from contracts.subjects import AUDIT_STREAM, EVENTS_STREAM
from contracts.vocabulary import Act, FormOfExploitation, Means, Purpose, Region, Service, Sex

# Canary personal data: must never be found in clear anywhere the hub writes or logs.
CANARY_NAME = "Zarina Canarykyzy"
CANARY_PHONE = "+996 555 123 987"
CANARY_NARRATIVE = "canary-narrative-4f1e: held at the Dordoi bazaar warehouse"
CANARIES = (CANARY_NAME, CANARY_PHONE, CANARY_NARRATIVE, "Canarykyzy")


async def stream_messages(js: JetStreamContext, stream: str) -> list[RawStreamMsg]:
    info = await js.stream_info(stream)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        messages.append(await js.get_msg(stream, seq))
    return messages


async def audit_leaves(js: JetStreamContext) -> list[dict[str, Any]]:
    """The `data` of every audit leaf, in leaf order."""
    return [json.loads(m.data or b"")["data"] for m in await stream_messages(js, AUDIT_STREAM)]


async def audited_events(js: JetStreamContext) -> int:
    """How many leaves record an event (rejected commands have leaves too)."""
    return sum(1 for leaf in await audit_leaves(js) if leaf["source"]["stream"] == EVENTS_STREAM)


async def events(js: JetStreamContext) -> list[Envelope]:
    """Every well-formed event (poison messages planted by a test are left out)."""
    found = []
    for message in await stream_messages(js, EVENTS_STREAM):
        try:
            found.append(Envelope.from_bytes(message.data or b""))
        except ValidationError:
            continue
    return found


# What one case needing shelter and legal aid leads to, when nothing goes wrong.
SHELTER_AND_LEGAL_AID = Counter(
    {
        "victim.identified": 1,
        "consent.recorded": 1,
        "referral.requested": 2,
        "shelter.admitted": 1,
        "referral.accepted": 1,  # the shelter referral, on admission
    }
)


def outcomes_by_case(found: list[Envelope], cases: list[str]) -> dict[str, Counter[str]]:
    """How many events of each type every case has."""
    per_case: dict[str, Counter[str]] = {case: Counter() for case in cases}
    for e in found:
        if e.data.get("case_id") in per_case:
            per_case[e.data["case_id"]][e.type] += 1
    return per_case


async def wait_until(
    probe: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll an async probe until it returns something truthy; fail with what it last saw.
    A NATS error while probing (a cluster electing a leader) counts as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
        except (NatsError, TimeoutError) as exc:  # reading during a failover: look again
            last = exc
            await asyncio.sleep(interval)
            continue
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def cases_settled(
    js: JetStreamContext,
    cases: list[str],
    expected: Counter[str],
    what: str,
    timeout: float,
) -> list[str | None]:
    """Wait until every case has exactly the `expected` outcomes and every event its audit
    leaf (after `what`: a kill -9, a run across workers); fail naming the cases that differ.
    Then check no event was audited twice, and return the audit leaves' message ids."""

    async def settled() -> dict[str, Counter[str]]:
        all_events = await events(js)
        per_case = outcomes_by_case(all_events, cases)
        audited = await audited_events(js)
        done = all(c == expected for c in per_case.values()) and audited == len(all_events)
        return per_case if done else {}

    try:
        await wait_until(settled, timeout=timeout)
    except AssertionError:
        per_case = outcomes_by_case(await events(js), cases)
        wrong = {c: dict(v) for c, v in per_case.items() if v != expected}
        raise AssertionError(f"after {what}: cases not as expected: {wrong}") from None
    audit_ids = [
        m.headers.get("Nats-Msg-Id") if m.headers else None
        for m in await stream_messages(js, AUDIT_STREAM)
    ]
    assert len(audit_ids) == len(set(audit_ids)), "an event was audited twice"
    return audit_ids


def screening(
    agency_id: str = "kg-ngo-osh-crisis-centre",
    *,
    age: int = 34,
    sex: Sex = Sex.FEMALE,
    needs: frozenset[Service] = frozenset({Service.SHELTER, Service.LEGAL_AID}),
    means: frozenset[Means] = frozenset({Means.DECEPTION}),
    consent: Consent | None = None,
) -> ScreeningInterview:
    return ScreeningInterview(
        command_id=uuid.uuid4(),
        agency_id=agency_id,
        interviewed_on=dt.date(2026, 11, 20),
        region=Region.OSH_CITY,
        sex=sex,
        age=age,
        citizenship="KG",
        country_of_exploitation="KZ",
        criteria=CriteriaAnswers(
            acts=frozenset({Act.RECRUITMENT}),
            means=means,
            purposes=frozenset({Purpose.FORCED_LABOUR}),
        ),
        forms_of_exploitation=frozenset({FormOfExploitation.FORCED_LABOUR}),
        needs=needs,
        consent=consent or Consent(),
        personal_data=PersonalData(
            full_name=CANARY_NAME, phone=CANARY_PHONE, narrative=CANARY_NARRATIVE
        ),
    )


async def nrm_output(url: str, *args: str, cwd: Path) -> str:
    """`nrm <args> --nats-url URL` as a process, without blocking the hub running in this
    loop; it must succeed and print no canary (stdout or stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        "--nats-url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    raw_out, raw_err = await asyncio.wait_for(proc.communicate(), timeout=60)
    out, err = raw_out.decode(), raw_err.decode()
    assert proc.returncode == 0, err[-2000:]
    for canary in CANARIES:
        assert canary not in out and canary not in err
    return out

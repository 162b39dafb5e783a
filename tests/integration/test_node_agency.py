"""An agency written in JavaScript (tests/node/agency.mjs: the official NATS client and
@hpke/core), using only the published contract, against `nrm up` secured with nkeys: it
fetches the intake key, seals a screening per docs/SEALING.md, submits it on its own subject
and reads its feed. The hub accepts it and the personal data opens to what was sealed."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from contracts.public_key_sealing import generate_private_key
from contracts.vocabulary import DataPurpose, PersonalField
from services.agencies.registry import load_registry
from services.client import AgencyClient
from tests.integration.hub_reads import CANARIES, CANARY_NAME, CANARY_NARRATIVE, screening
from tests.integration.test_up_credentials import as_agency, connection, nrm_up
from tests.node_packages import json_lines, node_ready, run_node

pytestmark = pytest.mark.integration
CRISIS = "kg-ngo-osh-crisis-centre"


async def test_a_javascript_agency_seals_submits_and_reads_its_feed(tmp_path: Path) -> None:
    node_ready()  # npm ci before the hub starts, not inside its time
    data = tmp_path / "var"
    interview = screening(CRISIS)
    held = tmp_path / "screening.json"  # the agency's own record, personal data in clear
    held.write_text(interview.model_dump_json())
    with nrm_up(data) as (url, log):
        # The coordinating body registers the centre's key, so the test can open the case.
        private_key = generate_private_key()
        registrar = load_registry().coordinating_body
        async with connection(url, **as_agency(data, registrar)) as nc:
            registered = await AgencyClient(nc, registrar, private_key).register_agency_key(
                registrar, CRISIS, private_key.public_key()
            )
            assert registered["status"] == "accepted", registered

        done = run_node(
            "agency.mjs",
            str(held),
            env={
                "NATS_URL": url,
                "NRM_AGENCY": CRISIS,
                "NRM_SEED_FILE": str(data / "credentials" / f"{CRISIS}.nk"),
            },
        )
        output = done.stdout + done.stderr
        assert not any(canary in output for canary in CANARIES), "the agency printed personal data"
        assert done.returncode == 0, output
        [report] = json_lines(done.stdout)
        assert report["reply_type"] == "command.accepted"
        assert report["status"] == "accepted" and report["errors"] == []
        assert report["command_id"] == str(interview.command_id)
        # Its feed holds the referrals the hub made for the case it identified.
        case_id = report["case_id"]
        types = {event["type"] for event in report["feed"]}
        assert "referral.requested" in types, report["feed"]
        assert all(e["subject"].startswith(f"nrm.feed.{CRISIS}.") for e in report["feed"])

        # In the hub, the sealed personal data opens to what the agency held.
        async with connection(url, **as_agency(data, CRISIS)) as nc:
            centre = AgencyClient(nc, CRISIS, private_key)
            opened = await centre.open_fields(uuid.UUID(case_id), DataPurpose.ASSISTANCE)
        assert opened[PersonalField.FULL_NAME] == CANARY_NAME
        assert opened[PersonalField.NARRATIVE] == CANARY_NARRATIVE
        assert not any(canary in log.read_text() for canary in CANARIES)

"""The example requests in contracts/examples are what integrators copy first: each must be a
valid command for its subject, by the Python model and by the published JSON Schema alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import ValidationError

from contracts.commands import ALL_COMMANDS, Command, ScreeningInterview, SubmitScreening
from contracts.generate import INTERVIEW_SCHEMA, SCHEMA_DIR
from contracts.subjects import command_subject

EXAMPLES_DIR = Path(__file__).parents[2] / "contracts" / "examples"
# The screening example is the agency-side form: the client seals its personal data.
BY_SUBJECT: dict[str, type[Command]] = {
    **{command_subject(c): c for c in ALL_COMMANDS},
    command_subject(SubmitScreening): ScreeningInterview,
}


def schema_file_of(command: type[Command], schema_dir: Path) -> Path:
    if command is ScreeningInterview:
        return schema_dir / INTERVIEW_SCHEMA
    return schema_dir / f"command.{command.NAME}.v{command.VERSION}.json"


def problems(path: Path, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Everything wrong with one example file; empty when it is a valid command."""
    try:
        example: Any = json.loads(path.read_text("utf-8"))
    except ValueError as exc:
        return [f"{path.name}: not JSON ({exc})"]
    if not isinstance(example, dict) or set(example) != {"subject", "payload"}:
        return [f"{path.name}: must be an object with exactly the keys subject and payload"]
    command = BY_SUBJECT.get(example["subject"])
    if command is None:
        return [f"{path.name}: {example['subject']!r} is not a command subject"]
    found: list[str] = []
    try:
        command.model_validate(example["payload"])
    except ValidationError as exc:
        found.append(f"{path.name}: rejected by {command.__name__}: {exc}")
    schema_file = schema_file_of(command, schema_dir)
    validator = Draft202012Validator(
        json.loads(schema_file.read_text("utf-8")),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    found += [
        f"{path.name}: rejected by {schema_file.name} at {list(error.absolute_path)}: "
        f"{error.message}"
        for error in validator.iter_errors(example["payload"])
    ]
    return found


def uncovered(paths: list[Path]) -> set[str]:
    """Command subjects that no example in `paths` shows."""
    shown = set()
    for path in paths:
        example: Any = json.loads(path.read_text("utf-8"))
        if isinstance(example, dict):
            shown.add(example.get("subject"))
    return set(BY_SUBJECT) - shown


def test_every_example_is_a_valid_command_for_its_subject() -> None:
    paths = sorted(EXAMPLES_DIR.glob("*.json"))
    assert paths, f"no examples in {EXAMPLES_DIR}"
    assert [p for path in paths for p in problems(path)] == []


def test_there_is_an_example_for_every_command() -> None:
    missing = uncovered(sorted(EXAMPLES_DIR.glob("*.json")))
    assert missing == set(), f"no example for {sorted(missing)}"


def test_the_check_finds_what_is_wrong(tmp_path: Path) -> None:
    """The checks above prove nothing unless they can fail."""
    good = {
        "command_id": "0b6f3c8e-3d1a-4c55-9a57-2f0d7d2b1a01",
        "agency_id": "kg-ngo-osh-crisis-centre",
        "referral_id": "5a3d4f2e-8c1b-4e6a-9f0d-1c2b3a4d5e6f",
    }
    cases: dict[str, Any] = {
        "good": {"subject": "nrm.cmd.referral.accept", "payload": good},
        "extra_key": {"subject": "nrm.cmd.referral.accept", "payload": good, "note": "x"},
        "unknown_subject": {"subject": "nrm.cmd.referral.approve", "payload": good},
        "bad_payload": {
            "subject": "nrm.cmd.referral.accept",
            "payload": {**good, "referral_id": "not-a-uuid"},
        },
    }
    for name, example in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(example))
    assert problems(tmp_path / "good.json") == []
    assert len(problems(tmp_path / "extra_key.json")) == 1
    assert len(problems(tmp_path / "unknown_subject.json")) == 1
    both = problems(tmp_path / "bad_payload.json")
    assert any("AcceptReferral" in p for p in both)
    assert any("command.referral.accept.v1.json" in p for p in both)
    assert uncovered([tmp_path / "good.json"]) == set(BY_SUBJECT) - {"nrm.cmd.referral.accept"}

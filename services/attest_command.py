"""`nrm attest`: victim-status attestations (docs/ATTESTATION.md).

    nrm attest issue CASE_ID --agency ID [--valid-days N] [--out FILE] [--qr FILE.svg|.png]
    nrm attest revoke ATTESTATION_ID --agency ID --reason REASON
    nrm attest check ATTESTATION_ID --agency ID   online: the hub answers, and records who asked
    nrm attest key --out FILE                 the hub's public attestation key
    nrm attest status-list --out FILE         the hub's signed status list, fresh
    nrm attest verify CREDENTIAL | --file F --key FILE --status-list FILE
                      [--document-number N] [--at DATE] [--json]       offline: no NATS
    nrm attest qr CREDENTIAL | --file F --out FILE.svg|.png            print it

`verify` exits with the verdict (contracts.attestation.Verdict): 0 valid, 2 unreadable, 3
altered or forged, 4 expired, 5 revoked, 6 another hub's, 7 another document, 8 status list
unusable. It prints nothing about the person: there is nothing about the person to print.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import segno
from pydantic import ValidationError

from contracts.attestation import HubPublicKey, Verdict, Verification, verify
from contracts.commands import CheckAttestation, IssueAttestation, RevokeAttestation
from contracts.subjects import ATTESTATION_KEY_SUBJECT, ATTESTATION_STATUS_SUBJECT
from contracts.vocabulary import AttestationRevocationReason
from services.client import HubClient
from services.i18n.catalogue import DEFAULT_LANGUAGE, LANGUAGES, Language, language
from services.runtime.connection import connect_operator
from services.runtime.settings import Settings

QR_KINDS = {".svg": "svg", ".png": "png"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    attest = sub.add_parser("attest", help="victim-status attestations: issue, verify, print")
    cmds = attest.add_subparsers(dest="attest_command", required=True)

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--nats-url", help="NATS URL (default: $NRM_NATS_URL or the local hub)")
        return p

    def credential_input(p: argparse.ArgumentParser) -> None:
        p.add_argument("credential", nargs="?", help="the credential text (or use --file)")
        p.add_argument("--file", type=Path, help="read the credential from a file ('-': stdin)")

    issue = with_url(cmds.add_parser("issue", help="(case owner) issue one, with consent"))
    issue.add_argument("case_id", type=uuid.UUID)
    issue.add_argument("--agency", required=True, help="the case owner or coordinating body")
    issue.add_argument("--valid-days", type=int, default=365, help="1 to 730 (default 365)")
    issue.add_argument("--out", type=Path, help="write the credential text here")
    issue.add_argument("--qr", type=Path, help="write its QR code here (.svg or .png)")
    revoke = with_url(cmds.add_parser("revoke", help="(case owner) revoke one"))
    revoke.add_argument("attestation_id", type=uuid.UUID)
    revoke.add_argument("--agency", required=True, help="the case owner or coordinating body")
    revoke.add_argument(
        "--reason",
        choices=[r.value for r in AttestationRevocationReason],
        required=True,
    )
    online = with_url(cmds.add_parser("check", help="ask the hub online (recorded, audited)"))
    online.add_argument("attestation_id", type=uuid.UUID)
    online.add_argument("--agency", required=True, help="the agency asking")
    key = with_url(cmds.add_parser("key", help="export the hub's public attestation key"))
    key.add_argument("--out", type=Path, required=True)
    status = with_url(cmds.add_parser("status-list", help="export the signed status list"))
    status.add_argument("--out", type=Path, required=True)
    check = cmds.add_parser("verify", help="verify one offline: hub key and status list only")
    credential_input(check)
    check.add_argument("--key", type=Path, required=True, help="the issuing hub's key file")
    check.add_argument(
        "--status-list", type=Path, required=True, help="that hub's status list file"
    )
    check.add_argument(
        "--document-number", help="the number on the person's document, to check the binding"
    )
    check.add_argument("--at", help="check as at this date (ISO 8601; default now)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--lang", choices=LANGUAGES, help="en, ru or ky (default: $NRM_LANG, else en)"
    )
    qr = cmds.add_parser("qr", help="print a credential as a QR code (SVG or PNG)")
    credential_input(qr)
    qr.add_argument("--out", type=Path, required=True, help="FILE.svg or FILE.png")


class Unreadable(Exception):
    """An input file or argument cannot be read: exit 2, one line."""


def _credential(args: argparse.Namespace) -> str:
    if (args.credential is None) == (args.file is None):
        raise Unreadable("give the credential text or --file, not both")
    if args.file is None:
        return str(args.credential)
    return _read(args.file)


def _read(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text("utf-8")
    except (OSError, UnicodeError) as exc:
        raise Unreadable(f"cannot read {path}: {type(exc).__name__}") from None


def _moment(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Unreadable("--at is not an ISO 8601 date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def write_qr(credential: str, out: Path) -> None:
    kind = QR_KINDS.get(out.suffix.lower())
    if kind is None:
        raise Unreadable("the QR file must end in .svg or .png")
    # Error correction M: survives a crease or a stain on paper. ~750 characters make a
    # version 22 symbol (105 modules): 8 pixels a module prints ~7 cm wide at 300 dpi.
    segno.make_qr(credential.strip(), error="m").save(str(out), kind=kind, scale=8, border=4)


# What each verdict means, for an officer reading it in Russian or Kyrgyz (in English the
# verifier's own, more specific reason is shown).
VERDICT_MEANING = {
    Verdict.UNREADABLE: "the text, the key file or the status list could not be read",
    Verdict.TAMPERED: "the content does not match the hub's signature: changed or forged",
    Verdict.EXPIRED: "past its validity date",
    Verdict.REVOKED: "the hub withdrew it",
    Verdict.WRONG_ISSUER: "signed by another hub's key than the one given",
    Verdict.BINDING_MISMATCH: "the document number given is not the one it was issued for",
    Verdict.STATUS_LIST_UNUSABLE: "the status list is out of date, another hub's, or damaged",
}


def render(result: Verification, at: dt.datetime, lang: Language | None = None) -> str:
    """The verdict for an officer, in `lang`: the first line says VALID or NOT VALID."""
    lang = lang or language()
    attestation = result.attestation
    if result.verdict is not Verdict.VALID:
        reason = result.reason if lang.code == "en" else lang.text(VERDICT_MEANING[result.verdict])
        lines = [f"{lang.text('NOT VALID')} ({result.verdict.name.lower()}): {reason}"]
    else:
        assert attestation is not None
        lines = [
            lang.text(
                f"VALID: {attestation.victim_status} victim of trafficking under the NRM of "
                "{country}",
                country=attestation.country,
            )
        ]
    labels = ("attestation", "issuer", "issued", "valid until", "document", "checked at")
    width = max(len(lang.text(label)) for label in labels) + 2

    def line(label: str, value: str) -> str:
        return f"  {lang.text(label).ljust(width)}{value}"

    if attestation is not None:
        binding = (
            "matches the document number given"
            if result.binding_checked
            else ("bound to a document: give --document-number to check it")
            if attestation.binding is not None
            else "not bound to a document: check identity by other means"
        )
        lines += [
            line("attestation", str(attestation.attestation_id)),
            line("issuer", attestation.issuer),
            line("issued", f"{attestation.issued_at:%Y-%m-%d}"),
            line("valid until", f"{attestation.expires_at:%Y-%m-%d}"),
            line("document", lang.text(binding)),
        ]
    lines.append(line("checked at", f"{at:%Y-%m-%d %H:%M} UTC"))
    return "\n".join(lines)


def as_json(result: Verification) -> dict[str, Any]:
    attestation = result.attestation
    return {
        "verdict": result.verdict.name.lower(),
        "exit_code": int(result.verdict),
        "reason": result.reason,
        "binding_checked": result.binding_checked,
        "attestation": None
        if attestation is None
        else {
            "attestation_id": str(attestation.attestation_id),
            "issuer": attestation.issuer,
            "nrm_country": attestation.country,
            "victim_status": attestation.victim_status,
            "issued_at": attestation.issued_at.isoformat(),
            "expires_at": attestation.expires_at.isoformat(),
            "bound_to_document": attestation.binding is not None,
        },
    }


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        credential = _credential(args)
        key = HubPublicKey.from_json(_read(args.key))
        status_list = _read(args.status_list)
        at = _moment(args.at)
    except (Unreadable, ValueError) as exc:
        print(f"nrm: {exc}", file=sys.stderr)
        return int(Verdict.UNREADABLE)
    result = verify(credential, key, status_list, at, args.document_number)
    lang = language(args.lang or os.environ.get("NRM_LANG") or DEFAULT_LANGUAGE)
    print(json.dumps(as_json(result), indent=2) if args.json else render(result, at, lang))
    return int(result.verdict)


def cmd_qr(args: argparse.Namespace) -> int:
    try:
        write_qr(_credential(args), args.out)
    except Unreadable as exc:
        print(f"nrm: {exc}", file=sys.stderr)
        return 2
    print(f"QR code written to {args.out}")
    return 0


async def _ask(settings: Settings, nats_url: str, subject: str) -> dict[str, Any]:
    nc = await connect_operator(settings, nats_url)
    try:
        reply = await nc.request(subject, b"", timeout=10)
    finally:
        await nc.close()
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def cmd_key(settings: Settings, nats_url: str, out: Path) -> int:
    record = await _ask(settings, nats_url, ATTESTATION_KEY_SUBJECT)
    key = HubPublicKey.from_json(json.dumps(record))
    out.write_text(key.to_json() + "\n")
    print(f"attestation key of {key.issuer} (kid {key.kid}) written to {out}")
    return 0


async def cmd_status_list(settings: Settings, nats_url: str, out: Path) -> int:
    answer = await _ask(settings, nats_url, ATTESTATION_STATUS_SUBJECT)
    out.write_text(str(answer["status_list"]) + "\n")
    print(f"status list {answer['uri']} written to {out}")
    return 0


async def _send(settings: Settings, nats_url: str, command: Any) -> dict[str, Any]:
    nc = await connect_operator(settings, nats_url, command.agency_id)
    try:
        return await HubClient(nc, timeout=30).send(command)
    finally:
        await nc.close()


def _rejected(name: str, reply: dict[str, Any]) -> int:
    for error in reply.get("errors", []):
        print(f"nrm: {name} rejected: {error['field']}: {error['reason']}", file=sys.stderr)
    return 1


async def cmd_issue(settings: Settings, nats_url: str, args: argparse.Namespace) -> int:
    try:
        command = IssueAttestation(
            command_id=uuid.uuid4(),
            agency_id=args.agency,
            case_id=args.case_id,
            valid_days=args.valid_days,
        )
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        print(f"nrm: attestation.issue: invalid {fields}", file=sys.stderr)
        return 2
    reply = await _send(settings, nats_url, command)
    if reply.get("status") != "issued":
        return _rejected(IssueAttestation.NAME, reply)
    credential = str(reply["credential"])
    print(f"attestation {reply['attestation_id']} valid until {reply['expires_at']}")
    if args.out is not None:
        args.out.write_text(credential + "\n")
        print(f"credential written to {args.out}")
    else:
        print(credential)
    if args.qr is not None:
        write_qr(credential, args.qr)
        print(f"QR code written to {args.qr}")
    return 0


async def cmd_revoke(settings: Settings, nats_url: str, args: argparse.Namespace) -> int:
    command = RevokeAttestation(
        command_id=uuid.uuid4(),
        agency_id=args.agency,
        attestation_id=args.attestation_id,
        reason=AttestationRevocationReason(args.reason),
    )
    reply = await _send(settings, nats_url, command)
    if reply.get("status") != "accepted":
        return _rejected(RevokeAttestation.NAME, reply)
    print(f"attestation {args.attestation_id} revoked ({args.reason})")
    return 0


# `nrm attest check` exits as `verify` would for the same answer.
CHECK_EXIT = {"valid": Verdict.VALID, "revoked": Verdict.REVOKED, "expired": Verdict.EXPIRED}


async def cmd_check(settings: Settings, nats_url: str, args: argparse.Namespace) -> int:
    command = CheckAttestation(
        command_id=uuid.uuid4(), agency_id=args.agency, attestation_id=args.attestation_id
    )
    reply = await _send(settings, nats_url, command)
    if reply.get("status") != "checked":
        return _rejected(CheckAttestation.NAME, reply)
    result = str(reply["result"])
    print(
        f"attestation {args.attestation_id}: {result.upper()} (valid until {reply['expires_at']})"
    )
    return int(CHECK_EXIT[result])


def run_offline(args: argparse.Namespace) -> int | None:
    """The subcommands that need no hub; None for the others."""
    if args.attest_command == "verify":
        return cmd_verify(args)
    if args.attest_command == "qr":
        return cmd_qr(args)
    return None


async def run_online(args: argparse.Namespace, settings: Settings, nats_url: str) -> int:
    if args.attest_command == "key":
        return await cmd_key(settings, nats_url, args.out)
    if args.attest_command == "status-list":
        return await cmd_status_list(settings, nats_url, args.out)
    if args.attest_command == "issue":
        return await cmd_issue(settings, nats_url, args)
    if args.attest_command == "check":
        return await cmd_check(settings, nats_url, args)
    return await cmd_revoke(settings, nats_url, args)

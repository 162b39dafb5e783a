"""Who may touch which NATS subject: the hub's accounts and users, as data, rendered to the
nats-server configuration in `deploy/nats/accounts.conf` and `deploy/nats/leaf-users.conf`.

    python -m services.runtime.permissions [--check] [--registry FILE] [--out DIR]

A user is named by the e-mail SAN of its client certificate (`verify_and_map`): no password
exists to leak. Each user gets its own inbox prefix `_INBOX.<user>` (clients pass it to
`nats.connect(inbox_prefix=...)`), so no agency can subscribe to another's replies.

Accounts:
- HUB: every service, the operators' `admin` and every agency. All JetStream state lives
  here (events, audit, dead letters, feeds, KV) so a service writes its events and its audit
  entries in one account.
- AUDIT: the oversight body's `auditor`, which sees the audit entries (a stream export of
  `nrm.audit.>` from HUB) and can publish nothing.
- XB_<P>, one per partner country P in the registry's `peers`: P's leaf connection lands
  there (its certificate's e-mail SAN `leaf-<p>@<country>.nrm-hub`, leaf-users.conf). HUB
  exports only `nrm.xb.<country>.<p>.>` to it and imports only `nrm.xb.<p>.<country>.>` from
  it (services/runtime/crossborder_nats.py, the same pair accounts as the loopback hubs):
  a partner sees nothing else of HUB (events, audit, commands, keys, the JetStream API), not
  even what crosses to another partner, and cannot speak as another partner.

Broad grants, and why: a service loading an aggregate reads NRM_EVENTS by batched direct
get (services/runtime/stored_messages.py), whose filter is in the request body: NATS cannot
restrict it by subject, so a service that loads anything may read every event of the stream
(services are the hub's own code; agencies never get direct get). No service creates or
deletes a consumer: every durable is the bootstrap's, and reads need none. Re-driving a dead
letter reads one event by sequence, so services with durables may read NRM_EVENTS and
NRM_DLQ messages by sequence. `admin` has the whole JetStream API less deleting or purging
the hub's streams: keep its key with the operators.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from contracts.subjects import (
    ATTESTATION_KEY_SUBJECT,
    ATTESTATION_STATUS_SUBJECT,
    AUDIT_PREFIX,
    AUDIT_STREAM,
    CHECKPOINT_REQUEST,
    CHECKPOINTS_STREAM,
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENT_PREFIX,
    EVENTS_STREAM,
    FEEDS_STREAM,
    INTAKE_KEY_SUBJECT,
    PING_SUBJECT,
    REJECTIONS_PREFIX,
    REJECTIONS_STREAM,
    agency_command_subject,
    command_subject,
    feed_filter,
    redrive_subject,
)
from services.agencies.registry import AgencyRegistry, load_registry
from services.runtime.crossborder_nats import DEPLOYMENT as LINK_DEPLOYMENT
from services.runtime.crossborder_nats import account as pair_account
from services.runtime.service_table import (
    JS,
    SERVICES,
    entry,
    every_durable,
    may_send,
    takeovers,
)
from services.runtime.topology import COMMAND_IDS_BUCKET, XB_INBOX_STREAM, XB_OUTBOX_STREAM

HUB, AUDIT, ANONYMOUS = "HUB", "AUDIT", "ANONYMOUS"
ANONYMOUS_USER = "anonymous"
PROTECTED_STREAMS = (
    EVENTS_STREAM,
    AUDIT_STREAM,
    FEEDS_STREAM,
    REJECTIONS_STREAM,
    CHECKPOINTS_STREAM,
)
CROSSBORDER_PREFIX = "nrm.xb"
DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"


def user_name(role: str, country: str) -> str:
    """The e-mail SAN of a role's client certificate (deploy/scripts/dev-certs.py agrees)."""
    return f"{role}@{country}.nrm-hub"


def inbox_prefix(role: str) -> str:
    """What a role passes as `inbox_prefix`: its replies arrive only below it."""
    return f"_INBOX.{role}"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()
    deny_subscribe: tuple[str, ...] = ()
    allow_responses: bool = False


@dataclass(frozen=True)
class User:
    role: str  # the NATS user: its client certificate's e-mail SAN
    account: str
    permissions: Permissions
    name: str  # the role itself (a service, `admin`, `auditor` or an agency id)


def _protected_denies() -> tuple[str, ...]:
    """Nobody deletes or purges the hub's record, nor updates its stream settings: shrinking
    a limit (max_msgs, max_age) would discard entries as surely as a purge."""
    return tuple(
        f"{JS}.{op}.{stream}"
        for stream in PROTECTED_STREAMS
        for op in ("STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE", "STREAM.UPDATE")
    )


def _bucket_grants(bucket: str) -> list[str]:
    kv = f"KV_{bucket}"
    return [
        f"$KV.{bucket}.>",
        f"{JS}.STREAM.INFO.{kv}",
        f"{JS}.DIRECT.GET.{kv}",
        f"{JS}.DIRECT.GET.{kv}.>",
        f"{JS}.STREAM.MSG.GET.{kv}",
        f"{JS}.CONSUMER.CREATE.{kv}",  # keys()/watch: an ordered consumer
        f"{JS}.CONSUMER.CREATE.{kv}.>",
        f"{JS}.CONSUMER.DELETE.{kv}.>",
        f"{JS}.CONSUMER.INFO.{kv}.>",
        f"$JS.FC.{kv}.>",  # its flow-control replies
    ]


def _link_grants() -> list[str]:
    """The cross-border link: packages to and from partner hubs, and its consumers on the
    outbox and inbox (a relay per peer: the peers are the registry's, so any durable there)."""
    grants = [f"{CROSSBORDER_PREFIX}.>"]
    for stream in (XB_OUTBOX_STREAM, XB_INBOX_STREAM):
        grants += [
            f"{JS}.CONSUMER.INFO.{stream}.*",
            f"{JS}.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>",
            f"{JS}.STREAM.INFO.{stream}",
        ]
    return grants


def service_user(service: str, country: str) -> User:
    needs = entry(service)
    durables = [(d.stream, d.durable) for d in every_durable() if d.service == service]
    others = [(d.stream, d.durable) for d in every_durable() if d.service != service]
    commands = [command_subject(c) for c in needs.commands]
    publish = [f"{JS}.INFO", f"{JS}.STREAM.NAMES", f"{JS}.STREAM.INFO.{EVENTS_STREAM}"]
    if commands:  # a rejected command leaves a notice (names and codes) for the audit log
        publish.append(f"{REJECTIONS_PREFIX}.>")
        publish += _bucket_grants(COMMAND_IDS_BUCKET)  # one meaning per command id
    subscribe = [
        f"{inbox_prefix(service)}.>",
        PING_SUBJECT,
        *dict.fromkeys(commands),
        *dict.fromkeys(f"{c}.*" for c in commands),  # the sender's agency id as last token
        *needs.answers,
        *((f"{CROSSBORDER_PREFIX}.>",) if needs.cross_border else ()),
    ]
    for stream, durable in durables:
        publish += [
            f"{JS}.CONSUMER.INFO.{stream}.{durable}",
            f"{JS}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
            f"{DLQ_PREFIX}.{durable}",
            f"{DLQ_PREFIX}.{durable}.resolved",
        ]
        subscribe.append(redrive_subject(durable))
    # Dead letters of a durable another one took over are re-driven by the one that did.
    for retired in (r for t in takeovers() if (t.stream, t.durable) in durables for r in t.retired):
        publish.append(f"{DLQ_PREFIX}.{retired}.resolved")
        subscribe.append(redrive_subject(retired))
    if durables:
        publish += [f"{JS}.STREAM.MSG.GET.{DLQ_STREAM}", f"{JS}.STREAM.MSG.GET.{EVENTS_STREAM}"]
        # The unresolved-dead-letters gauge reads NRM_DLQ's bounds (runtime/health.py).
        publish.append(f"{JS}.STREAM.INFO.{DLQ_STREAM}")
    if needs.loads:  # batched direct get: the request subject has no filter in it
        publish.append(f"{JS}.DIRECT.GET.{EVENTS_STREAM}")
    publish += [f"{EVENT_PREFIX}.{aggregate}.>" for aggregate in needs.writes]
    publish += list(needs.publishes)
    if needs.cross_border:
        publish += _link_grants()
    for bucket in needs.buckets:
        publish += _bucket_grants(bucket)
    deny = [
        *_protected_denies(),
        f"{JS}.STREAM.CREATE.>",
        f"{JS}.STREAM.UPDATE.>",
        f"{JS}.STREAM.DELETE.>",
        f"{JS}.STREAM.PURGE.>",
        f"{JS}.CONSUMER.DURABLE.CREATE.>",
    ]
    for stream, durable in others:
        deny += [
            f"{JS}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"{JS}.CONSUMER.DELETE.{stream}.{durable}",
        ]
    deny += [f"{JS}.CONSUMER.DELETE.{stream}.{durable}" for stream, durable in durables]
    return User(
        user_name(service, country),
        HUB,
        Permissions(
            publish=tuple(dict.fromkeys(publish)),
            subscribe=tuple(dict.fromkeys(subscribe)),
            deny_publish=tuple(dict.fromkeys(deny)),
            allow_responses=True,  # replies to commands and re-drive requests
        ),
        service,
    )


def agency_user(agency_id: str, registry: AgencyRegistry) -> User:
    """An agency: the commands its role allows, and its own feed. Nothing else."""
    agency = registry.get(agency_id)
    if agency is None:
        raise ValueError(f"agency {agency_id!r} is not in the registry")
    # Who may send which command is the service table's, next to each command's owner.
    # Only on subjects that end in its own id: the server, not the body, says who sent it.
    publish = [agency_command_subject(c, agency.id) for c in may_send(agency, registry)]
    if agency.may_identify:
        publish.append(INTAKE_KEY_SUBJECT)
    # Any agency may fetch the hub's attestation key and status list to verify attestations.
    publish += [ATTESTATION_KEY_SUBJECT, ATTESTATION_STATUS_SUBJECT]
    # One durable feed consumer per agency, named after it and filtered on its own feed:
    # the filter is part of the create subject, so no other filter can be asked for.
    publish += [
        f"{JS}.CONSUMER.CREATE.{FEEDS_STREAM}.{agency.id}.{feed_filter(agency.id)}",
        f"{JS}.CONSUMER.INFO.{FEEDS_STREAM}.{agency.id}",
        f"{JS}.CONSUMER.DELETE.{FEEDS_STREAM}.{agency.id}",
        f"{JS}.CONSUMER.MSG.NEXT.{FEEDS_STREAM}.{agency.id}",
        f"$JS.ACK.{FEEDS_STREAM}.{agency.id}.>",
    ]
    return User(
        user_name(agency.id, registry.country),
        HUB,
        Permissions(publish=tuple(publish), subscribe=(f"{inbox_prefix(agency.id)}.>",)),
        agency.id,
    )


def admin_user(country: str) -> User:
    """Operators: bootstrap, `nrm status`, `nrm dlq`. Never deletes the hub's record."""
    return User(
        user_name("admin", country),
        HUB,
        Permissions(
            # `nrm audit export` asks the audit service to sign a checkpoint first.
            # `nrm attest key|status-list` export what officers verify attestations with.
            publish=(
                f"{JS}.>",
                "nrm.ctl.dlq.redrive.>",
                PING_SUBJECT,
                CHECKPOINT_REQUEST,
                ATTESTATION_KEY_SUBJECT,
                ATTESTATION_STATUS_SUBJECT,
            ),
            subscribe=(f"{inbox_prefix('admin')}.>",),
            deny_publish=_protected_denies(),
        ),
        "admin",
    )


def auditor_user(country: str) -> User:
    """The oversight body: reads audit entries as they are written; publishes nothing."""
    return User(
        user_name("auditor", country),
        AUDIT,
        Permissions(
            publish=(),
            subscribe=(f"{AUDIT_PREFIX}.>", f"{inbox_prefix('auditor')}.>"),
            deny_publish=(">",),  # an empty allow-list alone could read as "no limit"
        ),
        "auditor",
    )


@dataclass(frozen=True)
class HubAuth:
    country: str
    users: tuple[User, ...]
    peers: tuple[str, ...] = ()  # partner countries, lower case: one XB_<P> account each
    dials: tuple[str, ...] = ()  # the partners whose leaf port this hub dials (the others dial it)

    def user(self, role: str) -> User:
        return next(u for u in self.users if u.role == user_name(role, self.country))


def hub_auth(registry: AgencyRegistry, peers: Iterable[str] | None = None) -> HubAuth:
    """Every user of the hub; `peers`: the partner countries (default: the registry's). Which
    of them this hub dials is the deployment's star (crossborder_nats.DEPLOYMENT: Kyrgyzstan
    accepts, Kazakhstan and Uzbekistan dial it)."""
    country = registry.country
    if peers is None:
        peers = [p.country for p in registry.peers]
    peers = [p.lower() for p in peers]
    deployed = LINK_DEPLOYMENT.get(country.lower())
    dials = tuple(p for p in (deployed[2] if deployed else {}) if p in peers)
    users = [service_user(s, country) for s in SERVICES]
    users += [admin_user(country), auditor_user(country)]
    users += [agency_user(a.id, registry) for a in registry.agencies]
    return HubAuth(country, tuple(users), tuple(peers), dials)


def _list(items: Iterable[str], indent: str) -> str:
    inner = "".join(f'\n{indent}  "{item}"' for item in items)
    return f"[{inner}\n{indent}]" if inner else "[]"


Identify = Callable[[User], str]


def by_certificate(user: User) -> str:
    """The config line naming a user mapped from its client certificate (verify_and_map)."""
    return f'user: "{user.role}"'


def _render_user(user: User, identify: Identify) -> list[str]:
    p = user.permissions
    pad = " " * 10
    lines = [f"      {{ {identify(user)}", "        permissions: {"]
    lines.append(f"{pad}publish: {{ allow: {_list(p.publish, pad)}")
    if p.deny_publish:
        lines.append(f"{pad}  deny: {_list(p.deny_publish, pad)}")
    lines.append(f"{pad}}}")
    lines.append(f"{pad}subscribe: {{ allow: {_list(p.subscribe, pad)}")
    if p.deny_subscribe:
        lines.append(f"{pad}  deny: {_list(p.deny_subscribe, pad)}")
    lines.append(f"{pad}}}")
    if p.allow_responses:
        lines.append(f"{pad}allow_responses: true")
    lines += ["        }", "      }"]
    return lines


HEADER = (
    "# GENERATED by `python -m services.runtime.permissions` from the agency registry and\n"
    "# services/runtime/permissions.py: do not edit; regenerate (a test fails on drift).\n"
)


def _import(account: str, subject: str) -> str:
    return f'      {{ stream: {{ account: {account}, subject: "{subject}" }} }}'


def render_accounts(
    auth: HubAuth, identify: Identify = by_certificate, anonymous: str | None = None
) -> str:
    """The `accounts` block; `anonymous` (a password nobody is given) adds the powerless
    account that `no_auth_user` maps clients without credentials to."""
    me = auth.country.lower()
    lines = [HEADER, "accounts {"]
    for account in (HUB, AUDIT, *(pair_account(p) for p in auth.peers)):
        lines.append(f"  {account} {{")
        if account == HUB:
            lines.append("    jetstream: enabled")
            lines += [
                "    exports: [",
                f'      {{ stream: "{AUDIT_PREFIX}.>", accounts: [{AUDIT}] }}',
                *(
                    f'      {{ stream: "{CROSSBORDER_PREFIX}.{me}.{p}.>", '
                    f"accounts: [{pair_account(p)}] }}"
                    for p in auth.peers
                ),
                "    ]",
                "    imports: [",
                *(_import(pair_account(p), f"{CROSSBORDER_PREFIX}.{p}.{me}.>") for p in auth.peers),
                "    ]",
            ]
        elif account == AUDIT:
            lines += [
                "    imports: [",
                _import(HUB, f"{AUDIT_PREFIX}.>"),
                "    ]",
            ]
        else:  # XB_<P>: what we send P in, what P sends us out; no JetStream, no users
            peer = next(p for p in auth.peers if pair_account(p) == account)
            lines += [
                "    exports: [",
                f'      {{ stream: "{CROSSBORDER_PREFIX}.{peer}.{me}.>", accounts: [{HUB}] }}',
                "    ]",
                "    imports: [",
                _import(HUB, f"{CROSSBORDER_PREFIX}.{me}.{peer}.>"),
                "    ]",
            ]
        members = [u for u in auth.users if u.account == account]
        if members:
            lines.append("    users: [")
            for user in members:
                lines += _render_user(user, identify)
            lines.append("    ]")
        lines.append("  }")
    if anonymous is not None:
        # Where a client without credentials lands (`no_auth_user`): an account of its own
        # that imports nothing, and a user that may neither publish nor subscribe.
        lines += [
            f"  {ANONYMOUS} {{",
            f'    users: [ {{ user: "{ANONYMOUS_USER}", password: "{anonymous}"',
            '      permissions: { publish: { deny: [">"] }, subscribe: { deny: [">"] } } } ]',
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_leaf_users(auth: HubAuth) -> str:
    """Included inside `leafnodes { authorization { ... } }`: one user per peer country, in
    its own pair account."""
    lines = [HEADER, "users: ["]
    for peer in auth.peers:
        leaf_user = user_name("leaf-" + peer, auth.country)
        lines.append(f'  {{ user: "{leaf_user}", account: {pair_account(peer)} }}')
    lines.append("]")
    return "\n".join(lines) + "\n"


def render_leaf_remotes(auth: HubAuth) -> str:
    """Included inside `leafnodes { ... }`: the partner hubs this hub dials, each bound to its
    pair account, over TLS with the certificate the partner issued us (e-mail SAN
    `leaf-<us>@<partner>.nrm-hub`) and the partner's CA. Addresses and files come from the
    environment: XB_<P>_LEAF_URLS (e.g. [tls://nats-1.kg.example:7422]), XB_<P>_CA_FILE,
    XB_<P>_LEAF_CERT_FILE, XB_<P>_LEAF_KEY_FILE."""
    lines = [HEADER, "remotes: ["]
    for peer in auth.dials:
        env = f"XB_{peer.upper()}"
        lines += [
            f"  {{ urls: ${env}_LEAF_URLS, account: {pair_account(peer)}",
            f"    tls {{ ca_file: ${env}_CA_FILE, cert_file: ${env}_LEAF_CERT_FILE,",
            f"          key_file: ${env}_LEAF_KEY_FILE }} }}",
        ]
    lines.append("]")
    return "\n".join(lines) + "\n"


def rendered(auth: HubAuth) -> dict[str, str]:
    return {
        "accounts.conf": render_accounts(auth),
        "leaf-users.conf": render_leaf_users(auth),
        "leaf-remotes.conf": render_leaf_remotes(auth),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.permissions")
    parser.add_argument("--registry", type=Path, help="agency registry (default: packaged)")
    parser.add_argument("--peers", help="cross-border peers, e.g. kz,uz (default: the registry's)")
    parser.add_argument("--out", type=Path, default=DEPLOY_NATS)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    peers = None if args.peers is None else [p for p in args.peers.split(",") if p]
    auth = hub_auth(load_registry(args.registry), peers)
    stale = []
    for name, text in rendered(auth).items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.write_text(text)
    if stale:
        print(
            f"stale: {', '.join(stale)}; run python -m services.runtime.permissions",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

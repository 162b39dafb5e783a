"""There is one consumer loop (services/runtime/messaging.py `consume`): no other module under
services/ settles a JetStream message (ack, nak, term, in progress) or hands a durable to
FastStream, which would settle by its own policy. A second copy of the loop would have to do
one of those, and would drift from the first (docs/ARCHITECTURE.md, "Consumers, retries and
dead letters"). Readers that fetch with AckPolicy.NONE settle nothing and are not loops."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
LOOP = SERVICES / "runtime" / "messaging.py"
SETTLING = frozenset({"ack", "ack_sync", "nak", "term", "in_progress"})
FASTSTREAM_CONSUMER = frozenset({"durable", "pull_sub", "ack_policy"})


def offences(source: str) -> list[str]:
    """`line name` for each call that settles a message or makes a FastStream consumer."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        keywords = {k.arg for k in node.keywords}
        if name in SETTLING or (name == "subscriber" and keywords & FASTSTREAM_CONSUMER):
            found.append((node.lineno, name))
    return [f"{line} {name}" for line, name in sorted(found)]


def test_only_the_one_loop_settles_messages() -> None:
    modules = sorted(p for p in SERVICES.rglob("*.py") if p != LOOP)
    assert len(modules) > 50  # the scan sees the services, not an empty folder
    found = {
        str(path.relative_to(SERVICES.parent)): hits
        for path in modules
        if (hits := offences(path.read_text()))
    }
    assert found == {}, "a second consumer loop? use services.runtime.messaging.consume"


def test_the_scan_sees_the_loop() -> None:
    """Guards the test above against passing vacuously (a scan that matches nothing)."""
    in_loop = {hit.split()[1] for hit in offences(LOOP.read_text())}
    assert in_loop == {"ack", "ack_sync", "nak", "term", "in_progress"}


def test_copies_of_a_loop_are_caught() -> None:
    nats_py = (
        "async def run(sub):\n"
        "    for msg in await sub.fetch(8):\n"
        "        try:\n"
        "            await handle(msg)\n"
        "        except Exception:\n"
        "            await msg.nak(delay=1.0)\n"
        "        else:\n"
        "            await msg.ack_sync()\n"
    )
    assert offences(nats_py) == ["6 nak", "8 ack_sync"]
    faststream = "broker.subscriber('s', stream=js, durable='d', pull_sub=PullSub(1))(on)\n"
    assert offences(faststream) == ["1 subscriber"]
    command = "broker.subscriber('nrm.cmd.x', queue='q')(on_command)\n"  # core NATS: fine
    assert offences(command) == []

"""`nrm cases unmet | waiting | overdue`: the coordinating body's worklists.

nrm cases LIST [--region REGION] [--service SERVICE] [--format table|csv|json] [--nats-url URL]
nrm cases show CASE_ID [--format table|json]   one case: status, owner, plan, follow-ups

Read from the whole event stream as the operators' `admin` user (like `nrm stats`): an agency's
NATS user may not read the event stream, so only the hub's operators and the coordinating
body's secretariat through them see these lists. Ids, codes and dates only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
import uuid
from typing import Any

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from contracts.vocabulary import Region, Service
from services.case.case import fold_case
from services.case.plan_reader import read_case_plan
from services.i18n.catalogue import LANGUAGES, Language, language
from services.runtime.connection import connect_operator
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.settings import Settings
from services.runtime.stored_messages import NoDirectGet, StreamReader, decoded_event
from services.worklists.case_view import case_view, render_case
from services.worklists.projection import COLUMNS, Row, Worklist, WorklistState, apply, rows

_HELP = {
    Worklist.UNMET: "needs nobody could take, by case",
    Worklist.WAITING: "people on a shelter's waiting list",
    Worklist.OVERDUE: "referrals, follow-ups and identification decisions past their date",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cases = sub.add_parser("cases", help="worklists for the coordinating body")
    lists = cases.add_subparsers(dest="worklist", required=True)
    show = lists.add_parser("show", help="one case: status, owner, plan, follow-ups")
    show.add_argument("case_id", type=uuid.UUID)
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.add_argument(
        "--nats-url", default=None, help="NATS URL (default: $NRM_NATS_URL or the local hub)"
    )
    for worklist in Worklist:
        p = lists.add_parser(worklist.value, help=_HELP[worklist])
        p.add_argument("--region", choices=[r.value for r in Region], help="only this region")
        p.add_argument("--service", choices=[s.value for s in Service], help="only this service")
        p.add_argument("--format", choices=("table", "csv", "json"), default="table")
        p.add_argument(
            "--lang", choices=LANGUAGES, help="en, ru or ky (default: $NRM_LANG, else en)"
        )
        p.add_argument(
            "--nats-url", default=None, help="NATS URL (default: $NRM_NATS_URL or the local hub)"
        )


async def read_worklists(nc: Client) -> WorklistState:
    """Every event of the stream folded into the worklists."""
    state = WorklistState()
    reader = StreamReader(nc, EVENTS_STREAM)
    async for message in reader.messages(f"{EVENT_PREFIX}.>"):
        stored = decoded_event(message)
        if stored is not None:
            apply(state, stored.envelope, stored.event, message.sequence)
    return state


def _word(lang: Language, column: str, value: str) -> str:
    """A cell for people: codes as words, a waiting-list position in the language."""
    if column == "detail" and value.startswith("position "):
        return lang.text("position {n}", n=value.removeprefix("position "))
    if column in ("item", "service", "region", "detail"):
        return lang.word(value)
    return value


def render(found: list[Row], fmt: str, lang: Language | None = None) -> str:
    """JSON keeps codes (for programs); CSV keeps codes under headers in `lang`; the table
    is for people: headers and codes in `lang`'s words."""
    lang = lang or language()
    if fmt == "json":
        return json.dumps([row.as_dict() for row in found], indent=2) + "\n"
    headers = [lang.field(c) for c in COLUMNS]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([str(v) for v in row.as_dict().values()] for row in found)
        return out.getvalue()
    table = [
        tuple(headers),
        *(tuple(_word(lang, c, str(v)) for c, v in row.as_dict().items()) for row in found),
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in table
    ]
    return "\n".join(line.rstrip() for line in lines) + f"\n({len(found)} {lang.text('rows')})\n"


async def show_case(nc: Client, case_id: uuid.UUID) -> dict[str, Any] | None:
    store = JetStreamEventStore(nc)
    history = await store.load("case", str(case_id))
    case = fold_case([e.event for e in history.events])
    if case is None:
        return None
    return case_view(case, await read_case_plan(store, case_id))


async def run(args: argparse.Namespace, nats_url: str, settings: Settings) -> int:
    nc = await connect_operator(settings, nats_url)  # HubUnreachable: one line, by `nrm`
    if args.worklist == "show":
        try:
            view = await show_case(nc, args.case_id)
        except (NotFoundError, NoDirectGet):
            print(f"nrm cases: no {EVENTS_STREAM} stream at {nats_url}", file=sys.stderr)
            return 1
        finally:
            await nc.close()
        if view is None:
            print(f"nrm cases show: no case {args.case_id}", file=sys.stderr)
            return 1
        out = json.dumps(view, indent=2) + "\n" if args.format == "json" else render_case(view)
        sys.stdout.write(out)
        return 0
    try:
        state = await read_worklists(nc)
    except (NotFoundError, NoDirectGet):
        print(
            f"nrm cases: no {EVENTS_STREAM} stream at {nats_url} (run `nrm bootstrap`)",
            file=sys.stderr,
        )
        return 1
    finally:
        await nc.close()
    found = rows(
        state,
        Worklist(args.worklist),
        dt.datetime.now(dt.UTC),
        region=args.region,
        service=args.service,
    )
    sys.stdout.write(render(found, args.format, language(args.lang or settings.lang)))
    return 0

"""`nrm stats`: figures for the coordinating body, for publication, as a report, as HTCDS.

nrm stats [--of UNIT] [--by FIELD,...] [--where FIELD=VALUE] [--from DATE] [--to DATE]
          [--format table|csv|json] [--public [--threshold N]]
nrm stats report --out DIR [--public ...]     HTML page with charts + CSV, works offline
nrm stats htcds [--out FILE] [--public ...]   counts under HTCDS field names (CSV)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path

from nats.js.errors import NotFoundError

from contracts.subjects import EVENTS_STREAM
from services.i18n.catalogue import LANGUAGES, language
from services.runtime.connection import connect_operator
from services.runtime.settings import Settings
from services.runtime.stored_messages import NoDirectGet, NoSuchStream
from services.statistics.publish import (
    DEFAULT_THRESHOLD,
    STANDARD,
    as_csv,
    as_json,
    as_text,
    figures,
)
from services.statistics.reader import replay
from services.statistics.tables import UNITS, Query, QueryError, check, parse_where


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _threshold(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def _common(p: argparse.ArgumentParser, inherit: bool) -> None:
    # Sub-commands repeat the options with SUPPRESS defaults so that an option given before
    # `report` / `htcds` is not overwritten by the sub-command's default.
    d: Callable[[object], object] = (lambda v: argparse.SUPPRESS) if inherit else (lambda v: v)
    p.add_argument(
        "--from",
        dest="start",
        metavar="DATE",
        type=_date,
        default=d(None),
        help="first day (YYYY-MM-DD), inclusive",
    )
    p.add_argument(
        "--to",
        dest="end",
        metavar="DATE",
        type=_date,
        default=d(None),
        help="last day (YYYY-MM-DD), inclusive",
    )
    p.add_argument(
        "--public",
        action="store_true",
        default=d(False),
        help="for publication: consented cases only, small cells suppressed",
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=d(DEFAULT_THRESHOLD),
        help=f"smallest count published with --public (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--nats-url", default=d(None), help="NATS URL (default: $NRM_NATS_URL or the local hub)"
    )
    p.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=d(None),
        help="language of titles, headers and names: en, ru, ky (default: $NRM_LANG or en); "
        "JSON keeps the codes",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stats = sub.add_parser("stats", help="statistics for the coordinating body and publication")
    _common(stats, inherit=False)
    stats.add_argument(
        "--of",
        dest="unit",
        choices=tuple(UNITS),
        default="cases",
        help="what to count (default: cases)",
    )
    stats.add_argument(
        "--by",
        help="fields to group by, comma-separated (first = rows); without it, the standard tables",
    )
    stats.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="count only facts with this value (repeatable)",
    )
    stats.add_argument("--format", choices=("table", "csv", "json"), default="table")
    actions = stats.add_subparsers(dest="stats_command")
    report = actions.add_parser("report", help="HTML report with charts and CSV files")
    report.add_argument("--out", type=Path, required=True, help="directory to write into")
    _common(report, inherit=True)
    htcds = actions.add_parser("htcds", help="counts under HTCDS field names, as CSV")
    htcds.add_argument("--out", type=Path, help="file to write (default: standard output)")
    htcds.add_argument(
        "--fields",
        action="store_true",
        help="counts per value of each data-standard field (gender, recruitment, control, "
        "labour industry, sexual exploitation, vulnerabilities) instead of the combinations",
    )
    _common(htcds, inherit=True)


async def run(args: argparse.Namespace, nats_url: str, settings: Settings) -> int:
    """Counts from the hub at `nats_url`, connecting as the operators' `admin` user."""
    try:
        queries = _queries(args)
        if args.start and args.end and args.start > args.end:
            raise QueryError("--from: the first day is after the last (--to)")
    except QueryError as exc:
        print(f"nrm stats: {exc}", file=sys.stderr)
        return 2
    nc = await connect_operator(settings, nats_url)  # HubUnreachable: one line, by `nrm`
    try:
        read = await replay(nc)
    except (NotFoundError, NoDirectGet, NoSuchStream):
        print(
            f"nrm stats: no {EVENTS_STREAM} stream at {nats_url} (run `nrm bootstrap`)",
            file=sys.stderr,
        )
        return 1
    finally:
        await nc.close()
    at = dt.datetime.now(dt.UTC)
    lang = language(getattr(args, "lang", None) or settings.lang)
    try:
        if args.stats_command == "htcds":
            from services.statistics.htcds import export, export_fields

            text = (export_fields if args.fields else export)(
                read.state,
                at,
                public=args.public,
                threshold=args.threshold,
                start=args.start,
                end=args.end,
            )
            if args.out:
                args.out.write_text(text)
                print(f"HTCDS counts written to {args.out}")
            else:
                print(text, end="")
            return 0
        result = figures(
            read.state,
            queries,
            at,
            public=args.public,
            threshold=args.threshold,
            start=args.start,
            end=args.end,
        )
    except QueryError as exc:
        print(f"nrm stats: {exc}", file=sys.stderr)
        return 2
    if args.stats_command == "report":
        from services.statistics.report import write_report

        page = write_report(result, args.out, replay_seconds=read.seconds, lang=lang)
        print(
            f"report written to {page} ({read.state.events_applied} events read in "
            f"{read.seconds:.2f} s)"
        )
        return 0
    if args.format == "json":
        print(as_json(result))
    elif args.format == "csv":
        print(as_csv(result.tables, lang=lang), end="")
    else:
        print(as_text(result, lang), end="")
    return 0


def _queries(args: argparse.Namespace) -> tuple[Query, ...]:
    by = getattr(args, "by", None)
    if args.stats_command or not by:
        if getattr(args, "where", None):
            raise QueryError("--where: give --by too (the standard tables have their own)")
        return STANDARD
    fields = tuple(f.strip() for f in by.split(",") if f.strip())
    query = Query(
        unit=args.unit,
        by=fields,
        where=parse_where(args.where),
        title=f"{args.unit} by {', '.join(fields)}",
    )
    check(query)  # before reading the whole stream
    return (query,)

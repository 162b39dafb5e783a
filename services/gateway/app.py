"""The gateway's HTTP surface (contracts/openapi.py documents it): every command as `POST
/v1/commands/<name>`, the intake key, and the agency feed paged and as Server-Sent Events.

Thin on purpose: the body goes to the hub as it came, on the subject of the agency the client
certificate names, and the hub's reply comes back as it is. The gateway checks only what the
HTTP side adds (the certificate's agency, the Idempotency-Key header, the body's limits) and
what NATS itself would refuse for that agency (its role's commands, its own agency_id), so
such a request gets a prompt 403 instead of a timeout. Errors are RFC 9457 problem details
that name fields and never echo a value; logs hold routes, agency ids and statuses only.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.commands import ALL_COMMANDS, Command
from contracts.envelope import CONTENT_TYPE
from contracts.openapi import (
    EVENT_STREAM_CONTENT_TYPE,
    FEED_PAGE_DEFAULT,
    FEED_PAGE_MAX,
    FEED_PATH,
    FEED_STREAM_PATH,
    IDEMPOTENCY_KEY,
    INTAKE_KEY_PATH,
    LAST_EVENT_ID,
    PROBLEM_CONTENT_TYPE,
    STATUS_OF_CODE,
    FeedItem,
    FeedPage,
    ProblemDetails,
    ProblemError,
    command_path,
    openapi,
    problem_type,
)
from contracts.replies import CommandRejected, ErrorCode
from contracts.subjects import INTAKE_KEY_SUBJECT, agency_command_subject
from services.agencies.registry import AgencyRegistry
from services.gateway.agencies import AgencyConnections, AgencyUnreachable, read_feed_page
from services.gateway.identity import agency_of
from services.runtime.command_body import MAX_BODY_BYTES, BodyError, read_json_object
from services.runtime.logging import get_logger
from services.runtime.service_table import may_send
from services.runtime.stored_messages import ReadFailed, decoded_envelope

log = get_logger("nrm.gateway")
# Set per TLS connection by the server (services/gateway/server.py): getpeercert()'s dict.
PEER_CERTIFICATE = "peer_certificate"
_MAX_CURSOR = 2**63 - 1


class Problem(Exception):
    """A refusal answered as problem details."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        *errors: ProblemError,
        command_id: str | None = None,
    ) -> None:
        super().__init__(title)
        self.details = ProblemDetails(
            type=problem_type(kind),
            title=title,
            status=status,
            detail="; ".join(f"{e.field or '(request)'}: {e.reason}" for e in errors) or title,
            errors=errors,
            command_id=command_id,
        )


def problem_response(details: ProblemDetails) -> Response:
    return Response(
        details.model_dump_json(exclude_none=True),
        status_code=details.status,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def _error(field: str, code: ErrorCode, reason: str) -> ProblemError:
    return ProblemError(field=field, code=code, reason=reason)


def hub_answer(raw: bytes) -> Response:
    """The hub's reply as it came (a CloudEvent), or problem details for a rejection."""
    unreadable = Problem(
        502,
        "bad_gateway",
        "The hub's reply could not be read",
        _error("", ErrorCode.UNAVAILABLE, "unreadable reply"),
    )
    try:
        data = json.loads(raw)["data"]
    except (ValueError, KeyError, TypeError):
        raise unreadable from None
    if not isinstance(data, dict):
        raise unreadable
    if data.get("status") != "rejected":
        return Response(raw, status_code=200, media_type=CONTENT_TYPE)
    try:
        rejected = CommandRejected.model_validate(data)
    except ValidationError:
        raise unreadable from None
    first = rejected.errors[0].code
    raise Problem(
        STATUS_OF_CODE.get(first, 400),
        str(first),
        "The hub rejected the command",
        *(_error(e.field, e.code, e.reason) for e in rejected.errors),
        command_id=str(rejected.command_id) if rejected.command_id else None,
    )


def _int_parameter(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or not low <= int(raw) <= high:
        raise Problem(
            400,
            "invalid_parameter",
            "A query parameter or header is invalid",
            _error(name, ErrorCode.INVALID_FIELD, f"must be an integer from {low} to {high}"),
        )
    return int(raw)


async def _body(request: Request) -> bytes:
    """The body, refused past the hub's own limit before it is all read."""
    too_large = Problem(
        413,
        "too_large",
        "The body is too large",
        _error("", ErrorCode.INVALID_JSON, f"body is larger than {MAX_BODY_BYTES} bytes"),
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _key_problem(reason: str) -> Problem:
    return Problem(
        400,
        "idempotency_key",
        "The Idempotency-Key header is missing or does not match",
        _error(IDEMPOTENCY_KEY, ErrorCode.INVALID_FIELD, reason),
    )


def _command_id(request: Request, body: dict[str, Any]) -> None:
    """The Idempotency-Key header must be present and equal the body's command_id."""
    header = request.headers.get(IDEMPOTENCY_KEY)
    if not header:
        raise _key_problem("required: the body's command_id")
    try:
        key = uuid.UUID(header)
    except ValueError:
        raise _key_problem("must be a UUID") from None
    raw = body.get("command_id")
    try:
        command_id = uuid.UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        command_id = None
    if command_id is None:
        raise Problem(
            422,
            str(ErrorCode.INVALID_FIELD),
            "A field is missing or invalid",
            _error("command_id", ErrorCode.INVALID_FIELD, "required: a UUID"),
        )
    if command_id != key:
        raise _key_problem("must equal the body's command_id")


class Gateway:
    """The request handlers, over the agencies' NATS connections."""

    def __init__(
        self,
        registry: AgencyRegistry,
        connections: AgencyConnections,
        *,
        timeout: float = 10.0,
        poll_seconds: float = 0.5,
        keepalive_seconds: float = 15.0,
    ) -> None:
        self.registry = registry
        self.connections = connections
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.keepalive_seconds = keepalive_seconds

    def agency(self, request: Request) -> str:
        """The agency the client certificate names (the body is never asked)."""
        state: dict[str, Any] = request.scope.get("state") or {}
        agency_id = agency_of(state.get(PEER_CERTIFICATE), self.registry)
        if agency_id is None:
            raise Problem(
                403,
                "no_agency",
                "The client certificate names no agency of this hub",
                _error("", ErrorCode.NOT_AUTHORISED, "certificate names no agency of this hub"),
            )
        state["agency_id"] = agency_id  # for the request log line
        return agency_id

    async def nats(self, agency_id: str) -> Client:
        try:
            return await self.connections.connection(agency_id)
        except AgencyUnreachable:
            raise _unavailable() from None

    def may_send(self, agency_id: str, command: type[Command]) -> bool:
        agency = self.registry.get(agency_id)
        return agency is not None and command in may_send(agency, self.registry)

    async def request(self, nc: Client, subject: str, body: bytes) -> bytes:
        try:
            reply = await nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            raise _unavailable() from None
        except TimeoutError:
            raise Problem(
                504,
                "timeout",
                "The hub did not answer in time",
                _error("", ErrorCode.UNAVAILABLE, "no answer in time; retry with the same key"),
            ) from None
        except (ConnectionClosedError, NatsError):
            raise _unavailable() from None
        data: bytes = reply.data
        return data

    def command_handler(self, command: type[Command]) -> Callable[[Request], Awaitable[Response]]:
        async def send(request: Request) -> Response:
            agency_id = self.agency(request)
            if not self.may_send(agency_id, command):  # NATS would refuse the publish too
                raise Problem(
                    403,
                    str(ErrorCode.NOT_AUTHORISED),
                    "This agency's role may not send this command",
                    _error(
                        "", ErrorCode.NOT_AUTHORISED, f"this agency may not send {command.NAME}"
                    ),
                )
            raw = await _body(request)
            try:
                body = read_json_object(raw)
            except BodyError as exc:
                raise Problem(
                    400,
                    str(ErrorCode.INVALID_JSON),
                    "The body is not JSON within the limits",
                    _error("", ErrorCode.INVALID_JSON, exc.reason),
                ) from None
            _command_id(request, body)
            if body.get("agency_id") != agency_id:  # as the hub's check_sender says it
                raise Problem(
                    403,
                    str(ErrorCode.NOT_AUTHORISED),
                    "The body names another agency than the client certificate",
                    _error(
                        "agency_id",
                        ErrorCode.NOT_AUTHORISED,
                        "not the agency this connection is authenticated as",
                    ),
                )
            nc = await self.nats(agency_id)
            subject = agency_command_subject(command, agency_id)
            return hub_answer(await self.request(nc, subject, raw))

        send.__name__ = command.NAME.replace(".", "_")
        return send

    async def intake_key(self, request: Request) -> Response:
        agency_id = self.agency(request)
        agency = self.registry.get(agency_id)
        if agency is None or not agency.may_identify:  # NATS permits only identifying ones
            raise Problem(
                403,
                str(ErrorCode.NOT_AUTHORISED),
                "Only agencies that identify victims may fetch the intake key",
                _error("", ErrorCode.NOT_AUTHORISED, "this agency does not identify victims"),
            )
        nc = await self.nats(agency_id)
        return Response(
            await self.request(nc, INTAKE_KEY_SUBJECT, b""),
            status_code=200,
            media_type="application/json",
        )

    async def page(self, agency_id: str, nc: Client, after: int, limit: int) -> FeedPage:
        try:
            async with self.connections.feed_lock(agency_id):
                messages = await read_feed_page(nc, agency_id, after, limit, self.timeout)
        except (ReadFailed, JetStreamError, NatsError, TimeoutError):
            raise _unavailable() from None
        items = []
        for message in messages:
            envelope = decoded_envelope(message)  # unreadable: skipped and counted
            if envelope is not None:
                items.append(FeedItem(cursor=message.sequence, event=envelope))
        next_cursor = messages[-1].sequence if messages else after
        return FeedPage(events=tuple(items), next_cursor=next_cursor)

    async def feed(self, request: Request) -> Response:
        agency_id = self.agency(request)
        after = _int_parameter(request.query_params.get("after"), "after", 0, 0, _MAX_CURSOR)
        limit = _int_parameter(
            request.query_params.get("limit"), "limit", FEED_PAGE_DEFAULT, 1, FEED_PAGE_MAX
        )
        page = await self.page(agency_id, await self.nats(agency_id), after, limit)
        return Response(page.model_dump_json(), status_code=200, media_type="application/json")

    async def feed_stream(self, request: Request) -> Response:
        agency_id = self.agency(request)
        after = _int_parameter(request.query_params.get("after"), "after", 0, 0, _MAX_CURSOR)
        resume = request.headers.get(LAST_EVENT_ID)
        if resume is not None:
            after = _int_parameter(resume, LAST_EVENT_ID, after, 0, _MAX_CURSOR)
        nc = await self.nats(agency_id)
        return StreamingResponse(
            self._events(agency_id, nc, after),
            media_type=EVENT_STREAM_CONTENT_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(self, agency_id: str, nc: Client, after: int) -> AsyncIterator[bytes]:
        """SSE: each event's id is its cursor, so a client that reconnects with
        Last-Event-ID gets exactly what follows. A read failure ends the stream; the client's
        reconnect resumes it."""
        cursor = after
        idle = 0.0
        yield b"retry: 1000\n\n"
        while True:
            try:
                async with self.connections.feed_lock(agency_id):
                    messages = await read_feed_page(
                        nc, agency_id, cursor, FEED_PAGE_MAX, self.timeout
                    )
            except (ReadFailed, JetStreamError, NatsError, TimeoutError) as exc:
                log.warning(
                    "gateway.feed_stream_ended", agency_id=agency_id, error=type(exc).__name__
                )
                return
            for message in messages:
                cursor = message.sequence
                envelope = decoded_envelope(message)
                if envelope is None:
                    continue
                # The stored CloudEvent is compact JSON: one line, as SSE `data` needs.
                yield (
                    f"id: {message.sequence}\nevent: {envelope.type}\ndata: ".encode()
                    + message.data.replace(b"\n", b"")
                    + b"\n\n"
                )
            if messages:
                idle = 0.0
                continue
            await asyncio.sleep(self.poll_seconds)
            idle += self.poll_seconds
            if idle >= self.keepalive_seconds:
                idle = 0.0
                yield b": keep-alive\n\n"


def _unavailable() -> Problem:
    return Problem(
        503,
        str(ErrorCode.UNAVAILABLE),
        "The hub is not answering",
        _error("", ErrorCode.UNAVAILABLE, "the hub is unreachable; retry with the same key"),
    )


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class RequestLog:
    """One log line per request: the route (a known path, never what a client typed), the
    agency, the status and the time taken. No header, query or body is logged."""

    def __init__(self, app: ASGIApp, known_paths: frozenset[str]) -> None:
        self.app = app
        self.known_paths = known_paths

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def logged_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            path = scope.get("path", "")
            state = scope.get("state") or {}
            log.info(
                "gateway.request",
                method=scope.get("method"),
                route=path if path in self.known_paths else "(other)",
                agency_id=state.get("agency_id"),
                status=status,
                ms=round((time.monotonic() - started) * 1000, 1),
            )


def create_app(gateway: Gateway) -> FastAPI:
    """The ASGI app. Its OpenAPI document is contracts/openapi.py's (served at /openapi.json),
    the one committed in contracts/schema/openapi.json."""
    app = FastAPI(
        title="NRM Hub gateway",
        docs_url=None,  # the interactive pages load scripts from a CDN: not on a hub
        redoc_url=None,
    )
    document = openapi()
    app.openapi = lambda: document  # type: ignore[method-assign]

    for command in ALL_COMMANDS:
        app.add_api_route(
            command_path(command),
            gateway.command_handler(command),
            methods=["POST"],
            include_in_schema=False,
        )
    app.add_api_route(INTAKE_KEY_PATH, gateway.intake_key, methods=["GET"])
    app.add_api_route(FEED_PATH, gateway.feed, methods=["GET"])
    app.add_api_route(FEED_STREAM_PATH, gateway.feed_stream, methods=["GET"])

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc.details)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        return problem_response(
            ProblemDetails(
                type=problem_type("http"),
                title="Not found" if status == 404 else "Not allowed",
                status=status if status >= 400 else 400,
                detail="no such resource or method" if status in (404, 405) else "refused",
            )
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    known = frozenset(
        [command_path(c) for c in ALL_COMMANDS]
        + [INTAKE_KEY_PATH, FEED_PATH, FEED_STREAM_PATH, "/openapi.json"]
    )
    app.add_middleware(RequestLog, known_paths=known)
    return app

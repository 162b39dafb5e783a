"""structlog JSON logs with a guard that keeps personal data out.

Services log ids and event types, never payloads. The guard is the backstop: any key that
names a personal-data field (or a whole payload) is replaced before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from contracts.vocabulary import PersonalField

REDACTED = "[redacted]"
_GUARDED_KEYS = frozenset({f.value for f in PersonalField}) | {
    "personal_data",
    "payload",
    "body",
    "data",
    "name",
}


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _GUARDED_KEYS:
            event_dict[key] = REDACTED
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    # FastStream's own access log prints subjects and message ids only, but keep it quiet.
    logging.getLogger("faststream").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_personal_data,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # stderr as it is when a line is written, not when logging was configured (a test
        # harness or a daemon may swap it in between).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)

"""Shared plumbing: settings, logging, NATS topology, the event store, key custody."""

from services.runtime.nats_headers import install as _install_header_parser

# Every process of the hub imports this package before it connects: nats-py then parses
# message headers with the faster, equivalent parser (nats_headers.py).
_install_header_parser()

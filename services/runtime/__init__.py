"""Shared plumbing: settings, logging, NATS topology, the event store, key custody."""

from services.runtime import nats_headers

# Every process of the hub imports this package before it connects: nats-py then parses
# message headers with the faster, equivalent parser (nats_headers.py).
nats_headers.install()

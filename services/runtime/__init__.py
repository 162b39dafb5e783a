"""Shared plumbing: settings, logging, NATS topology, the event store, key custody."""

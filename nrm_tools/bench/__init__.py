"""`nrm bench`: the hub beside raw NATS ceilings, in one run (docs/PERFORMANCE.md)."""

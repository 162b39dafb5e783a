"""audit: the append-only audit log of everything the hub recorded."""

"""NRM Hub services and the plumbing they share (services.runtime)."""

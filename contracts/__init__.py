"""The wire contract of NRM Hub: what agencies send, what the hub emits, and where.

Everything in this package is pure data: pydantic models, enums, subject names. It never
imports NATS, so an agency can depend on it to build and check its own messages.
"""

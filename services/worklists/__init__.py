"""Worklists for the coordinating body: `nrm cases unmet | waiting | overdue`."""

"""Statistics for the coordinating body: a projection of the event stream that holds only
non-identifying facts, group-by tables, small-cell suppression for publication, an offline
HTML report and an export in HTCDS field names (docs/STATISTICS.md)."""

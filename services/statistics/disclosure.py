"""Small-cell suppression for publication, with complementary suppression.

A two-way table is published with its row totals, column totals and grand total. Primary
suppression hides every entry (cell or total) below the threshold, zeros included: a zero
next to a published total says "all of them are in the other column", which is a statement
about people. Complementary suppression then hides more entries until no hidden entry can be
worked out from what is published.

Why the check is exact. Put the table and its margins in one (R+1) x (C+1) grid and negate
the margins: every row and every column of that grid sums to zero. Hidden entries are the
edges of a bipartite graph between grid rows and grid columns. Another table agreeing with
everything published differs from this one by a non-zero integer flow in that graph, and such
a flow splits into simple alternating cycles each of which is itself a feasible change (it
only lowers entries the difference lowers, which are >= 1). So a hidden entry can take
another value exactly when some alternating cycle through it can be applied without making
any count negative; `recoverable` searches for one. Hiding everything is always safe (adding
one to a cell, its row total, its column total and the grand total is such a cycle), so the
loop ends.

Limits: each table is protected on its own. Two published tables sharing a margin could, in
principle, be differenced against each other; docs/STATISTICS.md says which tables the
public output has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Position = tuple[int, int]  # (row, column) in the extended grid; index R / C = the margin


@dataclass(frozen=True)
class Suppression:
    """Which entries to hide: `cells[i][j]`, `row_totals[i]`, `col_totals[j]`, `total`."""

    cells: tuple[tuple[bool, ...], ...]
    row_totals: tuple[bool, ...]
    col_totals: tuple[bool, ...]
    total: bool

    def hidden_count(self) -> int:
        return (
            sum(sum(r) for r in self.cells)
            + sum(self.row_totals)
            + sum(self.col_totals)
            + int(self.total)
        )


class DisclosureError(ValueError):
    pass


def extended_grid(cells: Sequence[Sequence[int]]) -> list[list[int]]:
    """The table with its row totals as the last column and column totals (and the grand
    total) as the last row."""
    rows = [list(r) for r in cells]
    width = len(rows[0]) if rows else 0
    grid = [[*r, sum(r)] for r in rows]
    col_totals = [sum(r[j] for r in rows) for j in range(width)]
    grid.append([*col_totals, sum(col_totals)])
    return grid


def _sign(pos: Position, n_rows: int, n_cols: int) -> int:
    """+1 for cells and the grand total, -1 for margins: every grid line then sums to 0."""
    i, j = pos
    return -1 if (i == n_rows) != (j == n_cols) else 1


def recoverable(grid: Sequence[Sequence[int]], hidden: set[Position], pos: Position) -> bool:
    """Whether the hidden entry at `pos` is the only value consistent with the published
    entries of `grid` (an extended grid) and non-negative counts."""
    n_rows, n_cols = len(grid) - 1, len(grid[0]) - 1
    r, c = pos

    def feasible(p: Position, d: int) -> bool:
        change = _sign(p, n_rows, n_cols) * d
        return change > 0 or grid[p[0]][p[1]] >= 1

    by_row: dict[int, list[Position]] = {}
    by_col: dict[int, list[Position]] = {}
    for p in hidden:
        if p != pos:
            by_row.setdefault(p[0], []).append(p)
            by_col.setdefault(p[1], []).append(p)
    for sigma in (1, -1):
        if not feasible(pos, sigma):
            continue
        # From column c back to row r: column->row steps change by -sigma, row->column by +sigma.
        seen_rows: set[int] = set()
        seen_cols = {c}
        queue: deque[tuple[str, int]] = deque([("col", c)])
        while queue:
            kind, node = queue.popleft()
            if kind == "col":
                for p in by_col.get(node, ()):
                    if p[0] not in seen_rows and feasible(p, -sigma):
                        if p[0] == r:
                            return False
                        seen_rows.add(p[0])
                        queue.append(("row", p[0]))
            else:
                for p in by_row.get(node, ()):
                    if p[1] not in seen_cols and feasible(p, sigma):
                        seen_cols.add(p[1])
                        queue.append(("col", p[1]))
    return True


def suppress(
    cells: Sequence[Sequence[int]], threshold: int, hide: Iterable[Position] = ()
) -> Suppression:
    """Hide every entry below `threshold`, the entries in `hide` (positions in the extended
    grid: a margin hidden by another table that shares it), and as few more as the greedy
    search needs so that none of the hidden ones can be recovered from the published ones."""
    if threshold < 1:
        raise DisclosureError("threshold must be at least 1")
    if not cells or not cells[0]:  # no cells: every total is zero, so hidden
        return Suppression(tuple(() for _ in cells), (True,) * len(cells), (), True)
    if any(len(r) != len(cells[0]) for r in cells) or any(v < 0 for r in cells for v in r):
        raise DisclosureError("cells must be a rectangle of non-negative counts")
    n_rows, n_cols = len(cells), len(cells[0])
    forced = set(hide)
    if n_cols == 1:  # a one-way table: its margins repeat the cells and the total
        mask, total = _suppress_vector(
            [r[0] for r in cells], threshold, {i for i, _ in forced}, n_rows
        )
        return Suppression(tuple((h,) for h in mask), mask, (total,), total)
    if n_rows == 1:
        mask, total = _suppress_vector(list(cells[0]), threshold, {j for _, j in forced}, n_cols)
        return Suppression((mask,), (total,), mask, total)
    grid = extended_grid(cells)
    positions = [(i, j) for i in range(len(grid)) for j in range(len(grid[0]))]
    hidden = {p for p in positions if grid[p[0]][p[1]] < threshold} | forced

    def cost(p: Position) -> tuple[int, int, Position]:
        # Prefer small cells over margins: hide as little information as possible.
        margin = int(p[0] == n_rows or p[1] == n_cols)
        return (margin, grid[p[0]][p[1]], p)

    while True:
        exposed = sorted(p for p in hidden if recoverable(grid, hidden, p))
        if not exposed:
            break
        target = exposed[0]
        published = [p for p in positions if p not in hidden]
        if not published:  # cannot happen (see the module doc); never loop forever
            break
        same_line = sorted(
            (p for p in published if p[0] == target[0] or p[1] == target[1]), key=cost
        )
        fixes = [p for p in same_line if not recoverable(grid, hidden | {p}, target)]
        choice = (fixes or same_line or sorted(published, key=cost))[0]
        hidden.add(choice)

    return Suppression(
        cells=tuple(tuple((i, j) in hidden for j in range(n_cols)) for i in range(n_rows)),
        row_totals=tuple((i, n_cols) in hidden for i in range(n_rows)),
        col_totals=tuple((n_rows, j) in hidden for j in range(n_cols)),
        total=(n_rows, n_cols) in hidden,
    )


def _suppress_vector(
    values: Sequence[int], threshold: int, hide: set[int], total_index: int
) -> tuple[tuple[bool, ...], bool]:
    """A list of counts and its total (index `total_index` in `hide`). With the total
    published, the hidden counts are known only through their sum: one hidden count alone is
    that sum, and hidden counts summing to zero are all zero. Otherwise each can be anything
    from 0 to the sum. With the total hidden, it is known if every count is shown."""
    hidden = {i for i, v in enumerate(values) if v < threshold} | (hide - {total_index})
    total_hidden = sum(values) < threshold or total_index in hide
    while not total_hidden and hidden and (len(hidden) == 1 or sum(values[i] for i in hidden) == 0):
        published = sorted((v, i) for i, v in enumerate(values) if i not in hidden)
        if published:
            hidden.add(published[0][1])
        else:
            total_hidden = True
    if total_hidden and not hidden and values:  # the total is the sum of what is shown
        hidden.add(min(range(len(values)), key=lambda i: (values[i], i)))
    return tuple(i in hidden for i in range(len(values))), total_hidden

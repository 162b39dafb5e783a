"""An oracle for small-cell suppression, independent of services.statistics.disclosure: a
linear programme (scipy) computing each hidden entry's least and greatest possible value
given the published entries of a table (cells, row totals, column totals, grand total) and
non-negative counts. Recoverable means the two are equal. (The constraints form a network
matrix, so the LP optimum is attained at integer tables: the bounds are exact.)"""

from __future__ import annotations

from collections.abc import Sequence

from scipy.optimize import linprog

from services.statistics.disclosure import Suppression, extended_grid


def hidden_positions(s: Suppression, n_rows: int, n_cols: int) -> set[tuple[int, int]]:
    hidden = {(i, j) for i in range(n_rows) for j in range(n_cols) if s.cells[i][j]}
    hidden |= {(i, n_cols) for i in range(n_rows) if s.row_totals[i]}
    hidden |= {(n_rows, j) for j in range(n_cols) if s.col_totals[j]}
    if s.total:
        hidden.add((n_rows, n_cols))
    return hidden


def bounds(cells: Sequence[Sequence[int]], s: Suppression) -> dict[tuple[int, int], tuple]:
    """(min, max) of every hidden entry over all non-negative tables agreeing with the
    published entries (max None: unbounded)."""
    n_rows, n_cols = len(cells), len(cells[0])
    grid = extended_grid(cells)
    hidden = sorted(hidden_positions(s, n_rows, n_cols))
    index = {p: k for k, p in enumerate(hidden)}
    a_eq, b_eq = [], []
    # Each row: sum of its cells - row total = 0; each column likewise; totals: same.
    lines = [[(i, j, 1) for j in range(n_cols)] + [(i, n_cols, -1)] for i in range(n_rows + 1)] + [
        [(i, j, 1) for i in range(n_rows)] + [(n_rows, j, -1)] for j in range(n_cols + 1)
    ]
    for line in lines:
        row = [0.0] * len(hidden)
        rhs = 0.0
        for i, j, coef in line:
            if (i, j) in index:
                row[index[(i, j)]] += coef
            else:
                rhs -= coef * grid[i][j]
        if any(row):
            a_eq.append(row)
            b_eq.append(rhs)
    found = {}
    for p, k in index.items():
        objective = [0.0] * len(hidden)
        objective[k] = 1.0
        low = linprog(objective, A_eq=a_eq or None, b_eq=b_eq or None, bounds=(0, None))
        objective[k] = -1.0
        high = linprog(objective, A_eq=a_eq or None, b_eq=b_eq or None, bounds=(0, None))
        assert low.status == 0, low.message
        top = None if high.status == 3 else -high.fun
        found[p] = (round(low.fun, 6), None if top is None else round(top, 6))
    return found

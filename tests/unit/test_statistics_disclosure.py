"""Small-cell suppression: no published entry below the threshold, and no hidden entry
recoverable from what is published. The second is checked by an independent oracle
(tests/unit/disclosure_oracle.py, a linear programme)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.statistics.disclosure import DisclosureError, extended_grid, suppress
from tests.unit.disclosure_oracle import bounds as _bounds
from tests.unit.disclosure_oracle import hidden_positions as _hidden_positions

tables = st.integers(1, 4).flatmap(
    lambda rows: st.integers(1, 4).flatmap(
        lambda cols: st.lists(
            st.lists(
                st.one_of(st.integers(0, 4), st.integers(5, 30)), min_size=cols, max_size=cols
            ),
            min_size=rows,
            max_size=rows,
        )
    )
)


@settings(max_examples=300, deadline=None)
@given(cells=tables, threshold=st.integers(1, 8), data=st.data())
def test_no_published_entry_is_below_the_threshold_and_none_hidden_is_recoverable(
    cells: list[list[int]], threshold: int, data: st.DataObject
) -> None:
    n_rows, n_cols = len(cells), len(cells[0])
    margins = [(i, n_cols) for i in range(n_rows + 1)] + [(n_rows, j) for j in range(n_cols)]
    forced = data.draw(st.sets(st.sampled_from(margins), max_size=2))  # hidden elsewhere
    s = suppress(cells, threshold, hide=forced)
    assert forced <= _hidden_positions(s, n_rows, n_cols)
    grid = extended_grid(cells)
    n_rows, n_cols = len(cells), len(cells[0])
    hidden = _hidden_positions(s, n_rows, n_cols)
    for i in range(n_rows + 1):
        for j in range(n_cols + 1):
            if (i, j) not in hidden:
                assert grid[i][j] >= threshold, f"published {grid[i][j]} at {(i, j)}"
    for p, (low, high) in _bounds(cells, s).items():
        assert high is None or low < high, f"hidden entry {p} = {grid[p[0]][p[1]]} is recoverable"


def test_a_lone_small_cell_takes_a_partner_in_its_row_and_column() -> None:
    cells = [[20, 3, 12], [15, 9, 30]]
    s = suppress(cells, 5)
    assert s.cells[0][1]  # primary
    assert sum(s.cells[0]) >= 2 and sum(row[1] for row in s.cells) >= 2
    assert not s.total  # the grand total (89) stays published
    for low, high in _bounds(cells, s).values():
        assert high is None or low < high


def test_a_table_with_nothing_small_is_published_whole() -> None:
    s = suppress([[10, 12], [7, 30]], 5)
    assert s.hidden_count() == 0


def test_two_zeros_in_a_row_with_its_total_published_would_both_be_known() -> None:
    # Row 0 = 0 + 0 + 0... hiding the zeros alone would not do: the row total (0) says it.
    cells = [[0, 0], [8, 9]]
    s = suppress(cells, 5)
    assert s.row_totals[0]
    for low, high in _bounds(cells, s).values():
        assert high is None or low < high


def test_everything_below_the_threshold_hides_everything() -> None:
    s = suppress([[1, 1], [1, 1]], 5)
    assert s.hidden_count() == 4 + 2 + 2 + 1


@pytest.mark.parametrize("bad", [[[1, -1]], [[1, 2], [3]]])
def test_bad_tables_are_refused(bad: list[list[int]]) -> None:
    with pytest.raises(DisclosureError):
        suppress(bad, 5)


def test_threshold_must_be_positive() -> None:
    with pytest.raises(DisclosureError, match="threshold"):
        suppress([[3]], 0)


large_tables = st.integers(5, 10).flatmap(
    lambda rows: st.integers(2, 6).flatmap(
        lambda cols: st.lists(
            st.lists(st.sampled_from((0, 0, 1, 2, 3, 5, 8, 13)), min_size=cols, max_size=cols),
            min_size=rows,
            max_size=rows,
        )
    )
)


@settings(max_examples=15, deadline=None)
@given(cells=large_tables)
def test_sparse_tables_the_size_of_a_year_by_region_stay_protected(
    cells: list[list[int]],
) -> None:
    s = suppress(cells, 5)
    grid = extended_grid(cells)
    hidden = _hidden_positions(s, len(cells), len(cells[0]))
    assert all(
        grid[i][j] >= 5
        for i in range(len(grid))
        for j in range(len(grid[0]))
        if (i, j) not in hidden
    )
    for p, (low, high) in _bounds(cells, s).items():
        assert high is None or low < high, f"hidden entry {p} is recoverable"


@pytest.mark.parametrize("cells", [[[7], [9]], [[7, 9]], [[7, 9], [12, 30]]])
def test_a_total_hidden_by_another_table_takes_a_cell_with_it(cells: list[list[int]]) -> None:
    # The total is the sum of the cells: hiding it alone would hide nothing.
    n_rows, n_cols = len(cells), len(cells[0])
    s = suppress(cells, 5, hide=[(n_rows, n_cols)])
    assert s.total and s.hidden_count() >= 2
    for p, (low, high) in _bounds(cells, s).items():
        assert high is None or low < high, f"hidden entry {p} is recoverable"

"""Rate budget for rejection notices of unidentified senders, and command fingerprints."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from contracts.commands import RegisterShelter
from contracts.vocabulary import ShelterCategory
from services.runtime.command_ledger import fingerprint
from services.runtime.rejection_budget import RejectionBudget


def test_a_flooding_sender_is_held_back_and_the_count_travels_with_its_next_notice() -> None:
    budget = RejectionBudget(per_second=1.0, burst=3, overall_per_second=100, overall_burst=100)
    stored = [budget.spend("_INBOX.flood", now=0.0) for _ in range(10)]
    assert stored[:3] == [0, 0, 0]
    assert stored[3:] == [None] * 7
    assert budget.spend("_INBOX.flood", now=1.0) == 7  # one token back after a second
    assert budget.spend("_INBOX.other", now=1.0) == 0  # another sender is not affected


def test_all_unidentified_senders_share_an_overall_budget() -> None:
    budget = RejectionBudget(per_second=1, burst=5, overall_per_second=1, overall_burst=4)
    stored = [budget.spend(f"_INBOX.{i}", now=0.0) for i in range(10)]
    assert stored.count(0) == 4 and stored.count(None) == 6


def test_forgetting_senders_beyond_its_size_never_resets_the_overall_budget() -> None:
    budget = RejectionBudget(
        per_second=0, burst=1, overall_per_second=0, overall_burst=3, max_senders=2
    )
    assert [budget.spend(f"s{i}", now=0.0) for i in range(4)] == [0, 0, 0, None]


def _shelter(capacity: dict[ShelterCategory, int], command_id: uuid.UUID) -> RegisterShelter:
    return RegisterShelter(command_id=command_id, agency_id="kg-x", capacity=capacity)


@given(st.permutations(list(ShelterCategory)))
def test_a_fingerprint_ignores_key_order(order: list[ShelterCategory]) -> None:
    command_id = uuid.uuid4()
    one = _shelter({c: 1 for c in ShelterCategory}, command_id)
    other = _shelter({c: 1 for c in order}, command_id)
    assert fingerprint(one) == fingerprint(other)


def test_a_fingerprint_changes_with_the_body_and_the_command() -> None:
    command_id = uuid.uuid4()
    two = fingerprint(_shelter({ShelterCategory.MEN: 2}, command_id))
    assert two != fingerprint(_shelter({ShelterCategory.MEN: 3}, command_id))
    assert two != fingerprint(_shelter({ShelterCategory.MEN: 2}, uuid.uuid4()))

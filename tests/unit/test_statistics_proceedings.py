"""Criminal proceedings in the statistics: investigations, prosecutions, convictions by
article and form of exploitation (the forms of the cases a proceeding names), victims whose
cases reached court, time from identification to the decision; the 2023 figures come out
exactly, with the same public suppression as every other unit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    ChargesBrought,
    ComplaintFiled,
    CourtDecisionRecorded,
    Event,
    InvestigationOpened,
    VictimIdentified,
    VictimParticipationRecorded,
)
from contracts.vocabulary import (
    AgencyKind,
    CourtOutcome,
    CriminalArticle,
    FormOfExploitation,
    Region,
    SentenceBand,
    VictimParticipation,
)
from services.statistics.projection import StatsState, fold
from services.statistics.publish import STANDARD, figures
from services.statistics.tables import Query, count
from tests.unit.test_statistics_unmet_needs import _case, _statistics_consent

T0 = dt.datetime(2023, 1, 10, 9, tzinfo=dt.UTC)
DAY0 = T0.date()
AT = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
POLICE = "kg-mia-osh"
PROSECUTOR = "kg-prosecutor-general"
YEAR_2023 = (dt.date(2023, 1, 1), dt.date(2023, 12, 31))


def _env(event: Event, days: float = 0) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:test",
        time=T0 + dt.timedelta(days=days),
        correlation_id=None,
        causation_id=None,
    )


def _victim(form: FormOfExploitation, on: dt.date = DAY0) -> VictimIdentified:
    case = _case(Region.OSH_CITY, False, ())
    return case.model_copy(update={"forms_of_exploitation": (form,), "interviewed_on": on})


def _opened(
    proceeding: uuid.UUID, cases: Iterable[VictimIdentified], on: dt.date
) -> InvestigationOpened:
    return InvestigationOpened(
        proceeding_id=proceeding,
        case_ids=tuple(c.case_id for c in cases),
        article=CriminalArticle.ART_166,
        opened_by=POLICE,
        agency_kind=AgencyKind.INTERNAL_AFFAIRS,
        opened_on=on,
        recorded_at=T0,
    )


def _charged(proceeding: uuid.UUID, on: dt.date) -> ChargesBrought:
    return ChargesBrought(
        proceeding_id=proceeding,
        article=CriminalArticle.ART_166,
        defendants=1,
        charged_by=PROSECUTOR,
        charged_on=on,
        recorded_at=T0,
    )


def figures_2023() -> tuple[list[Envelope], list[VictimIdentified]]:
    """The country's 2023 figures: 30 investigations; 3 prosecutions (2 sex trafficking,
    1 labour); no convictions. Plus one 2024 investigation, outside the year."""
    forms = [FormOfExploitation.SEX_TRAFFICKING] * 2 + [FormOfExploitation.FORCED_LABOUR] * 28
    victims = [_victim(f) for f in forms]
    envelopes = [_env(v) for v in victims]
    for i, victim in enumerate(victims):
        proceeding = uuid.uuid4()
        envelopes.append(_env(_opened(proceeding, [victim], dt.date(2023, 2, 1 + i % 28))))
        if i in (0, 1, 2):  # the two sex trafficking victims' and one labour victim's
            envelopes.append(_env(_charged(proceeding, dt.date(2023, 9, 1))))
    late = _victim(FormOfExploitation.FORCED_LABOUR)
    envelopes += [_env(late), _env(_opened(uuid.uuid4(), [late], dt.date(2024, 1, 15)))]
    return envelopes, [*victims, late]


def _cells(
    state: StatsState,
    by: tuple[str, ...],
    where: tuple[tuple[str, str], ...] = (),
    unit: str = "proceedings",
) -> dict[str, int]:
    query = Query(unit, by, where, *YEAR_2023)
    table = count(state, query, AT)
    return {row: total for row, total in zip(table.rows, table.row_totals, strict=True) if total}


def test_the_2023_figures_come_out_exactly() -> None:
    envelopes, _ = figures_2023()
    state = fold(envelopes)
    assert _cells(state, ("investigated",)) == {"yes": 30}
    assert _cells(state, ("charged",)) == {"no": 27, "yes": 3}
    assert _cells(state, ("form",), (("charged", "yes"),)) == {
        "sex_trafficking": 2,
        "forced_labour": 1,
    }
    assert _cells(state, ("convicted",)) == {"no": 30}
    assert _cells(state, ("outcome",)) == {"pending": 30}
    assert _cells(state, ("stage",)) == {"investigation": 27, "charged": 3}
    # The 2024 investigation is outside the year, not outside the stream.
    everything = count(state, Query("proceedings", ("year",)), AT)
    assert dict(zip(everything.rows, everything.row_totals, strict=True)) == {
        "2023": 30,
        "2024": 1,
    }
    # Victims whose cases reached court: the three charged ones.
    assert _cells(state, ("reached_court",), unit="cases") == {"no": 28, "yes": 3}


def test_a_retried_or_reread_event_counts_once() -> None:
    envelopes, _ = figures_2023()
    numbered = list(enumerate(envelopes, start=1))
    state = fold([*numbered, *numbered])  # the same sequences again: skipped
    assert _cells(state, ("charged",)) == {"no": 27, "yes": 3}
    # The same complaint delivered twice (no sequence) is one proceeding.
    victim = _victim(FormOfExploitation.FORCED_LABOUR)
    filed = ComplaintFiled(
        proceeding_id=uuid.uuid4(),
        case_ids=(victim.case_id,),
        filed_by="kg-ngo-osh-legal-clinic",
        filer_kind=AgencyKind.NGO,
        on_behalf_of_victim=True,
        filed_on=dt.date(2023, 5, 1),
        recorded_at=T0,
    )
    state = fold([_env(victim), _env(filed), _env(filed)])
    assert _cells(state, ("complaint_by",)) == {"ngo": 1}
    assert _cells(state, ("stage",)) == {"complaint": 1}


def test_convictions_by_article_form_sentence_and_time_to_decision() -> None:
    sex, labour = (
        _victim(FormOfExploitation.SEX_TRAFFICKING, dt.date(2023, 1, 5)),
        _victim(FormOfExploitation.FORCED_LABOUR, dt.date(2023, 3, 1)),
    )
    convicted, reclassified, acquitted = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def decided(
        proceeding: uuid.UUID,
        outcome: CourtOutcome,
        article: CriminalArticle,
        sentence: SentenceBand,
        on: dt.date,
    ) -> CourtDecisionRecorded:
        return CourtDecisionRecorded(
            proceeding_id=proceeding,
            outcome=outcome,
            article=article,
            sentence=sentence,
            decided_on=on,
            recorded_by=PROSECUTOR,
            recorded_at=T0,
        )

    state = fold(
        [
            _env(sex),
            _env(labour),
            # one proceeding for both victims: counts once under each form
            _env(_opened(convicted, [sex, labour], dt.date(2023, 3, 10))),
            _env(_charged(convicted, dt.date(2023, 5, 1))),
            _env(
                decided(
                    convicted,
                    CourtOutcome.CONVICTION,
                    CriminalArticle.ART_166,
                    SentenceBand.FROM_3_TO_8_YEARS,
                    dt.date(2023, 10, 1),
                )
            ),
            _env(_opened(reclassified, [sex], dt.date(2023, 4, 1))),
            _env(_charged(reclassified, dt.date(2023, 5, 1))),
            _env(
                decided(
                    reclassified,
                    CourtOutcome.RECLASSIFIED,
                    CriminalArticle.ART_159,
                    SentenceBand.SUSPENDED,
                    dt.date(2024, 3, 1),
                )
            ),
            _env(_opened(acquitted, [labour], dt.date(2023, 4, 1))),
            _env(_charged(acquitted, dt.date(2023, 6, 1))),
            _env(
                decided(
                    acquitted,
                    CourtOutcome.ACQUITTAL,
                    CriminalArticle.ART_166,
                    SentenceBand.NONE,
                    dt.date(2023, 6, 20),
                )
            ),
            _env(
                VictimParticipationRecorded(
                    proceeding_id=convicted,
                    case_id=sex.case_id,
                    participation=(VictimParticipation.TESTIFIED_BY_VIDEO,),
                    recorded_on=dt.date(2023, 9, 1),
                    recorded_by=PROSECUTOR,
                    recorded_at=T0,
                )
            ),
        ]
    )
    assert _cells(state, ("article",), (("convicted", "yes"),)) == {"art_166": 1, "art_159": 1}
    assert _cells(state, ("form",), (("convicted", "yes"),)) == {
        "sex_trafficking": 2,
        "forced_labour": 1,
    }
    assert _cells(state, ("outcome",)) == {"conviction": 1, "acquittal": 1, "reclassified": 1}
    assert _cells(state, ("sentence",), (("convicted", "yes"),)) == {
        "suspended": 1,
        "3_to_8_years": 1,
    }
    # From the earliest interview of its cases: 269 days, 421 days, 111 days.
    assert _cells(state, ("time_to_decision",)) == {
        "under_6_months": 1,
        "6_to_12_months": 1,
        "1_to_2_years": 1,
    }
    assert _cells(state, ("victims",)) == {"1": 2, "2_to_5": 1}
    assert _cells(state, ("participation",)) == {"testified_by_video": 1, "none_recorded": 2}
    assert _cells(state, ("proceeding_stage",), unit="cases") == {"decided": 2}


def test_public_proceedings_need_every_victims_consent_and_small_cells_are_hidden() -> None:
    envelopes, victims = figures_2023()
    consented = victims[:3] + victims[10:]  # the 3 charged, 20 others, and the 2024 one
    envelopes += [_env(_statistics_consent(v)) for v in consented]
    state = fold(envelopes)
    public = figures(state, STANDARD, AT, public=True, threshold=5, start=YEAR_2023[0])
    table = next(t for t in public.tables if t.query.by == ("investigated", "charged"))
    # 24 proceedings of consenting victims (the 2024 one included: no --to).
    assert table.total == 3 + 20 + 1
    charged = table.cols.index(("yes",))
    assert table.col_totals[charged] is None  # 3 prosecutions: below the threshold
    restricted = figures(state, STANDARD, AT, start=YEAR_2023[0], end=YEAR_2023[1])
    table = next(t for t in restricted.tables if t.query.by == ("investigated", "charged"))
    assert table.total == 30 and table.col_totals[charged] == 3


def test_a_proceeding_naming_a_case_without_consent_is_not_public() -> None:
    a, b = _victim(FormOfExploitation.FORCED_LABOUR), _victim(FormOfExploitation.FORCED_LABOUR)
    state = fold(
        [
            _env(a),
            _env(b),
            _env(_statistics_consent(a)),
            _env(_opened(uuid.uuid4(), [a, b], dt.date(2023, 3, 1))),
        ]
    )
    unit_query = Query("proceedings", ("stage",))
    every = count(state, unit_query, AT)
    assert every.total == 1
    public_cases = state.publishable_cases(AT)
    assert count(state, unit_query, AT, public_cases=public_cases).total == 0
    # Both consenting: public.
    state.consents[b.case_id] = dataclasses.replace(state.consents[a.case_id])
    assert count(state, unit_query, AT, public_cases=state.publishable_cases(AT)).total == 1

"""Unmet needs in the statistics: counted once per need by service, region and category,
and published only for cases whose consent covers statistics, with the same suppression as
every other table."""

from __future__ import annotations

import datetime as dt
import uuid

from contracts.commands import Consent
from contracts.envelope import Envelope, unwrap_event, wrap_event
from contracts.events import ConsentRecorded, Event, NeedUnmet, VictimIdentified
from contracts.vocabulary import (
    AgeBand,
    AgencyKind,
    DataPurpose,
    LegalBasis,
    Region,
    Sector,
    Service,
    Sex,
    UnmetReason,
)
from services.agencies.registry import AgencyRegistry, load_registry
from services.referral.domain import plan_needs
from services.statistics.projection import StatsState, fold
from services.statistics.publish import STANDARD, figures
from services.statistics.tables import Query, count

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
AT = NOW + dt.timedelta(days=1)


def _without(*services: Service) -> AgencyRegistry:
    registry = load_registry()
    kept = tuple(a for a in registry.agencies if not set(services) & a.services)
    return AgencyRegistry.model_validate({**registry.model_dump(), "agencies": kept})


def _wrap(event: Event) -> Envelope:
    return wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:test",
        time=NOW,
        correlation_id=None,
        causation_id=None,
    )


def _case(region: Region, is_child: bool, needs: tuple[Service, ...]) -> VictimIdentified:
    return VictimIdentified(
        case_id=uuid.uuid4(),
        agency_id="kg-health-osh",
        agency_kind=AgencyKind.HEALTH,
        sector=Sector.GOVERNMENT,
        region=region,
        interviewed_on=NOW.date(),
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_12_TO_17 if is_child else AgeBand.FROM_25_TO_34,
        is_child=is_child,
        citizenship="KG",
        country_of_exploitation=None,
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data={},
        purposes=(),
        needs=needs,
        consent=Consent(),
    )


def _statistics_consent(case: VictimIdentified) -> ConsentRecorded:
    return ConsentRecorded(
        case_id=case.case_id,
        consent_id=uuid.uuid4(),
        recorded_by=case.agency_id,
        legal_basis=LegalBasis.INFORMED_CONSENT,
        purposes=(DataPurpose.STATISTICS,),
        recipients=(),
        recipient_kinds=(),
        withheld_fields=(),
        given_on=NOW.date(),
        expires_at=None,
    )


def _history(
    cases: list[tuple[VictimIdentified, bool]], registry: AgencyRegistry
) -> list[Envelope]:
    """Each case, its consent (covering statistics or not), and its unmet needs as the
    referral service plans them."""
    envelopes = []
    for case, consents in cases:
        envelopes.append(_wrap(case))
        if consents:
            envelopes.append(_wrap(_statistics_consent(case)))
        _, unmet = plan_needs(case, registry, NOW, dt.timedelta(hours=72))
        envelopes += [_wrap(u) for u in unmet]
    return envelopes


REGISTRY = _without(Service.EDUCATION, Service.GUARDIANSHIP)


def test_unmet_needs_are_counted_by_service_region_and_category() -> None:
    adult = _case(Region.OSH_CITY, False, (Service.EDUCATION, Service.LEGAL_AID))
    child = _case(Region.BATKEN, True, (Service.EDUCATION,))
    state = fold(_history([(adult, True), (child, True)], REGISTRY))

    assert len(state.unmet_needs) == 3  # adult: education; child: education, guardianship
    by_region = count(state, Query("unmet_needs", ("service", "region")), AT)
    cell = dict(zip(by_region.rows, by_region.cells, strict=True))
    regions = [c[0] for c in by_region.cols]
    assert cell["education"][regions.index("osh_city")] == 1
    assert cell["education"][regions.index("batken")] == 1
    assert cell["guardianship"][regions.index("batken")] == 1
    assert sum(cell["legal_aid"]) == 0  # it had a provider: referred, not unmet
    by_category = count(state, Query("unmet_needs", ("category", "reason")), AT)
    assert dict(zip(by_category.rows, by_category.row_totals, strict=True)) == {
        "women": 1,
        "men": 0,
        "children": 2,
    }
    assert by_category.cols == tuple((r.value,) for r in UnmetReason)


def test_a_need_recorded_again_counts_once() -> None:
    case = _case(Region.OSH_CITY, False, (Service.EDUCATION,))
    envelopes = _history([(case, True)], REGISTRY)
    unmet = envelopes[-1]
    assert unmet.type == NeedUnmet.NAME
    # The same need again (another event id: e.g. a later cause on the same need).
    again = _wrap(unmet_event(unmet))
    state = fold([*envelopes, again])
    assert count(state, Query("unmet_needs", ("service",)), AT).total == 1


def unmet_event(envelope: Envelope) -> NeedUnmet:
    event = unwrap_event(envelope)
    assert isinstance(event, NeedUnmet)
    return event


def test_public_figures_count_only_consenting_cases_and_hide_small_cells() -> None:
    consenting = [(_case(Region.OSH_CITY, False, (Service.EDUCATION,)), True) for _ in range(6)]
    refusing = [(_case(Region.CHUY, False, (Service.EDUCATION,)), False) for _ in range(7)]
    lone = [(_case(Region.NARYN, False, (Service.EDUCATION,)), True)]
    state = fold(_history([*consenting, *refusing, *lone], REGISTRY))
    query = Query("unmet_needs", ("region",), title="Unmet needs by region")

    inside = figures(state, [query], AT).tables[0]
    rows = dict(zip(inside.rows, inside.row_totals, strict=True))
    assert (rows["osh_city"], rows["chuy"], rows["naryn"]) == (6, 7, 1)

    public = figures(state, [query], AT, public=True, threshold=5).tables[0]
    rows = dict(zip(public.rows, public.row_totals, strict=True))
    assert rows["osh_city"] == 6
    assert rows["naryn"] is None and rows["chuy"] is None  # below the threshold: hidden
    assert public.total != inside.total
    # Before suppression: the cases without consent to statistics are not there at all.
    counted = count(state, query, AT, public_cases=state.publishable_cases(AT))
    rows = dict(zip(counted.rows, counted.row_totals, strict=True))
    assert (rows["osh_city"], rows["chuy"], rows["naryn"]) == (6, 0, 1)


def test_the_standard_tables_include_unmet_needs() -> None:
    units = {q.unit for q in STANDARD}
    assert "unmet_needs" in units
    state = fold(_history([(_case(Region.OSH_CITY, False, (Service.EDUCATION,)), True)], REGISTRY))
    tables = figures(state, STANDARD, AT).tables
    unmet = [t for t in tables if t.query.unit == "unmet_needs"]
    assert unmet and all(t.total == 1 for t in unmet)


def test_an_unmet_need_before_its_case_is_counted_but_never_published() -> None:
    case = _case(Region.OSH_CITY, False, (Service.EDUCATION,))
    [unmet] = plan_needs(case, REGISTRY, NOW, dt.timedelta(hours=72))[1]
    state: StatsState = fold([_wrap(unmet)])  # a stream read from a later point
    assert count(state, Query("unmet_needs", ("service",)), AT).total == 1
    query = Query("unmet_needs", ("service",))
    assert figures(state, [query], AT, public=True).tables[0].total in (0, None)

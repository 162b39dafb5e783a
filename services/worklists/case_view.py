"""One case as the coordinating body's secretariat sees it (`nrm cases show CASE_ID`): its
status, owner and any transfer waiting, its plan (each need's status and every referral of
it, with the provider and the answer), and its follow-ups. Ids, codes and dates only: no
sealed field is read, none could be printed. Pure: built from the folded case and plan."""

from __future__ import annotations

from typing import Any

from contracts.vocabulary import Service
from services.case.case import Case
from services.case.plan_reader import CasePlan


def case_view(case: Case, plan: CasePlan) -> dict[str, Any]:
    record = case.record
    needs = []
    for service in Service:
        need = plan.need(service)
        if need is None:
            continue
        needs.append(
            {
                "service": service.value,
                "status": need.status.value,
                "unmet_reason": need.unmet_reason.value if need.unmet_reason else None,
                "referrals": [
                    {
                        "referral_id": str(a.referral_id),
                        "attempt": a.attempt,
                        "provider_id": a.provider_id,
                        "status": a.status.value,
                        "decline_reason": a.decline_reason.value if a.decline_reason else None,
                    }
                    for a in need.attempts
                ],
            }
        )
    transfer = case.pending_transfer
    return {
        "case_id": str(record.case_id),
        "outcome": record.NAME,
        "status": case.status.value,
        "erased": case.erased,
        "identified_by": record.agency_id,
        "owner": case.owner,
        "region": record.region.value,
        "transfer_pending_to": transfer.to_agency if transfer is not None else None,
        "needs": needs,
        "follow_ups": [
            {
                "followup_id": str(followup_id),
                "due_on": f.scheduled.due_on.isoformat(),
                "purpose": f.scheduled.purpose.value,
                "scheduled_by": f.scheduled.scheduled_by,
                "state": "recorded"
                if f.recorded
                else "cancelled"
                if f.cancelled
                else "escalated"
                if f.escalated
                else "pending",
            }
            for followup_id, f in case.followups.items()
        ],
    }


def render_case(view: dict[str, Any]) -> str:
    """The view as a few readable lines."""
    lines = [
        f"case {view['case_id']}  {view['outcome']}  status {view['status']}"
        + ("  ERASED" if view["erased"] else ""),
        f"  identified by {view['identified_by']}, owner {view['owner']}, region {view['region']}"
        + (
            f", transfer pending to {view['transfer_pending_to']}"
            if view["transfer_pending_to"]
            else ""
        ),
    ]
    for need in view["needs"]:
        reason = f" ({need['unmet_reason']})" if need["unmet_reason"] else ""
        lines.append(f"  need {need['service']}: {need['status']}{reason}")
        for r in need["referrals"]:
            declined = f" ({r['decline_reason']})" if r["decline_reason"] else ""
            lines.append(
                f"    #{r['attempt']} {r['referral_id']} -> {r['provider_id']}: "
                f"{r['status']}{declined}"
            )
    for f in view["follow_ups"]:
        lines.append(
            f"  follow-up {f['followup_id']} due {f['due_on']} ({f['purpose']}, "
            f"{f['scheduled_by']}): {f['state']}"
        )
    return "\n".join(lines) + "\n"

"""Use cases of notices: each event becomes its notices once (natural `_id`s)."""
from __future__ import annotations

from shared.clock import Clock
from shared.events import Envelope

from ..adapters.repository import NoticeRepository
from ..domain import notice as n


def on_payment_confirmed(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    repo.add(n.receipt_notice(env.payload), clock.now())


def on_household_snapshot(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    repo.save_contact(env.payload)


def on_withholding_failed(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    for x in n.withholding_failure_notices(env.payload):
        repo.add(x, clock.now())


def on_correction_overdue(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    repo.add(n.correction_overdue_notice(env.payload), clock.now())


def on_claim_created(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    p = env.payload
    repo.add(n.claim_created_notice(p, repo.contact(p["year"], p.get("household_no"))), clock.now())


def on_claim_paid(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    p = env.payload
    repo.add(n.claim_paid_notice(p, repo.contact(p["year"], p.get("household_no"))), clock.now())


def on_coverage_changed(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    alert = n.coverage_alert(env.payload)
    if alert is not None:
        repo.add(alert, clock.now())


def on_stage_evaluated(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    for x in n.stage_result_notices(env.payload):
        repo.add(x, clock.now())


def on_forecast_published(repo: NoticeRepository, clock: Clock, env: Envelope) -> None:
    for x in n.forecast_notices(env.payload):
        repo.add(x, clock.now())

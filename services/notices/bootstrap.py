"""Composition root of notices."""
from __future__ import annotations

from shared.clock import Clock
from shared.container import Container

from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, NoticeRepository
from .service_layer import handlers

SERVICE = "notices"


def bootstrap(clock: Clock | None = None) -> Container:
    return Container.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS, indexes=INDEXES)


def repository(c: Container) -> NoticeRepository:
    return NoticeRepository(c.db)


def event_handlers(c: Container):
    repo = repository(c)
    def h(fn):
        return lambda env: fn(repo, c.clock, env)
    return {"payments.payment.confirmed": h(handlers.on_payment_confirmed),
            "registry.household.registered": h(handlers.on_household_snapshot),
            "registry.household.changed": h(handlers.on_household_snapshot),
            "payments.withholding.failed": h(handlers.on_withholding_failed),
            "registry.correction.overdue": h(handlers.on_correction_overdue),
            "subsidy.claim.created": h(handlers.on_claim_created),
            "subsidy.claim.paid": h(handlers.on_claim_paid),
            "subsidy.coverage.changed": h(handlers.on_coverage_changed),
            "scoring.stage.evaluated": h(handlers.on_stage_evaluated),
            "scoring.forecast.published": h(handlers.on_forecast_published)}

"""Composition root of notices."""
from __future__ import annotations

import os

from shared.clock import Clock
from shared.container import Container

from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, NoticeRepository
from .adapters.templates import TemplateBook
from .adapters.unpaid import ReminderRuns, UnpaidLedger
from .service_layer import handlers

SERVICE = "notices"


def bootstrap(clock: Clock | None = None) -> Container:
    return Container.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS, indexes=INDEXES)


def repository(c: Container) -> NoticeRepository:
    return NoticeRepository(c.db, c.county_code)


def templates(c: Container) -> TemplateBook:
    """The county's notice texts; its SMS signature is the provider's registered sign name
    (NOTICE_SMS_SIGN), by default the county's name and 医保 (【东安县医保】)."""
    return TemplateBook(sign_name=os.environ.get("NOTICE_SMS_SIGN") or f"{c.policy.county}医保")


def unpaid(c: Container) -> UnpaidLedger:
    return UnpaidLedger(c.db)


def reminder_runs(c: Container) -> ReminderRuns:
    return ReminderRuns(c.db)


# a payment's receipt notice and its household leaving the unpaid list touch different documents
COMMUTING_EVENTS = frozenset({"payments.payment.confirmed", "registry.enrolment.changed"})


def event_batch_handlers(c: Container):
    """Receipt notices of a busy queue's confirmations made together (handlers.on_payments_confirmed),
    its paid households taken off the unpaid lists together (handlers.on_enrolments_changed), and a
    roster import's households put on them together (handlers.on_household_snapshots)."""
    repo, book, ledger = repository(c), templates(c), unpaid(c)
    return {"payments.payment.confirmed": lambda envs: handlers.on_payments_confirmed(repo, c.clock, envs, book),
            "registry.enrolment.changed": lambda envs: handlers.on_enrolments_changed(ledger, envs),
            "registry.household.registered": lambda envs: handlers.on_household_snapshots(repo, ledger, envs),
            "registry.household.changed": lambda envs: handlers.on_household_snapshots(repo, ledger, envs)}


def event_handlers(c: Container):
    repo, book, ledger = repository(c), templates(c), unpaid(c)

    def h(fn):
        return lambda env: fn(repo, c.clock, env, book)

    def snapshot(env):
        handlers.on_household_snapshot(repo, c.clock, env, book, ledger)
    return {"payments.payment.confirmed": h(handlers.on_payment_confirmed),
            "registry.household.registered": snapshot,
            "registry.household.changed": snapshot,
            "registry.enrolment.changed": lambda env: handlers.on_enrolment_changed(ledger, env),
            "payments.withholding.failed": h(handlers.on_withholding_failed),
            "registry.correction.overdue": h(handlers.on_correction_overdue),
            "payments.audits.overdue": h(handlers.on_audits_overdue),
            "subsidy.claim.created": h(handlers.on_claim_created),
            "subsidy.claim.paid": h(handlers.on_claim_paid),
            "subsidy.coverage.changed": h(handlers.on_coverage_changed),
            "scoring.stage.evaluated": h(handlers.on_stage_evaluated),
            "scoring.forecast.published": h(handlers.on_forecast_published),
            "scoring.ranking.published": h(handlers.on_ranking_published)}


def deliveries(c: Container):
    from .adapters.deliveries import DeliveryStore
    return DeliveryStore(c.db, c.county_code)


def deliverer(c: Container, channels: dict | None = None, settings=None):
    """The county's delivery loop body. Channels (their HTTP sessions) and the per-channel rate
    limiter are the process's, shared by the counties: the provider counts one account."""
    from .adapters.channels import channels_from_env
    from .service_layer.delivery import Deliverer, DeliverySettings, RateLimiter
    settings = settings or DeliverySettings.from_env()
    if channels is None:
        channels = c.shared.get("notice_channels") or c.shared.setdefault("notice_channels", channels_from_env())
    import os
    limiters = c.shared.setdefault("notice_limiters", {
        "sms": RateLimiter(settings.sms_per_second),
        "email": RateLimiter(float(os.environ.get("NOTICE_EMAIL_PER_SECOND", "5"))),  # a mail relay's own limit
        "webhook": RateLimiter(float(os.environ.get("NOTICE_WEBHOOK_PER_SECOND", "20")))})
    return Deliverer(deliveries(c), channels, settings, c.clock, limiters)

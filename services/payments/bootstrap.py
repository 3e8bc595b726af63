"""Composition root of payments."""
from __future__ import annotations

from functools import cached_property

from shared.clock import Clock
from shared.container import Container
from shared.signing import Gateway, load_gateways

from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, SNAPSHOTS, PaymentsRepository
from .service_layer import handlers

SERVICE = "payments"


class PaymentsContainer(Container):
    @cached_property
    def gateways(self) -> dict[str, Gateway]:
        return load_gateways(self.settings.gateway_keys_file)


def bootstrap(clock: Clock | None = None) -> PaymentsContainer:
    return PaymentsContainer.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS, indexes=INDEXES,
                                   snapshots=SNAPSHOTS)


def repository(c: Container) -> PaymentsRepository:
    return PaymentsRepository(c.db, c.outbox)


def event_handlers(c: Container):
    repo = repository(c)
    return {"registry.household.registered": lambda env: handlers.on_household_snapshot(repo, env),
            "registry.household.changed": lambda env: handlers.on_household_snapshot(repo, env),
            "registry.household.dissolved": lambda env: handlers.on_household_dissolved(repo, env),
            "subsidy.entitlement.changed": lambda env: handlers.on_entitlement_changed(repo, env),
            "payments.payment.confirmed": lambda env: handlers.on_payment_confirmed(repo, env),
            "payments.payment.audited": lambda env: handlers.on_payment_audited(repo, env),
            "payments.payment.reversed": lambda env: handlers.on_payment_reversed(repo, env),
            "registry.duplicate.changed": lambda env: handlers.on_duplicate_changed(repo, env),
            "registry.mid_year.approved": lambda env: handlers.on_mid_year_approved(repo, env),
            "registry.mid_year.withdrawn": lambda env: handlers.on_mid_year_withdrawn(repo, env),
            "registry.holidays.published": lambda env: handlers.on_holidays_published(repo, env)}


def event_batch_handlers(c: Container):
    """Our own confirmations completed many at a time (handlers.on_payments_confirmed), and household
    snapshots (a roster import) kept many at a time (handlers.on_household_snapshots)."""
    repo = repository(c)
    return {"payments.payment.confirmed": lambda envs: handlers.on_payments_confirmed(repo, envs),
            "registry.household.registered": lambda envs: handlers.on_household_snapshots(repo, envs),
            "registry.household.changed": lambda envs: handlers.on_household_snapshots(repo, envs)}


def calendar(repo: PaymentsRepository, ttl_s: float = 30.0):
    """Payments' working-day calendar: the files and the library, then the schedules registry
    published (its read model, re-read every `ttl_s`), never another service's process state."""
    from shared.workdays import WorkCalendar
    return WorkCalendar(source=repo.holiday_schedules, ttl_s=ttl_s)


def redrive(c: Container, every_s: float = 60.0) -> None:
    """Background loop of the worker: finish withholding batches a crash left half done (payment
    transitions need none: their own events re-drive their side records)."""
    import logging
    import time
    repo = repository(c)
    while True:
        try:
            handlers.redrive_batches(repo, c.clock)
        except Exception:  # noqa: BLE001 — store down: try again next round
            logging.getLogger(__name__).warning("withholding re-drive failed; retrying", exc_info=True)
        time.sleep(every_s)

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
            "registry.duplicate.changed": lambda env: handlers.on_duplicate_changed(repo, env),
            "registry.mid_year.approved": lambda env: handlers.on_mid_year_approved(repo, env),
            "registry.mid_year.withdrawn": lambda env: handlers.on_mid_year_withdrawn(repo, env)}

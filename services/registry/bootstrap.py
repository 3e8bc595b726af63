"""Composition root of the registry: the one place that wires adapters to use cases."""
from __future__ import annotations

from shared.clock import Clock
from shared.container import Container

from .adapters import corrections as correction_store
from .adapters import duplicates as duplicate_store
from .adapters import holidays as holiday_store
from .adapters import imports as import_store
from .adapters import mid_year as mid_year_store
from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, SNAPSHOTS, HouseholdRepository
from .service_layer import handlers

SERVICE = "registry"


def bootstrap(clock: Clock | None = None) -> Container:
    return Container.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS + (
                               correction_store.CORRECTIONS, "accuracy_reports", duplicate_store.DUPLICATES,
                               mid_year_store.MID_YEAR, holiday_store.HOLIDAYS),
                           indexes=INDEXES + import_store.INDEXES + correction_store.INDEXES
                           + duplicate_store.INDEXES, snapshots={**SNAPSHOTS, **duplicate_store.SNAPSHOTS})


def repository(c: Container) -> HouseholdRepository:
    return HouseholdRepository(c.db, c.outbox)


def duplicates(c: Container) -> duplicate_store.DuplicateRepository:
    return duplicate_store.DuplicateRepository(c.db, c.outbox)


def mid_year(c: Container) -> mid_year_store.MidYearRepository:
    return mid_year_store.MidYearRepository(c.db, c.outbox)


def corrections(c: Container) -> correction_store.CorrectionRepository:
    return correction_store.CorrectionRepository(c.db, c.outbox)


def rollovers(c: Container):
    from .adapters.rollover_store import RolloverStore
    return RolloverStore(c.db)


def imports(c: Container) -> import_store.ImportStore:
    return import_store.ImportStore(c.db)


# registry's own household events, counted per township (handlers.on_household_snapshots); each
# household's newest snapshot wins whatever the order, so they commute with each other
HOUSEHOLD_SNAPSHOTS = ("registry.household.registered", "registry.household.changed", "registry.household.dissolved")
COMMUTING_EVENTS = HOUSEHOLD_SNAPSHOTS


def event_batch_handlers(c: Container):
    """The payment events a busy queue applies many at a time (handlers.apply_many)."""
    repo, approvals = repository(c), mid_year(c)
    return {"payments.payment.confirmed": lambda envs: handlers.apply_many(
                repo, envs, lambda env: handlers.confirmed_change(env, approvals)),
            "payments.payment.audited": lambda envs: handlers.apply_many(repo, envs, handlers.audited_change),
            "payments.payment.reversed": lambda envs: handlers.apply_many(repo, envs, handlers.reversed_change),
            **{t: lambda envs: handlers.on_household_snapshots(repo, envs) for t in HOUSEHOLD_SNAPSHOTS}}


def event_handlers(c: Container):
    repo, approvals = repository(c), mid_year(c)
    return {"payments.payment.confirmed": lambda env: handlers.on_payment_confirmed(repo, env, approvals),
            "payments.payment.audited": lambda env: handlers.on_payment_audited(repo, env),
            "payments.payment.reversed": lambda env: handlers.on_payment_reversed(repo, env),
            **{t: lambda env: handlers.on_household_snapshots(repo, [env]) for t in HOUSEHOLD_SNAPSHOTS}}

"""Composition root of subsidy: the event consumer (registry, payments), the identity feed from
outside publishers, the outbox relay, and the rules of the policy year."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from shared.bus import Consumer, InboundTopology, PermanentFailure, broker_user
from shared.clock import Clock
from shared.container import Container

from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, SubsidyRepository
from .domain.rules import SubsidyRules, parse_subsidy_rules
from .entrypoints import identity_feed
from .service_layer import handlers

SERVICE = "subsidy"


class SubsidyContainer(Container):
    @cached_property
    def rules(self) -> SubsidyRules:
        """The subsidy rules of the county's current year."""
        return parse_subsidy_rules(self.policy.raw)

    @cached_property
    def rules_by_year(self) -> dict[int, SubsidyRules]:
        """The subsidy rules of every loaded year of the county (the catalogue, shared/container.py)."""
        return {y: self.rules if y == self.rules.year else parse_subsidy_rules(p.raw) for y, p in self.policies.items()}

    @cached_property
    def identity_topology(self) -> InboundTopology:
        return identity_feed.topology(self.settings.namespace, SERVICE)

    @property
    def handler_pool(self) -> ThreadPoolExecutor:
        """One handler thread for both consumers and every county's rollover loop: a person's
        documents have one writer."""
        if "handler_pool" not in self.shared:
            self.shared["handler_pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handler")
        return self.shared["handler_pool"]

    def consumer(self, handlers_, topology=None, **options) -> Consumer:
        options.setdefault("executor", self.handler_pool)
        return super().consumer(handlers_, topology, **options)

    def identity_consumer(self) -> Consumer:
        """The feed of every county: an update names its county (`county`, docs/identity-feed.md)."""
        contexts = {code: context(cc) for code, cc in self.counties().items()}

        def receive(env):
            ctx = contexts.get(identity_feed.county_of(env.payload["body"]))
            if ctx is None:
                raise PermanentFailure(f"identity update names county {identity_feed.county_of(env.payload['body'])!r}; "
                                       f"this suite serves {sorted(contexts)}")
            return handlers.receive_identity_update(ctx, env.payload["body"], via="amqp", message_id=env.id,
                                                    correlation_id=env.correlation_id)
        return self.consumer({identity_feed.IDENTITY_UPDATE: receive},
            self.identity_topology, dedupe=False, decode=identity_feed.decoder(
                identity_feed.feed_accounts(), broker_user(self.settings.amqp_url), self.clock))

    def extra_consumers(self) -> list[Consumer]:
        return [self.identity_consumer()]


def bootstrap(clock: Clock | None = None) -> SubsidyContainer:
    c = SubsidyContainer.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS, indexes=INDEXES)
    c.rules_by_year  # refuse to start on a bad subsidy section of any loaded year
    return c


def repository(c: Container) -> SubsidyRepository:
    return SubsidyRepository(c.db, c.outbox)


def context(c: SubsidyContainer) -> handlers.Ctx:
    return handlers.Ctx(repository(c), c.rules, c.clock, c.policy.county, dict(c.rules_by_year))


def rollover_loop(c: SubsidyContainer, every_s: float = 30.0, limit: int = 500, stop=None) -> None:
    """Year rollover in the worker: one bounded batch per live year until each is done, run on the
    handler thread so a person's identities keep one writer (handlers.publish_year). `stop`: a
    threading.Event that ends the loop (tests); the worker runs it for its lifetime."""
    import logging
    import threading
    stop = stop or threading.Event()
    ctx = context(c)
    while not stop.is_set():
        try:
            reports = c.handler_pool.submit(handlers.publish_live_years, ctx, limit).result()
            if any(not r["done"] for r in reports):
                continue  # more batches to go
        except Exception:  # noqa: BLE001 — a failed batch is retried from its cursor
            logging.getLogger(__name__).exception("entitlement rollover batch failed")
        stop.wait(every_s)


# a confirmation's freezes and ledger, an enrolment change's resident row: each refreshes a member's
# coverage from the state as stored then, so the two streams' order does not change the outcome
COMMUTING_EVENTS = frozenset({"payments.payment.confirmed", "registry.enrolment.changed"})


def event_batch_handlers(c: SubsidyContainer):
    """Enrolment changes, confirmations and household snapshots applied many at a time."""
    ctx = context(c)
    return {"registry.enrolment.changed": lambda envs: handlers.on_enrolments_changed(ctx, envs),
            "payments.payment.confirmed": lambda envs: handlers.on_payments_confirmed(ctx, envs),
            "registry.household.registered": lambda envs: handlers.on_household_snapshots(ctx, envs),
            "registry.household.changed": lambda envs: handlers.on_household_snapshots(ctx, envs)}


def event_handlers(c: SubsidyContainer):
    ctx = context(c)
    return {
        "registry.household.registered": lambda env: handlers.on_household_registered(ctx, env),
        "registry.household.changed": lambda env: handlers.on_household_registered(ctx, env),
        "registry.enrolment.changed": lambda env: handlers.on_enrolment_changed(ctx, env),
        "payments.payment.confirmed": lambda env: handlers.on_payment_confirmed(ctx, env),
        "payments.payment.reversed": lambda env: handlers.on_payment_reversed(ctx, env),
    }

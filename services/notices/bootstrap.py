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
    return {"payments.payment.confirmed": lambda env: handlers.on_payment_confirmed(repo, c.clock, env)}

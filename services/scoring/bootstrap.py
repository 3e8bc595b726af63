"""Composition root of scoring."""
from __future__ import annotations

from shared.clock import Clock
from shared.container import Container

from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, ProgressRepository
from .service_layer import handlers

SERVICE = "scoring"


def bootstrap(clock: Clock | None = None) -> Container:
    return Container.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS, indexes=INDEXES)


def repository(c: Container) -> ProgressRepository:
    return ProgressRepository(c.db)


def event_handlers(c: Container):
    repo = repository(c)
    return {"registry.enrolment.changed": lambda env: handlers.on_enrolment_changed(repo, env),
            "registry.accuracy.published": lambda env: handlers.on_accuracy_published(repo, env),
            "subsidy.coverage.changed": lambda env: handlers.on_coverage_changed(repo, env)}

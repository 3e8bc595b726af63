"""Composition root of scoring."""
from __future__ import annotations

from shared.clock import Clock
from shared.container import Container

from .adapters import assessment_store
from .adapters.repository import INDEXES, OUTBOX_COLLECTIONS, ProgressRepository
from .service_layer import handlers

SERVICE = "scoring"


def bootstrap(clock: Clock | None = None) -> Container:
    c = Container.build(SERVICE, clock=clock, outbox_collections=OUTBOX_COLLECTIONS + assessment_store.OUTBOX_COLLECTIONS,
                        indexes=INDEXES)
    check_schemes(c)
    return c


def check_schemes(c: Container) -> None:
    """Every assessment scheme of the catalogue parses, or scoring does not start (the file and the
    field are named)."""
    from .domain.scheme import scheme_of
    for policy in c.catalogue.values():
        scheme_of(policy)


def assessments(c: Container) -> assessment_store.AssessmentStore:
    return assessment_store.AssessmentStore(c.db, c.outbox)


def repository(c: Container) -> ProgressRepository:
    return ProgressRepository(c.db)


def event_handlers(c: Container):
    repo = repository(c)
    return {"registry.enrolment.changed": lambda env: handlers.on_enrolment_changed(repo, env),
            "registry.accuracy.published": lambda env: handlers.on_accuracy_published(repo, env),
            "subsidy.coverage.changed": lambda env: handlers.on_coverage_changed(repo, env)}


def event_batch_handlers(c: Container):
    """Enrolment changes counted many at a time (handlers.on_enrolments_changed)."""
    repo = repository(c)
    return {"registry.enrolment.changed": lambda envs: handlers.on_enrolments_changed(repo, envs)}


def read_cache(c: Container):
    """One cache of portal reads per process, shared by the counties (SCORES_CACHE_S, default 5 s)."""
    import os

    from shared.read_cache import ReadCache
    if "read_cache" not in c.shared:
        c.shared["read_cache"] = ReadCache(float(os.environ.get("SCORES_CACHE_S", "5")))
    return c.shared["read_cache"]

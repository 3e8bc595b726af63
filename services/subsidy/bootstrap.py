"""Composition root of subsidy. Identity feeds, rules and entitlements arrive with the subsidy issue;
until then the service runs its web and worker processes (health, readiness, metrics, outbox)."""
from __future__ import annotations

from shared.clock import Clock
from shared.container import Container

SERVICE = "subsidy"


def bootstrap(clock: Clock | None = None) -> Container:
    return Container.build(SERVICE, clock=clock)


def event_handlers(c: Container):
    return {}

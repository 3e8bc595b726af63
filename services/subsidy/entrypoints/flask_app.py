"""HTTP API of subsidy (health, readiness, metrics and OpenAPI for now)."""
from __future__ import annotations

from flask import Flask

from shared.clock import Clock
from shared.logs import setup
from shared.web import create_base_app

from .. import bootstrap as boot


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, _api = create_base_app(c.service, c.tokens, {"store": c.store_ok, "broker": c.broker_ok})
    return app

"""The whole suite as real processes (gunicorn web + worker per service) on the test's namespace."""
from __future__ import annotations

import atexit
from contextlib import contextmanager

import pytest

from tools.clients import GatewayClient, StaffClient
from tools.suite import SERVICES, Suite, free_port_block

CLOCK_NOW = "2019-11-15T10:00:00+08:00"


@contextmanager
def running_suite(namespace: str, mongo_url: str, amqp_url: str, wait: bool = True, **env: str):
    """The five services on free ports, this module's namespace and the given store and broker.

    They are stopped when the block ends, also when the run is interrupted: tests/conftest.py
    turns SIGTERM into the same unwinding as Ctrl-C, and an exit that skips the block stops them
    at interpreter exit."""
    base = free_port_block()
    one_user = {**{f"AMQP_URL_{svc.upper()}": "" for svc in SERVICES}, "BUS_USERS": ""}  # unless `env` names them
    s = Suite(namespace=namespace, web_base_port=base, worker_base_port=base + 10,
              extra_env={"CLOCK_NOW": CLOCK_NOW, "MONGO_URL": mongo_url, "AMQP_URL": amqp_url,
                         "CONSUMER_RETRY_BASE_MS": "200", "LOG_LEVEL": "WARNING", **one_user, **env},
              web_workers=1)
    atexit.register(s.stop)
    try:
        s.start(wait=wait)
        yield s
    finally:
        s.stop()
        atexit.unregister(s.stop)


@pytest.fixture(scope="module")
def suite(namespace, infra):
    """On the shared broker each service logs in as its own user (when deploy/local.sh made them)."""
    with running_suite(namespace, infra.mongo_url, infra.amqp_url, **infra.service_env) as s:
        yield s


@pytest.fixture(scope="module")
def gateway(suite):
    from shared.clock import parse_instant
    gid, secret = next(iter(suite.secrets()["gateways"].items()))
    now = parse_instant(CLOCK_NOW)
    return GatewayClient(suite.url("payments"), gid, secret, now=lambda: now)


@pytest.fixture(scope="module")
def staff(suite):
    return StaffClient(suite.url("registry"), suite.secrets()["tokens"]["county"])

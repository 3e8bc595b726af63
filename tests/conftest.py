"""Test rule (from nameko's conftest, adopted here): fake what lies outside the suite's bounded
context (a bank gateway, an SMS provider) with real HTTP servers; use the real thing inside it
(RabbitMQ, the MongoDB-protocol store), over the network, never a mock of either.

Infrastructure: testcontainers (MongoDB 7, RabbitMQ 3.13) when a Docker engine answers; otherwise
the local servers that `deploy/local.sh start` runs (RabbitMQ from Debian, FerretDB on SQLite).
Every test module works in its own bus namespace and databases, so runs never see each other.

Broker users: the in-process tests run every service on the one user of `infra.amqp_url` (they
publish test messages with it, so the per-service `user_id` check is off for them); the e2e suites
run each service on its own broker user when deploy/local.sh made them (`infra.service_env`:
AMQP_URL_<SVC> and BUS_USERS from var/local.env), so the permissions are exercised end to end.
"""
from __future__ import annotations

import os
import signal
import uuid
from dataclasses import dataclass, field

import pytest
from pymongo import MongoClient

from shared.config import _local_env

# Every JSON response is checked against its documented schema while the tests run (shared/web.py).
os.environ.setdefault("RESPONSE_VALIDATION", "strict")
os.environ.setdefault("SCORES_CACHE_S", "0")  # tests read what they just wrote (tests/unit/test_read_cache.py: the cache)
from tools.suite import delete_bus


@dataclass
class Infra:
    """The shared store and broker. Nothing here stops or restarts them: a test that needs an
    outage starts a store or broker of its own (tests.helpers.OwnStore, OwnBroker)."""
    mongo_url: str
    amqp_url: str
    kind: str
    service_env: dict = field(default_factory=dict)  # per-service broker settings for the e2e suites


def _docker_available() -> bool:
    if os.environ.get("ENROL_TESTS_NO_DOCKER"):
        return False
    try:
        import docker
        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 — no engine here: use the local servers
        return False


def pytest_sessionstart(session):
    """A run ended by SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C: pytest tears the fixtures
    down, so the suites' service processes and the tests' own brokers and stores stop with it
    (an interrupted run once left ten service processes running for hours)."""
    def interrupted(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the teardown short
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)


@pytest.fixture(scope="session")
def infra():
    if _docker_available():
        from testcontainers.mongodb import MongoDbContainer
        from testcontainers.rabbitmq import RabbitMqContainer
        mongo = MongoDbContainer("mongo:7").start()
        rabbit = RabbitMqContainer("rabbitmq:3.13-management").with_bind_ports(5672, 35672).start()
        params = rabbit.get_connection_params()
        url = f"amqp://guest:guest@{params.host}:{params.port}/%2F"
        os.environ.update({"MONGO_URL": mongo.get_connection_url(), "AMQP_URL": url})
        yield Infra(mongo.get_connection_url(), url, "testcontainers")
        rabbit.stop()
        mongo.stop()
        return
    env = {**_local_env(), **{k: v for k, v in os.environ.items() if k in ("MONGO_URL", "AMQP_URL")}}
    if not env.get("MONGO_URL") or not env.get("AMQP_URL"):
        pytest.exit("no Docker engine and no local servers: run `deploy/local.sh start` (./run test does)", 2)
    local = _local_env()
    scoped = {k: v for k, v in local.items() if k.startswith("AMQP_URL_") or k == "BUS_USERS"}
    if "AMQP_URL" in os.environ:  # a broker chosen by the caller: its users are not ours to know
        scoped = {}
    yield Infra(env["MONGO_URL"], env["AMQP_URL"], "local", scoped)


@pytest.fixture(scope="module")
def namespace(infra):
    """A bus namespace and database prefix of this module's own; removed afterwards."""
    from tools.suite import SERVICES
    ns = "t" + uuid.uuid4().hex[:10]
    one_user = {**{f"AMQP_URL_{s.upper()}": "" for s in SERVICES}, "BUS_USERS": ""}  # see the module docstring
    old = {k: os.environ.get(k) for k in ("BUS_NAMESPACE", "MONGO_URL", "AMQP_URL", *one_user)}
    os.environ.update({"BUS_NAMESPACE": ns, "MONGO_URL": infra.mongo_url, "AMQP_URL": infra.amqp_url, **one_user})
    yield ns
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    client = MongoClient(infra.mongo_url)
    for name in client.list_database_names():
        if name.startswith(ns + "_"):
            client.drop_database(name)
    delete_bus(infra.amqp_url, ns)


@pytest.fixture(scope="module")
def mongo(infra):
    client = MongoClient(infra.mongo_url, tz_aware=True)
    yield client
    client.close()

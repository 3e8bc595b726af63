"""Test rule (from nameko's conftest, adopted here): fake what lies outside the suite's bounded
context (a bank gateway, an SMS provider) with real HTTP servers; use the real thing inside it
(RabbitMQ, the MongoDB-protocol store), over the network, never a mock of either.

Infrastructure: testcontainers (MongoDB 7, RabbitMQ 3.13) when a Docker engine answers; otherwise
the local servers that `deploy/local.sh start` runs (RabbitMQ from Debian, FerretDB on SQLite).
Every test module works in its own bus namespace and databases, so runs never see each other.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from typing import Callable

import pytest
from pymongo import MongoClient

from shared.config import ROOT, _local_env

# Every JSON response is checked against its documented schema while the tests run (shared/web.py).
os.environ.setdefault("RESPONSE_VALIDATION", "strict")
from tools.suite import delete_bus


@dataclass
class Infra:
    mongo_url: str
    amqp_url: str
    kind: str
    stop_broker: Callable[[], None]
    start_broker: Callable[[], None]


def _docker_available() -> bool:
    if os.environ.get("ENROL_TESTS_NO_DOCKER"):
        return False
    try:
        import docker
        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 — no engine here: use the local servers
        return False


@pytest.fixture(scope="session")
def infra():
    if _docker_available():
        from testcontainers.mongodb import MongoDbContainer
        from testcontainers.rabbitmq import RabbitMqContainer
        mongo = MongoDbContainer("mongo:7").start()
        rabbit = RabbitMqContainer("rabbitmq:3.13-management").with_bind_ports(5672, 35672).start()
        params = rabbit.get_connection_params()
        url = f"amqp://guest:guest@{params.host}:{params.port}/%2F"
        container = rabbit.get_wrapped_container()
        os.environ.update({"MONGO_URL": mongo.get_connection_url(), "AMQP_URL": url})
        yield Infra(mongo.get_connection_url(), url, "testcontainers", container.stop, container.start)
        rabbit.stop()
        mongo.stop()
        return
    env = {**_local_env(), **{k: v for k, v in os.environ.items() if k in ("MONGO_URL", "AMQP_URL")}}
    if not env.get("MONGO_URL") or not env.get("AMQP_URL"):
        pytest.exit("no Docker engine and no local servers: run `deploy/local.sh start` (./run test does)", 2)
    script = str(ROOT / "deploy" / "local.sh")
    yield Infra(env["MONGO_URL"], env["AMQP_URL"], "local",
                lambda: subprocess.run([script, "rabbit-stop"], check=True, capture_output=True),
                lambda: subprocess.run([script, "rabbit-start"], check=True, capture_output=True))


@pytest.fixture(scope="module")
def namespace(infra):
    """A bus namespace and database prefix of this module's own; removed afterwards."""
    ns = "t" + uuid.uuid4().hex[:10]
    old = {k: os.environ.get(k) for k in ("BUS_NAMESPACE", "MONGO_URL", "AMQP_URL")}
    os.environ.update({"BUS_NAMESPACE": ns, "MONGO_URL": infra.mongo_url, "AMQP_URL": infra.amqp_url})
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

"""A store restart loses nothing (docs/guarantees.md 4): the suite runs on a FerretDB of this
test's own (the launcher `deploy/local.sh` builds, on a free port and a data directory of its own),
which is stopped while payments are confirmed and their events flow, and started again later.

Gateways get a clear 503 while the store is down (nothing decided, retry); consumers hold their
events instead of spending their retries on the outage (the outage outlasts the retry budget here),
and every household is enrolled, counted and noticed exactly once afterwards.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from pymongo import MongoClient

from tests.e2e.conftest import CLOCK_NOW, running_suite
from tests.helpers import OwnStore, household_payload
from tools.clients import GatewayClient, StaffClient, wait_for
from tools.suite import SERVICES



@pytest.fixture(scope="module")
def store(infra, tmp_path_factory):
    if infra.kind != "local":
        pytest.skip("the store is restarted through the local launcher")
    s = OwnStore(tmp_path_factory.mktemp("ferretdb"))
    s.start()
    yield s
    if s.proc.poll() is None:
        s.stop()


@pytest.fixture(scope="module")
def suite(namespace, infra, store):
    with running_suite(namespace, store.url, infra.amqp_url, CONSUMER_MAX_ATTEMPTS="2", **infra.service_env) as s:
        yield s


def enrolled(suite, township: str) -> int:
    rows = requests.get(suite.url("scoring") + "/v1/counties/431122/progress/2020", timeout=10).json()["rows"]
    return next(r for r in rows if r["township"] == township)["enrolled_persons"]


def test_a_store_restart_while_payments_flow_loses_and_doubles_nothing(suite, store):
    from shared.clock import parse_instant
    gid, secret = next(iter(suite.secrets()["gateways"].items()))
    now = parse_instant(CLOCK_NOW)
    gateway = GatewayClient(suite.url("payments"), gid, secret, now=lambda: now)
    staff = StaffClient(suite.url("registry"), suite.secrets()["tokens"]["county"])
    notices = StaffClient(suite.url("notices"), suite.secrets()["tokens"]["county"])
    township, n = "横塘镇", 6
    for i in range(n):
        staff.post("/v1/counties/431122/households", household_payload(f"E2E-STORE-{i}", township, n=2, seed=40 + i)).raise_for_status()
    orders = []
    for i in range(n):
        wait_for(lambda: gateway.quote(f"E2E-STORE-{i}", 2020).status_code == 200, what="read model")
        orders.append(gateway.order(f"E2E-STORE-{i}", 2020).json())
    # the consumers are held while four payments are confirmed, so that their events wait in the
    # queues (payments' relay publishes them) when the store goes
    held = [int((suite.run_dir / f"{svc}-worker.pid").read_text()) for svc in SERVICES if svc != "payments"]
    for pid in held:
        os.kill(pid, signal.SIGSTOP)
    try:
        for o in orders[:4]:
            assert gateway.notify(o["order_no"], o["amount_fen"]).json()["code"] == "SUCCESS"
        outbox = MongoClient(store.url)[f"{suite.namespace}_payments"]["outbox"]
        wait_for(lambda: outbox.count_documents({}) == 0, what="the confirmations' events published")
        outbox.database.client.close()
        store.stop()
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    try:
        r = gateway.notify(orders[4]["order_no"], orders[4]["amount_fen"])
        assert r.status_code == 503 and r.json()["code"] == "STORE_UNAVAILABLE" and r.headers["Retry-After"]
        time.sleep(15)  # longer than the consumers' retry budget: 2 attempts of 5 s store timeouts
    finally:
        store.start()
    for o in orders[4:]:  # the gateway retries after the outage
        ack = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(
            gateway.notify(o["order_no"], o["amount_fen"])), timeout=60, what="store back for gateways")
        assert ack.json()["code"] == "SUCCESS"
    wait_for(lambda: enrolled(suite, township) == 2 * n, timeout=120, what="every household counted")
    for i in range(n):
        assert staff.get(f"/v1/counties/431122/households/2020/E2E-STORE-{i}").json()["status"] == "paid"
        got = wait_for(lambda: notices.get(f"/v1/counties/431122/households/2020/E2E-STORE-{i}/notices").json()["notices"],
                       what="receipt notice")
        assert [x["kind"] for x in got] == ["receipt"]
    time.sleep(2)  # a duplicate delivery would land now
    assert enrolled(suite, township) == 2 * n
    client = MongoClient(store.url)
    assert {svc: client[f"{suite.namespace}_{svc}"]["dead_letters"].count_documents({}) for svc in SERVICES} == \
        {svc: 0 for svc in SERVICES}  # the outage was waited out, not dead-lettered
    client.close()

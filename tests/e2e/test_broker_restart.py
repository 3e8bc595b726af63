"""A broker outage loses and doubles nothing: the suite runs on a RabbitMQ node of this test's own
(tests.helpers.OwnBroker), which is stopped while a payment is confirmed and started again. The
shared node that other checkouts' suites and tests use is never touched (issue 9 item 13)."""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import running_suite
from tests.e2e.test_slice import progress_of
from tests.helpers import OwnBroker, household_payload
from tools.clients import wait_for


@pytest.fixture(scope="module")
def broker(infra):
    if infra.kind != "local":
        pytest.skip("the broker node of its own is started with the local rabbitmq-server")
    b = OwnBroker()
    b.start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def suite(namespace, infra, broker):
    with running_suite(namespace, infra.mongo_url, broker.url) as s:
        yield s


def test_a_payment_confirmed_while_rabbitmq_is_down_enrols_the_members_exactly_once(suite, gateway, staff, broker):
    staff.post("/v1/counties/431122/households", household_payload("E2E-RESTART", "水岭乡", seed=3)).raise_for_status()
    wait_for(lambda: gateway.quote("E2E-RESTART", 2020).status_code == 200, what="read model")
    before = progress_of(suite, "水岭乡")["enrolled_persons"]
    order = gateway.order("E2E-RESTART", 2020).json()
    broker.stop()
    try:
        ack = gateway.notify(order["order_no"], order["amount_fen"])
        assert ack.status_code == 200 and ack.json()["status"] == "paid"  # the store write needs no broker
        again = gateway.notify(order["order_no"], order["amount_fen"])   # the gateway retries meanwhile
        assert again.json()["duplicate"] is True
        time.sleep(1)
        assert staff.get("/v1/counties/431122/households/2020/E2E-RESTART").json()["status"] == "registered"
    finally:
        broker.start()
    wait_for(lambda: staff.get("/v1/counties/431122/households/2020/E2E-RESTART").json()["status"] == "paid", timeout=90,
             what="enrolment after the broker came back")
    wait_for(lambda: progress_of(suite, "水岭乡")["enrolled_persons"] == before + 3, timeout=60, what="progress")
    time.sleep(2)  # any duplicate delivery would land now
    assert progress_of(suite, "水岭乡")["enrolled_persons"] == before + 3

"""The bus as a trust boundary (issue 9 item 9): a consumer takes an event only from the service
the catalogue names as its publisher (shared/events.py), judged by the envelope's `producer` and,
when every service has a broker user of its own, by the message's `user_id`, which the broker
checks against the publishing connection; an outside feed account speaks only for its departments.
Anything else is dead-lettered as forged and cannot be replayed."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from urllib.parse import urlsplit

import pika
import pytest

from services.scoring import bootstrap as scoring_boot
from services.subsidy import bootstrap as subsidy_boot
from shared.bus import broker_user
from shared.clock import FixedClock
from shared.config import ROOT
from shared.events import Envelope, Event
from tests.helpers import declare, publish, queue_messages, running
from tools.clients import wait_for
from tools.ids import make_id

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)


def enrolment(no: str) -> Event:
    return Event("registry.enrolment.changed", {
        "household_no": no, "year": 2020, "county": "431122", "township": "花桥镇", "village": "花桥村",
        "status": "paid", "person_ids": ["43112219800506001X"], "order_no": "P" + no})


@pytest.fixture()
def scoring(namespace):
    c = scoring_boot.bootstrap(FixedClock(NOW))
    declare(c, scoring_boot.event_handlers(c))
    return c


def send(c, infra, env: Envelope) -> None:
    publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)


def test_an_event_claiming_another_producer_than_its_catalogued_publisher_is_dead_lettered_as_forged(scoring, infra):
    """Before: any of the five producers was accepted for any event type."""
    forged = Envelope.new(enrolment("FORGED-1"), "payments", NOW)  # registry's event, claimed by payments
    genuine = Envelope.new(enrolment("GENUINE-1"), "registry", NOW)
    with running(scoring.consumer(scoring_boot.event_handlers(scoring))):
        send(scoring, infra, forged)
        send(scoring, infra, genuine)
        wait_for(lambda: scoring.suite_db.processed_events.find_one({"_id": genuine.id}), what="the genuine event")
        dead = wait_for(lambda: scoring.suite_db.dead_letters.find_one({"_id": forged.id}), what="the forged one")
    assert dead["reason"].startswith("forged") and "registry" in dead["reason"]
    assert not scoring.suite_db.processed_events.find_one({"_id": forged.id})
    assert scoring.db.progress.find_one({"_id": "2020:花桥镇"})["households"] == 1


@pytest.fixture()
def service_users(infra):
    """The broker users deploy/local.sh makes per service (var/local.env); skipped without them."""
    from shared.config import parse_pairs
    users = parse_pairs(infra.service_env.get("BUS_USERS"))
    if len(users) != 5:
        pytest.skip("deploy/local.sh made no broker user per service here")
    return users


def test_with_a_broker_user_per_service_the_publishing_user_must_be_the_catalogued_publisher(
        scoring, infra, service_users):
    """The envelope's producer is the publisher's own word; the `user_id` the broker checked is not:
    payments' broker user forging registry's event (its own namespace's exchange lets it publish)
    is dead-lettered, registry's own user gets through."""
    handlers = scoring_boot.event_handlers(scoring)
    genuine = Envelope.new(enrolment("USER-OK"), "registry", NOW)
    impostor = Envelope.new(enrolment("USER-FORGED"), "registry", NOW)
    unsigned = Envelope.new(enrolment("USER-NONE"), "registry", NOW)
    with running(scoring.consumer(handlers, publishers=service_users)):
        publish(infra.service_env["AMQP_URL_REGISTRY"], scoring.topology.exchange, genuine.type,
                json.dumps(genuine.to_dict()).encode(), genuine.id)
        publish(infra.service_env["AMQP_URL_PAYMENTS"], scoring.topology.exchange, impostor.type,
                json.dumps(impostor.to_dict()).encode(), impostor.id)
        publish(infra.service_env["AMQP_URL_REGISTRY"], scoring.topology.exchange, unsigned.type,
                json.dumps(unsigned.to_dict()).encode(), unsigned.id, user_id=None)
        wait_for(lambda: scoring.suite_db.processed_events.find_one({"_id": genuine.id}), what="registry's own event")
        for env in (impostor, unsigned):
            dead = wait_for(lambda: scoring.suite_db.dead_letters.find_one({"_id": env.id}), what="forged dead letter")
            assert dead["reason"].startswith("forged") and "broker user" in dead["reason"]
    assert not scoring.suite_db.processed_events.find_one({"_id": impostor.id})


def test_a_service_broker_user_may_publish_only_its_own_routing_keys_and_read_only_its_own_queues(
        scoring, infra, service_users):
    """Topic permissions on the suite's exchange and queue permissions, made by deploy/local.sh."""
    admin = pika.BlockingConnection(pika.URLParameters(infra.amqp_url))  # the exchange as any service declares it
    admin.channel().exchange_declare("enrol.events", "topic", durable=True)
    admin.close()
    conn = pika.BlockingConnection(pika.URLParameters(infra.service_env["AMQP_URL_PAYMENTS"]))
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:  # a key nobody binds: dropped if let through
        ch.basic_publish("enrol.events", "registry.trust.probe", b"{}", pika.BasicProperties(user_id="enrol_payments"))
    assert e.value.reply_code == 403
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:  # scoring's queue is scoring's to read
        ch.basic_get(scoring.topology.queue)
    assert e.value.reply_code == 403
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:  # nobody speaks as another broker user
        ch.confirm_delivery()
        ch.basic_publish(scoring.topology.exchange, "payments.trust.probe", b"{}",
                         pika.BasicProperties(user_id="enrol_registry"))
    assert e.value.reply_code == 406
    conn.close()


def test_the_civil_affairs_account_cannot_speak_for_the_poverty_office(namespace, infra):
    """Before: the civil-affairs account published a `registered_poor` grant as `poverty_office`
    and it was applied (HTTP refused the same with SOURCE_NOT_ALLOWED)."""
    secret = ROOT / "var" / "secrets" / "civil_affairs_amqp_password"
    if infra.kind != "local" or not secret.is_file():
        pytest.skip("the civil_affairs account is made by deploy/local.sh on the local broker")
    sub = subsidy_boot.bootstrap(FixedClock(datetime(2019, 10, 20, 1, 0, tzinfo=timezone.utc)))
    conn = pika.BlockingConnection(pika.URLParameters(infra.amqp_url))
    sub.identity_topology.declare(conn.channel())
    conn.close()
    u = urlsplit(infra.amqp_url)
    url = f"amqp://civil_affairs:{secret.read_text().strip()}@{u.hostname}:{u.port}/%2F"
    pid = make_id(date(1961, 1, 1), 21, "F")
    update = {"county": "431122", "id_number": pid, "category": "registered_poor", "action": "grant", "effective_date": "2019-09-01",
              "source_system": "poverty_office", "source_ref": "FP-FORGED-1"}
    with running(sub.identity_consumer()):
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(sub.identity_topology.exchange, "identity.poverty_office", json.dumps(update).encode(),
                         pika.BasicProperties(delivery_mode=2, message_id="forged-fp-1", user_id="civil_affairs"))
        ch.basic_publish(sub.identity_topology.exchange, "identity.poverty_office",
                         json.dumps({**update, "source_ref": "FP-FORGED-2"}).encode(),
                         pika.BasicProperties(delivery_mode=2, message_id="forged-fp-2"))  # no user named
        conn.close()
        for mid in ("forged-fp-1", "forged-fp-2"):
            dead = wait_for(lambda: sub.suite_db.dead_letters.find_one({"_id": mid}), timeout=20, what="forged feed update")
            assert dead["reason"].startswith("forged")
    assert not sub.db.identities.find_one({"_id": pid})

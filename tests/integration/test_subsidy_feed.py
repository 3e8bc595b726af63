"""The identity feed over the real RabbitMQ and store: civil affairs (民政), the poverty office (扶贫办)
and the disabled persons' federation (残联) publish plain JSON updates on `<ns>.identity.in`
(docs/identity-feed.md).

Rules: 001_93f5b63ac6b4a653.txt 六/七(五) — identities are marked by the departments and compared
and updated in time; every update is reported; the same update twice has one effect; a rejected
update never changes anything.
"""
from __future__ import annotations

import json
from datetime import date, datetime

import pika
import pytest

from services.subsidy import bootstrap as subsidy_boot
from shared.clock import SHANGHAI, FixedClock
from tests.helpers import Probe, publish, queue_messages, running
from tools.clients import wait_for
from tools.ids import make_id

NOW = datetime(2019, 10, 20, 9, 0, tzinfo=SHANGHAI)
GOOD = make_id(date(1966, 6, 6), 9, "M")
BAD_CHECK = GOOD[:-1] + ("1" if GOOD[-1] != "1" else "2")


@pytest.fixture(scope="module")
def sub(namespace, infra):
    c = subsidy_boot.bootstrap(FixedClock(NOW))
    conn = pika.BlockingConnection(pika.URLParameters(infra.amqp_url))
    c.identity_topology.declare(conn.channel())
    conn.close()
    return c  # its bus is removed with the module's namespace (tests/conftest.py)


@pytest.fixture(scope="module")
def feed(sub):
    with running(sub.identity_consumer()) as consumer:
        yield consumer


def send(sub, infra, update: dict, message_id: str | None = None, body: bytes | None = None) -> None:
    publish(infra.amqp_url, sub.identity_topology.exchange, f"identity.{update.get('source_system', 'x')}",
            body if body is not None else json.dumps(update, ensure_ascii=False).encode(), message_id)


def report(sub, key: str):
    return wait_for(lambda: sub.db.identity_updates.find_one({"_id": key}), timeout=15, what=f"report {key}")


def upd(pid: str, ref: str, **kw) -> dict:
    u = {"county": "431122", "id_number": pid, "category": "dibao_rural", "action": "grant",
         "effective_date": "2019-09-01", "source_system": "civil_affairs", "source_ref": ref}
    u.update(kw)
    return u


def history(sub, pid: str) -> list:
    return (sub.db.identities.find_one({"_id": pid}) or {}).get("history", [])


def test_a_grant_is_applied_and_the_entitlement_published(sub, feed, infra, namespace):
    """001 六: 低保 资助130元，个人缴纳120元 — payments learns it from subsidy.entitlement.changed."""
    probe = Probe(infra.amqp_url, namespace, ["subsidy.entitlement.changed"])
    pid = make_id(date(1966, 6, 6), 1, "M")
    send(sub, infra, upd(pid, "MZ-100"), "m-100")
    assert report(sub, "civil_affairs:MZ-100")["outcome"] == "applied"
    assert sub.relay().run_once() >= 1
    [msg] = [m for m in probe.take(1) if m["payload"]["person_id"] == pid]
    p = msg["payload"]
    assert (p["category"], p["subsidy_fen"], p["full_coverage"], p["department"], p["effective_from"]) == (
        "dibao_rural", 13000, False, "medical_assistance", "2019-09-01")
    probe.close()


@pytest.mark.parametrize("change, code", [
    ({"category": "五保户"}, "UNKNOWN_CATEGORY"),
    ({"id_number": BAD_CHECK}, "ID_CHECKSUM"),
    ({"id_number": "4311221966"}, "ID_FORMAT"),
    ({"action": "revoke"}, "REVOKE_NOT_GRANTED"),
    ({"source_system": "disabled_federation"}, "SOURCE_NOT_ISSUER"),
    ({"effective_date": "2019-02-30"}, "BAD_EFFECTIVE_DATE"),
])
def test_every_bad_update_is_reported_and_changes_nothing(sub, feed, infra, change, code):
    pid = make_id(date(1970, 1, 2), 7, "F")
    mid = f"bad-{code}"
    send(sub, infra, upd(pid, f"BAD-{code}", **change), mid)
    r = report(sub, f"rejected:{mid}")
    assert (r["outcome"], r["code"]) == ("rejected", code) and r["message"]
    assert sub.db.identities.find_one({"_id": pid}) is None
    assert sub.db.identity_updates.find_one({"_id": f"civil_affairs:BAD-{code}"}) is None


def test_duplicates_have_one_effect_and_are_counted(sub, feed, infra, namespace):
    probe = Probe(infra.amqp_url, namespace, ["subsidy.entitlement.changed"])
    pid = make_id(date(1955, 5, 5), 3, "M")
    u = upd(pid, "FP-7", category="registered_poor", source_system="poverty_office")
    for _ in range(3):  # the same message redelivered by the publisher
        send(sub, infra, u, "fp-7-a")
    send(sub, infra, u, "fp-7-b")  # and once more under another message id
    wait_for(lambda: (sub.db.identity_updates.find_one({"_id": "poverty_office:FP-7"}) or {}).get("duplicates") == 3,
             timeout=15, what="three duplicates reported")
    assert len(history(sub, pid)) == 1
    sub.relay().run_once()
    msgs = [m for m in probe.take(5, timeout=2) if m["payload"]["person_id"] == pid]
    assert len(msgs) == 1 and msgs[0]["payload"]["subsidy_fen"] == 13000
    # the same reference with other content is not a duplicate: it is refused
    send(sub, infra, {**u, "action": "revoke"}, "fp-7-c")
    assert report(sub, "rejected:fp-7-c")["code"] == "SOURCE_REF_REUSED"
    assert len(history(sub, pid)) == 1
    probe.close()


def test_an_older_update_arriving_after_a_newer_one_is_refused(sub, feed, infra):
    pid = make_id(date(1948, 8, 8), 5, "F")
    send(sub, infra, upd(pid, "MZ-1", category="extreme_poverty", effective_date="2019-09-01"), "oo-1")
    send(sub, infra, upd(pid, "MZ-3", category="extreme_poverty", action="revoke", effective_date="2019-12-01"), "oo-3")
    report(sub, "civil_affairs:MZ-3")
    # published earlier by civil affairs but delivered late: revoke effective 2019-11-01
    send(sub, infra, upd(pid, "MZ-2", category="extreme_poverty", action="revoke", effective_date="2019-11-01"), "oo-2")
    r = report(sub, "rejected:oo-2")
    assert r["code"] == "OUT_OF_ORDER" and r["details"]["latest_source_ref"] == "MZ-3"
    assert [h["source_ref"] for h in history(sub, pid)] == ["MZ-1", "MZ-3"]


def test_an_unreadable_message_is_dead_lettered(sub, feed, infra):
    send(sub, infra, {}, "garbage-feed-1", body=b"\xff not json")
    dead = wait_for(lambda: sub.suite_db.dead_letters.find_one({"_id": "garbage-feed-1"}), timeout=15, what="dead letter")
    assert dead["reason"].startswith("malformed")
    assert any(b == b"\xff not json" for _h, b in queue_messages(infra.amqp_url, sub.topology.dead_queue))


def test_an_update_that_names_no_county_the_suite_serves_is_dead_lettered_with_the_reason(sub, feed, infra):
    """Which county's residents it is about decides where it is judged and recorded: without one (or
    with a county the suite does not serve) it cannot be applied anywhere, nor reported in a county."""
    pid = make_id(date(1961, 6, 6), 41, "F")
    for mid, body in (("list-1", b"[1, 2]"), ("no-county-1", json.dumps({**upd(pid, "MZ-NC-1"), "county": None}).encode()),
                      ("other-county-1", json.dumps({**upd(pid, "MZ-NC-2"), "county": "110101"}).encode())):
        send(sub, infra, {}, mid, body=body)
        dead = wait_for(lambda: sub.suite_db.dead_letters.find_one({"_id": mid}), timeout=15, what=f"dead letter {mid}")
        assert dead["reason"].startswith("permanent: identity update names county"), dead["reason"]
    assert history(sub, pid) == []


def test_an_update_of_a_served_county_with_a_bad_field_is_reported_in_that_county(sub, feed, infra):
    send(sub, infra, {}, "badcat-1", body=json.dumps(upd(make_id(date(1962, 7, 7), 43, "M"), "MZ-BC-1",
                                                         category="martian")).encode())
    assert report(sub, "rejected:badcat-1")["code"] == "UNKNOWN_CATEGORY"


def test_the_civil_affairs_account_may_publish_identities_and_nothing_else(sub, feed, infra, namespace):
    """deploy/local.sh gives outside publishers their own broker account (docs/identity-feed.md)."""
    from urllib.parse import urlsplit

    from shared.config import ROOT
    secret = ROOT / "var" / "secrets" / "civil_affairs_amqp_password"
    if infra.kind != "local" or not secret.is_file():
        pytest.skip("the civil_affairs account is made by deploy/local.sh on the local broker")
    u = urlsplit(infra.amqp_url)
    url = f"amqp://civil_affairs:{secret.read_text().strip()}@{u.hostname}:{u.port}/%2F"
    pid = make_id(date(1959, 9, 9), 13, "M")
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(sub.identity_topology.exchange, "identity.civil_affairs",
                     json.dumps(upd(pid, "MZ-ACCT-1")).encode(),
                     pika.BasicProperties(delivery_mode=2, message_id="acct-1", user_id="civil_affairs"))
    assert report(sub, "civil_affairs:MZ-ACCT-1")["outcome"] == "applied"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:  # our own event exchange is out of reach
        ch.basic_publish(f"{namespace}.events", "subsidy.entitlement.changed", b"{}")
    assert e.value.reply_code == 403
    conn.close()

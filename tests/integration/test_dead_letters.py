"""Dead letters you can inspect (docs/guarantees.md 4): the people who run a service list its
dead letters over HTTP, with ID and phone numbers masked, and send one back to its queue once the
cause is fixed; the event then has its effect, once."""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone

import pytest

from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared.auth import token_hash
from shared.clock import FixedClock
from shared.events import Envelope, Event
from tests.helpers import declare, household_payload, publish, running, secret_files
from tools.clients import wait_for

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)
COUNTY, TOWN, WUMING = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(8)


@pytest.fixture(scope="module")
def tokens(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county-ops", "role": "county", "county": "431122"},
            {"sha256": token_hash(TOWN), "subject": "town", "role": "township", "county": "431122",
             "township": "花桥镇"},
            {"sha256": token_hash(WUMING), "subject": "wuming-ops", "role": "county", "county": "450110"}]):
        yield


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_dead_letter_is_listed_masked_and_replayed_once_its_cause_is_fixed(tokens, infra, monkeypatch):
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CONSUMER_RETRY_BASE_MS", "50")
    c = registry_boot.bootstrap(FixedClock(NOW))
    api = registry_app(FixedClock(NOW)).test_client()
    hh = household_payload("DL-0001", "花桥镇", n=2, seed=501)
    people = [m["id_number"] for m in hh["members"]]
    # payments confirmed a household registry does not know yet (say, its registration was lost)
    payment = Envelope.new(Event("payments.payment.confirmed", {
        "order_no": "PDL1", "receipt_no": "RDL1", "household_no": "DL-0001", "year": 2020, "county": "431122",
        "township": "花桥镇", "village": hh["village"], "head_name": "成员0", "head_phone": "13900001111",
        "amount_fen": 50000, "channel": "mobile_app", "gateway": "g", "transaction_id": "t1",
        "paid_at": NOW.isoformat(),
        "members": [{"person_id": p, "name": f"成员{i}", "standard_fen": 25000, "subsidy_fen": 0,
                     "payable_fen": 25000} for i, p in enumerate(people)]}), "payments", NOW)
    handlers = registry_boot.event_handlers(c)
    declare(c, handlers)
    with running(c.consumer(handlers)):
        publish(infra.amqp_url, c.topology.exchange, payment.type, json.dumps(payment.to_dict()).encode(), payment.id)
        wait_for(lambda: c.suite_db.dead_letters.find_one({"_id": payment.id}), timeout=30, what="dead letter")

        listed = api.get("/v1/dead-letters", headers=auth(COUNTY))
        assert listed.status_code == 200
        [dl] = [d for d in listed.json["dead_letters"] if d["id"] == payment.id]
        assert (dl["type"], dl["attempts"], dl["queue"]) == ("payments.payment.confirmed", 2, c.topology.queue)
        assert "not registered" in dl["reason"]
        text = listed.get_data(as_text=True)
        assert all(p not in text for p in people) and "13900001111" not in text  # masked
        assert people[0][:6] + "********" + people[0][-4:] in dl["body"]
        assert api.get("/v1/dead-letters", headers=auth(TOWN)).json["code"] == "ROLE_FORBIDDEN"
        assert api.post("/v1/dead-letters/nope/replay", headers=auth(COUNTY)).json["code"] == "DEAD_LETTER_NOT_FOUND"

        # the cause is fixed (the household is registered), then the letter goes back to its queue
        assert api.post("/v1/counties/431122/households", json=hh, headers=auth(COUNTY)).status_code == 201
        r = api.post(f"/v1/dead-letters/{payment.id}/replay", headers=auth(COUNTY))
        assert r.status_code == 200 and r.json == {"id": payment.id, "queue": c.topology.queue, "replays": 1}
        wait_for(lambda: api.get("/v1/counties/431122/households/2020/DL-0001", headers=auth(COUNTY)).json["status"] == "paid",
                 timeout=30, what="the replayed payment applied")
        # replayed again by mistake: no second effect (the consumer has seen the event)
        api.post(f"/v1/dead-letters/{payment.id}/replay", headers=auth(COUNTY))
        wait_for(lambda: c.suite_db.processed_events.find_one({"_id": payment.id}), what="processed")
    doc = c.db.households.find_one({"_id": "2020:DL-0001"})
    paid = [e for e in doc["_outbox"].values() if e["type"] == "registry.enrolment.changed"
            and e["payload"]["status"] == "paid"]
    assert len(paid) == 1  # the relay is not running here: every event the household produced is still in it
    assert c.suite_db.dead_letters.find_one({"_id": payment.id})["replays"] == 2


MEMBERS = [{"person_id": f"43112219800506{i:03d}X", "name": f"成员{i}", "relation": r, "category": "rural"}
           for i, r in enumerate(["户主", "子女"])]


def household_doc(no: str, members: list | None = None) -> dict:
    """A registry household document as the snapshot builder reads it (a merge before the
    registration went out can leave it with no members to publish)."""
    return {"_id": f"2020:{no}", "household_no": no, "year": 2020, "county": "431122", "township": "花桥镇",
            "village": "花桥村", "head_phone": None, "members": MEMBERS if members is None else members}


def test_an_event_that_cannot_be_built_is_set_aside_inspectable_and_the_rest_flow(tokens, infra, namespace):
    """Issue 9 item 4: a registration whose snapshot payload cannot be built (here: a household
    left with no members) used to hold back every later event of the relay for good."""
    from shared import metrics
    from shared.events import Event as Ev
    from tests.helpers import Probe
    c = registry_boot.bootstrap(FixedClock(NOW))
    api = registry_app(FixedClock(NOW)).test_client()
    relay = c.relay()
    relay.run_once()  # what the module's other tests left in the outbox
    probe = Probe(infra.amqp_url, namespace, ["registry.household.registered"])
    reg = lambda no: Ev("registry.household.registered", {})  # noqa: E731 — a snapshot: built at publish time
    [bad] = c.outbox.insert("households", household_doc("HEADLESS", members=[]), [reg("HEADLESS")])
    for no in ("GOOD-1", "GOOD-2"):
        c.outbox.insert("households", household_doc(no), [reg(no)])
    assert relay.run_once() == 2
    assert [m["payload"]["household_no"] for m in probe.take(2)] == ["GOOD-1", "GOOD-2"]
    assert relay.run_once() == 0  # nothing waits behind it any more
    assert c.db.households.find_one({"_id": "2020:HEADLESS"})["_outbox"] == {}

    [dl] = [d for d in api.get("/v1/dead-letters", headers=auth(COUNTY)).json["dead_letters"] if d["id"] == bad.id]
    assert (dl["type"], dl["source"]) == ("registry.household.registered", "outbox")
    assert dl["reason"].startswith("outbox: payload cannot be built: ")
    relay.observe()
    assert metrics.OUTBOX_DEAD.labels("registry", "431122")._value.get() == 1

    # the document is repaired; the replay puts the event back into its outbox and it goes out
    c.db.households.update_one({"_id": "2020:HEADLESS"}, {"$set": {"members": MEMBERS}})
    r = api.post(f"/v1/dead-letters/{bad.id}/replay", headers=auth(COUNTY))
    assert r.status_code == 200 and r.json["queue"] == "outbox"
    assert relay.run_once() == 1
    [got] = probe.take(1)
    assert (got["id"], got["payload"]["household_no"], got["payload"]["head_name"]) == (bad.id, "HEADLESS", "成员0")
    relay.observe()
    assert metrics.OUTBOX_DEAD.labels("registry", "431122")._value.get() == 0
    probe.close()


def test_a_countys_operators_see_and_replay_only_their_countys_dead_letters(tokens, infra, monkeypatch):
    """Scopes (issue 10: tokens are scoped to a county): one suite keeps every county's dead letters,
    whose bodies name households and payments; Wuming's operators see Wuming's and those naming no
    county, Dong'an's cannot list or replay Wuming's (404, as for a letter that does not exist)."""
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "1")
    c = registry_boot.bootstrap(FixedClock(NOW))
    api = registry_app(FixedClock(NOW)).test_client()
    payment = Envelope.new(Event("payments.payment.confirmed", {
        "order_no": "PDL-WM", "receipt_no": "RDL-WM", "household_no": "DL-WM-1", "year": 2018, "county": "450110",
        "township": "城厢镇", "village": "某村", "head_name": "甲", "amount_fen": 18000, "channel": "mobile_app",
        "gateway": "g", "transaction_id": "t-wm", "paid_at": NOW.isoformat(),
        "members": [{"person_id": "450110198001010011", "name": "甲", "standard_fen": 18000, "subsidy_fen": 0,
                     "payable_fen": 18000}]}), "payments", NOW, county="450110")
    malformed_id = f"malformed-{secrets.token_hex(4)}"
    handlers = registry_boot.event_handlers(c)
    declare(c, handlers)
    with running(c.consumer(handlers)):
        publish(infra.amqp_url, c.topology.exchange, payment.type, json.dumps(payment.to_dict()).encode(), payment.id)
        publish(infra.amqp_url, c.topology.exchange, payment.type, b"{not json", malformed_id)
        wait_for(lambda: c.suite_db.dead_letters.find_one({"_id": payment.id})
                 and c.suite_db.dead_letters.find_one({"_id": malformed_id}), timeout=30, what="two dead letters")

    def listed(token):
        r = api.get("/v1/dead-letters", headers=auth(token))
        assert r.status_code == 200, r.json
        return {d["id"]: d["county"] for d in r.json["dead_letters"]}
    assert listed(WUMING).get(payment.id) == "450110" and malformed_id in listed(WUMING)
    assert payment.id not in listed(COUNTY) and malformed_id in listed(COUNTY)
    assert all(county in (None, "431122") for county in listed(COUNTY).values())
    r = api.post(f"/v1/dead-letters/{payment.id}/replay", headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (404, "DEAD_LETTER_NOT_FOUND")
    assert c.suite_db.dead_letters.find_one({"_id": payment.id}).get("replays", 0) == 0
    r = api.post(f"/v1/dead-letters/{payment.id}/replay", headers=auth(WUMING))
    assert r.status_code == 200 and r.json["replays"] == 1, r.json

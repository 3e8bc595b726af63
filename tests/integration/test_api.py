"""The HTTP adapters on the real store: authentication and scope, clear errors, nothing half-written.

Payments rules: 001_93f5b63ac6b4a653.txt 三-五 (250 yuan a person, the window, the whole household);
gateway signatures as docs/gateway-signing.md describes them.
"""
from __future__ import annotations

import itertools
import json
import zlib
import secrets
import threading
from datetime import datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.payments.service_layer.handlers import on_household_snapshot
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import household_payload, signed_post

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
COUNTY, BAIYA = secrets.token_hex(8), secrets.token_hex(8)
GW_SECRET = secrets.token_hex(16)


@pytest.fixture(scope="module")
def secrets_files(namespace, tmp_path_factory):
    import os
    d = tmp_path_factory.mktemp("secrets")
    (d / "tokens.json").write_text(json.dumps({"tokens": [
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
        {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122", "township": "白牙市镇"}]}))
    (d / "gw.json").write_text(json.dumps({"gateways": [{"id": "bank-a", "secret": GW_SECRET, "kind": "bank", "counties": ["431122"]}]}))
    os.environ["AUTH_TOKENS_FILE"] = str(d / "tokens.json")
    os.environ["GATEWAY_KEYS_FILE"] = str(d / "gw.json")
    yield
    os.environ.pop("AUTH_TOKENS_FILE")
    os.environ.pop("GATEWAY_KEYS_FILE")


@pytest.fixture(scope="module")
def registry(secrets_files):
    return registry_app(FixedClock(NOW)).test_client()


@pytest.fixture()
def clock():
    return FixedClock(NOW)


@pytest.fixture()
def payments(secrets_files, clock):
    return payments_app(clock).test_client()


@pytest.fixture(scope="module")
def pdb(secrets_files):
    return payments_boot.bootstrap(FixedClock(NOW))


def auth(token):
    return {"Authorization": f"Bearer {token}"}


# ---- registry -------------------------------------------------------------------------------

def test_writes_need_a_valid_token(registry):
    body = household_payload("API-0001", "白牙市镇")
    assert registry.post("/v1/counties/431122/households", json=body).json["code"] == "AUTH_REQUIRED"
    r = registry.post("/v1/counties/431122/households", json=body, headers=auth("wrong"))
    assert (r.status_code, r.json["code"]) == (401, "AUTH_INVALID")


def test_township_staff_are_limited_to_their_township(registry, mongo, namespace):
    r = registry.post("/v1/counties/431122/households", json=household_payload("API-0002", "花桥镇"), headers=auth(BAIYA))
    assert (r.status_code, r.json["code"]) == (403, "SCOPE_TOWNSHIP")
    assert mongo[f"{namespace}_registry_431122"].households.find_one({"_id": "2020:API-0002"}) is None
    r = registry.post("/v1/counties/431122/households", json=household_payload("API-0002", "白牙市镇", seed=2), headers=auth(BAIYA))
    assert r.status_code == 201, r.json
    assert r.json["members"][0]["id_number"].count("*") == 8


def test_a_bad_member_row_writes_nothing_for_the_household(registry, mongo, namespace):
    body = household_payload("API-0003", "白牙市镇", seed=3)
    good_id = body["members"][0]["id_number"]
    body["members"][2]["id_number"] = body["members"][2]["id_number"][:-1] + (
        "0" if body["members"][2]["id_number"][-1] != "0" else "1")
    r = registry.post("/v1/counties/431122/households", json=body, headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (400, "ID_CHECKSUM")
    assert r.json["details"]["field"] == "members[2].id_number" and r.json["message"] == "身份证号码校验位错误"
    db = mongo[f"{namespace}_registry_431122"]
    assert db.households.find_one({"_id": "2020:API-0003"}) is None
    assert db.persons.find_one({"_id": f"2020:{good_id}"}) is None


def test_malformed_bodies_get_4xx_with_a_code_never_500(registry):
    r = registry.post("/v1/counties/431122/households", data="{oops", headers={**auth(COUNTY), "Content-Type": "application/json"})
    assert (r.status_code, r.json["code"]) == (400, "BODY_NOT_JSON")
    r = registry.post("/v1/counties/431122/households", json={"household_no": "x"}, headers=auth(COUNTY))
    assert r.status_code == 400 and r.json["code"] == "VALIDATION_FAILED" and "members" in r.json["details"]
    r = registry.get("/v1/counties/431122/households/abc/API-0001", headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (400, "BAD_YEAR")


def test_one_person_in_two_households_is_a_duplicate_with_both_places(registry):
    first = household_payload("API-0004", "白牙市镇", seed=4)
    assert registry.post("/v1/counties/431122/households", json=first, headers=auth(COUNTY)).status_code == 201
    second = household_payload("API-0005", "花桥镇", seed=5)
    second["members"][1] = dict(first["members"][1])
    r = registry.post("/v1/counties/431122/households", json=second, headers=auth(COUNTY))
    assert r.status_code == 201  # registered with the person flagged, both places named (多地重复参保)
    [flag] = [m["duplicate"] for m in r.json["members"] if "duplicate" in m]
    assert [(p["household_no"], p["township"]) for p in flag["households"]] == [("API-0004", "白牙市镇"),
                                                                              ("API-0005", "花桥镇")]
    r = registry.post("/v1/counties/431122/households", json=first, headers=auth(COUNTY))
    assert r.json["code"] == "HOUSEHOLD_EXISTS"
    assert registry.post("/v1/counties/431122/households", json=second, headers=auth(COUNTY)).json["code"] == "HOUSEHOLD_EXISTS"


# ---- payments -------------------------------------------------------------------------------

def signed(client, path, payload, *, ts=None, nonce=None, secret=GW_SECRET, gateway="bank-a", extra=None):
    return signed_post(client, path, payload, secret=secret, at=NOW, gateway=gateway, ts=ts, nonce=nonce, extra=extra)

_SEEDS = itertools.count(200)  # distinct people per household (hash() of a string changes every run)


def known_household(pdb, no, n=3, township="花桥镇"):
    p = household_payload(no, township, n=n, seed=next(_SEEDS))
    payload = {"household_no": no, "year": 2020, "county": "431122", "township": township, "village": "花桥村",
               "head_name": "成员0", "head_phone": None,
               "members": [{"person_id": m["id_number"], "name": m["name"], "relation": m["relation"],
                            "category": "rural"} for m in p["members"]]}
    on_household_snapshot(payments_boot.repository(pdb), Envelope.new(
        Event("registry.household.registered", payload), "registry", NOW))


def new_order(payments, no):
    r = signed(payments, "/v1/counties/431122/orders", {"household_no": no, "year": 2020, "channel": "mobile_app"},
               extra={"Idempotency-Key": secrets.token_hex(8)})
    assert r.status_code == 201, r.json
    return r.json


def nothing_paid(pdb, no):
    return pdb.db.payments.find_one({"_id": f"2020:{no}"}) is None


def test_quote_is_the_whole_household_at_250_yuan_each(payments, pdb):
    known_household(pdb, "PAY-0001", n=4)
    r = signed(payments, "/v1/counties/431122/quotes", {"household_no": "PAY-0001", "year": 2020})
    assert r.status_code == 200 and r.json["total_fen"] == 100000 and len(r.json["lines"]) == 4


@pytest.mark.parametrize("tamper, code", [
    (dict(secret=GW_SECRET[::-1]), "SIGNATURE_INVALID"),
    (dict(gateway="bank-unknown"), "SIGNATURE_INVALID"),
    (dict(ts=str(int(NOW.timestamp()) - 301)), "TIMESTAMP_OUT_OF_WINDOW"),
])
def test_unsigned_or_stale_notifications_are_refused_and_change_nothing(payments, pdb, tamper, code):
    no = f"PAY-T{zlib.crc32((code + str(tamper)).encode()) % 10**6}"
    known_household(pdb, no)
    order = new_order(payments, no)
    r = signed(payments, "/v1/counties/431122/notifications", {"order_no": order["order_no"], "transaction_id": "T1",
                                               "amount_fen": order["amount_fen"], "paid_at": NOW.isoformat()}, **tamper)
    assert (r.status_code, r.json["code"]) == (401, code)
    assert nothing_paid(pdb, no) and pdb.db.orders.find_one({"_id": order["order_no"]})["status"] == "created"


def test_a_replayed_nonce_is_refused(payments, pdb):
    known_household(pdb, "PAY-0002")
    order = new_order(payments, "PAY-0002")
    body = {"order_no": order["order_no"], "transaction_id": "T2", "amount_fen": 1, "paid_at": NOW.isoformat()}
    signed(payments, "/v1/counties/431122/notifications", body, nonce="n" * 20)
    r = signed(payments, "/v1/counties/431122/notifications", body, nonce="n" * 20)
    assert (r.status_code, r.json["code"]) == (401, "NONCE_REPLAYED")


def test_amount_mismatch_and_unknown_order_are_refused(payments, pdb):
    known_household(pdb, "PAY-0003")
    order = new_order(payments, "PAY-0003")
    r = signed(payments, "/v1/counties/431122/notifications", {"order_no": order["order_no"], "transaction_id": "T3",
                                               "amount_fen": order["amount_fen"] - 1, "paid_at": NOW.isoformat()})
    assert (r.status_code, r.json["code"]) == (400, "AMOUNT_MISMATCH")
    assert nothing_paid(pdb, "PAY-0003")
    r = signed(payments, "/v1/counties/431122/notifications", {"order_no": "P-NOPE", "transaction_id": "T3", "amount_fen": 1,
                                               "paid_at": NOW.isoformat()})
    assert (r.status_code, r.json["code"]) == (404, "ORDER_NOT_FOUND")


def test_an_expired_order_is_refused(payments, pdb, clock):
    from datetime import timedelta
    known_household(pdb, "PAY-0004")
    order = new_order(payments, "PAY-0004")
    clock.advance(timedelta(hours=3))
    r = signed(payments, "/v1/counties/431122/notifications", {"order_no": order["order_no"], "transaction_id": "T4",
                                               "amount_fen": order["amount_fen"], "paid_at": NOW.isoformat()},
               ts=str(int(clock.now().timestamp())))
    assert (r.status_code, r.json["code"]) == (422, "ORDER_EXPIRED")
    assert nothing_paid(pdb, "PAY-0004")


def test_the_same_idempotency_key_returns_the_same_order_and_another_body_is_refused(payments, pdb):
    known_household(pdb, "PAY-0005")
    body = {"household_no": "PAY-0005", "year": 2020, "channel": "mobile_app"}
    a = signed(payments, "/v1/counties/431122/orders", body, extra={"Idempotency-Key": "key-0005-abc"})
    b = signed(payments, "/v1/counties/431122/orders", body, extra={"Idempotency-Key": "key-0005-abc"})
    assert (a.status_code, b.status_code) == (201, 200) and a.json["order_no"] == b.json["order_no"]
    c = signed(payments, "/v1/counties/431122/orders", dict(body, channel="pos"), extra={"Idempotency-Key": "key-0005-abc"})
    assert (c.status_code, c.json["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")


def test_a_notification_delivered_three_times_confirms_once(payments, pdb):
    known_household(pdb, "PAY-0006")
    order = new_order(payments, "PAY-0006")
    body = {"order_no": order["order_no"], "transaction_id": "T6", "amount_fen": order["amount_fen"],
            "paid_at": NOW.isoformat()}
    acks = [signed(payments, "/v1/counties/431122/notifications", body).json for _ in range(3)]
    assert [a["code"] for a in acks] == ["SUCCESS"] * 3 and [a["duplicate"] for a in acks] == [False, True, True]
    doc = pdb.db.payments.find_one({"_id": "2020:PAY-0006"})
    assert len(doc["_outbox"]) == 1  # one payments.payment.confirmed event


def test_concurrent_notifications_for_one_order_confirm_once(secrets_files, pdb):
    """Four gateway retries of one notification released together (a barrier), five rounds: every
    caller gets SUCCESS, exactly one of them is the first (duplicate: false), one payment, one event."""
    for rnd in range(5):
        hh = f"PAY-07{rnd:02d}"
        known_household(pdb, hh)
        client = payments_app(FixedClock(NOW)).test_client()
        order = new_order(client, hh)
        body = {"order_no": order["order_no"], "transaction_id": f"T7{rnd}", "amount_fen": order["amount_fen"],
                "paid_at": NOW.isoformat()}
        clients = [payments_app(FixedClock(NOW)).test_client() for _ in range(4)]
        start = threading.Barrier(4)
        results, errors = [], []

        def notify(c):
            start.wait()
            try:
                r = signed(c, "/v1/counties/431122/notifications", body)
                results.append((r.status_code, r.json))
            except Exception as e:  # noqa: BLE001 — a crashed caller fails the test below
                errors.append(e)
        threads = [threading.Thread(target=notify, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == 4
        assert {(status, r["code"]) for status, r in results} == {(200, "SUCCESS")}
        assert sorted(r["duplicate"] for _, r in results) == [False, True, True, True]
        doc = pdb.db.payments.find_one({"_id": f"2020:{hh}"})
        assert doc["order_no"] == order["order_no"] and len(doc["_outbox"]) == 1


def test_outside_the_window_no_quote_is_given(payments, pdb, clock):
    known_household(pdb, "PAY-0008")
    clock.set(datetime(2020, 1, 1, 0, 0, tzinfo=SHANGHAI))
    r = signed(payments, "/v1/counties/431122/quotes", {"household_no": "PAY-0008", "year": 2020}, ts=str(int(clock.now().timestamp())))
    assert (r.status_code, r.json["code"]) == (422, "WINDOW_CLOSED")


def test_a_household_change_reaches_quotes_and_an_older_snapshot_never_wins(payments, pdb):
    # a birth after registration (异动, 001 七(二)) adds a member the household must pay for
    known_household(pdb, "PAY-0009", n=2)
    repo = payments_boot.repository(pdb)
    base = repo.household(2020, "PAY-0009")
    grown = {k: base[k] for k in ("household_no", "year", "county", "township", "village", "head_name", "head_phone")}
    grown["members"] = base["members"] + [{"person_id": "431122201909200028", "name": "新生儿", "relation": "子女",
                                           "category": "rural"}]
    newer = Envelope.new(Event("registry.household.changed", {**grown, "change": "birth", "reason": ""}), "registry", NOW)
    newer.seq = "00000000000000000009"
    on_household_snapshot(repo, newer)
    older = Envelope.new(Event("registry.household.registered", {**grown, "members": base["members"]}), "registry", NOW)
    older.seq = "00000000000000000001"
    on_household_snapshot(repo, older)  # redelivered late
    r = signed(payments, "/v1/counties/431122/quotes", {"household_no": "PAY-0009", "year": 2020})
    assert r.status_code == 200 and len(r.json["lines"]) == 3 and r.json["total_fen"] == 75000


def test_snapshots_in_a_batch_keep_the_newest_of_each_household_whatever_the_order(payments, pdb):
    """The worker's batch handler for household snapshots (a roster import, then changes): new
    households are stored, a newer snapshot replaces an older one, and one delivered late, or twice,
    or older inside the same batch, never wins (docs/guarantees.md C)."""
    from services.payments.service_layer.handlers import on_household_snapshots
    known_household(pdb, "PAY-0020", n=2)
    repo = payments_boot.repository(pdb)
    base = repo.household(2020, "PAY-0020")
    head = {k: base[k] for k in ("household_no", "year", "county", "township", "village", "head_name", "head_phone")}
    baby = {"person_id": "431122201909200044", "name": "新生儿", "relation": "子女", "category": "rural"}

    def snap(no, members, seq, kind="registered"):
        e = Envelope.new(Event(f"registry.household.{kind}", {**head, "household_no": no, "members": members,
                                                             **({"change": "birth", "reason": ""} if kind == "changed" else {})}),
                         "registry", NOW)
        e.seq = f"{seq:020d}"
        return e
    grown = base["members"] + [baby]
    batch = [snap("PAY-0020", grown, 9, "changed"), snap("PAY-0021", base["members"], 5),
             snap("PAY-0021", grown, 7, "changed"), snap("PAY-0020", base["members"], 1)]
    for _ in range(2):  # delivered again
        on_household_snapshots(repo, batch)
    on_household_snapshots(repo, [snap("PAY-0021", base["members"], 6)])  # older, late
    for no in ("PAY-0020", "PAY-0021"):
        r = signed(payments, "/v1/counties/431122/quotes", {"household_no": no, "year": 2020})
        assert r.status_code == 200 and len(r.json["lines"]) == 3 and r.json["total_fen"] == 75000, (no, r.json)


def test_a_household_merged_into_another_is_not_quoted(payments, pdb):
    known_household(pdb, "PAY-0010")
    repo = payments_boot.repository(pdb)
    env = Envelope.new(Event("registry.household.dissolved", {
        "household_no": "PAY-0010", "year": 2020, "county": "431122", "township": "花桥镇", "village": "花桥村",
        "merged_into": "PAY-0011", "reason": "合户"}), "registry", NOW)
    from services.payments.service_layer.handlers import on_household_dissolved
    on_household_dissolved(repo, env)
    r = signed(payments, "/v1/counties/431122/quotes", {"household_no": "PAY-0010", "year": 2020})
    assert (r.status_code, r.json["code"]) == (409, "HOUSEHOLD_MERGED") and r.json["details"]["merged_into"] == "PAY-0011"

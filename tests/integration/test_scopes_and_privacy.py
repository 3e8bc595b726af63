"""Who may do what (README "Who may do what", shared/auth.py), personal data out of URLs and error
bodies, strict responses, clear refusals of bad query values, and the small holes of issue 9:
every test drives the real apps on the real store."""
from __future__ import annotations

import http.client
import secrets
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from flask import Flask
from marshmallow import Schema, fields

from services.payments import bootstrap as payments_boot
from services.payments.domain.model import new_order_no
from services.payments.domain.receipts import build_receipt
from services.payments.domain.withholding import new_batch_no
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.payments.entrypoints.loops import forget_nonces_once
from services.payments.service_layer.handlers import on_household_snapshot
from services.registry.entrypoints.flask_app import create_app as registry_app
from services.subsidy import bootstrap as subsidy_boot
from services.subsidy.entrypoints.flask_app import create_app as subsidy_app
from services.subsidy.service_layer import handlers as subsidy_handlers
from shared.auth import TokenBook, role_table_markdown, token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from shared.events import Envelope, Event
from shared.web import create_base_app
from tests.helpers import household_payload, secret_files, signed_post
from tools.ids import make_id

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
COUNTY, BAIYA, HUAQIAO, TAX, NOSYS, CIVIL, WUMING = (secrets.token_hex(8) for _ in range(7))
BANK, COLLECTOR = secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture(scope="module", autouse=True)
def files(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
            {"sha256": token_hash(WUMING), "subject": "wuming-county", "role": "county", "county": "450110"},
            {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122", "township": "白牙市镇"},
            {"sha256": token_hash(HUAQIAO), "subject": "hq", "role": "township", "county": "431122", "township": "花桥镇"},
            {"sha256": token_hash(TAX), "subject": "tax-bureau", "role": "system", "county": "431122", "permissions": ["payments:audit"],
             "services": ["payments"]},
            {"sha256": token_hash(NOSYS), "subject": "some-system", "role": "system", "county": "431122"},
            {"sha256": token_hash(CIVIL), "subject": "civil_affairs", "role": "system", "county": "431122",
             "permissions": ["identities:submit", "identities:read"], "services": ["subsidy"]}], gateways=[
            {"id": "bank-a", "secret": BANK, "kind": "bank", "channels": ["mobile_app"]},
            {"id": "hq-collector", "secret": COLLECTOR, "kind": "village_collector", "channels": ["village_cash"],
             "villages": ["花桥镇/花桥村"]}]):
        yield


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def signed(client, path, payload, gateway="bank-a", secret=BANK, extra=None, clock_now=NOW):
    return signed_post(client, path, payload, secret=secret, at=clock_now, gateway=gateway, extra=extra)

@pytest.fixture(scope="module")
def pc():
    return payments_boot.bootstrap(FixedClock(NOW))


def feed_household(pc, no, township="花桥镇", village="花桥村", seed=0):
    p = household_payload(no, township, n=2, seed=seed)
    payload = {"household_no": no, "year": 2020, "county": "431122", "township": township, "village": village,
               "head_name": "张三丰", "head_phone": "13900001111",
               "members": [{"person_id": m["id_number"], "name": n, "relation": m["relation"],
                            "category": "dibao_rural" if i else "rural"}
                           for i, (m, n) in enumerate(zip(p["members"], ["张三丰", "李四娘"]))]}
    repo = payments_boot.repository(pc)
    on_household_snapshot(repo, Envelope.new(Event("registry.household.registered", payload), "registry", NOW))
    repo.add_entitlement_change(secrets.token_hex(6), "0001", NOW.isoformat(), {  # as subsidy's event would
        "year": 2020, "person_id": payload["members"][1]["person_id"], "category": "dibao_rural",
        "subsidy_fen": 13000, "department": "civil_affairs", "effective_from": "2019-09-01"})
    return payload


# ---- who may do what ------------------------------------------------------------------------

def test_the_readme_role_table_is_the_one_the_code_enforces():
    assert role_table_markdown() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_a_system_token_audits_only_with_the_audit_permission_and_only_where_it_is_accepted(pc):
    api = payments_app(FixedClock(NOW)).test_client()
    r = api.post("/v1/counties/431122/payments/2020/NOPE-0001/audit", headers=auth(NOSYS))
    assert (r.status_code, r.json["code"]) == (403, "ROLE_FORBIDDEN")  # any system could audit before
    assert r.json["details"]["permission"] == "payments:audit"
    r = api.post("/v1/counties/431122/payments/2020/NOPE-0001/audit", headers=auth(TAX))
    assert (r.status_code, r.json["code"]) == (404, "PAYMENT_NOT_FOUND")  # allowed: there is just nothing to audit
    r = api.post("/v1/counties/431122/payments/2020/NOPE-0001/audit", headers=auth(CIVIL))  # a subsidy-only token
    assert (r.status_code, r.json["code"]) == (401, "AUTH_INVALID")


def test_a_token_granting_a_system_more_than_it_may_hold_stops_the_service():
    with pytest.raises(ValueError, match="not grantable"):
        TokenBook([{"sha256": "x", "subject": "s", "role": "system", "county": "431122", "permissions": ["ledger:read"]}])


def test_a_village_collector_quotes_only_its_villages_and_sees_masked_names_without_category(pc):
    feed_household(pc, "SC-0001", seed=11)
    feed_household(pc, "SC-0002", "白牙市镇", "五一村", seed=12)
    api = payments_app(FixedClock(NOW)).test_client()
    bank = signed(api, "/v1/counties/431122/quotes", {"household_no": "SC-0001", "year": 2020})
    assert bank.status_code == 200 and bank.json["lines"][1]["name"] == "李四娘"
    assert bank.json["lines"][1]["category"] == "dibao_rural"
    mine = signed(api, "/v1/counties/431122/quotes", {"household_no": "SC-0001", "year": 2020}, "hq-collector", COLLECTOR)
    assert mine.status_code == 200, mine.json
    assert [l["name"] for l in mine.json["lines"]] == ["张**", "李**"]
    assert all(l["category"] is None for l in mine.json["lines"])
    assert mine.json["total_fen"] == bank.json["total_fen"]  # what to collect is the same
    for no in ("SC-0002", "NO-SUCH-HH"):  # another township's household, and one that does not exist
        r = signed(api, "/v1/counties/431122/quotes", {"household_no": no, "year": 2020}, "hq-collector", COLLECTOR)
        assert (r.status_code, r.json["code"]) == (403, "GATEWAY_SCOPE")
    r = signed(api, "/v1/counties/431122/orders", {"household_no": "SC-0002", "year": 2020, "channel": "village_cash"},
               "hq-collector", COLLECTOR, extra={"Idempotency-Key": secrets.token_hex(8)})
    assert (r.status_code, r.json["code"]) == (403, "GATEWAY_SCOPE")


def test_township_staff_read_hardship_identities_and_entitlements_of_their_township_only():
    clock = FixedClock(NOW)
    c = subsidy_boot.bootstrap(clock)
    ctx = subsidy_boot.context(c)
    pid = make_id(date(1970, 3, 3), 41, "F")
    subsidy_handlers.receive_identity_update(ctx, {
        "id_number": pid, "category": "dibao_rural", "action": "grant", "effective_date": "2019-09-01",
        "source_system": "civil_affairs", "source_ref": secrets.token_hex(4)}, via="test", message_id=secrets.token_hex(6))
    subsidy_handlers.on_household_registered(ctx, Envelope.new(Event("registry.household.registered", {
        "household_no": "SS-0001", "year": 2020, "county": "431122", "township": "花桥镇", "village": "花桥村",
        "head_name": "王五", "members": [{"person_id": pid, "name": "王五"}]}), "registry", NOW))
    api = subsidy_app(clock).test_client()
    calls = [("/v1/counties/431122/persons/identities", {"id_number": pid}), ("/v1/counties/431122/entitlements/2020/lookup", {"id_number": pid}),
             ("/v1/counties/431122/entitlements/2020/query", {"id_numbers": [pid]})]
    for path, body in calls:
        assert api.post(path, json=body, headers=auth(HUAQIAO)).status_code == 200, path
        r = api.post(path, json=body, headers=auth(BAIYA))
        assert (r.status_code, r.json["code"]) == (403, "SCOPE_TOWNSHIP"), path
        assert pid not in r.get_data(as_text=True)
    assert api.post(calls[0][0], json=calls[0][1], headers=auth(TAX)).json["code"] == "AUTH_INVALID"
    assert api.post(calls[0][0], json=calls[0][1], headers=auth(NOSYS)).json["code"] == "ROLE_FORBIDDEN"


# ---- personal data ----------------------------------------------------------------------------

def test_a_duplicate_person_flag_carries_no_full_id_number():
    api = registry_app(FixedClock(NOW)).test_client()
    first = household_payload("PD-0001", "白牙市镇", seed=21)
    assert api.post("/v1/counties/431122/households", json=first, headers=auth(COUNTY)).status_code == 201
    second = household_payload("PD-0002", "白牙市镇", seed=22)
    second["members"][1] = dict(first["members"][1])
    r = api.post("/v1/counties/431122/households", json=second, headers=auth(COUNTY))
    assert r.status_code == 201 and any("duplicate" in m for m in r.json["members"])  # registered, flagged
    text = r.get_data(as_text=True)
    assert first["members"][1]["id_number"] not in text and first["members"][1]["id_number"][-4:] in text


@pytest.mark.parametrize("app, old, method", [
    (registry_app, "/v1/persons/{id}", "get"), (registry_app, "/v1/counties/431122/persons/{id}", "get"), (registry_app, "/v1/counties/431122/duplicates/2020/{id}/resolution", "post"),
    (registry_app, "/v1/counties/431122/mid-year/approvals/2020/{id}/withdrawal", "post"),
    (subsidy_app, "/v1/counties/431122/persons/{id}/identities", "get"), (subsidy_app, "/v1/counties/431122/entitlements/2020/{id}", "get"),
    (subsidy_app, "/v1/counties/431122/claims/2020/{id}/paid", "post")])
def test_old_paths_with_an_id_number_answer_410_pointing_to_the_body_form(app, old, method):
    client = app(FixedClock(NOW)).test_client()
    pid = make_id(date(1980, 1, 1), 5)
    r = getattr(client, method)(old.format(id=pid), headers=auth(COUNTY), json={})
    assert (r.status_code, r.json["code"]) == (410, "ID_NUMBER_IN_URL")
    assert r.json["details"]["use"].startswith("POST /v1/") and pid not in r.get_data(as_text=True)
    spec = client.get("/openapi.json").json
    live = [p for p, ops in spec["paths"].items() if any(not op.get("deprecated") for op in ops.values())]
    assert not [p for p in live if "id_number" in p]


def test_error_bodies_and_replies_are_masked_in_the_web_adapter():
    app, api = create_base_app("probe", TokenBook([]), {})

    @api.route("/probe", "GET", summary="probe")
    def probe(principal):
        from shared.errors import ValidationFailed
        raise ValidationFailed("X", "x", {"value": "430000199001011234", "phone": "13912345678"})

    @api.route("/reply", "GET", summary="reply")
    def reply(principal):
        return {"note": "联系 13912345678", "transaction_id": "420000199001011234"}

    c = app.test_client()
    body = c.get("/probe").get_data(as_text=True)
    assert "430000199001011234" not in body and "13912345678" not in body and "1234" in body
    r = c.get("/reply").json
    assert r["note"] == "联系 139****5678" and r["transaction_id"] == "420000199001011234"  # identifiers allowed


# ---- schemas and queries ------------------------------------------------------------------------

def test_a_reply_that_breaks_its_schema_fails_loudly_under_strict_validation(monkeypatch):
    class Out(Schema):
        name = fields.String()

    app, api = create_base_app("probe", TokenBook([]), {})

    @api.route("/extra", "GET", summary="extra", response=Out)
    def extra(principal):
        return {"name": "a", "excluded": []}

    @api.route("/null", "GET", summary="null", response=Out)
    def null(principal):
        return {"name": None}

    monkeypatch.setenv("RESPONSE_VALIDATION", "strict")
    c = app.test_client()
    for path in ("/extra", "/null"):
        r = c.get(path)
        assert (r.status_code, r.json["code"]) == (500, "RESPONSE_SCHEMA_VIOLATION"), path


@pytest.mark.parametrize("app, path", [
    (registry_app, "/v1/counties/431122/corrections?overdue=maybe"), (registry_app, "/v1/counties/431122/duplicates?status=bogus"),
    (registry_app, "/v1/counties/431122/corrections?status=whatever"), (subsidy_app, "/v1/counties/431122/identity-updates?limit=abc"),
    (subsidy_app, "/v1/counties/431122/identity-updates?limit=0"), (subsidy_app, "/v1/counties/431122/claims/2020?status=nope")])
def test_invalid_query_values_are_refused_with_a_code(app, path):
    r = app(FixedClock(NOW)).test_client().get(path, headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (400, "BAD_QUERY"), path
    assert r.json["details"]["param"] == path.split("?")[1].split("=")[0]


def test_two_accuracy_publishes_at_one_instant_are_one_publication(mongo, namespace):
    app = registry_app(FixedClock(NOW))
    barrier, out = threading.Barrier(2), []

    def publish():
        client = app.test_client()
        barrier.wait()
        out.append(client.post("/v1/counties/431122/accuracy/2020/publish", headers=auth(COUNTY)).status_code)

    for _ in range(3):
        threads = [threading.Thread(target=publish) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert out == [201] * 6
    assert mongo[f"{namespace}_registry_431122"].accuracy_reports.count_documents({"_id": f"2020:{NOW.isoformat()}"}) == 1


# ---- small holes -------------------------------------------------------------------------------

def test_the_public_receipt_check_reads_and_never_writes(pc):
    feed_household(pc, "RC-0001", seed=31)
    api = payments_app(FixedClock(NOW)).test_client()
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "RC-0001", "year": 2020, "channel": "mobile_app"},
               extra={"Idempotency-Key": secrets.token_hex(8)}).json
    ack = signed(api, "/v1/counties/431122/notifications", {"order_no": o["order_no"], "amount_fen": o["amount_fen"],
                                            "transaction_id": "T" + secrets.token_hex(5), "paid_at": NOW.isoformat()}).json
    assert ack["code"] == "SUCCESS"
    payment = pc.db.payments.find_one({"order_no": o["order_no"]})
    code = build_receipt(payment, payments_boot.repository(pc).receipt_key())["check_code"]
    before = pc.db.receipts.count_documents({})
    r = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}/verification?check_code={code}")
    assert r.status_code == 200 and r.json["valid"] is True
    assert api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}/verification?check_code=WRONG").status_code == 404
    assert pc.db.receipts.count_documents({}) == before  # the worker issues it, not an anonymous GET


def test_used_nonces_are_forgotten_after_their_ttl_and_recent_ones_kept(pc):
    repo = payments_boot.repository(pc)
    old, recent = f"old-{secrets.token_hex(8)}", f"new-{secrets.token_hex(8)}"
    assert repo.use_nonce("bank-a", old, NOW - timedelta(hours=2))
    assert repo.use_nonce("bank-a", recent, NOW - timedelta(minutes=10))
    assert forget_nonces_once(pc) >= 1
    assert pc.db.nonces.find_one({"_id": f"bank-a:{old}"}) is None
    assert pc.db.nonces.find_one({"_id": f"bank-a:{recent}"}) is not None


def test_a_correction_for_a_closed_policy_year_is_refused():
    assert registry_app(FixedClock(NOW)).test_client().post(
        "/v1/counties/431122/households", json=household_payload("CY-0001", "白牙市镇", seed=41), headers=auth(COUNTY)).status_code == 201
    late = registry_app(FixedClock(datetime(2021, 3, 1, 10, tzinfo=SHANGHAI))).test_client()
    r = late.post("/v1/counties/431122/corrections", json={"household_no": "CY-0001", "year": 2020, "changes": {"village": "芦江村"},
                                           "reason": "录入有误"}, headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (409, "YEAR_CLOSED")


# ---- time ----------------------------------------------------------------------------------------

def test_an_order_shows_the_same_expiry_in_shanghai_time_on_post_and_get(pc):
    feed_household(pc, "TM-0001", seed=51)
    api = payments_app(FixedClock(NOW.astimezone(timezone.utc))).test_client()  # a server clock in UTC
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "TM-0001", "year": 2020, "channel": "mobile_app"},
               extra={"Idempotency-Key": secrets.token_hex(8)})
    assert o.status_code == 201, o.json
    got = api.get(f"/v1/counties/431122/orders/{o.json['order_no']}", headers=auth(COUNTY)).json
    assert got["expires_at"] == o.json["expires_at"] and o.json["expires_at"].endswith("+08:00")


@pytest.mark.parametrize("at, day", [("2019-12-31T15:30:00+00:00", "20191231"), ("2019-12-31T16:30:00+00:00", "20200101")])
def test_order_and_batch_numbers_carry_the_shanghai_date(at, day):
    utc = datetime.fromisoformat(at)  # 23:30 and 00:30 in Shanghai
    assert new_order_no(utc)[1:9] == day and new_batch_no(utc, "ABC")[1:9] == day


# ---- keep-alive -----------------------------------------------------------------------------------

def test_gunicorn_keeps_an_idle_connection_longer_than_a_two_second_poll(tmp_path):
    from tools.suite import free_port_block
    port = free_port_block(2) + 1  # the block's base itself is not checked
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "-w", "1",
                             "-b", f"127.0.0.1:{port}", "services.scoring.entrypoints.flask_app:create_app()"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp_path / "gunicorn.log").open("wb"),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90  # a busy 2-core machine boots gunicorn slowly
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/healthz")
                assert conn.getresponse().read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                assert time.monotonic() < deadline and proc.poll() is None, \
                    "gunicorn did not start: " + (tmp_path / "gunicorn.log").read_text()[-2000:]
                time.sleep(0.3)
        time.sleep(3)  # idle longer than gunicorn's default keep-alive (2 s)
        conn.request("GET", "/healthz")  # same connection
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_county_token_of_another_county_acts_nowhere_in_this_suite():
    """Tokens are scoped to a county: Wuming's county staff cannot read or write Dong'an's registry,
    while Dong'an's can."""
    api = registry_app(FixedClock(NOW)).test_client()
    r = api.get("/v1/counties/431122/duplicates", headers=auth(WUMING))
    assert (r.status_code, r.json["code"]) == (403, "SCOPE_COUNTY")
    r = api.post("/v1/counties/431122/households", json={}, headers=auth(WUMING))
    assert (r.status_code, r.json["code"]) == (403, "SCOPE_COUNTY")
    assert api.get("/v1/counties/431122/duplicates", headers=auth(COUNTY)).status_code == 200

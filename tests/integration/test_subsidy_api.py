"""Subsidy through its HTTP API and its event handlers, on the real store and broker.

Rules: 001_93f5b63ac6b4a653.txt 六 — Dong'an 2020: standard 250 yuan, 建档立卡/低保 pay 120 (subsidy
130), 特困 pay 0; 依据缴费人当前身份进行征收, 缴费后特殊身份标识发生变化的不再补退; 2019年10月1日之后新增
的困难群众 全额缴费、先缴后补; 资助部分由相关部门直接代缴，并划归县财政专户; 以上所有困难群众必须确保100%参保.
"""
from __future__ import annotations

import json
import secrets
from datetime import date, datetime, timedelta

import pytest

from services.subsidy import bootstrap as subsidy_boot
from services.subsidy.entrypoints.flask_app import create_app
from services.subsidy.service_layer import handlers
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import Probe, declare, publish, running
from tools.clients import wait_for
from tools.ids import make_id

T_IDENT = datetime(2019, 10, 20, 9, 0, tzinfo=SHANGHAI)
T_PAID = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
COUNTY, HUAQIAO, CIVIL = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(8)


@pytest.fixture(scope="module")
def tokens(namespace, tmp_path_factory):
    import os
    d = tmp_path_factory.mktemp("subsidy-secrets")
    (d / "tokens.json").write_text(json.dumps({"tokens": [
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
        {"sha256": token_hash(HUAQIAO), "subject": "hq", "role": "township", "county": "431122", "township": "花桥镇"},
        {"sha256": token_hash(CIVIL), "subject": "civil_affairs", "role": "system", "county": "431122",
         "permissions": ["identities:submit", "identities:read"], "services": ["subsidy"]}]}))
    os.environ["AUTH_TOKENS_FILE"] = str(d / "tokens.json")
    yield
    os.environ.pop("AUTH_TOKENS_FILE")


@pytest.fixture(scope="module")
def clock():
    return FixedClock(T_IDENT)


@pytest.fixture(scope="module")
def c(tokens, clock):
    return subsidy_boot.bootstrap(clock)  # its bus is removed with the module's namespace (tests/conftest.py)


@pytest.fixture(scope="module")
def ctx(c):
    return subsidy_boot.context(c)


@pytest.fixture(scope="module")
def api(c, clock):
    return create_app(clock).test_client()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def grant(ctx, pid, category="dibao_rural", eff="2019-09-01", ref=None, action="grant", source=None):
    source = source or {"registered_poor": "poverty_office", "certified_disabled": "disabled_federation"}.get(
        category, "civil_affairs")
    ref = ref or secrets.token_hex(4)
    out = handlers.receive_identity_update(ctx, {
        "id_number": pid, "category": category, "action": action, "effective_date": eff,
        "source_system": source, "source_ref": ref}, via="test", message_id=f"test:{ref}")
    assert out["status"] == "applied", out
    return out


def env(etype, payload, producer):
    return Envelope.new(Event(etype, payload), producer, T_PAID)


def register(ctx, no, people, township="花桥镇"):
    handlers.on_household_registered(ctx, env("registry.household.registered", {
        "household_no": no, "year": 2020, "county": "431122", "township": township, "village": "花桥村",
        "head_name": people[0][1], "members": [{"person_id": p, "name": n} for p, n in people]}, "registry"))


def payment(no, lines, township="花桥镇", paid_at=T_PAID):
    return env("payments.payment.confirmed", {
        "order_no": f"P{no}", "receipt_no": f"R{no}", "household_no": no, "year": 2020, "county": "431122",
        "township": township, "village": "花桥村", "head_name": lines[0][1], "amount_fen": sum(25000 - s for *_, s in lines),
        "channel": "mobile_app", "gateway": "bank-a", "transaction_id": f"T{no}", "paid_at": paid_at.isoformat(),
        "members": [{"person_id": p, "name": n, "standard_fen": 25000, "subsidy_fen": s, "payable_fen": 25000 - s}
                    for p, n, s in lines]}, "payments")


def ent(api, pid, at=None, token=COUNTY, year=2020):
    return api.post(f"/v1/counties/431122/entitlements/{year}/lookup", json={"id_number": pid, **({"at": at.isoformat()} if at else {})},
                    headers=auth(token))


def test_dongan_2020_amounts_through_the_batch_query(api, ctx):
    poor, dibao, tekun, nobody, disabled = (make_id(date(1960 + i, 2, 3), 40 + i) for i in range(5))
    grant(ctx, poor, "registered_poor")
    grant(ctx, dibao, "dibao_urban")
    grant(ctx, tekun, "extreme_poverty")
    grant(ctx, disabled, "certified_disabled")
    r = api.post("/v1/counties/431122/entitlements/2020/query", json={"id_numbers": [poor, dibao, tekun, nobody, disabled]},
                 headers=auth(COUNTY))
    assert r.status_code == 200, r.json
    got = [(x["category"], x["subsidy_fen"], x["payable_fen"], x["configured"]) for x in r.json["results"]]
    assert got == [("registered_poor", 13000, 12000, True), ("dibao_urban", 13000, 12000, True),
                   ("extreme_poverty", 25000, 0, True), (None, 0, 25000, True), ("certified_disabled", 0, 25000, False)]
    assert r.json["results"][0]["id_number"].count("*") == 8  # masked in responses


def test_the_identity_at_payment_time_counts_and_later_changes_neither_top_up_nor_refund(api, ctx, clock, c):
    a, b = make_id(date(1971, 1, 1), 60), make_id(date(1972, 2, 2), 61, "F")
    grant(ctx, a, "dibao_rural", "2019-09-01", ref="MZ-A1")
    register(ctx, "HH-FRZ", [(a, "甲"), (b, "乙")])
    clock.set(T_PAID)
    handlers.on_payment_confirmed(ctx, payment("HH-FRZ", [(a, "甲", 13000), (b, "乙", 0)]))
    # after payment: a loses 低保, b becomes 低保 with an effective date before the cutoff (known too late)
    clock.set(T_PAID + timedelta(days=10))
    grant(ctx, a, "dibao_rural", "2019-11-20", ref="MZ-A2", action="revoke")
    grant(ctx, b, "dibao_rural", "2019-09-15", ref="MZ-B1")
    ra, rb = ent(api, a).json, ent(api, b).json
    assert (ra["frozen"], ra["subsidy_fen"], ra["payable_fen"], ra["category"]) == (True, 13000, 12000, "dibao_rural")
    assert (rb["frozen"], rb["subsidy_fen"], rb["payable_fen"], rb["reimbursable_fen"]) == (True, 0, 25000, 0)
    assert "不再补退" in ra["reason"] and "不再补退" in rb["reason"]
    before = ent(api, b, at=T_PAID - timedelta(hours=1)).json  # before paying, b had no identity on record
    assert (before["frozen"], before["category"]) == (False, None)
    assert c.db.claims.find_one({"_id": f"2020:{a}"}) is None and c.db.claims.find_one({"_id": f"2020:{b}"}) is None
    hist = api.post("/v1/counties/431122/persons/identities", json={"id_number": a}, headers=auth(COUNTY)).json
    assert [h["action"] for h in hist["history"]] == ["grant", "revoke"] and hist["current"] == []


def test_pay_first_reimburse_later_for_hardship_cases_after_the_cutoff(api, ctx, clock, c, infra, namespace):
    """001 六: 对于2019年10月1日之后新增的困难群众……全额缴费、先缴后补."""
    probe = Probe(infra.amqp_url, namespace, ["subsidy.claim.created", "subsidy.claim.paid"])
    new, on_cutoff, late = (make_id(date(1980, 3, 3), 70 + i) for i in range(3))
    clock.set(T_IDENT)
    grant(ctx, new, "dibao_rural", "2019-10-02", ref="MZ-N1")
    grant(ctx, on_cutoff, "dibao_rural", "2019-10-01", ref="MZ-N2")
    at_counter = ent(api, new).json
    assert (at_counter["subsidy_fen"], at_counter["payable_fen"], at_counter["reimbursable_fen"]) == (0, 25000, 13000)
    assert ent(api, on_cutoff).json["subsidy_fen"] == 13000  # the cutoff day itself is not "after"
    register(ctx, "HH-NEW", [(new, "丙"), (on_cutoff, "丁"), (late, "戊")])
    clock.set(T_PAID)
    handlers.on_payment_confirmed(ctx, payment("HH-NEW", [(new, "丙", 0), (on_cutoff, "丁", 13000), (late, "戊", 0)]))
    # `late` becomes a hardship case after paying in full: its identity took effect after the cutoff
    clock.set(T_PAID + timedelta(days=5))
    grant(ctx, late, "registered_poor", "2019-11-18", ref="FP-L1")
    claims = {x["name"]: x for x in api.get("/v1/counties/431122/claims/2020", headers=auth(COUNTY)).json["claims"]}
    assert {n: (x["amount_fen"], x["department"], x["status"]) for n, x in claims.items() if n in "丙丁戊"} == {
        "丙": (13000, "medical_assistance", "pending"), "戊": (13000, "poverty_office", "pending")}
    assert ent(api, new).json["reimbursable_fen"] == 13000
    r = api.post("/v1/counties/431122/claims/2020/paid", json={"id_number": new, "payment_ref": "MZ-PAY-1", "paid_on": "2019-12-20"}, headers=auth(COUNTY))
    assert (r.status_code, r.json["status"]) == (200, "paid")
    again = api.post("/v1/counties/431122/claims/2020/paid", json={"id_number": new, "payment_ref": "MZ-PAY-1", "paid_on": "2019-12-20"}, headers=auth(COUNTY))
    assert again.status_code == 200
    other = api.post("/v1/counties/431122/claims/2020/paid", json={"id_number": new, "payment_ref": "MZ-PAY-2", "paid_on": "2019-12-21"}, headers=auth(COUNTY))
    assert (other.status_code, other.json["code"]) == (409, "CLAIM_ALREADY_PAID")
    none = api.post("/v1/counties/431122/claims/2020/paid", json={"id_number": on_cutoff, "payment_ref": "X1", "paid_on": "2019-12-20"}, headers=auth(COUNTY))
    assert (none.status_code, none.json["code"]) == (404, "CLAIM_NOT_FOUND")
    while c.relay().run_once():
        pass
    got = [(m["type"], m["payload"]["name"]) for m in probe.take(3)]
    assert sorted(got) == [("subsidy.claim.created", "丙"), ("subsidy.claim.created", "戊"), ("subsidy.claim.paid", "丙")]
    probe.close()


def test_the_ledger_counts_what_each_department_owes_once(api, ctx, clock):
    """资助部分由相关部门直接代缴，并划归县财政专户."""
    d1, t1 = make_id(date(1950, 5, 1), 80), make_id(date(1951, 5, 1), 81)
    clock.set(T_IDENT)
    grant(ctx, d1, "dibao_urban", ref="MZ-L1")
    grant(ctx, t1, "extreme_poverty", ref="MZ-L2")
    before = {r["department"]: r for r in api.get("/v1/counties/431122/ledger/2020", headers=auth(COUNTY)).json["rows"]}
    register(ctx, "HH-LED", [(d1, "己"), (t1, "庚")], township="水岭乡")
    clock.set(T_PAID)
    pay = payment("HH-LED", [(d1, "己", 13000), (t1, "庚", 25000)], township="水岭乡")
    handlers.on_payment_confirmed(ctx, pay)
    handlers.on_payment_confirmed(ctx, pay)  # redelivered
    after = {r["department"]: r for r in api.get("/v1/counties/431122/ledger/2020", headers=auth(COUNTY)).json["rows"]}
    ma = "medical_assistance"
    assert after[ma]["persons"] - before[ma]["persons"] == 2
    assert after[ma]["owed_fen"] - before[ma]["owed_fen"] == 38000
    csv_r = api.get(f"/v1/counties/431122/ledger/2020/{ma}/statement.csv", headers=auth(COUNTY))
    text = csv_r.get_data(as_text=True)
    assert csv_r.status_code == 200 and "己" in text and "250.00" in text and "130.00" in text
    assert d1 not in text and d1[:6] + "********" + d1[-4:] in text  # masked
    assert api.get("/v1/counties/431122/ledger/2020", headers=auth(HUAQIAO)).status_code == 403


def test_coverage_of_hardship_persons_per_township_and_category(api, ctx, clock, c, infra, namespace):
    """以上所有困难群众必须确保100%参保: who is not enrolled yet, per township and category."""
    probe = Probe(infra.amqp_url, namespace, ["subsidy.coverage.changed"])
    p1, p2 = make_id(date(1940, 4, 4), 90), make_id(date(1941, 4, 4), 91)
    clock.set(T_IDENT)
    grant(ctx, p1, "registered_poor", ref="FP-C1")
    grant(ctx, p2, "registered_poor", ref="FP-C2")

    def row(township):
        rows = api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
        return next((r for r in rows if r["township"] == township and r["category"] == "registered_poor"), None)

    assert row("")["hardship_persons"] >= 2  # in no registered household yet
    register(ctx, "HH-COV", [(p1, "辛"), (p2, "壬")], township="川岩乡")
    r = row("川岩乡")
    assert (r["hardship_persons"], r["enrolled_persons"], r["not_enrolled_persons"], r["rate_bp"]) == (2, 0, 2, 0)
    handlers.on_enrolment_changed(ctx, env("registry.enrolment.changed", {
        "household_no": "HH-COV", "year": 2020, "county": "431122", "township": "川岩乡", "village": "花桥村",
        "status": "paid", "person_ids": [p1, p2], "order_no": "PHH-COV"}, "registry"))
    r = row("川岩乡")
    assert (r["hardship_persons"], r["enrolled_persons"], r["rate_bp"]) == (2, 2, 10000)
    while c.relay().run_once():
        pass
    last = [m["payload"] for m in probe.take(20, timeout=3) if m["payload"]["township"] == "川岩乡"][-1]
    assert (last["hardship_persons"], last["enrolled_persons"], last["rate_bp"]) == (2, 2, 10000)
    township_view = api.get("/v1/counties/431122/coverage/2020", headers=auth(HUAQIAO)).json["rows"]
    assert all(x["township"] == "花桥镇" for x in township_view)
    probe.close()


def test_systems_without_a_broker_submit_batches_over_http(api, c, clock):
    pid = make_id(date(1977, 7, 7), 95)
    good = {"id_number": pid, "category": "dibao_rural", "action": "grant", "effective_date": "2019-09-01",
            "source_system": "civil_affairs", "source_ref": "MZ-HTTP-1"}
    bad_id = {**good, "id_number": pid[:-1] + ("1" if pid[-1] != "1" else "2"), "source_ref": "MZ-HTTP-2"}
    not_ours = {**good, "category": "registered_poor", "source_system": "poverty_office", "source_ref": "FP-HTTP-3"}
    r = api.post("/v1/counties/431122/identity-batches", json={"updates": [good, bad_id, not_ours]}, headers=auth(CIVIL))
    assert r.status_code == 202, r.json
    assert [(x["status"], x["code"]) for x in r.json["items"]] == [
        ("queued", None), ("rejected", "ID_CHECKSUM"), ("rejected", "SOURCE_NOT_ALLOWED")]
    batch = r.json["batch_id"]
    with running(c.identity_consumer()):
        wait_for(lambda: api.get(f"/v1/counties/431122/identity-batches/{batch}", headers=auth(CIVIL)).json["items"][0]["status"]
                 == "applied", timeout=15, what="batch applied")
        r2 = api.post("/v1/counties/431122/identity-batches", json={"updates": [good]}, headers=auth(CIVIL))  # resubmitted
        b2 = r2.json["batch_id"]
        wait_for(lambda: api.get(f"/v1/counties/431122/identity-batches/{b2}", headers=auth(CIVIL)).json["items"][0]["status"]
                 == "duplicate", timeout=15, what="resubmission reported as duplicate")
    assert len(c.db.identities.find_one({"_id": pid})["history"]) == 1
    assert ent(api, pid).json["subsidy_fen"] == 13000
    report = api.get("/v1/counties/431122/identity-updates?outcome=rejected", headers=auth(COUNTY)).json["updates"]
    mine = {r["key"]: r for r in report if r["key"].startswith(f"rejected:{batch}:")}
    assert {r["code"] for r in mine.values()} == {"ID_CHECKSUM", "SOURCE_NOT_ALLOWED"}
    assert all(r["via"] == "http" and r["message"] for r in mine.values())
    assert all(pid[6:14] not in json.dumps(r, ensure_ascii=False) for r in report)  # no full ID numbers


def test_clear_errors(api):
    pid = make_id(date(1990, 1, 1), 99)
    assert api.post("/v1/counties/431122/entitlements/2020/lookup", json={"id_number": pid}).json["code"] == "AUTH_REQUIRED"
    r = ent(api, f"{pid[:-1]}{'1' if pid[-1] != '1' else '2'}")
    assert (r.status_code, r.json["code"]) == (400, "ID_CHECKSUM")
    r = ent(api, pid, year=2021)
    assert (r.status_code, r.json["code"]) == (404, "YEAR_UNKNOWN")
    r = api.post("/v1/counties/431122/entitlements/2020/lookup", json={"id_number": pid, "at": "yesterday"}, headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (400, "BAD_INSTANT")
    r = api.post("/v1/counties/431122/identity-batches", json={"updates": []}, headers=auth(CIVIL))
    assert (r.status_code, r.json["code"]) == (400, "VALIDATION_FAILED")
    assert api.post("/v1/counties/431122/identity-batches", json={"updates": [{}]}, headers=auth(HUAQIAO)).status_code == 403
    spec = api.get("/openapi.json").json
    assert "/v1/counties/{county}/entitlements/{year}/lookup" in spec["paths"] and "/v1/counties/{county}/ledger/{year}" in spec["paths"]


def test_payment_events_over_the_real_bus_freeze_once(c, ctx, clock, infra):
    pid = make_id(date(1962, 6, 2), 97)
    clock.set(T_IDENT)
    grant(ctx, pid, "registered_poor", ref="FP-BUS-1")
    handlers_ = subsidy_boot.event_handlers(c)
    declare(c, handlers_)
    e = payment("HH-BUS", [(pid, "癸", 13000)])
    body = json.dumps(e.to_dict()).encode()
    with running(c.consumer(handlers_)):
        for _ in range(2):
            publish(infra.amqp_url, c.topology.exchange, e.type, body, e.id)
        wait_for(lambda: c.suite_db.processed_events.find_one({"_id": e.id}), timeout=15, what="payment processed")
    frozen = c.db.freezes.find_one({"_id": f"2020:{pid}"})
    assert (frozen["subsidy_fen"], frozen["category"], frozen["department"]) == (13000, "registered_poor", "poverty_office")
    assert c.db.ledger_facts.count_documents({"_id": f"2020:{pid}"}) == 1


def test_entitlement_events_follow_the_best_identity_until_the_year_is_paid(api, ctx, clock, c, infra, namespace):
    """Payments keeps a read model of subsidy.entitlement.changed; a paid year is frozen (不再补退)."""
    probe = Probe(infra.amqp_url, namespace, ["subsidy.entitlement.changed"])
    pid = make_id(date(1958, 8, 1), 55)
    clock.set(T_IDENT)
    grant(ctx, pid, "dibao_urban", "2019-09-01", ref="MZ-E1")
    grant(ctx, pid, "extreme_poverty", "2019-09-10", ref="MZ-E2")
    grant(ctx, pid, "extreme_poverty", "2019-10-15", ref="MZ-E3", action="revoke")
    grant(ctx, pid, "dibao_urban", "2019-10-18", ref="MZ-E4", action="revoke")
    register(ctx, "HH-EV", [(pid, "子")], township="大盛镇")
    rows = {r["township"]: r for r in api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]}
    assert "大盛镇" not in rows  # no identity any more: not a hardship person
    grant(ctx, pid, "dibao_urban", "2019-10-19", ref="MZ-E5")  # granted again after the cutoff: 先缴后补
    clock.set(T_PAID)
    handlers.on_payment_confirmed(ctx, payment("HH-EV", [(pid, "子", 0)], township="大盛镇"))
    clock.set(T_PAID + timedelta(days=10))
    grant(ctx, pid, "dibao_urban", "2019-11-20", ref="MZ-E6", action="revoke")  # after payment: no event
    while c.relay().run_once():
        pass
    got = [(m["payload"]["category"], m["payload"]["subsidy_fen"], m["payload"]["full_coverage"],
            m["payload"]["effective_from"]) for m in probe.take(10, timeout=3) if m["payload"]["person_id"] == pid]
    assert got == [("dibao_urban", 13000, False, "2019-09-01"), ("extreme_poverty", 25000, True, "2019-09-10"),
                   ("dibao_urban", 13000, False, "2019-10-15"), (None, 0, False, "2019-10-18"),
                   ("dibao_urban", 0, False, "2019-10-19")]
    assert c.db.claims.find_one({"_id": f"2020:{pid}"})["amount_fen"] == 13000
    rows = api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
    assert not [r for r in rows if r["township"] == "大盛镇"]  # identity revoked: no longer counted
    probe.close()


def test_a_member_who_moves_out_no_longer_counts_in_the_township(api, ctx, clock):
    """registry.household.changed carries the whole new snapshot (异动): coverage follows the person."""
    stay, leave = make_id(date(1945, 1, 9), 57), make_id(date(1946, 1, 9), 58)
    clock.set(T_IDENT)
    grant(ctx, stay, "registered_poor", ref="FP-MV1")
    grant(ctx, leave, "registered_poor", ref="FP-MV2")
    register(ctx, "HH-MOVE", [(stay, "丑"), (leave, "寅")], township="南桥镇")

    def hardship(township):
        rows = api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
        return sum(r["hardship_persons"] for r in rows if r["township"] == township and r["category"] == "registered_poor")

    assert hardship("南桥镇") == 2
    unregistered = hardship("")
    handlers.on_household_registered(ctx, env("registry.household.changed", {
        "household_no": "HH-MOVE", "year": 2020, "county": "431122", "township": "南桥镇", "village": "花桥村",
        "head_name": "丑", "members": [{"person_id": stay, "name": "丑"}], "change": "move_out"}, "registry"))
    assert hardship("南桥镇") == 1 and hardship("") == unregistered + 1


def test_a_mid_year_payment_at_the_financing_standard_and_the_hardship_members_in_it(api, ctx, clock):
    """001 四: after the window a qualifying person pays the full financing standard (含个人缴费部分和
    财政补助部分) in one sum, with no subsidy at the counter. 001 六: a hardship case identified after
    2019-10-01 pays in full first and is reimbursed (先缴后补): the same claim as any full payer. An
    identity from before the cutoff gets no claim (it would have been deducted in the window): the
    freeze shows the mismatch for staff."""
    new, old = make_id(date(1975, 4, 4), 81), make_id(date(1976, 5, 5), 82)
    clock.set(datetime(2020, 3, 1, 9, 0, tzinfo=SHANGHAI))
    grant(ctx, new, "registered_poor", "2020-02-20", ref="FP-MID-1")
    grant(ctx, old, "dibao_rural", "2019-09-01", ref="MZ-MID-2")
    register(ctx, "HH-MID", [(new, "甲"), (old, "乙")])
    paid_at = datetime(2020, 3, 10, 10, 0, tzinfo=SHANGHAI)
    clock.set(paid_at)
    full = 80000  # a financing standard for the test (Dong'an's notice prints none)
    handlers.on_payment_confirmed(ctx, env("payments.payment.confirmed", {
        "order_no": "PHH-MID", "receipt_no": "RHH-MID", "household_no": "HH-MID", "year": 2020, "county": "431122",
        "township": "花桥镇", "village": "花桥村", "head_name": "甲", "amount_fen": 2 * full, "channel": "bank_counter",
        "gateway": "bank-a", "transaction_id": "THH-MID", "paid_at": paid_at.isoformat(),
        "members": [{"person_id": p, "name": n, "standard_fen": full, "subsidy_fen": 0, "payable_fen": full}
                    for p, n in ((new, "甲"), (old, "乙"))]}, "payments"))
    frozen = {d["name"]: d for d in ctx.repo.db.freezes.find({"household_no": "HH-MID"})}
    assert {n: (d["standard_fen"], d["subsidy_fen"], d["mismatch"]) for n, d in frozen.items()} == {
        "甲": (full, 0, False), "乙": (full, 0, True)}  # 甲: nothing was due at the counter anyway
    claims = {x["name"]: x for x in api.get("/v1/counties/431122/claims/2020", headers=auth(COUNTY)).json["claims"]}
    assert ("甲" in claims, "乙" in claims) == (True, False)
    assert (claims["甲"]["amount_fen"], claims["甲"]["department"]) == (13000, "poverty_office")


def test_a_batch_of_payments_and_enrolments_has_the_effects_of_each_once(api, ctx, clock):
    """The worker's batch handlers (a busy queue): hardship members and plain households paid in
    one batch, delivered twice; each department's ledger counts its members once, every member is
    frozen, and the hardship members' coverage counts them enrolled (以上所有困难群众必须确保100%参保)."""
    d1, t1, p1 = make_id(date(1952, 6, 1), 82), make_id(date(1953, 6, 1), 83), make_id(date(1942, 6, 1), 84)
    clock.set(T_IDENT)
    grant(ctx, d1, "dibao_urban", ref="MZ-BAT-1")
    grant(ctx, t1, "extreme_poverty", ref="MZ-BAT-2")
    grant(ctx, p1, "registered_poor", ref="FP-BAT-3")
    plain = [[(make_id(date(1980 + i, 1, 2), 10 + k), f"民{i}{k}") for k in range(3)] for i in range(5)]
    register(ctx, "HH-BL", [(d1, "癸"), (t1, "子")], township="水岭乡")
    register(ctx, "HH-BC", [(p1, "丑")], township="川岩乡")
    for i, people in enumerate(plain):
        register(ctx, f"HH-BP{i}", people, township="川岩乡")
    before = {r["department"]: r for r in api.get("/v1/counties/431122/ledger/2020", headers=auth(COUNTY)).json["rows"]}
    rows = api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
    cov_before = next(r for r in rows if r["township"] == "川岩乡" and r["category"] == "registered_poor")
    clock.set(T_PAID)
    pays = [payment("HH-BL", [(d1, "癸", 13000), (t1, "子", 25000)], township="水岭乡"),
            payment("HH-BC", [(p1, "丑", 13000)], township="川岩乡")]
    pays += [payment(f"HH-BP{i}", [(p, n, 0) for p, n in people], township="川岩乡") for i, people in enumerate(plain)]
    enrolments = [env("registry.enrolment.changed", {
        "household_no": x.payload["household_no"], "year": 2020, "county": "431122", "township": x.payload["township"],
        "village": "花桥村", "status": "paid", "person_ids": [m["person_id"] for m in x.payload["members"]],
        "order_no": x.payload["order_no"]}, "registry") for x in pays]
    for _ in range(2):  # delivered again
        handlers.on_payments_confirmed(ctx, pays)
        handlers.on_enrolments_changed(ctx, enrolments)
    after = {r["department"]: r for r in api.get("/v1/counties/431122/ledger/2020", headers=auth(COUNTY)).json["rows"]}
    ma = "medical_assistance"
    assert after[ma]["persons"] - before[ma]["persons"] == 2
    assert after[ma]["owed_fen"] - before[ma]["owed_fen"] == 38000
    assert ctx.repo.db.freezes.count_documents({"household_no": {"$in": [x.payload["household_no"] for x in pays]}}) == 18
    rows = api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
    cov = next(r for r in rows if r["township"] == "川岩乡" and r["category"] == "registered_poor")
    assert cov["enrolled_persons"] - cov_before["enrolled_persons"] == 1
    assert cov["hardship_persons"] == cov_before["hardship_persons"]
    assert ctx.repo.db.residents.find_one({"_id": f"2020:{plain[4][2][0]}"})["enrolled"] is True


def test_household_snapshots_of_a_roster_import_in_one_batch_have_the_effects_of_each(api, ctx, clock):
    """The worker's batch handler for household snapshots (a roster import brings thousands): hardship
    members count in their township's coverage (以上所有困难群众必须确保100%参保), a snapshot where a
    member moved out takes the person out of it (异动), and the batch, delivered twice, counts once."""
    poor, moved = make_id(date(1948, 3, 3), 71), make_id(date(1949, 3, 3), 72)
    clock.set(T_IDENT)
    grant(ctx, poor, "registered_poor", ref="FP-SNAP-1")
    grant(ctx, moved, "registered_poor", ref="FP-SNAP-2")
    register(ctx, "HH-SNAP0", [(moved, "甲"), (make_id(date(1950, 3, 3), 73), "乙")], township="水岭乡")

    def hardship(township):
        rows = api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
        return sum(r["hardship_persons"] for r in rows if r["township"] == township and r["category"] == "registered_poor")
    before = {t: hardship(t) for t in ("水岭乡", "川岩乡")}
    plain = [[(make_id(date(1981 + i, 2, 2), 20 + k), f"众{i}{k}") for k in range(3)] for i in range(5)]
    snaps = [env("registry.household.registered", {
        "household_no": f"HH-SNAP{i + 1}", "year": 2020, "county": "431122", "township": "川岩乡", "village": "花桥村",
        "head_name": people[0][1], "members": [{"person_id": p, "name": n} for p, n in people]}, "registry")
        for i, people in enumerate([[(poor, "丙")]] + plain)]
    snaps.append(env("registry.household.changed", {
        "household_no": "HH-SNAP0", "year": 2020, "county": "431122", "township": "水岭乡", "village": "花桥村",
        "head_name": "乙", "members": [{"person_id": make_id(date(1950, 3, 3), 73), "name": "乙"}],
        "change": "move_out"}, "registry"))
    for _ in range(2):  # delivered again
        handlers.on_household_snapshots(ctx, snaps)
    assert hardship("川岩乡") == before["川岩乡"] + 1 and hardship("水岭乡") == before["水岭乡"] - 1
    for i, people in enumerate(plain):
        for p, _n in people:
            assert ctx.repo.resident(2020, p)["household_no"] == f"HH-SNAP{i + 2}"
    assert ctx.repo.household_members(2020, "HH-SNAP0") == [make_id(date(1950, 3, 3), 73)]


def test_the_update_report_lists_the_newest_first_across_days_within_its_limit(api, ctx, clock):
    """The report civil affairs and county staff read (who was granted, who was refused) is read day by
    day from the newest, never by scanning every update received in the season."""
    from datetime import timedelta
    first = T_IDENT + timedelta(days=400)  # after every other update of the module's shared store
    keys = []
    for i in range(3):
        clock.set(first + timedelta(days=i))
        keys.append(grant(ctx, make_id(date(1960, 1, 1 + i), 60 + i), "dibao_rural", ref=f"MZ-DAYS-{i}")["key"])
    clock.set(T_IDENT)
    report = api.get("/v1/counties/431122/identity-updates?outcome=applied&limit=2", headers=auth(COUNTY)).json["updates"]
    assert [r["key"] for r in report] == [keys[2], keys[1]]  # the two newest, newest first
    report = api.get("/v1/counties/431122/identity-updates?source=civil_affairs&limit=1000", headers=auth(COUNTY)).json["updates"]
    assert keys[0] in [r["key"] for r in report]
    assert [r["received_at"] for r in report] == sorted((r["received_at"] for r in report), reverse=True)


def reversal(no, pids, township="花桥镇", at=T_PAID + timedelta(days=1)):
    return env("payments.payment.reversed", {
        "order_no": f"P{no}", "household_no": no, "year": 2020, "county": "431122", "township": township,
        "village": "花桥村", "amount_fen": 0, "person_ids": pids, "reason": "gateway_reversal",
        "reversal_id": f"RV{no}", "reversed_at": at.isoformat()}, "payments")


def test_a_reversed_payment_takes_its_subsidies_claims_and_coverage_back(api, ctx, clock):
    """A reversal (冲正) gives the household's money back, so what the payment set in motion no longer
    stands: 资助部分由相关部门直接代缴 (the departments would pay into the fund for a payment that went back),
    先缴后补 (a claim would reimburse money already returned), 以上所有困难群众必须确保100%参保 (coverage must
    show the household unenrolled again). Found by the season simulator (issue 14)."""
    dibao, late, plain = (make_id(date(1962, 6, 6), 100 + i) for i in range(3))
    clock.set(T_IDENT)
    grant(ctx, dibao, "dibao_rural", "2019-09-01", ref="MZ-R1")
    grant(ctx, late, "dibao_rural", "2019-10-05", ref="MZ-R2")  # after the cutoff: pays in full, then a claim
    register(ctx, "HH-REV", [(dibao, "辛"), (late, "壬"), (plain, "癸")], township="舜管局")
    ledger = lambda: {r["department"]: r for r in api.get("/v1/counties/431122/ledger/2020", headers=auth(COUNTY)).json["rows"]}  # noqa: E731
    covered = lambda: next((r["hardship_persons"], r["enrolled_persons"])  # noqa: E731
                           for r in api.get("/v1/counties/431122/coverage/2020", headers=auth(COUNTY)).json["rows"]
                           if (r["township"], r["category"]) == ("舜管局", "dibao_rural"))
    before = ledger()
    clock.set(T_PAID)
    handlers.on_enrolment_changed(ctx, env("registry.enrolment.changed", {
        "household_no": "HH-REV", "year": 2020, "county": "431122", "township": "舜管局", "village": "花桥村",
        "status": "paid", "person_ids": [dibao, late, plain], "order_no": "PHH-REV", "paid_at": T_PAID.isoformat()}, "registry"))
    handlers.on_payment_confirmed(ctx, payment("HH-REV", [(dibao, "辛", 13000), (late, "壬", 0), (plain, "癸", 0)],
                                               township="舜管局"))
    ma = "medical_assistance"
    assert ledger()[ma]["owed_fen"] - before[ma]["owed_fen"] == 13000
    claim = lambda: next(x for x in api.get("/v1/counties/431122/claims/2020", headers=auth(COUNTY)).json["claims"]  # noqa: E731
                         if x["name"] == "壬")
    assert (claim()["status"], claim()["amount_fen"]) == ("pending", 13000)
    assert covered() == (2, 2)

    # the bank reverses the payment; registry revokes the enrolment (its event may come first or after)
    clock.set(T_PAID + timedelta(days=1))
    handlers.on_payment_reversed(ctx, reversal("HH-REV", [dibao, late, plain], township="舜管局"))
    handlers.on_payment_reversed(ctx, reversal("HH-REV", [dibao, late, plain], township="舜管局"))  # redelivered
    handlers.on_enrolment_changed(ctx, env("registry.enrolment.changed", {
        "household_no": "HH-REV", "year": 2020, "county": "431122", "township": "舜管局", "village": "花桥村",
        "status": "revoked", "person_ids": [dibao, late, plain], "order_no": "PHH-REV",
        "reversed_at": (T_PAID + timedelta(days=1)).isoformat()}, "registry"))
    after = ledger()
    assert (after[ma]["owed_fen"], after[ma]["persons"]) == (before[ma]["owed_fen"], before[ma]["persons"])
    assert claim()["status"] == "cancelled"
    listed = api.get("/v1/counties/431122/claims/2020", headers=auth(COUNTY)).json
    assert listed["total_fen"] == sum(x["amount_fen"] for x in listed["claims"] if x["status"] != "cancelled")
    assert covered() == (2, 0)  # hardship persons not enrolled any more: on the work list again
    text = api.get(f"/v1/counties/431122/ledger/2020/{ma}/statement.csv", headers=auth(COUNTY)).get_data(as_text=True)
    assert "-130.00" in text and "冲正退回" in text  # the department's statement shows the line going back
    # the payment's entitlement no longer binds: the household is quoted by its identities again
    looked = ent(api, dibao).json
    assert (looked["frozen"], looked["subsidy_fen"]) == (False, 13000)


def test_the_claims_list_pages_and_totals_the_whole_county(api, ctx, clock, monkeypatch):
    """A county's 先缴后补 claims can outnumber a page (Dong'an's season at full size makes ≈ 5,700 by the
    simulator's shares): every page says how many there are and what they come to in all, and the pages
    together list each claim once. Before, the list stopped at 5,000 and its total was the page's."""
    from services.subsidy.entrypoints import flask_app
    late = [make_id(date(1985, 8, 8), 120 + i) for i in range(3)]
    clock.set(T_IDENT)
    for i, pid in enumerate(late):
        grant(ctx, pid, "dibao_rural", "2019-10-10", ref=f"MZ-PG{i}")
    register(ctx, "HH-PAGE", [(pid, n) for pid, n in zip(late, "子丑寅")], township="水岭乡")
    clock.set(T_PAID)
    handlers.on_payment_confirmed(ctx, payment("HH-PAGE", [(pid, n, 0) for pid, n in zip(late, "子丑寅")], township="水岭乡"))
    whole = api.get("/v1/counties/431122/claims/2020", headers=auth(COUNTY)).json
    assert whole["total"] == len(whole["claims"]) >= 3 and whole["page"] == 0
    monkeypatch.setattr(flask_app, "CLAIMS_PAGE", 2)
    seen, page = [], 0
    while True:
        got = api.get(f"/v1/counties/431122/claims/2020?page={page}", headers=auth(COUNTY)).json
        assert (got["total"], got["total_fen"], got["page_size"]) == (whole["total"], whole["total_fen"], 2)
        if not got["claims"]:
            break
        assert len(got["claims"]) <= 2
        seen += [c["claim_id"] for c in got["claims"]]
        page += 1
    assert seen == [c["claim_id"] for c in whole["claims"]] and page == (whole["total"] + 1) // 2
    for page in ("x", "-1"):
        bad = api.get(f"/v1/counties/431122/claims/2020?page={page}", headers=auth(COUNTY))
        assert (bad.status_code, bad.json["code"]) == (400, "BAD_QUERY") and bad.json["message"]  # the declared query's check

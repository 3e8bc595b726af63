"""Notices really delivered (docs/notice-delivery.md): the real store, a fake SMS provider that is a
real HTTP server (tools/fake_sms.py, started here on a free port), the notices web app served over
real HTTP for the provider's receipts, and a webhook receiver (http.server) whose check is the one
docs/notice-webhooks.md gives. The delivery loop's pass `run_once(now)` is driven with a FixedClock.

Receipt SMS to the household head — 001_93f5b63ac6b4a653.txt 五 (注明户主、家庭成员姓名、缴费金额、缴费时间);
withholding failures to the head — 002_9137bd928f251374.txt 六(二)."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from werkzeug.serving import make_server

from services.notices import bootstrap as boot
from services.notices.adapters.channels import InternalChannel, SmsChannel, WebhookChannel
from services.notices.domain.delivery import QuietHours
from services.notices.domain.notice import Notice
from services.notices.service_layer.delivery import DeliverySettings
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import secret_files
from tools.clients import wait_for
from tools.fake_sms import FakeSms

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
KEY_ID, KEY_SECRET = "test-key", secrets.token_hex(16)
RECEIPT_TOKEN = secrets.token_hex(16)
HOOK_SECRET = secrets.token_hex(16)
COUNTY_TOKEN, TOWN_TOKEN = secrets.token_hex(8), secrets.token_hex(8)
STAFF = {"Authorization": f"Bearer {COUNTY_TOKEN}"}


@pytest.fixture(scope="module")
def world(namespace, tmp_path_factory):
    import os
    old = os.environ.get("SMS_RECEIPT_TOKEN")
    os.environ["SMS_RECEIPT_TOKEN"] = RECEIPT_TOKEN
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY_TOKEN), "subject": "county", "role": "county", "county": "431122"},
            {"sha256": token_hash(TOWN_TOKEN), "subject": "town", "role": "township", "county": "431122",
             "township": "白牙市镇"}]):
        from services.notices.entrypoints.flask_app import create_app
        clock = FixedClock(NOW)
        app = create_app(clock)
        web = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{web.server_port}"
        fake = FakeSms(KEY_ID, KEY_SECRET, f"{base}/v1/sms/receipts", RECEIPT_TOKEN).start()
        hook = Receiver().start()
        c = boot.bootstrap(clock)
        channels = {"sms": SmsChannel(fake.url, KEY_ID, KEY_SECRET, "东安县医保"),
                    "webhook": WebhookChannel(hook.url, HOOK_SECRET), "internal": InternalChannel()}
        settings = DeliverySettings(quiet=QuietHours.parse("21:00-08:00"), sms_per_second=0, max_attempts=5)
        deliverer = boot.deliverer(c, channels=channels, settings=settings)
        yield {"c": c, "clock": clock, "fake": fake, "base": base, "hook": hook, "deliverer": deliverer,
               "repo": boot.repository(c), "store": boot.deliveries(c), "settings": settings, "channels": channels}
        fake.stop()
        hook.stop()
        web.shutdown()
    if old is None:
        os.environ.pop("SMS_RECEIPT_TOKEN", None)
    else:
        os.environ["SMS_RECEIPT_TOKEN"] = old


@pytest.fixture()
def w(world):
    requests.post(world["fake"].url + "reset", json={})
    world["clock"].set(NOW)
    return world


class Receiver:
    """A county system receiving notice webhooks, written from docs/notice-webhooks.md alone."""

    def __init__(self):
        self.got: list[dict] = []
        self.fail_next = 0
        me = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify(HOOK_SECRET, self.headers, body, now=float(self.headers.get("X-Notice-Timestamp") or 0))
                if me.fail_next > 0:
                    me.fail_next -= 1
                    status = 503
                else:
                    status = 200 if ok else 401
                me.got.append({"verified": ok, "status": status, "delivery": self.headers.get("X-Notice-Delivery"),
                               "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()


# --- copied from docs/notice-webhooks.md "Verifying it" -------------------------------------------
def verify(secret: str, headers, body: bytes, now: float | None = None) -> bool:
    ts = headers.get("X-Notice-Timestamp", "")
    sig = headers.get("X-Notice-Signature", "")
    if not ts.isdigit() or abs((now or time.time()) - int(ts)) > 300:
        return False
    expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig)
# ---------------------------------------------------------------------------------------------------


def phone() -> str:
    return "139" + f"{secrets.randbelow(10 ** 8):08d}"


def sms(nid: str, to: str, text: str | None = None, township: str = "白牙市镇") -> Notice:
    return Notice(nid, "withholding_failure", "H" + nid[-4:], 2020, township, "黄某", to, "sms",
                  text or f"【东安县医保】通知{nid}")


def sent_to(w, out_id: str) -> list[dict]:
    return [s for s in requests.get(w["fake"].url + "sent").json()["sent"] if s["out_id"] == out_id]


def faults(w, **kw):
    requests.post(w["fake"].url + "faults", json=kw).raise_for_status()


def notice(w, nid):
    return w["store"].notice(nid)


def api(w, method, path, **kw):
    return requests.request(method, w["base"] + "/v1/counties/431122" + path, timeout=10, **kw)


def delivered(w, nid, status="delivered"):
    return wait_for(lambda: (notice(w, nid) or {}).get("status") == status, timeout=10, what=f"{nid} {status}")


def test_the_same_payment_event_three_times_is_one_sms_at_the_provider(w):
    """001 五: the receipt SMS to the head, once per payment however often the event arrives."""
    order = "P" + secrets.token_hex(5)
    to = phone()
    env = Envelope.new(Event("payments.payment.confirmed", {
        "order_no": order, "receipt_no": "R" + order, "household_no": "H1", "year": 2020, "county": "东安县",
        "township": "花桥镇", "village": "花桥村", "head_name": "刘春生", "head_phone": to,
        "members": [{"person_id": "431122199001010012", "name": "刘春生"}], "amount_fen": 25000,
        "paid_at": NOW.isoformat(), "channel": "mobile_app"}), "payments", NOW)
    handle = boot.event_handlers(w["c"])["payments.payment.confirmed"]
    for _ in range(3):
        handle(env)
    nid = f"receipt:{order}"
    assert w["c"].db.deliveries_due.count_documents({"_id": nid}) == 1
    w["deliverer"].run_once(NOW)
    w["deliverer"].run_once(NOW + timedelta(seconds=1))
    doc = notice(w, nid)
    sends = sent_to(w, doc["delivery"]["id"])
    assert len(sends) == 1 and sends[0]["accepted"] and sends[0]["phone_numbers"] == to
    assert doc["status"] in ("sent", "delivered")
    delivered(w, nid)
    assert w["c"].db.deliveries_due.count_documents({"_id": nid}) == 0


def test_a_provider_failing_twice_then_succeeding_delivers_once_with_every_attempt_recorded(w):
    to, nid = phone(), "t:retry:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), NOW)
    faults(w, fail_next=2)
    run = w["deliverer"].run_once
    assert run(NOW).get("retry") == 1
    assert run(NOW + timedelta(seconds=30)) == {}  # backoff: 60 s after the first failure
    assert run(NOW + timedelta(seconds=61)).get("retry") == 1
    assert run(NOW + timedelta(seconds=61 + 121)).get("sent") == 1
    doc = notice(w, nid)
    sends = sent_to(w, doc["delivery"]["id"])
    assert [s["accepted"] for s in sends] == [False, False, True]  # one accepted send
    assert [a["result"] for a in doc["attempts"]] == ["retry", "retry", "accepted"]
    assert doc["attempts"][0]["error"].startswith("isp.SYSTEM_ERROR")
    delivered(w, nid)
    assert len(notice(w, nid)["receipts"]) == 1


def test_a_success_receipt_for_an_attempt_we_took_as_failed_delivers_it_without_a_second_sms(w):
    """A send that timed out on our side but reached the phone: the receipt arrives while the
    notice waits for its retry; the retry finds it and sends nothing (no duplicate SMS)."""
    to, nid = phone(), "t:late-ok:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), NOW)
    faults(w, fail_next=1)
    assert w["deliverer"].run_once(NOW).get("retry") == 1
    did = notice(w, nid)["delivery"]["id"]
    r = requests.post(w["base"] + "/v1/sms/receipts", json=[{"out_id": did, "success": True, "biz_id": "B-LATE",
                      "phone_number": to, "report_time": "2019-11-15 10:00:05", "err_code": "DELIVERED"}],
                      headers={"X-Sms-Receipt-Token": RECEIPT_TOKEN})
    assert r.status_code == 200 and r.json()["waiting"] == 1, r.text  # kept: the notice is queued for its retry
    before = len(sent_to(w, did))
    w["deliverer"].run_once(NOW + timedelta(seconds=61))
    doc = notice(w, nid)
    assert doc["status"] == "delivered" and [x["biz_id"] for x in doc["receipts"]] == ["B-LATE"]
    assert len(sent_to(w, did)) == before  # no second send
    assert w["c"].db.deliveries_due.find_one({"_id": nid}) is None


def test_a_receipt_pushed_twice_changes_nothing_the_second_time(w):
    to, nid = phone(), "t:dup:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), NOW)
    faults(w, duplicate_receipts=True)
    w["deliverer"].run_once(NOW)
    did = notice(w, nid)["delivery"]["id"]
    wait_for(lambda: sum(did in p["out_ids"] for p in requests.get(w["fake"].url + "pushes").json()["pushes"]) >= 2,
             timeout=10, what="two pushes")
    doc = notice(w, nid)
    assert doc["status"] == "delivered" and len(doc["receipts"]) == 1
    # and once more by hand: still one
    r = requests.post(w["base"] + "/v1/sms/receipts", json=[{"out_id": did, "success": True, "biz_id": doc["receipts"][0]["biz_id"],
                      "phone_number": to, "report_time": doc["receipts"][0]["report_time"], "err_code": "DELIVERED"}],
                      headers={"X-Sms-Receipt-Token": RECEIPT_TOKEN})
    assert r.status_code == 200 and r.json()["duplicate"] == 1, r.text
    assert len(notice(w, nid)["receipts"]) == 1


def test_a_receipt_before_our_send_was_recorded_is_kept_and_applied(w):
    to, nid = phone(), "t:early:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), NOW)
    faults(w, receipt_before_reply=True)
    w["deliverer"].run_once(NOW)
    doc = notice(w, nid)
    pushes = requests.get(w["fake"].url + "pushes").json()["pushes"]
    assert any(doc["delivery"]["id"] in p["out_ids"] and p["status"] == 200 for p in pushes)
    assert doc["status"] == "delivered" and len(doc["receipts"]) == 1, doc
    assert w["c"].db.receipts_waiting.count_documents({"_id": doc["delivery"]["id"]}) == 0


def test_a_failed_receipt_is_resendable_and_a_late_receipt_of_the_old_round_is_stale(w):
    to, nid = phone(), "t:fail:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), NOW)
    faults(w, receipt_fail="UNDELIV")
    w["deliverer"].run_once(NOW)
    delivered(w, nid, "failed")
    old = notice(w, nid)
    assert old["delivery"]["error"] == "UNDELIV"
    faults(w, receipt_fail=None)
    r = api(w, "POST", f"/notices/{nid}/resend", headers=STAFF)
    assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["delivery"]["round"] == 2, r.text
    w["deliverer"].run_once(NOW + timedelta(minutes=1))
    delivered(w, nid)
    r = requests.post(w["base"] + "/v1/sms/receipts", json=[{"out_id": old["delivery"]["id"], "success": False,
                      "err_code": "LATE"}], headers={"X-Sms-Receipt-Token": RECEIPT_TOKEN})
    assert r.json()["stale"] == 1 and notice(w, nid)["status"] == "delivered"


def test_receipts_need_the_shared_token(w):
    for headers in ({}, {"X-Sms-Receipt-Token": "wrong"}):
        r = requests.post(w["base"] + "/v1/sms/receipts", json=[], headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "RECEIPT_TOKEN_INVALID")
    r = requests.post(w["base"] + "/v1/sms/receipts", json={"out_id": "x"}, headers={"X-Sms-Receipt-Token": RECEIPT_TOKEN})
    assert (r.status_code, r.json()["code"]) == (400, "RECEIPTS_NOT_A_LIST") and r.json()["message"]
    r = requests.post(w["base"] + "/v1/sms/receipts", json=[{"out_id": 5}], headers={"X-Sms-Receipt-Token": RECEIPT_TOKEN})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_FAILED")


def test_a_notice_made_at_half_past_ten_at_night_goes_at_eight_and_an_urgent_one_at_once(w):
    night = datetime(2019, 11, 15, 22, 30, tzinfo=SHANGHAI)
    w["clock"].set(night)
    to, nid, urgent = phone(), "t:night:" + secrets.token_hex(3), "t:urgent:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), night)
    w["repo"].add(sms(urgent, phone()), night)
    # the fields the templates engineer adds: a template with its provider code, and urgency
    w["c"].db.notices.update_one({"_id": urgent}, {"$set": {"urgent": True, "template": {
        "name": "withholding_failure.sms", "version": "1", "code": "SMS_WFAIL_V1", "params": {"bank": "农商银行"}}}})
    out = w["deliverer"].run_once()  # the suite's clock: 22:30
    assert out.get("quiet") == 1 and out.get("sent") == 1, out
    sends = sent_to(w, notice(w, urgent)["delivery"]["id"])
    assert sends[0]["template_code"] == "SMS_WFAIL_V1" and sends[0]["template_param"] == {"bank": "农商银行"}
    from prometheus_client import REGISTRY
    assert REGISTRY.get_sample_value("notices_quiet_hours_backlog", {"service": "notices", "county": "431122"}) >= 1
    assert notice(w, nid)["status"] == "queued" and not sent_to(w, notice(w, nid)["delivery"]["id"])
    w["clock"].set(datetime(2019, 11, 16, 7, 59, tzinfo=SHANGHAI))
    w["deliverer"].run_once()
    assert not sent_to(w, notice(w, nid)["delivery"]["id"])
    w["clock"].set(datetime(2019, 11, 16, 8, 0, tzinfo=SHANGHAI))
    assert w["deliverer"].run_once().get("sent") == 1
    sends = sent_to(w, notice(w, nid)["delivery"]["id"])
    assert len(sends) == 1 and sends[0]["template_code"] == "GENERIC"
    assert sends[0]["template_param"] == {"text": notice(w, nid)["text"]}


def test_the_sixth_sms_of_a_day_to_one_number_waits_for_the_next_morning(w):
    to = phone()
    ids = [f"t:limit:{secrets.token_hex(3)}:{i}" for i in range(6)]
    for i, nid in enumerate(ids):
        w["repo"].add(sms(nid, to, text=f"第{i}条"), NOW)
    out = w["deliverer"].run_once(NOW)
    assert out.get("sent") == 5 and out.get("daily_limit") == 1, out
    held = [nid for nid in ids if notice(w, nid)["status"] == "queued"]
    assert len(held) == 1
    pointer = w["c"].db.deliveries_due.find_one({"_id": held[0]})
    assert pointer["due_at"] == datetime(2019, 11, 16, 8, 0, tzinfo=SHANGHAI) and pointer["held"] == "daily_limit"
    assert w["deliverer"].run_once(NOW + timedelta(hours=3)) == {}
    assert w["deliverer"].run_once(datetime(2019, 11, 16, 8, 0, tzinfo=SHANGHAI)).get("sent") == 1


def test_the_per_number_limit_holds_a_fourth_reminder_to_a_shared_phone_until_the_next_morning(w):
    """Four unpaid households whose head phone is one village cadre's number (common for elderly
    households) at a limit of 3 a day: three reminders go, the fourth waits until 08:00 tomorrow."""
    from services.notices.domain.notice import reminder_notice
    book = boot.templates(w["c"])
    deliverer = boot.deliverer(w["c"], channels=w["channels"], settings=replace(w["settings"], per_number_per_day=3))
    cadre, run = phone(), f"2020:window:7:{secrets.token_hex(3)}"
    deadline = datetime(2019, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)
    ids = []
    for i in range(4):
        n = book.fill(reminder_notice(run, 2020, "白牙市镇", f"SH-{i}", {"head_name": f"户主{i}", "head_phone": cadre},
                                      "集中缴费期", deadline))
        w["repo"].add(n, NOW)
        ids.append(n.notice_id)
    out = deliverer.run_once(NOW)
    assert out.get("sent") == 3 and out.get("daily_limit") == 1, out
    (held,) = [nid for nid in ids if notice(w, nid)["status"] == "queued"]
    assert sum(len(sent_to(w, notice(w, nid)["delivery"]["id"])) for nid in ids) == 3  # at the provider
    assert deliverer.run_once(datetime(2019, 11, 15, 23, 0, tzinfo=SHANGHAI)) == {}
    assert deliverer.run_once(datetime(2019, 11, 16, 8, 0, tzinfo=SHANGHAI)).get("sent") == 1
    assert len(sent_to(w, notice(w, held)["delivery"]["id"])) == 1


def test_one_identical_text_per_number_per_thirty_seconds(w):
    to = phone()
    a, b = "t:same:a" + secrets.token_hex(3), "t:same:b" + secrets.token_hex(3)
    w["repo"].add(sms(a, to, text="同一条"), NOW)
    w["repo"].add(sms(b, to, text="同一条"), NOW)
    out = w["deliverer"].run_once(NOW)
    assert out.get("sent") == 1 and out.get("identical_text") == 1, out
    assert w["deliverer"].run_once(NOW + timedelta(seconds=29)) == {}
    assert w["deliverer"].run_once(NOW + timedelta(seconds=30)).get("sent") == 1


def test_a_notice_is_dead_after_its_last_retry_listed_and_resent_by_county_staff(w):
    to, nid = phone(), "t:dead:" + secrets.token_hex(3)
    w["repo"].add(sms(nid, to), NOW)
    faults(w, throttle=True)
    at = NOW
    for n in range(1, 6):
        out = w["deliverer"].run_once(at)
        assert out.get("retry" if n < 5 else "dead") == 1, (n, out)
        at += timedelta(hours=2)
    doc = notice(w, nid)
    assert doc["status"] == "dead" and len(doc["attempts"]) == 5
    assert doc["attempts"][-1]["error"].startswith("isv.BUSINESS_LIMIT_CONTROL")
    r = api(w, "GET", "/deliveries/dead", headers=STAFF)
    assert r.status_code == 200 and nid in [x["notice_id"] for x in r.json()["notices"]], r.text
    r = api(w, "GET", "/deliveries/dead", headers={"Authorization": f"Bearer {TOWN_TOKEN}"})
    assert nid in [x["notice_id"] for x in r.json()["notices"]]  # 白牙市镇's own
    r = api(w, "POST", f"/notices/{nid}/resend", headers={"Authorization": f"Bearer {TOWN_TOKEN}"})
    assert r.status_code == 403, r.text  # county staff only
    r = api(w, "GET", f"/notices/{nid}", headers=STAFF)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "dead" and len(body["attempts"]) == 5
    assert body["recipient_phone"] == to[:3] + "****" + to[-4:]
    faults(w, throttle=False)
    r = api(w, "POST", f"/notices/{nid}/resend", headers=STAFF)
    assert r.status_code == 202, r.text
    assert nid not in [x["notice_id"] for x in api(w, "GET", "/deliveries/dead", headers=STAFF).json()["notices"]]
    assert w["deliverer"].run_once(at).get("sent") == 1
    delivered(w, nid)
    r = api(w, "POST", f"/notices/{nid}/resend", headers=STAFF)
    assert (r.status_code, r.json()["code"]) == (409, "NOTICE_NOT_RESENDABLE") and "已送达" in r.json()["message"]
    r = api(w, "GET", "/notices/nothing-here", headers=STAFF)
    assert (r.status_code, r.json()["code"]) == (404, "NOTICE_NOT_FOUND")


def test_a_webhook_is_signed_as_docs_say_and_retried_after_a_5xx(w):
    hook = w["hook"]
    nid = "t:hook:" + secrets.token_hex(3)
    w["repo"].add(Notice(nid, "stage_result", None, 2020, "花桥镇", "花桥镇人民政府", None, "webhook", "考核结果"), NOW)
    hook.fail_next = 1
    assert w["deliverer"].run_once(NOW).get("retry") == 1
    assert w["deliverer"].run_once(NOW + timedelta(seconds=61)).get("sent") == 1
    mine = [g for g in hook.got if g["body"]["notice_id"] == nid]
    assert [g["status"] for g in mine] == [503, 200] and all(g["verified"] for g in mine)
    assert mine[0]["delivery"] == mine[1]["delivery"] == notice(w, nid)["delivery"]["id"]
    assert notice(w, nid)["status"] == "delivered"
    # a wrong secret is refused by the same receiver: the check is real
    bad = WebhookChannel(hook.url, "not-the-secret")
    w["c"].db.notices.update_one({"_id": nid}, {"$set": {"status": "queued"}})
    from services.notices.adapters.channels import Delivery
    res = bad.send(Delivery(nid, "x", "x#1", "webhook", "k", "431122", "t", None, 2020, None, None, "t", "GENERIC", at=NOW))
    assert not res.accepted and not res.retryable and res.error.startswith("HTTP_401")


def test_internal_notices_are_delivered_to_the_work_list_at_once_even_at_night(w):
    night = datetime(2019, 11, 15, 23, 0, tzinfo=SHANGHAI)
    nid = "t:town:" + secrets.token_hex(3)
    w["repo"].add(Notice(nid, "coverage_alert", None, 2020, "花桥镇", "花桥镇人民政府", None, "internal", "请动员"), night)
    assert w["deliverer"].run_once(night).get("sent") == 1
    assert notice(w, nid)["status"] == "delivered"


def test_a_worker_that_died_while_sending_is_taken_over_at_least_once_with_the_same_out_id(w):
    """docs/notice-delivery.md "Crashes": past the timeout, sent again with the same OutId — unless
    a receipt naming the delivery arrived meanwhile (then it is sent, not sent again)."""
    store, run = w["store"], w["deliverer"].run_once
    lost, seen = "t:crash:a" + secrets.token_hex(3), "t:crash:b" + secrets.token_hex(3)
    for nid in (lost, seen):
        w["repo"].add(sms(nid, phone()), NOW)
        assert store.begin_attempt(notice(w, nid), notice(w, nid)["delivery"]["id"] + "#1", NOW)  # then the crash
    did_seen = notice(w, seen)["delivery"]["id"]
    r = requests.post(w["base"] + "/v1/sms/receipts", json=[{"out_id": did_seen, "success": True, "biz_id": "B1"}],
                      headers={"X-Sms-Receipt-Token": RECEIPT_TOKEN})
    assert r.json()["waiting"] == 1
    assert run(NOW + timedelta(seconds=60)).get("in_flight") == 2  # not yet past the timeout
    out = run(NOW + timedelta(seconds=121))
    assert out.get("recovered_resend") == 1 and out.get("recovered_sent") == 1, out
    assert notice(w, seen)["status"] == "delivered" and not sent_to(w, did_seen)
    assert run(NOW + timedelta(seconds=122)).get("sent") == 1
    doc = notice(w, lost)
    assert [a["result"] for a in doc["attempts"]] == ["unknown", "accepted"]
    assert [s["out_id"] for s in sent_to(w, doc["delivery"]["id"])] == [doc["delivery"]["id"]]


def test_staff_preview_a_template_with_its_signature_and_parts_and_bad_parameters_are_a_clear_400(namespace, tmp_path):
    from services.notices.entrypoints.flask_app import create_app
    from shared.auth import token_hash
    from shared.clock import FixedClock
    from tests.helpers import secret_files

    token = secrets.token_hex(8)
    with secret_files(tmp_path, tokens=[{"sha256": token_hash(token), "subject": "ops", "role": "county",
                                         "county": "431122"}]):
        api = create_app(FixedClock(datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc))).test_client()
        h = {"Authorization": f"Bearer {token}"}
        listed = api.get("/v1/counties/431122/templates", headers=h)
        assert listed.status_code == 200 and "receipt.sms" in {t["name"] for t in listed.json["templates"]}
        r = api.post("/v1/counties/431122/templates/claim_paid.sms/preview", headers=h, json={"params": {
            "name": "王某", "year": 2020, "amount_fen": 13000, "paid_on": "2020-03-02", "payment_ref": "MZ-1"}})
        assert r.status_code == 200, r.json
        assert (r.json["text"], r.json["sms_segments"]) == (
            "【东安县医保】王某您好：2020年度医保费资助款130.00元已于2020年3月2日退还（凭证号MZ-1）。", 1)
        bad = api.post("/v1/counties/431122/templates/claim_paid.sms/preview", headers=h, json={"params": {"name": "王某"}})
        assert (bad.status_code, bad.json["code"]) == (400, "TEMPLATE_PARAMS")
        wrong = api.post("/v1/counties/431122/templates/claim_paid.sms/preview", headers=h, json={"params": {
            "name": "王某", "year": 2020, "amount_fen": "many", "paid_on": "yesterday", "payment_ref": "x"}})
        assert (wrong.status_code, wrong.json["code"]) == (400, "TEMPLATE_PARAMS")
        assert api.post("/v1/counties/431122/templates/nope.sms/preview", headers=h,
                        json={"params": {}}).json["code"] == "TEMPLATE_UNKNOWN"

"""A holiday schedule county staff load through registry reaches payments' audit due dates, through the
real relay, broker and consumer, on the real store.

- 001_93f5b63ac6b4a653.txt 七(二): 税务局应于3个工作日内完成缴款审核 — the due date counts working days.
- 《全国年节及纪念日放假办法》(国务院令第795号): 元旦 1月1日 is a holiday every year; the rest of 2027's schedule
  (国务院办公厅关于2027年部分节假日安排的通知) is not in the pinned chinese-calendar, so until it is loaded the due date
  is an estimate and says so. Before: payments counted only the files and the library (a schedule loaded
  through registry's API never reached it) and its overdue rows carried no estimate flag.
"""
from __future__ import annotations

import os
import secrets
from datetime import datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared import workdays
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from tests.helpers import household_payload, run_until, secret_files, shifted_policy, signed_post

PAID_AT = datetime(2026, 12, 30, 10, 0, tzinfo=SHANGHAI)  # a Wednesday in this test's 2027 window
COUNTY = secrets.token_hex(8)
BANK_SECRET = secrets.token_hex(16)
# A schedule made up for this test only (not the State Council's): 元旦 Jan 1-4 off, Saturday Jan 9 worked.
TEST_2027 = {"year": 2027, "source": "测试用 2027 年安排（非官方）",
             "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-04"},
                          {"name": "劳动节", "from": "2027-05-01", "to": "2027-05-02"},
                          {"name": "国庆节", "from": "2027-10-01", "to": "2027-10-03"}],
             "workdays": [{"name": "元旦", "date": "2027-01-09"}]}


@pytest.fixture(scope="module")
def suite(namespace, tmp_path_factory):
    d = tmp_path_factory.mktemp("holpay")
    old = os.environ.get("POLICY_FILE")
    os.environ["POLICY_FILE"] = str(shifted_policy(d, 7))  # 2027, its window 2026-09-01..12-31
    clock = FixedClock(PAID_AT)
    with secret_files(d, tokens=[{"sha256": token_hash(COUNTY), "subject": "county-ops", "role": "county",
                                  "county": "431122"}],
                      gateways=[{"id": "bank-a", "secret": BANK_SECRET, "kind": "bank", "channels": ["mobile_app"]}]):
        yield (registry_app(clock).test_client(), payments_app(clock).test_client(),
               registry_boot.bootstrap(clock), payments_boot.bootstrap(clock))
    os.environ.pop("POLICY_FILE") if old is None else os.environ.__setitem__("POLICY_FILE", old)
    workdays.uninstall(2027)  # registry's app installs into the process's default calendar
    workdays.use_source(None)


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def flow(rc, pc, until, what, timeout=30):
    """Both relays and both consumers run until `until()` holds."""
    run_until(until, what, relays=(rc, pc), consumers=(rc, pc), timeout=timeout)

def signed(api, path, payload):
    return signed_post(api, path, payload, secret=BANK_SECRET, at=PAID_AT,
                       extra={"Idempotency-Key": secrets.token_hex(8)})


def overdue_on(day: int, no: str) -> list[dict]:
    """The overdue audits as a fresh payments process answers on 2027-01-`day` (one with no cache)."""
    c = FixedClock(datetime(2027, 1, day, 12, 0, tzinfo=SHANGHAI))
    r = payments_app(c).test_client().get("/v1/counties/431122/audits/overdue?year=2027", headers=county())
    assert r.status_code == 200, r.json
    return [o for o in r.json["overdue"] if o["household_no"] == no]


def test_a_schedule_loaded_at_registry_reaches_payments_and_moves_the_audit_due_date(suite):
    registry, api, rc, pc = suite
    no = f"HP-{secrets.token_hex(3)}"
    r = registry.post("/v1/counties/431122/households", json=dict(household_payload(no, "花桥镇", n=2, seed=901), year=2027),
                      headers=county())
    assert r.status_code == 201, r.json
    flow(rc, pc, lambda: pc.db.households.find_one({"_id": f"2027:{no}"}), "the household at payments")
    o = signed(api, "/v1/counties/431122/orders", {"household_no": no, "year": 2027, "channel": "mobile_app"})
    assert o.status_code == 201, o.json
    paid = signed(api, "/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": "T" + secrets.token_hex(6),
                                             "amount_fen": o.json["amount_fen"], "paid_at": PAID_AT.isoformat()})
    assert paid.status_code == 200, paid.json
    flow(rc, pc, lambda: (pc.db.audit_days.find_one({"_id": f"2027:{PAID_AT.date()}|花桥镇"}) or {}).get("open", {}).get(f"2027:{no}"),
         "the payment waiting for its audit")

    # estimate: Dec 31, Jan 1 off by rule, Jan 4, Jan 5 — and the row says it is an estimate
    assert overdue_on(5, no) == []
    (row,) = overdue_on(6, no)
    assert (row["audit_due"], row["due_estimated"]) == ("2027-01-05", True)

    assert registry.put("/v1/counties/431122/holidays/2027", json=TEST_2027, headers=county()).status_code == 200
    (row,) = overdue_on(6, no)  # not yet delivered: payments still counts the estimate, and says so
    assert (row["audit_due"], row["due_estimated"]) == ("2027-01-05", True)

    flow(rc, pc, lambda: pc.db.holiday_schedules.find_one({"_id": "2027"}), "the schedule at payments")
    # official: Dec 31, Jan 1-4 off, Jan 5, Jan 6
    assert overdue_on(6, no) == []
    (row,) = overdue_on(7, no)
    assert (row["audit_due"], row["due_estimated"]) == ("2027-01-06", False)


def test_a_corrected_schedule_wins_at_payments_and_an_older_one_delivered_late_does_not(suite):
    """The newest version county staff loaded is the one payments counts, whatever order events arrive in."""
    registry, api, rc, pc = suite
    corrected = dict(TEST_2027, holidays=[dict(TEST_2027["holidays"][0], to="2027-01-05"), *TEST_2027["holidays"][1:]])
    before = (rc.db.holiday_schedules.find_one({"_id": "2027"}) or {}).get("version", 0)
    assert registry.put("/v1/counties/431122/holidays/2027", json=corrected, headers=county()).status_code == 200
    flow(rc, pc, lambda: (pc.db.holiday_schedules.find_one({"_id": "2027"}) or {}).get("version", 0) > before,
         "the corrected schedule at payments")
    repo = payments_boot.repository(pc)
    assert date_in(repo, "2027-01-05")
    stale = dict(pc.db.holiday_schedules.find_one({"_id": "2027"}), version=before, holidays=[])
    assert repo.upsert_holiday_schedule({k: v for k, v in stale.items() if k not in ("_id", "_order")}) is False
    assert date_in(repo, "2027-01-05")


def date_in(repo, day: str) -> bool:
    (s,) = [s for s in repo.holiday_schedules() if s.year == 2027]
    return any(d.isoformat() == day for d in s.holidays)

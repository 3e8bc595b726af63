"""Mid-year enrolment by each county's own rules, and the benefit start where staff and the resident
see it, on the real store and broker through the APIs.

Rules quoted:
- Wuming 2018 (002_9137bd928f251374.txt 五(二)): 每年7月1日至12月31日不再办理当年的城乡居民医保参保缴费业务
  (出生未超过3个月的新生儿及困难、特殊人群除外) — a suite running policies/wuming-2018.json accepts a
  newborn of 2 months in September and refuses one of 4 months with that reason (not Dong'an's 28 days).
- Dong'an 2020 (001_93f5b63ac6b4a653.txt 四): 因……特殊情形(具体指当年新迁入户口……)……可以按当年度城乡居民医保
  筹资标准(含个人缴费部分和财政补助部分)一次性足额缴纳基本医疗保险费,从缴费的下个月起享受医保待遇 — the
  person paid in April enjoys benefits from May 1: shown on the member in the household and on the
  receipt (the month after the payment, not after the decision).
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import date, datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from shared.masking import mask_id
from tests.helpers import household_payload, run_until, secret_files, signed_post
from tools.ids import make_id

COUNTY = secrets.token_hex(8)
BANK_SECRET = secrets.token_hex(16)
FIGURE_FEN = 80000  # a test figure: the Dong'an notice prints no financing standard (the file leaves it null)


@pytest.fixture
def suite(namespace, tmp_path):
    """Registry and payments apps built on a given policy file (POLICY_FILE for these apps only)."""
    built = []

    def build(policy_file, county, at):
        tokens = [{"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": county}]
        gateways = [{"id": "bank-a", "secret": BANK_SECRET, "kind": "bank", "channels": ["mobile_app"], "counties": [county]}]
        cm = secret_files(tmp_path, tokens=tokens, gateways=gateways)
        cm.__enter__()
        old = os.environ.get("POLICY_FILE")
        os.environ["POLICY_FILE"] = str(policy_file)
        built.append((cm, old))
        clock = FixedClock(at)
        return (registry_app(clock).test_client(), payments_app(clock).test_client(), clock,
                registry_boot.bootstrap(clock), payments_boot.bootstrap(clock))
    yield build
    for cm, old in reversed(built):
        os.environ.pop("POLICY_FILE", None) if old is None else os.environ.__setitem__("POLICY_FILE", old)
        cm.__exit__(None, None, None)


def staff():
    return {"Authorization": f"Bearer {COUNTY}"}


def flow(rc, pc, until, what, timeout=30):
    """Both relays and both consumers run until `until()` holds."""
    run_until(until, what, relays=(rc, pc), consumers=(rc, pc), timeout=timeout)

def signed(client, clock, path, payload, idem=None):
    return signed_post(client, path, payload, secret=BANK_SECRET, at=clock.now(),
                       extra={"Idempotency-Key": idem} if idem else None)


def test_wuming_suite_accepts_a_newborn_of_2_months_and_refuses_one_of_4_with_the_documents_reason(suite):
    """002 五(二): in September (Jul 1-Dec 31 closed) a child born Jul 10 (2 months) is accepted
    (NEWBORN_3_MONTHS, the individual standard of 180 yuan at payments), and so is one exactly 3
    months old (未超过3个月); one born May 10 (4 months) is refused with the closed period's reason
    naming the newborn exception; the replies quote the plan. Before: the rules were hard-coded per
    county name, a child of exactly 3 months was refused, the reason named no exception."""
    registry, api, clock, rc, pc = suite(ROOT / "policies" / "wuming-2018.json", "450110",
                                         datetime(2018, 9, 15, 10, 0, tzinfo=SHANGHAI))
    no = f"WM-{secrets.token_hex(3)}"
    two, four = make_id(date(2018, 7, 10), 21, "F"), make_id(date(2018, 5, 10), 22, "M")
    three = make_id(date(2018, 6, 15), 23, "F")  # exactly 3 months on Sep 15: 未超过3个月
    body = {"household_no": no, "year": 2018, "township": "城厢镇", "village": "城东社区", "head_phone": "13900001111",
            "members": [{"id_number": make_id(date(1988, 3, 3), 20, "M"), "name": "户主", "relation": "户主", "sex": "M"},
                        {"id_number": two, "name": "两月婴", "relation": "子女", "sex": "F"},
                        {"id_number": four, "name": "四月婴", "relation": "子女", "sex": "M"},
                        {"id_number": three, "name": "三月婴", "relation": "子女", "sex": "F"}]}
    r = registry.post("/v1/counties/450110/households", json=body, headers=staff())
    assert r.status_code == 201, r.json

    ok = registry.post("/v1/counties/450110/mid-year/decisions", json={"id_number": two}, headers=staff())
    assert ok.status_code == 201, ok.json
    assert (ok.json["allowed"], ok.json["code"], ok.json["pays"]) == (True, "NEWBORN_3_MONTHS", "individual")
    assert "出生未超过3个月的新生儿" in ok.json["rule"]
    assert ok.json["benefits_from"] is None  # the plan sets no start: not guessed
    exactly = registry.post("/v1/counties/450110/mid-year/decisions", json={"id_number": three}, headers=staff())
    assert (exactly.status_code, exactly.json["code"]) == (201, "NEWBORN_3_MONTHS"), exactly.json

    refused = registry.post("/v1/counties/450110/mid-year/decisions", json={"id_number": four}, headers=staff())
    assert refused.status_code == 200, refused.json
    assert (refused.json["allowed"], refused.json["code"], refused.json["recorded"]) == (False, "MID_YEAR_CLOSED", False)
    assert "每年7月1日至12月31日不再办理当年度参保缴费" in refused.json["reason"]
    assert "出生未超过3个月的新生儿" in refused.json["reason"]
    assert "7月1日至12月31日不再办理当年的城乡居民医保参保缴费业务" in refused.json["rule"]

    # payments charges the accepted newborn alone, at Wuming's individual standard
    flow(rc, pc, lambda: pc.db.mid_year_approvals.find_one({"_id": f"2018:{two}"})
         and pc.db.mid_year_approvals.find_one({"_id": f"2018:{three}"})
         and pc.db.households.find_one({"_id": f"2018:{no}"}), "the household and the approvals at payments")
    q = signed(api, clock, "/v1/counties/450110/quotes", {"household_no": no, "year": 2018})
    assert q.status_code == 200, q.json
    assert (q.json["total_fen"], q.json["mid_year"]) == (36000, True)
    assert sorted(l["id_number"] for l in q.json["lines"]) == sorted([mask_id(two), mask_id(three)])


def test_dongan_benefit_start_is_the_month_after_payment_on_the_member_and_the_receipt(suite, tmp_path):
    """001 四: 从缴费的下个月起享受医保待遇. Approved on Mar 2 (the reply: from Apr 1 if paid now), paid on
    Apr 3: the member in the household GET and the receipt say benefits from 2020-05-01; members not
    enrolled mid-year carry no such field. Before: benefits_from was in the decision's reply only."""
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["mid_year"]["financing_standard_fen"] = FIGURE_FEN
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    (tmp_path / "dongan.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    registry, api, clock, rc, pc = suite(tmp_path / "dongan.json", "431122",
                                         datetime(2020, 3, 2, 10, 0, tzinfo=SHANGHAI))
    no = f"DA-{secrets.token_hex(3)}"
    body = household_payload(no, "花桥镇", seed=int(secrets.token_hex(2), 16) % 500)
    assert registry.post("/v1/counties/431122/households", json=body, headers=staff()).status_code == 201
    mover = body["members"][2]["id_number"]

    d = registry.post("/v1/counties/431122/mid-year/decisions", json={"id_number": mover, "special_case": "moved_in"},
                      headers=staff())
    assert d.status_code == 201, d.json
    assert (d.json["pays"], d.json["benefits_from"], d.json["benefits_rule"]) == (
        "full_financing", "2020-04-01", "next_month")

    flow(rc, pc, lambda: pc.db.mid_year_approvals.find_one({"_id": f"2020:{mover}"})
         and pc.db.households.find_one({"_id": f"2020:{no}"}), "the household and the approval at payments")
    paid_at = datetime(2020, 4, 3, 9, 30, tzinfo=SHANGHAI)
    clock.set(paid_at)
    o = signed(api, clock, "/v1/counties/431122/orders", {"household_no": no, "year": 2020, "channel": "mobile_app"}, f"{no}-o")
    assert o.status_code == 201 and o.json["amount_fen"] == FIGURE_FEN, o.json
    ack = signed(api, clock, "/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": f"T-{no}",
                                                   "amount_fen": FIGURE_FEN, "paid_at": paid_at.isoformat()})
    assert ack.json["code"] == "SUCCESS", ack.json

    def member(name_id):
        hh = registry.get(f"/v1/counties/431122/households/2020/{no}", headers=staff()).json
        return next(m for m in hh["members"] if m["id_number"] == mask_id(name_id))
    flow(rc, pc, lambda: member(mover)["status"] == "paid" and pc.db.receipts.find_one(
        {"_id": ack.json["receipt_no"]}), "the enrolment at registry and the receipt")
    assert member(mover)["benefits_from"] == "2020-05-01"
    assert "benefits_from" not in member(body["members"][0]["id_number"])

    receipt = api.get(f"/v1/counties/431122/receipts/{ack.json['receipt_no']}", headers=staff())
    assert receipt.status_code == 200, receipt.json
    [line] = receipt.json["members"]
    assert (line["id_number"], line["benefits_from"]) == (mask_id(mover), "2020-05-01")
    assert "2020年5月1日起享受医保待遇" in line["benefits_note"]

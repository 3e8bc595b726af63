"""Several counties in one suite, on the real store and broker, through the APIs.

Rules quoted:
- Dong'an 2020 (001_93f5b63ac6b4a653.txt 三): 个人缴费标准为250元/人; 四: 集中参保缴费期为2019年9月1日至12月31日.
- Wuming 2018 (002_9137bd928f251374.txt 四): 个人缴费标准为180元/人·年; 五: 2017年9月1日至12月31日.
- /work/shared/reference/policies.md: one policy file per county and year; a city or province runs
  many counties. Each county's data lives under its GB/T 2260 code (东安县 431122, 武鸣区 450110):
  in its URLs (/v1/counties/{code}/...), its events (the envelope's `county`), its tokens and
  gateway keys, and its own database per service.

A household number is a county's own: the same number in two counties is two households, each
quoted at its county's standard, each enrolled in its county's progress, and a token or gateway key
of one county acts nowhere in the other.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from services.scoring import bootstrap as scoring_boot
from services.scoring.entrypoints.flask_app import create_app as scoring_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from tests.helpers import run_until, secret_files, signed_post
from tools.ids import make_id

DONGAN, WUMING = "431122", "450110"
DONGAN_STAFF, WUMING_STAFF = secrets.token_hex(8), secrets.token_hex(8)
BANK, DONGAN_BANK = secrets.token_hex(16), secrets.token_hex(16)
IN_WUMING_WINDOW = datetime(2017, 11, 15, 10, 0, tzinfo=SHANGHAI)
IN_DONGAN_WINDOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def suite(namespace, tmp_path_factory):
    d = tmp_path_factory.mktemp("counties")
    tokens = [{"sha256": token_hash(DONGAN_STAFF), "subject": "dongan", "role": "county", "county": DONGAN},
              {"sha256": token_hash(WUMING_STAFF), "subject": "wuming", "role": "county", "county": WUMING}]
    gateways = [{"id": "province-bank", "secret": BANK, "kind": "bank", "channels": ["mobile_app"],
                 "counties": [DONGAN, WUMING]},  # one bank, a merchant account in each county
                {"id": "dongan-bank", "secret": DONGAN_BANK, "kind": "bank", "channels": ["mobile_app"],
                 "counties": [DONGAN]}]
    with secret_files(d, tokens=tokens, gateways=gateways):
        clock = FixedClock(IN_WUMING_WINDOW)
        yield {"clock": clock, "registry": registry_app(clock).test_client(),
               "payments": payments_app(clock).test_client(), "scoring": scoring_app(clock).test_client(),
               "rc": registry_boot.bootstrap(clock), "pc": payments_boot.bootstrap(clock),
               "sc": scoring_boot.bootstrap(clock)}


def staff(token):
    return {"Authorization": f"Bearer {token}"}


def household(no, year, township, village, seed):
    return {"household_no": no, "year": year, "township": township, "village": village, "head_phone": "13900001111",
            "members": [{"id_number": make_id(datetime(1970 + i, 3, 1 + seed % 27).date(), seed * 5 + i, s),
                         "name": f"成员{i}", "relation": r, "sex": s}
                        for i, (r, s) in enumerate([("户主", "M"), ("配偶", "F")])]}


def quote(s, county, no, year, *, gateway="province-bank", secret=BANK):
    return signed_post(s["payments"], f"/v1/counties/{county}/quotes", {"household_no": no, "year": year},
                       secret=secret, at=s["clock"].now(), gateway=gateway)


def test_one_household_number_in_two_counties_is_two_households_each_at_its_countys_standard(suite):
    s = suite
    no, seed = f"HH-{secrets.token_hex(3)}", int(secrets.token_hex(2), 16) % 400
    wuming_town = s["rc"].county(WUMING).policy.townships[0]
    dongan_town = s["rc"].county(DONGAN).policy.township("花桥镇")
    r = s["registry"].post(f"/v1/counties/{WUMING}/households", headers=staff(WUMING_STAFF),
                           json=household(no, 2018, wuming_town.name, (wuming_town.villages or ("某村",))[0], seed))
    assert r.status_code == 201, r.json
    r = s["registry"].post(f"/v1/counties/{DONGAN}/households", headers=staff(DONGAN_STAFF),
                           json=household(no, 2020, dongan_town.name, dongan_town.villages[0], seed + 1))
    assert r.status_code == 201, r.json  # the same number, another county: not a duplicate
    assert s["registry"].get(f"/v1/counties/{WUMING}/households/2018/{no}", headers=staff(WUMING_STAFF)).json[
        "county"] == "武鸣区"
    assert s["registry"].get(f"/v1/counties/{DONGAN}/households/2020/{no}", headers=staff(DONGAN_STAFF)).json[
        "township"] == "花桥镇"

    pc = s["pc"]
    run_until(lambda: pc.county(WUMING).db.households.find_one({"_id": f"2018:{no}"})
              and pc.county(DONGAN).db.households.find_one({"_id": f"2020:{no}"}),
              "each county's household at payments, in its county's database", relays=(s["rc"],), consumers=(pc,))
    assert pc.county(WUMING).db.households.find_one({"_id": f"2020:{no}"}) is None  # nothing crossed over

    q = quote(s, WUMING, no, 2018)  # November 2017: Wuming's window
    assert q.status_code == 200, q.json
    assert q.json["total_fen"] == 2 * 18000
    s["clock"].set(IN_DONGAN_WINDOW)
    try:
        q = quote(s, DONGAN, no, 2020)
        assert q.status_code == 200, q.json
        assert q.json["total_fen"] == 2 * 25000
        assert quote(s, DONGAN, no, 2018).json["code"] == "YEAR_UNKNOWN"  # 2018 is Wuming's year, not Dong'an's
    finally:
        s["clock"].set(IN_WUMING_WINDOW)


def test_a_token_or_gateway_key_of_one_county_acts_nowhere_in_another(suite):
    s = suite
    r = s["registry"].get(f"/v1/counties/{WUMING}/households/2018/NOPE", headers=staff(DONGAN_STAFF))
    assert (r.status_code, r.json["code"]) == (403, "SCOPE_COUNTY")
    r = s["payments"].get(f"/v1/counties/{DONGAN}/payments/2020/NOPE", headers=staff(WUMING_STAFF))
    assert (r.status_code, r.json["code"]) == (403, "SCOPE_COUNTY")
    q = quote(s, WUMING, "ANY", 2018, gateway="dongan-bank", secret=DONGAN_BANK)
    assert (q.status_code, q.json["code"]) == (403, "SCOPE_COUNTY")
    r = s["registry"].get(f"/v1/counties/999999/households/2018/X", headers=staff(DONGAN_STAFF))
    assert (r.status_code, r.json["code"]) == (404, "COUNTY_UNKNOWN")
    assert set(r.json["details"]["counties"]) >= {DONGAN, WUMING}
    r = s["registry"].get("/v1/households/2018/X", headers=staff(DONGAN_STAFF))
    assert (r.status_code, r.json["code"]) == (404, "COUNTY_REQUIRED")
    r = s["registry"].get(f"/v1/counties/{DONGAN}/no-such-thing", headers=staff(DONGAN_STAFF))
    assert (r.status_code, r.json["code"]) == (404, "HTTP_404")  # a served county, a path nobody serves
    r = s["registry"].delete("/v1/dead-letters", headers=staff(DONGAN_STAFF))
    assert (r.status_code, r.json["code"]) == (405, "HTTP_405")  # a suite-wide path is not "missing its county"


def test_each_countys_events_name_it_and_its_progress_counts_only_its_own(suite):
    """A paid household is enrolled in its own county's progress (scoring keeps one database per county)."""
    s = suite
    no, seed = f"PAY-{secrets.token_hex(3)}", int(secrets.token_hex(2), 16) % 400
    town = s["rc"].county(WUMING).policy.townships[1]
    assert s["registry"].post(f"/v1/counties/{WUMING}/households", headers=staff(WUMING_STAFF),
                              json=household(no, 2018, town.name, (town.villages or ("某村",))[0], seed)).status_code == 201
    pc, rc, sc = s["pc"], s["rc"], s["sc"]
    run_until(lambda: pc.county(WUMING).db.households.find_one({"_id": f"2018:{no}"}), "household at payments",
              relays=(rc,), consumers=(pc,))
    order = signed_post(s["payments"], f"/v1/counties/{WUMING}/orders",
                        {"household_no": no, "year": 2018, "channel": "mobile_app"}, secret=BANK,
                        at=s["clock"].now(), gateway="province-bank", extra={"Idempotency-Key": secrets.token_hex(8)})
    assert order.status_code == 201, order.json
    paid = signed_post(s["payments"], f"/v1/counties/{WUMING}/notifications",
                       {"order_no": order.json["order_no"], "transaction_id": "T" + secrets.token_hex(6),
                        "amount_fen": order.json["amount_fen"],
                        "paid_at": s["clock"].now().isoformat()}, secret=BANK, at=s["clock"].now(), gateway="province-bank")
    assert paid.status_code == 200, paid.json
    # the order belongs to Wuming: Dong'an's address does not know it
    other = signed_post(s["payments"], f"/v1/counties/{DONGAN}/notifications",
                        {"order_no": order.json["order_no"], "transaction_id": "T" + secrets.token_hex(6),
                         "amount_fen": order.json["amount_fen"],
                         "paid_at": s["clock"].now().isoformat()}, secret=BANK, at=s["clock"].now(), gateway="province-bank")
    assert other.status_code == 404, other.json

    def progress(county, year, token):
        rows = s["scoring"].get(f"/v1/counties/{county}/progress/{year}", headers=staff(token)).json["rows"]
        return {r["township"]: r["enrolled_persons"] for r in rows}

    run_until(lambda: progress(WUMING, 2018, WUMING_STAFF).get(town.name) == 2, "Wuming's progress",
              relays=(rc, pc), consumers=(rc, sc))
    assert sum(progress(DONGAN, 2020, DONGAN_STAFF).values()) == 0
    table = s["scoring"].get(f"/v1/counties/{WUMING}/progress/2018").json  # public, as county portals read it
    assert (table["county"], table["county_code"], table["task_total"]) == ("武鸣区", WUMING, 608897)
    envelope = pc.county(WUMING).db.payments.find_one({"_id": f"2018:{no}"})
    assert envelope is not None and envelope["status"] in ("confirmed", "audited")

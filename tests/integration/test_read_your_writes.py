"""Read-your-writes after a mid-year approval, on the real store and broker.

Rule quoted: 001_93f5b63ac6b4a653.txt 四 (未在规定缴费期内集中参保缴费的，原则上不得中途参保……特殊情形……可以
按当年度城乡居民医保筹资标准……一次性足额缴纳): once the township records the approval (201), the household
is charged for that person. Payments learns of the approval from registry.mid_year.approved, a
moment later; a quote naming the reply's `consistency_token` is answered "processing, retry after"
(409 SYNC_PENDING, Retry-After) until then, never the WINDOW_CLOSED refusal the approval just
lifted; without the token nothing changes.
"""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from tests.helpers import household_payload, run_until, secret_files, signed_post

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)  # inside the 2020 window
LATE = datetime(2020, 3, 2, 10, 0, tzinfo=SHANGHAI)  # after it, inside the policy year
FIGURE_FEN = 80000  # a test figure: the notice prints none, so the shipped policy file leaves it null
COUNTY = secrets.token_hex(8)
BANK_SECRET = secrets.token_hex(16)


@pytest.fixture(scope="module")
def env(namespace, tmp_path_factory):
    d = tmp_path_factory.mktemp("ryw")
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["mid_year"]["financing_standard_fen"] = FIGURE_FEN
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    (d / "policy.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with secret_files(d, tokens=[{"sha256": token_hash(COUNTY), "subject": "county", "role": "county",
                                  "county": "431122"}],
                      gateways=[{"id": "bank-a", "secret": BANK_SECRET, "kind": "bank", "channels": ["mobile_app"]}]):
        import os
        os.environ["POLICY_FILE"] = str(d / "policy.json")
        try:
            yield (registry_app(FixedClock(NOW)).test_client(), registry_app(FixedClock(LATE)).test_client(),
                   payments_app(FixedClock(LATE)).test_client(), registry_boot.bootstrap(FixedClock(NOW)),
                   payments_boot.bootstrap(FixedClock(LATE)))
        finally:
            os.environ.pop("POLICY_FILE")


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def quote(api, household_no, token=None):
    payload = {"household_no": household_no, "year": 2020, **({"consistency_token": token} if token else {})}
    return signed_post(api, "/v1/counties/431122/quotes", payload, secret=BANK_SECRET, at=LATE)


def deliver(rc, pc, until, what):
    """Registry's relay publishes what its writes carry; payments' own consumer takes it."""
    run_until(until, f"payments received {what}", relays=(rc,), consumers=(pc,), timeout=20)

def approval_at_payments(pc, person, version):
    return lambda: (pc.db.mid_year_approvals.find_one({"_id": f"2020:{person}"}) or {}).get("version") == version


def test_a_quote_with_the_approvals_token_waits_for_it_instead_of_refusing(env):
    registry, late, api, rc, pc = env
    body = household_payload("RYW-0001", "花桥镇", seed=611)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    deliver(rc, pc, lambda: pc.db.households.find_one({"_id": "2020:RYW-0001"}), "the household")
    person = body["members"][2]["id_number"]

    r = late.post("/v1/counties/431122/mid-year/decisions", json={"id_number": person, "special_case": "moved_in"}, headers=county())
    assert r.status_code == 201 and r.json["recorded"], r.json
    token = r.json["consistency_token"]
    assert person not in token and person[6:14] not in token  # no ID number in the reply

    # payments' consumer has not run: the caller who holds the reply is told to wait, not refused
    q = quote(api, "RYW-0001", token)
    assert (q.status_code, q.json["code"], q.headers.get("Retry-After")) == (409, "SYNC_PENDING", "1"), q.json
    assert "同步" in q.json["message"] and "稍后重试" in q.json["message"]
    q = quote(api, "RYW-0001")  # without the token: as before
    assert (q.status_code, q.json["code"]) == (422, "WINDOW_CLOSED")

    deliver(rc, pc, approval_at_payments(pc, person, 1), "the approval")
    q = quote(api, "RYW-0001", token)
    assert q.status_code == 200, q.json
    assert (q.json["mid_year"], q.json["total_fen"], len(q.json["lines"])) == (True, FIGURE_FEN, 1)


def test_after_a_withdrawal_the_token_of_the_new_approval_waits_for_that_one(env):
    """Approved, withdrawn (批准有误) and approved again: payments holds the first approval and its
    withdrawal; the third write's token waits for the third, not for 'some approval'."""
    registry, late, api, rc, pc = env
    body = household_payload("RYW-0002", "花桥镇", seed=612)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    person = body["members"][1]["id_number"]
    decide = {"id_number": person, "special_case": "graduate"}
    assert late.post("/v1/counties/431122/mid-year/decisions", json=decide, headers=county()).status_code == 201
    w = late.post("/v1/counties/431122/mid-year/approvals/2020/withdrawal", json={"id_number": person, "reason": "批准有误"},
                  headers=county())
    assert w.status_code == 200, w.json
    deliver(rc, pc, approval_at_payments(pc, person, 2), "the approval and its withdrawal")
    r = late.post("/v1/counties/431122/mid-year/decisions", json=decide, headers=county())
    assert r.status_code == 201, r.json
    q = quote(api, "RYW-0002", r.json["consistency_token"])
    assert (q.status_code, q.json["code"]) == (409, "SYNC_PENDING")
    deliver(rc, pc, approval_at_payments(pc, person, 3), "the new approval")
    q = quote(api, "RYW-0002", r.json["consistency_token"])
    assert q.status_code == 200 and q.json["total_fen"] == FIGURE_FEN, q.json
    # the same decision again (200) carries the token of the approval on record
    again = late.post("/v1/counties/431122/mid-year/decisions", json=decide, headers=county())
    assert again.status_code == 200 and again.json["consistency_token"] == r.json["consistency_token"]


def test_a_malformed_or_foreign_token_is_a_clear_error(env):
    registry, late, api, rc, pc = env
    q = quote(api, "RYW-0001", "not-a-token")
    assert (q.status_code, q.json["code"]) == (400, "CONSISTENCY_TOKEN_INVALID") and q.json["message"]
    body = household_payload("RYW-0003", "花桥镇", seed=613)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    r = late.post("/v1/counties/431122/mid-year/decisions", json={"id_number": body["members"][0]["id_number"],
                                                   "special_case": "moved_in"}, headers=county())
    q = quote(api, "RYW-0001", r.json["consistency_token"])  # another household's approval
    assert (q.status_code, q.json["code"]) == (400, "CONSISTENCY_TOKEN_MISMATCH")
    spec = api.get("/openapi.json").json
    assert "consistency_token" in json.dumps(spec["components"]["schemas"]["QuoteIn"])


def test_the_demo_client_passes_the_token_and_retries_after_as_told(env):
    """tools/clients.py (the demo's gateway) over real HTTP: the quote named with the token comes
    back 200 once payments has the approval, the SYNC_PENDING answers before it absorbed."""
    import threading

    from werkzeug.serving import make_server

    from tools.clients import GatewayClient
    registry, late, api, rc, pc = env
    body = household_payload("RYW-0004", "花桥镇", seed=614)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    deliver(rc, pc, lambda: pc.db.households.find_one({"_id": "2020:RYW-0004"}), "the household")
    person = body["members"][0]["id_number"]
    r = late.post("/v1/counties/431122/mid-year/decisions", json={"id_number": person, "special_case": "moved_in"}, headers=county())
    assert r.status_code == 201, r.json
    server = make_server("127.0.0.1", 0, api.application, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    later = threading.Timer(1.5, deliver, (rc, pc, approval_at_payments(pc, person, 1), "the approval"))
    try:
        gateway = GatewayClient(f"http://127.0.0.1:{server.server_port}", "bank-a", BANK_SECRET, now=lambda: LATE)
        later.start()
        t0 = time.monotonic()
        q = gateway.quote("RYW-0004", 2020, consistency_token=r.json["consistency_token"], wait=20)
        assert q.status_code == 200 and q.json()["total_fen"] == FIGURE_FEN, q.text
        assert time.monotonic() - t0 >= 1.0  # it waited for the approval rather than failing
    finally:
        later.join()
        server.shutdown()

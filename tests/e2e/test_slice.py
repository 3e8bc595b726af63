"""The end-to-end slice on the real bus and store (issue 2, item 5):
registry registers a household of 3 → payments quotes 3 × 250 yuan (001_93f5b63ac6b4a653.txt 三)
→ a gateway orders and notifies, signed → registry marks the 3 enrolled → scoring shows 3 / task
→ notices records the receipt notice to the head.
"""
from __future__ import annotations

import signal
import threading
import time

import requests

from tests.helpers import household_payload
from tools.clients import StaffClient, wait_for
from tools.suite import SERVICES


def progress_of(suite, township):
    rows = requests.get(suite.url("scoring") + "/v1/counties/431122/progress/2020", timeout=5).json()["rows"]
    return next(r for r in rows if r["township"] == township)


def pay(gateway, household_no, amount=None):
    q = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 else None)(gateway.quote(household_no, 2020)),
                 what=f"payments knows {household_no}")
    order = gateway.order(household_no, 2020).json()
    ack = gateway.notify(order["order_no"], amount if amount is not None else order["amount_fen"])
    return q, order, ack


def test_one_household_enrolled_end_to_end(suite, gateway, staff):
    r = staff.post("/v1/counties/431122/households", household_payload("E2E-0001", "南桥镇"))
    assert r.status_code == 201, r.text
    q, order, ack = pay(gateway, "E2E-0001")
    assert q["total_fen"] == 75000 and order["amount_fen"] == 75000
    assert ack.status_code == 200 and ack.json()["code"] == "SUCCESS"

    hh = wait_for(lambda: (lambda d: d if d["status"] == "paid" else None)(
        staff.get("/v1/counties/431122/households/2020/E2E-0001").json()), what="registry marks paid")
    assert [m["status"] for m in hh["members"]] == ["paid"] * 3
    assert all("*" in m["id_number"] for m in hh["members"])  # masked in responses

    row = wait_for(lambda: (lambda r: r if r["enrolled_persons"] == 3 else None)(progress_of(suite, "南桥镇")),
                   what="scoring progress")
    assert row["task"] == 31481 and row["enrolled_households"] == 1

    notices = StaffClient(suite.url("notices"), suite.secrets()["tokens"]["county"])
    got = wait_for(lambda: notices.get("/v1/counties/431122/households/2020/E2E-0001/notices").json()["notices"], what="receipt notice")
    assert got[0]["kind"] == "receipt" and "750.00元" in got[0]["text"] and got[0]["recipient_phone"] == "139****1111"

    # the payments worker completed the confirmation from its own event: the money-log row (no
    # reader writes it) and the receipt, which the gateway's acknowledgement named
    money = StaffClient(suite.url("payments"), suite.secrets()["tokens"]["county"])
    log = wait_for(lambda: money.get("/v1/counties/431122/money-log?ref=2020:E2E-0001").json()["entries"], what="money log row")
    assert [(e["action"], e["amount_fen"]) for e in log] == [("confirmed", 75000)]
    receipt = money.get(f"/v1/counties/431122/receipts/{ack.json()['receipt_no']}").json()
    assert receipt["amount_fen"] == 75000 and receipt["order_no"] == order["order_no"]


def test_every_service_answers_metrics_and_readyz(suite):
    for svc in SERVICES:
        assert requests.get(suite.url(svc) + "/readyz", timeout=5).json()["status"] == "ready"
        text = requests.get(suite.url(svc) + "/metrics", timeout=5).text
        assert f'service="{svc}"' in text and "http_requests_total" in text
        worker = requests.get(f"http://127.0.0.1:{suite.worker_base_port + SERVICES.index(svc) + 1}/metrics", timeout=5).text
        assert "outbox_backlog" in worker
        assert requests.get(suite.url(svc) + "/openapi.json", timeout=5).json()["openapi"].startswith("3.")


def worker_count(suite, svc: str, metric: str, etype: str) -> float:
    """A counter of a worker's own /metrics (0 while it is down or has not counted yet)."""
    from prometheus_client.parser import text_string_to_metric_families
    try:
        text = requests.get(f"http://127.0.0.1:{suite.worker_base_port + SERVICES.index(svc) + 1}/metrics",
                            timeout=2).text
    except requests.RequestException:
        return 0
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == f"{metric}_total" and s.labels.get("type") == etype)


def test_a_worker_killed_mid_stream_resumes_without_loss(suite, gateway, staff):
    """The registry worker is killed (SIGKILL) after it has applied some of the payment events and
    before it has applied them all (checked, so the kill cannot land while it is idle): every
    household is enrolled and counted once after its restart (docs/guarantees.md 4)."""
    n = 40
    township = "大盛镇"
    etype = "payments.payment.confirmed"
    before = progress_of(suite, township)["enrolled_persons"]
    for i in range(n):
        staff.post("/v1/counties/431122/households", household_payload(f"E2E-KILL-{i:02d}", township, n=2, seed=10 + i)).raise_for_status()
    orders = []
    for i in range(n):
        wait_for(lambda: gateway.quote(f"E2E-KILL-{i:02d}", 2020).status_code == 200, what="read model")
        orders.append(gateway.order(f"E2E-KILL-{i:02d}", 2020).json())
    applied0 = worker_count(suite, "registry", "events_consumed", etype)
    acks: list = []

    def notify_paced():  # a payment every 50 ms: the worker applies them in several small batches
        for o in orders:
            acks.append(gateway.notify(o["order_no"], o["amount_fen"]).status_code)
            time.sleep(0.05)
    notifier = threading.Thread(target=notify_paced)
    notifier.start()  # payments go on arriving while the worker is killed
    wait_for(lambda: worker_count(suite, "registry", "events_consumed", etype) > applied0, timeout=60, interval=0.02,
             what="the registry worker applying the first payments")
    suite.stop_process("registry-worker", sig=signal.SIGKILL)
    notifier.join()
    assert acks == [200] * n
    paid_at_kill = sum(staff.get(f"/v1/counties/431122/households/2020/E2E-KILL-{i:02d}").json()["status"] == "paid" for i in range(n))
    assert 0 < paid_at_kill < n, f"the kill must land mid-stream ({paid_at_kill} of {n} households enrolled by then)"
    suite.start_worker("registry")
    wait_for(lambda: progress_of(suite, township)["enrolled_persons"] == before + 2 * n, timeout=120,
             what="every household counted")
    for i in range(n):
        assert staff.get(f"/v1/counties/431122/households/2020/E2E-KILL-{i:02d}").json()["status"] == "paid"
    time.sleep(2)
    assert progress_of(suite, township)["enrolled_persons"] == before + 2 * n

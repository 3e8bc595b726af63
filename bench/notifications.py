"""Benchmark: signed payment notifications → confirmations → registry's enrolment event.

    .venv/bin/python -m bench.notifications --households 1000 --concurrency 16

Starts the whole suite (tools.suite.Suite) on a namespace, databases and ports of its own, registers
households through registry, waits until payments knows them, creates one order each beforehand,
then a separate sender process fires the signed notifications concurrently. Measured:

- confirmations/s: notifications acknowledged per second (first send → last acknowledgement);
- latency from sending a notification to registry's `registry.enrolment.changed` (status paid)
  for that order, p50/p99, seen on a queue of the benchmark's own bound to the suite's exchange;
- the baseline in the same run: the same sender against a bare endpoint on the same stack
  (payments' gunicorn + Flask + store) that writes one document (`POST /bench/baseline`, present only
  with PAYMENTS_BENCH_BASELINE=1).

Everything it started is stopped and its databases and queues are removed at the end.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path

import pika
import requests
from pymongo import MongoClient

from bench import cpu
from shared import signing
from shared.clock import parse_instant
from shared.config import ROOT
from tools.clients import GatewayClient, StaffClient
from tools.ids import make_id
from tools.suite import SERVICES, Suite, delete_bus, own_suite, wait_quiet  # noqa: F401 (wait_quiet: bench.read_paths)

CLOCK_NOW = "2019-11-15T10:00:00+08:00"


def household(i: int) -> dict:
    """Two members with IDs unique by birth date (one person per day from 1950)."""
    members = []
    for k, (rel, sex) in enumerate((("户主", "M"), ("配偶", "F"))):
        birth = date(1950, 1, 1) + timedelta(days=2 * i + k)
        members.append({"id_number": make_id(birth, 1, sex), "name": f"户{i}成员{k}", "relation": rel, "sex": sex})
    return {"household_no": f"BENCH-{i:06d}", "year": 2020, "township": "花桥镇", "village": "花桥村",
            "head_phone": "13900001111", "members": members}


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


# ---- the sender (a separate process) ----------------------------------------------------------

def _sender(url: str, gateway_id: str, secret: str, ts: str, jobs: list[dict], concurrency: int, out,
            rate: float | None = None) -> None:
    """Flat out, or (`rate`) at a constant arrival rate: job i is sent at start + i / rate, whatever
    the replies of earlier ones (an open model, as gateways send); `lag` says how late a send was."""
    local = threading.local()
    start = time.time() + 0.5

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    def one(job: dict) -> tuple:
        if rate:
            time.sleep(max(0.0, start + job["i"] / rate - time.time()))
        body = json.dumps(job["body"], ensure_ascii=False).encode()
        nonce = secrets.token_hex(16)
        h = {"Content-Type": "application/json"}
        if job["signed"]:
            h.update({"X-Gateway-Id": gateway_id, "X-Timestamp": ts, "X-Nonce": nonce,
                      "X-Signature": signing.sign(secret, "POST", job["path"], ts, nonce, body)})
        t0 = time.time()
        try:
            r = session().post(url + job["path"], data=body, headers=h, timeout=30)
            code = r.status_code
        except requests.RequestException:
            code = 0
        lag = (t0 - (start + job["i"] / rate)) if rate else 0.0
        return job.get("key"), t0, time.time(), code, lag

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, jobs))
    out.send(results)
    out.close()


def send(url, gateway_id, secret, ts, jobs, concurrency, rate=None) -> list[tuple]:
    jobs = [{**j, "i": i} for i, j in enumerate(jobs)]
    parent, child = mp.Pipe(duplex=False)
    p = mp.get_context("fork").Process(target=_sender, args=(url, gateway_id, secret, ts, jobs, concurrency, child, rate))
    p.start()
    results = parent.recv()
    p.join()
    return results


# ---- the watcher (registry's enrolment events) -------------------------------------------------

class Watcher(threading.Thread):
    def __init__(self, amqp_url: str, ns: str):
        super().__init__(daemon=True)
        self.amqp_url, self.ns = amqp_url, ns
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        ch = conn.channel()
        ch.exchange_declare(f"{self.ns}.events", "topic", durable=True)
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, f"{self.ns}.events", routing_key="registry.enrolment.changed")
        self.ready.set()
        for method, _props, body in ch.consume(q, auto_ack=True, inactivity_timeout=0.2):
            if self.stopping.is_set():
                break
            if method is None:
                continue
            env = json.loads(body)
            p = env["payload"]
            if p["status"] == "paid" and p.get("order_no"):
                self.seen.setdefault(p["order_no"], time.time())
        conn.close()


class CountPoller(threading.Thread):
    """Scoring's count of paid households in the benchmark's township, read from scoring's store
    every 50 ms (one `_id` read): when the count first reached k. Households are counted in no
    particular order, so the latency to scoring is the FIFO approximation: the k-th notification sent
    against the moment the count reached k."""

    def __init__(self, mongo_url: str, db: str, key: str, before: int):
        super().__init__(daemon=True)
        self.coll = MongoClient(mongo_url)[db]["progress"]
        self.key, self.before = key, before  # (not `start`: that is Thread.start)
        self.reached: list[float] = []  # reached[k-1]: when the count first was >= k
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            doc = self.coll.find_one({"_id": self.key}, {"households": 1}) or {}
            now = time.time()
            while len(self.reached) < int(doc.get("households", 0)) - self.before:
                self.reached.append(now)
            self.stopping.wait(0.05)


def trace_summary(path: Path, offset: int, n: int) -> dict[str, float]:
    """Store commands per confirmation by service/command/collection/filter keys (largest first)."""
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8") as f:
        f.seek(offset)
        for line in f:
            app, cmd, coll, shape = (line.rstrip("\n").split("\t") + ["", "", "", ""])[:4]
            if app.endswith("-bench") or cmd in ("hello", "isMaster", "ismaster", "ping", "endSessions"):
                continue
            counts[f"{app} {cmd} {coll} {shape}".strip()] += 1
    out = {k: round(v / n, 2) for k, v in counts.most_common() if v / n >= 0.01}
    out["TOTAL"] = round(sum(counts.values()) / n, 2)
    return out


def cleanup(suite: Suite, mongo_url: str, amqp_url: str) -> None:
    suite.stop()
    client = MongoClient(mongo_url)
    for name in client.list_database_names():
        if name.startswith(suite.namespace + "_"):
            client.drop_database(name)
    delete_bus(amqp_url, suite.namespace)
    for f in (suite.var / "secrets").glob(f"{suite.namespace}.*"):
        f.unlink()
    shutil.rmtree(suite.run_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--pause-workers", action="store_true",
                    help="diagnostic: stop the five workers (SIGSTOP) while notifications are sent, to see "
                         "the request path's own ceiling; they resume (SIGCONT) before the enrolments are awaited")
    ap.add_argument("--trace", action="store_true",
                    help="count the store commands per confirmation across the suite (STORE_TRACE)")
    ap.add_argument("--rate", type=float, default=None,
                    help="send the notifications at this constant rate per second instead of flat out "
                         "(e.g. 50: ten times a large county's December peak); --households / rate is the duration")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.jsonl"))
    args = ap.parse_args()

    suite, mongo_url, amqp_url = own_suite(args.web_workers, CLOCK_NOW=CLOCK_NOW, PAYMENTS_BENCH_BASELINE="1")
    ns = suite.namespace
    trace = None
    if args.trace:
        trace = Path(tempfile.mkstemp(prefix="store-trace-", suffix=".tsv")[1])
        suite.extra_env["STORE_TRACE"] = str(trace)
    try:
        suite.start()
        sec = suite.secrets()
        gid, gsecret = next(iter(sec["gateways"].items()))
        now = parse_instant(CLOCK_NOW)
        gw = GatewayClient(suite.url("payments"), gid, gsecret, now=lambda: now)
        staff = StaffClient(suite.url("registry"), sec["tokens"]["county"])
        n = args.households
        t = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: staff.post("/v1/counties/431122/households", household(i)).status_code, range(n)))
        assert all(c == 201 for c in codes), f"registration failed: {sorted(set(codes))}"
        pdb = MongoClient(mongo_url)[f"{ns}_payments_431122"]  # a county's own database
        deadline = time.monotonic() + 300
        while pdb.households.find_one({"_id": f"2020:BENCH-{n - 1:06d}"}) is None or \
                pdb.households.find_one({"_id": "2020:BENCH-000000"}) is None:
            assert time.monotonic() < deadline, "payments did not learn the households"
            time.sleep(0.2)
        time.sleep(2)  # the read model fills in order; the last one seen means (nearly) all are there
        print(f"registered {n} households in {time.monotonic() - t:.1f}s")

        def make_order(i):
            for _ in range(50):
                r = gw.order(f"BENCH-{i:06d}", 2020)
                if r.status_code == 201:
                    return r.json()
                time.sleep(0.2)
            raise RuntimeError(r.text)
        with ThreadPoolExecutor(8) as pool:
            orders = list(pool.map(make_order, range(n)))
        print(f"created {n} orders")

        ts = str(int(now.timestamp()))
        watcher = Watcher(amqp_url, ns)
        watcher.start()
        watcher.ready.wait(10)
        sdb = MongoClient(mongo_url)[f"{ns}_scoring_431122"]
        counted0 = int((sdb.progress.find_one({"_id": "2020:花桥镇"}) or {}).get("households", 0))
        poller = CountPoller(mongo_url, f"{ns}_scoring_431122", "2020:花桥镇", counted0)
        poller.start()
        jobs = [{"key": o["order_no"], "signed": True, "path": "/v1/counties/431122/notifications",
                 "body": {"order_no": o["order_no"], "transaction_id": "T" + secrets.token_hex(8),
                          "amount_fen": o["amount_fen"], "paid_at": CLOCK_NOW}} for o in orders]
        paused = [int((suite.run_dir / f"{svc}-worker.pid").read_text()) for svc in SERVICES] \
            if args.pause_workers else []
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        cpu0 = cpu.snapshot(suite.run_dir)
        trace_from = trace.stat().st_size if trace else 0
        results = send(suite.url("payments"), gid, gsecret, ts, jobs, args.concurrency, args.rate)
        cpu_acks = cpu.delta(cpu0, cpu.snapshot(suite.run_dir))
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        bad = [r for r in results if r[3] != 200]
        deadline = time.monotonic() + 300
        while len(watcher.seen) < n - len(bad) and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher.stopping.set()
        deadline = time.monotonic() + 120
        while len(poller.reached) < n - len(bad) and time.monotonic() < deadline:
            time.sleep(0.1)
        poller.stopping.set()
        sends = sorted(r[1] for r in results if r[3] == 200)
        to_scoring = [(t - s0) * 1000 for s0, t in zip(sends, poller.reached)]
        cpu_all = cpu.delta(cpu0, cpu.snapshot(suite.run_dir))
        time.sleep(1 if trace else 0)  # the last consumers' writes after the last enrolment event
        store_ops = trace_summary(trace, trace_from, n) if trace else None
        first = min(r[1] for r in results)
        http_s = max(r[2] for r in results) - first
        conf_rate = (n - len(bad)) / http_s
        ack_lat = [(r[2] - r[1]) * 1000 for r in results if r[3] == 200]
        e2e = [(watcher.seen[r[0]] - r[1]) * 1000 for r in results if r[0] in watcher.seen]
        e2e_s = (max(watcher.seen.values()) - first) if watcher.seen else float("nan")
        confirmed_in_store = pdb.payments.estimated_document_count()

        quiet_s, busy_after = wait_quiet(amqp_url, mongo_url, ns)
        base_jobs = [{"key": str(i), "signed": False, "path": "/bench/baseline", "body": {"i": i}} for i in range(n)]
        cpu1 = cpu.snapshot(suite.run_dir)
        base_results = send(suite.url("payments"), gid, gsecret, ts, base_jobs, args.concurrency)
        cpu_base = cpu.delta(cpu1, cpu.snapshot(suite.run_dir))
        floor_jobs = [{"key": o["order_no"], "signed": False, "path": "/bench/floor",
                       "body": {"order_no": o["order_no"], "amount_fen": o["amount_fen"]}} for o in orders]
        floor_results = send(suite.url("payments"), gid, gsecret, ts, floor_jobs, args.concurrency)
        floor_ok = [r for r in floor_results if r[3] == 200]
        floor_rate = len(floor_ok) / (max(r[2] for r in floor_results) - min(r[1] for r in floor_results))
        base_ok = [r for r in base_results if r[3] == 200]
        base_s = max(r[2] for r in base_results) - min(r[1] for r in base_results)
        base_rate = len(base_ok) / base_s
        base_lat = [(r[2] - r[1]) * 1000 for r in base_ok]

        report = {
            "at": datetime.now().astimezone().isoformat(timespec="seconds"), "households": n,
            "concurrency": args.concurrency, "web_workers": args.web_workers, "cpus": os.cpu_count(),
            "workers_paused": bool(paused),
            "notifications_failed": len(bad), "payments_in_store": confirmed_in_store,
            "enrolment_events_seen": len(watcher.seen),
            "confirmations_per_s": round(conf_rate, 1),
            "ack_ms_p50": round(percentile(ack_lat, 50), 1), "ack_ms_p99": round(percentile(ack_lat, 99), 1),
            "enrolled_per_s": round(len(watcher.seen) / e2e_s, 1) if watcher.seen else None,
            "notification_to_enrolment_ms_p50": round(percentile(e2e, 50), 1),
            "notification_to_enrolment_ms_p99": round(percentile(e2e, 99), 1),
            "notification_to_scoring_count_ms_p50": round(percentile(to_scoring, 50), 1),
            "notification_to_scoring_count_ms_p99": round(percentile(to_scoring, 99), 1),
            "scoring_counted": len(poller.reached),
            "baseline_per_s": round(base_rate, 1),
            "baseline_ms_p50": round(percentile(base_lat, 50), 1), "baseline_ms_p99": round(percentile(base_lat, 99), 1),
            "ratio_to_baseline": round(conf_rate / base_rate, 3),
            "floor_per_s": round(floor_rate, 1), "floor_ratio_to_baseline": round(floor_rate / base_rate, 3),
            "backlog_drained_s_after_last_enrolment": round(quiet_s, 1), "busy_s_after_last_enrolment": busy_after,
            **({"offered_per_s": args.rate, "send_lag_ms_p99": round(percentile([r[4] * 1000 for r in results], 99), 1),
                "ack_window_s": round(http_s, 1)} if args.rate else {}),
            **({"store_ops_per_confirmation": store_ops} if store_ops else {}),
            "cpu_s_until_last_ack": cpu_acks, "cpu_s_until_last_enrolment": cpu_all, "cpu_s_baseline": cpu_base,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(report, ensure_ascii=False) + "\n")
        return 0
    finally:
        cleanup(suite, mongo_url, amqp_url)


if __name__ == "__main__":
    raise SystemExit(main())

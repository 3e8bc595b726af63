"""Benchmark: HTTP reads under locust (FastHttpUser), flat out and at a constant arrival rate, each
beside a bare endpoint of the same stack measured the same way in the same run.

    .venv/bin/python -m bench.locust_reads [--households 300] [--paid 0.5] [--run-time 30]
        [--users 16] [--rate-users 10] [--rate-per-user 4] [--web-workers 2]

Needs RabbitMQ and FerretDB (`deploy/local.sh start`). Starts the five services (tools.suite.Suite)
on a namespace, databases and free ports of its own with the clock pinned inside Dong'an's 2020
payment window, registers `--households` households through registry (two members each, as
bench/notifications.py does), pays `--paid` of them through the signed gateway (order, notification)
so scoring has something to count, waits until payments and scoring have them, then runs locust
headless in a subprocess (bench/locustfile.py, one user class at a time) against:

- `registry years (bare)`: GET /v1/counties/431122/years on registry: token check, the policy
  already in memory, no store read: the **baseline** (gunicorn gthread + Flask + auth);
- `payments quote`: POST /v1/counties/431122/quotes, signed as a gateway signs (a fresh nonce
  each, so a nonce insert and the household's reads), for the unpaid households in turn at random;
- `scoring progress`: GET /v1/counties/431122/progress/2020 (the table of the 16 townships);
- `scoring rankings`: GET /v1/counties/431122/rankings/2020 (served from scoring's read cache).

Two modes, each endpoint for `--run-time` seconds in turn (baseline first, so drift on the shared
machine is visible): **flat out** (`--users` users, `constant(0)`: closed loop, a request as soon as
the last reply arrived) and **constant rate** (`--rate-users` users × `constant_throughput(r)`:
offered `rate_users × r` requests/s; achieved is what the suite answered; a user whose reply takes
longer than 1/r falls behind, so achieved < offered means the endpoint could not keep up). Stats
are taken after every user has spawned (`--reset-stats`), from locust's `_stats.csv`: requests/s,
p50/p95/p99, failures. Locust and the suite share the machine's cores: flat out, the load generator
takes a share of the CPU the endpoint could have used, the same for the baseline.

Prints one JSON report (`--out FILE` appends it to FILE too); everything it started is stopped and
its databases, queues and secrets are removed at the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from pymongo import MongoClient

from bench.notifications import CLOCK_NOW, cleanup, household
from shared.clock import parse_instant
from shared.config import ROOT
from tools.clients import GatewayClient, StaffClient
from tools.suite import Suite, own_suite

COUNTY, YEAR = "431122", 2020
# user class, service it loads, the label the locustfile gives its requests
ENDPOINTS = {
    "years": ("YearsUser", "registry", "registry years (bare)"),
    "quote": ("QuoteUser", "payments", "payments quote"),
    "progress": ("ProgressUser", "scoring", "scoring progress"),
    "rankings": ("RankingsUser", "scoring", "scoring rankings"),
}


def read_stats(path: Path, label: str) -> dict:
    """One endpoint's row of locust's `_stats.csv`."""
    with open(path, encoding="utf-8", newline="") as f:
        row = next((r for r in csv.DictReader(f) if r["Name"] == label), None)
    if row is None:
        return {"requests": 0, "failures": 0}
    num = lambda k: float(row[k]) if row.get(k) not in (None, "", "N/A") else None  # noqa: E731
    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "achieved_per_s": round(num("Requests/s"), 1), "avg_ms": round(num("Average Response Time"), 1),
            "p50_ms": num("50%"), "p95_ms": num("95%"), "p99_ms": num("99%"), "max_ms": num("Max Response Time")}


def run_locust(suite: Suite, tmp: Path, endpoint: str, users: int, rate_per_user: float, run_time: int,
               env: dict[str, str]) -> dict:
    cls, svc, label = ENDPOINTS[endpoint]
    mode = "rate" if rate_per_user else "flat"
    prefix = tmp / f"{mode}-{endpoint}"
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), cls, "--headless",
           "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{run_time}s", "--reset-stats",
           "--csv", str(prefix), "--host", suite.url(svc), "--only-summary", "--loglevel", "WARNING",
           "--exit-code-on-error", "0"]
    t = time.monotonic()
    with open(prefix.with_suffix(".log"), "w", encoding="utf-8") as log:
        p = subprocess.run(cmd, cwd=ROOT, env={**env, "BENCH_RATE_PER_USER": str(rate_per_user)},
                           stdout=log, stderr=subprocess.STDOUT, timeout=run_time + 120)
    text = prefix.with_suffix(".log").read_text(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"locust {cls} exited {p.returncode}:\n{text[-3000:]}")
    stats = read_stats(Path(f"{prefix}_stats.csv"), label)
    return {"endpoint": endpoint, "label": label, "mode": mode, "users": users,
            "offered_per_s": round(users * rate_per_user, 1) if rate_per_user else None,
            **stats, "wall_s": round(time.monotonic() - t, 1),
            "locust_cpu_warning": "CPU usage above" in text}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=300)
    ap.add_argument("--paid", type=float, default=0.5, help="share of the households paid before the reads")
    ap.add_argument("--run-time", type=int, default=30, help="seconds per endpoint and mode")
    ap.add_argument("--users", type=int, default=16, help="flat out: concurrent users")
    ap.add_argument("--rate-users", type=int, default=10, help="constant rate: users")
    ap.add_argument("--rate-per-user", type=float, default=4.0, help="constant rate: requests/s per user")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--endpoints", default=",".join(ENDPOINTS), help="comma-separated subset of " + ",".join(ENDPOINTS))
    ap.add_argument("--out", default=None, help="append the JSON report to this file too")
    args = ap.parse_args()
    endpoints = [e for e in args.endpoints.split(",") if e]
    t_start = time.monotonic()

    suite, mongo_url, amqp_url = own_suite(args.web_workers, CLOCK_NOW=CLOCK_NOW)
    ns = suite.namespace
    tmp = Path(tempfile.mkdtemp(prefix="bench-locust-"))
    try:
        suite.start()
        sec = suite.secrets()
        gid, gsecret = next(iter(sec["gateways"].items()))
        token = sec["tokens"]["county"]
        now = parse_instant(CLOCK_NOW)
        gw = GatewayClient(suite.url("payments"), gid, gsecret, now=lambda: now)
        staff = StaffClient(suite.url("registry"), token)
        n = args.households
        t = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: staff.post(f"/v1/counties/{COUNTY}/households", household(i)).status_code,
                                  range(n)))
        assert all(c == 201 for c in codes), f"registration failed: {sorted(set(codes))}"
        pdb = MongoClient(mongo_url)[f"{ns}_payments_{COUNTY}"]
        deadline = time.monotonic() + 300
        while pdb.households.count_documents({}) < n:
            assert time.monotonic() < deadline, "payments did not learn the households"
            time.sleep(0.2)
        register_s = time.monotonic() - t
        print(f"registered {n} households in {register_s:.1f}s", flush=True)

        paid_n = int(n * args.paid)

        def pay(i: int) -> bool:
            for _ in range(50):
                r = gw.order(f"BENCH-{i:06d}", YEAR)
                if r.status_code == 201:
                    break
                time.sleep(0.2)
            o = r.json()
            return gw.notify(o["order_no"], o["amount_fen"], paid_at=now).status_code == 200
        t = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ok = sum(pool.map(pay, range(paid_n)))
        assert ok == paid_n, f"{paid_n - ok} payments failed"
        sdb = MongoClient(mongo_url)[f"{ns}_scoring_{COUNTY}"]
        deadline = time.monotonic() + 120
        while int((sdb.progress.find_one({"_id": f"{YEAR}:花桥镇"}) or {}).get("households", 0)) < paid_n:
            assert time.monotonic() < deadline, "scoring did not count the payments"
            time.sleep(0.2)
        pay_s = time.monotonic() - t
        print(f"paid {paid_n} households in {pay_s:.1f}s (scoring counted them)", flush=True)

        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_TOKEN": token, "BENCH_GATEWAY_ID": gid,
               "BENCH_GATEWAY_SECRET": gsecret, "BENCH_TIMESTAMP": str(int(now.timestamp())),
               "BENCH_COUNTY": COUNTY, "BENCH_YEAR": str(YEAR),
               "BENCH_QUOTE_HOUSEHOLDS": ",".join(f"BENCH-{i:06d}" for i in range(paid_n, n))}
        for k in [k for k in env if k.startswith(("AMQP_", "MONGO_"))]:
            env.pop(k)  # the load generator talks HTTP only
        phases = []
        for rate in (0.0, args.rate_per_user):
            users = args.rate_users if rate else args.users
            for ep in endpoints:
                ph = run_locust(suite, tmp, ep, users, rate, args.run_time, env)
                print(json.dumps(ph, ensure_ascii=False), flush=True)
                phases.append(ph)

        def ratio(ph: dict, key: str) -> float | None:
            b = next((x for x in phases if x["mode"] == ph["mode"] and x["endpoint"] == "years"), None)
            return round(ph[key] / b[key], 2) if b and b.get(key) and ph.get(key) is not None else None
        for ph in phases:
            ph["ratio_per_s_to_bare"] = ratio(ph, "achieved_per_s")
            ph["ratio_p50_to_bare"] = ratio(ph, "p50_ms")
            ph["ratio_p99_to_bare"] = ratio(ph, "p99_ms")
        report = {"bench": "locust_reads", "at": datetime.now().astimezone().isoformat(timespec="seconds"),
                  "cpus": os.cpu_count(), "households": n, "paid": paid_n, "web_workers": args.web_workers,
                  "run_time_s": args.run_time, "flat_users": args.users, "rate_users": args.rate_users,
                  "rate_per_user": args.rate_per_user, "offered_per_s": round(args.rate_users * args.rate_per_user, 1),
                  "register_s": round(register_s, 1), "pay_s": round(pay_s, 1), "phases": phases,
                  "failures": sum(p["failures"] for p in phases), "total_s": round(time.monotonic() - t_start, 1)}
        print(json.dumps(report, ensure_ascii=False, indent=2))
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(report, ensure_ascii=False) + "\n")
        requests_ = sum(p["requests"] for p in phases)
        return 0 if requests_ and report["failures"] <= 0.01 * requests_ else 1
    finally:
        cleanup(suite, mongo_url, amqp_url)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark (issue 13 item 3): every read path a season uses, timed at county size, none scanning.

    .venv/bin/python -m bench.read_paths [--scale 1.0] [--paid 0.1] [--requests 60]

Needs RabbitMQ and FerretDB (`deploy/local.sh start`). On a suite of its own (tools.suite.Suite:
namespace, databases, ports; dropped at the end unless --keep) it

1. **loads a county through the real suite**, as its staff and gateways would: the simulator's
   synthetic Dong'an (tools.simulate.build_county; `--scale 1.0` = the 578,501 persons the policy
   prints, in ≈ 190,000 households) imported township by township through registry's import API,
   its events carried to every service (payments' and notices' read models, subsidy, scoring); then
   `--paid` of the households pay through the gateway's signed quote → order → notification; a few
   corrections are filed and a few payments reversed. Load times are reported (persons/s imported,
   how long the consumers took to catch up);
2. **times every read path** (`PATHS`): `--requests` calls each, one after another over HTTP, with
   the staff token or the gateway's signature, p50/p99 in ms; beside them, in the same run and the
   same way, two baselines: a bare HTTP endpoint of the same stack (`GET /v1/years`: token check,
   no store read) and an `_id` read of a household straight to the store with pymongo;
3. **shows what each path asks the store**: the suite runs with `STORE_TRACE`; the commands its web
   processes send during one call of each path are listed by collection and filter keys. A filter
   that is not `_id` on a collection that grows with the county is a scan (`scans`), the goal's
   defect; the sizes of the collections touched are reported beside it.

Prints a JSON report and appends it to bench/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

import requests
from pymongo import MongoClient

from bench.notifications import percentile, wait_quiet
from shared.clock import SHANGHAI, FileClock
from shared.config import ROOT, _local_env
from tools.clients import GatewayClient, StaffClient
from tools.simulate import build_county, find_policy, import_rosters, write_rosters
from tools.suite import SERVICES, Suite, delete_bus, free_port_block

NOW = datetime(2019, 12, 10, 10, 0, tzinfo=SHANGHAI)  # inside Dong'an's 2020 window, before its last stage
GROWING = 5_000  # a collection above this many documents is treated as growing with the county
GOAL_P99_MS = 50


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = Dong'an as printed (578,501 persons)")
    ap.add_argument("--paid", type=float, default=0.1, help="share of the good households that pay during the load")
    ap.add_argument("--requests", type=int, default=60, help="calls per path")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=12, help="gateway threads while loading payments")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the suite's databases (and print its namespace)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.jsonl"))
    return ap.parse_args(argv)


def timed(fn, n: int) -> tuple[list[float], int]:
    """n calls one after another: latencies in ms, and the status of the last call."""
    out, status = [], 0
    for _ in range(n):
        t = time.perf_counter()
        status = fn()
        out.append((time.perf_counter() - t) * 1000)
    return out, status


def trace_lines(path: Path, start: int) -> list[tuple[str, str, str, str]]:
    """Web processes' store commands written to the trace since `start` (app, command, collection, keys)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        f.seek(start)
        for line in f:
            app, cmd, coll, shape = (line.rstrip("\n").split("\t") + ["", "", "", ""])[:4]
            if app.endswith("-web") and cmd not in ("hello", "isMaster", "ismaster", "ping", "endSessions",
                                                    "getMore", "killCursors", "buildInfo", "saslStart",
                                                    "saslContinue", "listCollections", "createIndexes"):
                rows.append((app, cmd, coll, shape))
    return rows


def filter_keys(shape: str) -> str:
    """`n=3 _id,version` → `_id,version`."""
    return shape.split(" ", 1)[1] if shape.startswith("n=") and " " in shape else ("" if shape.startswith("n=") else shape)


def main(argv=None) -> int:
    args = parse(argv)
    local = _local_env()
    mongo_url = os.environ.get("MONGO_URL") or local["MONGO_URL"]
    amqp_url = os.environ.get("AMQP_URL") or local["AMQP_URL"]
    policy = find_policy("431122")
    county = build_county(policy, args.scale, args.seed)
    rng = random.Random(f"read-paths:{args.seed}")
    tmp = Path(tempfile.mkdtemp(prefix="read-paths-"))
    trace = tmp / "store-trace.tsv"
    clock_file = tmp / "clock.txt"
    FileClock.write(str(clock_file), NOW)
    ns = "bench" + uuid.uuid4().hex[:8]
    base = free_port_block()
    suite = Suite(namespace=ns, web_base_port=base, worker_base_port=base + 10, web_workers=args.web_workers,
                  extra_env={"CLOCK_FILE": str(clock_file), "CLOCK_NOW": "", "MONGO_URL": mongo_url,
                             "AMQP_URL": amqp_url, "LOG_LEVEL": "WARNING", "SCORES_CACHE_S": "0",
                             "STORE_TRACE": str(trace)})
    client = MongoClient(mongo_url)
    report: dict = {"at": datetime.now().astimezone().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                    "scale": args.scale, "seed": args.seed}
    try:
        suite.start()
        sec = suite.secrets()
        staff = {svc: StaffClient(suite.url(svc), sec["tokens"]["county"]) for svc in SERVICES}
        gid = next(g for g, (kind, *_r) in Suite.GATEWAYS.items() if kind == "bank")
        gw_local = threading.local()

        def gateway() -> GatewayClient:
            if not hasattr(gw_local, "gw"):
                gw_local.gw = GatewayClient(suite.url("payments"), gid, sec["gateways"][gid], now=lambda: NOW,
                                            county=county.code)
            return gw_local.gw

        # ---- 1. load ------------------------------------------------------------------------------
        good = county.good()
        persons = sum(len(h.members) for h in county.households)
        paths = write_rosters(county, tmp / "roster")
        t = time.monotonic()
        imports = import_rosters(county, suite, staff["registry"], paths, timeout=6 * 3600)
        import_s = time.monotonic() - t
        quiet_s, busy = wait_quiet(amqp_url, mongo_url, ns, timeout=6 * 3600)
        report["load"] = {"households": len(county.households), "persons": persons, "import_s": round(import_s, 1),
                          "imported_persons_per_s": round(persons / import_s, 1),
                          "persons_created": sum((d.get("counts") or {}).get("persons_created", 0) for d in imports.values()),
                          "consumers_caught_up_s_after_import": round(quiet_s, 1), "busy_s_after_import": busy}
        print(f"imported {persons} persons in {import_s:.0f}s; consumers caught up {quiet_s:.0f}s later", flush=True)
        known = {f"{svc}:{coll}": client[f"{ns}_{svc}_{county.code}"][coll].estimated_document_count()
                 for svc, coll in (("registry", "households"), ("payments", "households"),
                                   ("notices", "contacts"), ("subsidy", "households"))}
        report["load"]["households_known"] = known
        if len(set(known.values())) != 1:  # every consumer's read model must have every household
            raise SystemExit(f"read models incomplete after the import: {known}")

        twins = {m.id_number for h in good for m in h.members if m.lost}  # duplicates left open: quotes refused
        free = [h for h in good if not any(m.id_number in twins for m in h.members)]
        payers = rng.sample(free, max(1, int(len(free) * args.paid)))

        def pay(h) -> dict | None:
            g = gateway()
            for _ in range(100):
                q = g.quote(h.no, county.year)
                if q.status_code == 200:
                    break
                time.sleep(0.2)
            o = g.order(h.no, county.year, channel="mobile_app")
            if o.status_code not in (200, 201):
                return None
            order = o.json()
            txn = uuid.uuid4().hex[:20]
            ack = g.notify(order["order_no"], order["amount_fen"], transaction_id=txn, paid_at=NOW)
            return {"no": h.no, "township": h.township, "village": h.village, "order_no": order["order_no"],
                    "amount_fen": order["amount_fen"], "transaction_id": txn, **ack.json()} \
                if ack.status_code == 200 else None
        t = time.monotonic()
        with ThreadPoolExecutor(args.threads) as pool:
            paid = [p for p in pool.map(pay, payers) if p]
        pay_s = time.monotonic() - t
        for p in paid[:5]:  # a few refunds (冲正)
            gateway().reverse(p["order_no"], p["transaction_id"], p["amount_fen"])
        for h in good[:5]:  # a few corrections filed (信息更正), left open
            staff["registry"].post(f"/v1/counties/{county.code}/corrections", {
                "household_no": h.no, "year": county.year, "id_number": h.members[0].id_number,
                "changes": {"name": h.members[0].name + "更"}, "reason": "姓名错字"})
        quiet_s, busy = wait_quiet(amqp_url, mongo_url, ns, timeout=3600)
        report["load"].update({"paid_households": len(paid), "pay_s": round(pay_s, 1),
                               "paid_per_s": round(len(paid) / pay_s, 1),
                               "consumers_caught_up_s_after_payments": round(quiet_s, 1)})
        print(f"paid {len(paid)} households in {pay_s:.0f}s", flush=True)

        # ---- 2. the paths ----------------------------------------------------------------------------
        c = county.code
        one = paid[len(paid) // 2]
        hh = good[len(good) // 2]
        day = NOW.astimezone(SHANGHAI).date().isoformat()
        statement = [{"order_no": p["order_no"], "transaction_id": p["transaction_id"], "amount_fen": p["amount_fen"]}
                     for p in paid[5:]]
        township, village = one["township"], one["village"]
        receipt = staff["payments"].get(f"/v1/counties/{c}/receipts/{one['receipt_no']}").json()

        def get(svc: str, path: str):
            return lambda: staff[svc].get(path).status_code

        paths_: dict[str, object] = {
            "registry household": get("registry", f"/v1/counties/{c}/households/{county.year}/{hh.no}"),
            "registry village roster export": get("registry", f"/v1/counties/{c}/exports/{county.year}/"
                                                  f"{quote(township)}/{quote(village)}?format=csv"),
            "registry duplicates": get("registry", f"/v1/counties/{c}/duplicates?status=open"),
            "registry corrections (open, overdue)": get("registry", f"/v1/counties/{c}/corrections?status=open"),
            "registry accuracy": get("registry", f"/v1/counties/{c}/accuracy/{county.year}"),
            "registry mid-year awaiting": get("registry", f"/v1/counties/{c}/mid-year/awaiting/{county.year}"),
            "registry enrolment review": get("registry", f"/v1/counties/{c}/enrolment/review/{county.year}"),
            "registry dead letters": get("registry", f"/v1/counties/{c}/dead-letters"),
            "payments quote (gateway)": lambda: gateway().quote(hh.no, county.year).status_code,
            "payments order status": get("payments", f"/v1/counties/{c}/orders/{one['order_no']}"),
            "payments household payment": get("payments", f"/v1/counties/{c}/payments/{county.year}/{one['no']}"),
            "payments receipt": get("payments", f"/v1/counties/{c}/receipts/{one['receipt_no']}"),
            "payments receipt verification": get("payments", f"/v1/counties/{c}/receipts/{one['receipt_no']}/verification"
                                                 f"?check_code={receipt.get('check_code', '')}"),
            "payments money log of a payment": get("payments", f"/v1/counties/{c}/money-log?ref={county.year}:{one['no']}"),
            "payments money log of a day (a page)": get("payments", f"/v1/counties/{c}/money-log?day={day}&page=1"),
            "payments overdue audits": get("payments", f"/v1/counties/{c}/audits/overdue?year={county.year}"),
            "payments remittances": get("payments", f"/v1/counties/{c}/remittances?year={county.year}"),
            "payments reconciliation result": get("payments", f"/v1/counties/{c}/reconciliation/{gid}/{day}"),
            "payments dead letters": get("payments", f"/v1/counties/{c}/dead-letters"),
            "scoring progress": get("scoring", f"/v1/counties/{c}/progress/{county.year}"),
            "scoring villages of a township": get("scoring", f"/v1/counties/{c}/progress/{county.year}/townships/"
                                                  f"{quote(township)}/villages"),
            "scoring rankings": get("scoring", f"/v1/counties/{c}/rankings/{county.year}"),
            "notices of a household": get("notices", f"/v1/counties/{c}/households/{county.year}/{one['no']}/notices"),
            "notices township work list": get("notices", f"/v1/counties/{c}/townships/{quote(township)}/notices/{county.year}"),
            "notices dead deliveries": get("notices", f"/v1/counties/{c}/deliveries/dead"),
            "subsidy coverage": get("subsidy", f"/v1/counties/{c}/coverage/{county.year}"),
            "subsidy claims": get("subsidy", f"/v1/counties/{c}/claims/{county.year}"),
            "subsidy identity updates": get("subsidy", f"/v1/counties/{c}/identity-updates"),
        }
        # a day's statement imported once (it audits every matched payment: a write, not a read path)
        t = time.perf_counter()
        r = gateway().statement(day, statement, timeout=600)
        report["statement_import"] = {"lines": len(statement), "status": r.status_code,
                                      "s": round(time.perf_counter() - t, 2),
                                      "audited": r.json().get("audited") if r.status_code == 200 else None}
        print(f"a day's statement of {len(statement)} lines imported in {report['statement_import']['s']} s", flush=True)
        # the statement's audits reach registry and the others: the paths are timed once they are quiet again
        quiet_s, busy = wait_quiet(amqp_url, mongo_url, ns, timeout=3600)
        report["statement_import"].update({"consumers_caught_up_s": round(quiet_s, 1), "busy": busy})
        print(f"consumers caught up {quiet_s:.0f}s after the statement", flush=True)
        rdb = client[f"{ns}_registry_{c}"]
        ids = [f"{county.year}:{h.no}" for h in rng.sample(good, min(len(good), args.requests))]
        it = iter(ids * 2)
        base_http, _ = timed(get("registry", "/v1/years"), args.requests)
        base_id, _ = timed(lambda: rdb.households.find_one({"_id": next(it)}) and 200, args.requests)
        report["baselines_ms"] = {
            "http_bare_endpoint": {"p50": round(percentile(base_http, 50), 1), "p99": round(percentile(base_http, 99), 1)},
            "store_id_read": {"p50": round(percentile(base_id, 50), 2), "p99": round(percentile(base_id, 99), 2)}}
        sizes: dict[str, int] = {}

        def size(svc: str, coll: str) -> int:
            key = f"{svc}:{coll}"
            if key not in sizes:
                db = f"{ns}_{svc}_{c}" if coll not in ("processed_events", "dead_letters") else f"{ns}_{svc}"
                sizes[key] = client[db][coll].estimated_document_count()
            return sizes[key]
        rows = {}
        for name, fn in paths_.items():
            time.sleep(0.3)  # the trace of the previous path is written
            start = trace.stat().st_size
            status = fn()
            time.sleep(0.3)
            cmds = trace_lines(trace, start)
            lat, last = timed(fn, args.requests)
            shapes = Counter(f"{cmd} {coll} {{{filter_keys(shape)}}}" for _app, cmd, coll, shape in cmds)
            svc = name.split(" ", 1)[0]
            scans = sorted({f"{coll} {{{filter_keys(shape)}}} ({size(svc, coll)} docs)" for _a, cmd, coll, shape in cmds
                            if cmd in ("find", "aggregate", "count", "update", "delete", "findAndModify")
                            and filter_keys(shape) not in ("_id",) and size(svc, coll) > GROWING})
            rows[name] = {"status": status if status == last else [status, last],
                          "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
                          "ratio_p99_to_bare_http": round(percentile(lat, 99) / max(percentile(base_http, 99), 0.01), 1),
                          "store_commands": sum(shapes.values()), "commands": dict(shapes), "scans": scans}
            print(f"{name:48} {rows[name]['p50_ms']:>9} / {rows[name]['p99_ms']:>9} ms  {sum(shapes.values()):>4} cmds"
                  f"  {'SCAN ' + '; '.join(scans) if scans else ''}", flush=True)
        report["paths"] = rows
        report["sizes"] = sizes
        report["goal"] = {"p99_ms": GOAL_P99_MS,
                          "over": sorted(n for n, r in rows.items() if r["p99_ms"] > GOAL_P99_MS),
                          "scanning": sorted(n for n, r in rows.items() if r["scans"])}
        print(json.dumps(report, ensure_ascii=False, indent=2))
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"bench": "read_paths", **report}, ensure_ascii=False) + "\n")
        return 0
    finally:
        suite.stop()
        if args.keep:
            print(f"kept: namespace {ns}")
        else:
            for name in client.list_database_names():
                if name.startswith(ns + "_"):
                    client.drop_database(name)
            delete_bus(amqp_url, ns)
            for f in (suite.var / "secrets").glob(f"{ns}.*"):
                f.unlink()
            shutil.rmtree(suite.run_dir, ignore_errors=True)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

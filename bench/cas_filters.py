"""Benchmark: compare-and-set updates on the local store, patched launcher against upstream FerretDB.

    .venv/bin/python -m bench.cas_filters [--sizes 20000 100000] [--ops 200]

For each size a launcher of its own (tests.helpers.OwnStore, free port, data folder of its own)
holds that many household-like documents; then `update_one` by `{_id}`, by `{_id, version}` and by
`{_id, status}` (each on ids not touched before, every one matching) runs with the patched launcher
(deploy/local.sh build_ferretdb) and with the upstream one (`go build` of deploy/ferretdb without
the patch) on the same data. Reported: milliseconds per update (median) and each compound filter's
ratio to the plain `_id` update of the same launcher and run. Upstream scans the collection for a
compound filter, so it runs only a few of those. Prints JSON and appends it to bench/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from pymongo import MongoClient

from shared.config import ROOT
from tests.helpers import OwnStore

FERRET = ROOT / "deploy" / "ferretdb"


def upstream_launcher(out: Path) -> Path:
    """The launcher built from the committed go.mod alone: FerretDB as published, no patch."""
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=FERRET, check=True)
    return out


def fill(url: str, n: int) -> None:
    coll = MongoClient(url)["cas_bench"]["households"]
    for start in range(0, n, 2000):
        coll.insert_many([{"_id": f"2020:H{i:06}", "version": 0, "status": "confirmed", "head": "张三",
                           "members": [{"id_number": "x" * 18, "name": "李四"}] * 3}
                          for i in range(start, min(n, start + 2000))])
    coll.database.client.close()


def wait_indexed(store: OwnStore) -> None:
    import sqlite3
    path = store.data_dir / "cas_bench.sqlite"
    for _ in range(100):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
        con.close()
        if any(x.endswith("__id_pushdown") for x in names):
            return
        time.sleep(0.1)
    raise RuntimeError("the launcher's _id index did not appear")


def timed(coll, ops: list[tuple[str, dict, dict]]) -> dict[str, float]:
    """Median milliseconds per kind; the kinds are interleaved so that none gets a quieter moment,
    and every update must match one document."""
    samples: dict[str, list[float]] = {}
    for kind, flt, upd in ops:
        t0 = time.perf_counter()
        res = coll.update_one(flt, upd)
        samples.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
        assert res.matched_count == 1, flt
    return {kind: round(statistics.median(v), 2) for kind, v in samples.items()}


def measure(launcher: Path, data: Path, n: int, ops: int, compound_ops: int, first: int) -> dict:
    store = OwnStore(data)
    store.launcher = launcher
    store.start()
    try:
        wait_indexed(store)
        client = MongoClient(store.url)
        coll = client["cas_bench"]["households"]
        coll.find_one({"_id": "2020:H000000"})  # warm the connection
        ids = iter(f"2020:H{((first + i) * 7919) % n:06}" for i in range(3 * ops))
        plan = []
        for i in range(ops):
            plan.append(("id_ms", {"_id": next(ids)}, {"$inc": {"n": 1}}))
            if i < compound_ops:
                plan.append(("id_version_ms", {"_id": next(ids), "version": 0}, {"$inc": {"version": 1}}))
                plan.append(("id_status_ms", {"_id": next(ids), "status": "confirmed"}, {"$set": {"status": "paid"}}))
        out = timed(coll, plan)
        out["id_version_ratio"] = round(out["id_version_ms"] / out["id_ms"], 1)
        out["id_status_ratio"] = round(out["id_status_ms"] / out["id_ms"], 1)
        client.close()
        return out
    finally:
        store.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--ops", type=int, default=200, help="updates per filter on the patched launcher")
    ap.add_argument("--upstream-ops", type=int, default=3, help="compound updates on upstream (each a scan)")
    args = ap.parse_args()
    patched = FERRET / "bin" / "ferretdb-launcher"
    assert patched.exists(), "deploy/local.sh install builds the patched launcher"
    work = Path(tempfile.mkdtemp(prefix="cas-bench-", dir=ROOT / "var"))
    report = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "bench": "cas_filters",
              "cpus": os.cpu_count(), "sizes": {}}
    try:
        upstream = upstream_launcher(work / "ferretdb-launcher-upstream")
        for n in args.sizes:
            data = work / f"data-{n}"
            seed = OwnStore(data)
            seed.launcher = patched
            seed.start()
            t0 = time.perf_counter()
            fill(seed.url, n)
            seed.stop()
            fill_s = round(time.perf_counter() - t0, 1)
            # different ids for each launcher: every update matches a document not touched before
            report["sizes"][n] = {
                "fill_s": fill_s,
                "patched": measure(patched, data, n, args.ops, args.ops, first=0),
                "upstream": measure(upstream, data, n, args.ops, args.upstream_ops, first=3 * args.ops),
            }
            print(json.dumps({n: report["sizes"][n]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    with open(ROOT / "bench" / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(report, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: what the launcher's atomic-write patch costs concurrent writers, and what it buys.

    .venv/bin/python -m bench.concurrent_writes [--threads 8] [--per-thread 300] [--rounds 3]

Two launchers of their own (tests.helpers.OwnStore) on the same data: ours (deploy/local.sh
build_ferretdb: both patches) and the baseline built with the push-down patch alone (no lock, as
FerretDB v1.24.2 behaves). Writers, released together, update distinct documents of one collection
of 20 000: `$inc` by `{_id}`, and read-then-compare-and-set by `{_id, version}`. Reported: updates
per second (median of interleaved rounds), ours as a ratio of the baseline, and the increments each
launcher lost when all writers hit ONE document (the fault the lock removes). Prints JSON and
appends it to bench/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from pymongo import MongoClient

from shared.config import ROOT
from tests.helpers import OwnStore

FERRET = ROOT / "deploy" / "ferretdb"


def pushdown_only_launcher(work: Path) -> Path:
    """The launcher with patch 0001 (push-down) and without 0002 (the lock)."""
    import os
    mod = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "github.com/FerretDB/FerretDB"], cwd=FERRET,
                         check=True, capture_output=True, text=True).stdout.strip()
    src = work / "FerretDB"
    shutil.copytree(mod, src)
    subprocess.run(["chmod", "-R", "u+w", str(src)], check=True)
    patch = next(FERRET.glob("patches/0001-*.patch"))
    subprocess.run(["patch", "-s", "-p1", "-d", str(src)], stdin=patch.open("rb"), check=True)
    for f in ("go.mod", "go.sum"):
        shutil.copy(FERRET / f, work / f)
    subprocess.run(["go", "mod", "edit", f"-replace=github.com/FerretDB/FerretDB={src}", str(work / "go.mod")],
                   check=True)
    out = work / "ferretdb-launcher-nolock"
    subprocess.run(["go", "build", f"-modfile={work / 'go.mod'}", "-o", str(out), "."], cwd=FERRET, check=True,
                   env={**os.environ})
    return out


def fill(url: str, threads: int) -> None:
    coll = MongoClient(url)["cw_bench"]["c"]
    coll.insert_many([{"_id": f"hh-{t}-{i}", "version": 0, "n": 0, "pad": "x" * 400}
                      for t in range(threads) for i in range(50)])
    for start in range(0, 20000, 2000):
        coll.insert_many([{"_id": f"other-{i}", "version": 0, "n": 0, "pad": "x" * 400}
                          for i in range(start, start + 2000)])
    coll.insert_one({"_id": "one", "n": 0})
    coll.find_one({"_id": "hh-0-0"})
    time.sleep(1.5)  # the launcher's _id index sweeper
    coll.database.client.close()


def rate(url: str, threads: int, per: int, cas: bool) -> float:
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        client = MongoClient(url)
        c = client["cw_bench"]["c"]
        start.wait()
        for i in range(per):
            k = f"hh-{t}-{i % 50}"
            if cas:
                d = c.find_one({"_id": k}, {"version": 1})
                c.update_one({"_id": k, "version": d["version"]}, {"$inc": {"version": 1}})
            else:
                c.update_one({"_id": k}, {"$inc": {"n": 1}})
        client.close()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return threads * per / (time.perf_counter() - t0)


def lost_on_one_document(url: str, threads: int, per: int = 50) -> int:
    start = threading.Barrier(threads)

    def work() -> None:
        client = MongoClient(url)
        c = client["cw_bench"]["c"]
        start.wait()
        for _ in range(per):
            c.update_one({"_id": "one"}, {"$inc": {"n": 1}})
        client.close()
    client = MongoClient(url)
    client["cw_bench"]["c"].update_one({"_id": "one"}, {"$set": {"n": 0}})
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    got = client["cw_bench"]["c"].find_one({"_id": "one"})["n"]
    client.close()
    return threads * per - got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--per-thread", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ours = FERRET / "bin" / "ferretdb-launcher"
    work = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    try:
        baseline = pushdown_only_launcher(work)
        stores = {"ours": OwnStore(work / "data-ours"), "baseline": OwnStore(work / "data-baseline")}
        stores["ours"].launcher, stores["baseline"].launcher = ours, baseline
        for s in stores.values():
            s.start()
            fill(s.url, args.threads)
        runs: dict[str, dict[str, list[float]]] = {n: {"inc": [], "cas": []} for n in stores}
        for _ in range(args.rounds):  # interleaved: both see the same machine load
            for name, s in stores.items():
                runs[name]["inc"].append(rate(s.url, args.threads, args.per_thread, cas=False))
                runs[name]["cas"].append(rate(s.url, args.threads, args.per_thread, cas=True))
        lost = {name: lost_on_one_document(s.url, args.threads) for name, s in stores.items()}
        for s in stores.values():
            s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in runs.items()}
    result = {"bench": "concurrent_writes", "at": datetime.now(timezone.utc).isoformat(), "threads": args.threads,
              "updates_per_s": {n: {k: round(v) for k, v in m.items()} for n, m in med.items()},
              "ratio": {k: round(med["ours"][k] / med["baseline"][k], 2) for k in ("inc", "cas")},
              "lost_increments_on_one_document": lost, "of": args.threads * 50}
    print(json.dumps(result, ensure_ascii=False, indent=1))
    with open(ROOT / "bench" / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

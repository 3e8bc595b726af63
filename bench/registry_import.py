"""Benchmark: roster import at county scale against a baseline taken in the same run.

    .venv/bin/python -m bench.registry_import [--persons 578500]

- baseline: the same household documents, grouped from the same CSV, bulk-inserted straight into
  the store (insert_many, 500 a batch) into a collection with the same indexes as the registry's
  households, with no validation, claims or outbox;
- import: the real use case (services.registry.service_layer.importer.run_import).
Each runs in its own process on a fresh database; reported: persons per second, peak RSS, and
the import's peak RSS on a quarter-size file (memory must stay flat in the file size).
Goal (issue 3): import rate ≥ 50 % of the baseline rate.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

from shared.config import ROOT


def make_file(persons: int) -> Path:
    from bench.roster_gen import write_csv
    from shared.policy import load_policy
    path = ROOT / "var" / "bench" / f"roster-{persons}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write_csv(f, load_policy(ROOT / "policies" / "dongan-2020.json"), persons)
        tmp.rename(path)
    return path


def run_baseline(path: Path, db_name: str) -> dict:
    from shared.config import env
    from shared.store import connect
    from services.registry.adapters.repository import HOUSEHOLDS, INDEXES
    from shared.store import ensure_indexes
    db = connect(env("MONGO_URL"), "bench")[db_name]
    ensure_indexes(db, [i for i in INDEXES if i.collection == HOUSEHOLDS])
    t0 = time.perf_counter()
    persons, batch, current = 0, [], None
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for r in rows:
            persons += 1
            if current is None or current["household_no"] != r[0]:
                if current is not None:
                    batch.append(current)
                    if len(batch) >= 500:
                        db.households.insert_many(batch, ordered=False)
                        batch = []
                current = {"_id": f"2020:{r[0]}", "household_no": r[0], "year": 2020, "county": "东安县",
                           "township": r[1], "village": r[2], "head_phone": r[9] or None, "members": [], "enrolment": {}}
            current["members"].append({"person_id": r[4], "name": r[3], "relation": r[7], "category": "rural",
                                       "birth_date": r[4][6:10] + "-" + r[4][10:12] + "-" + r[4][12:14],
                                       "sex": "M" if int(r[4][16]) % 2 else "F", "status": "registered"})
    batch.append(current)
    db.households.insert_many(batch, ordered=False)
    return {"persons": persons, "seconds": time.perf_counter() - t0}


def run_import_once(path: Path, db_name: str) -> dict:
    os.environ["MONGO_DB"] = db_name
    from services.registry import bootstrap as boot
    from services.registry.adapters.roster_files import RosterReader
    from services.registry.service_layer.importer import ProblemSink, run_import
    c = boot.bootstrap()
    repo = boot.repository(c)
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        report = run_import(repo, c.policy, 2020, RosterReader(f, "csv", path.stat().st_size), principal=None,
                            sink=ProblemSink(None))
    secs = time.perf_counter() - t0
    assert report.households_rejected == 0, report.counts()
    return {"persons": report.persons_created, "seconds": secs}


def child(kind: str, path: str, db_name: str) -> None:
    out = (run_baseline if kind == "baseline" else run_import_once)(Path(path), db_name)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def measure(kind: str, path: Path) -> dict:
    db_name = f"bench{uuid.uuid4().hex[:8]}_registry"
    try:
        p = subprocess.run([sys.executable, "-m", "bench.registry_import", "--child", kind, str(path), db_name],
                           capture_output=True, text=True, cwd=ROOT, check=True)
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:  # the registry keeps each county in a database of its own (`<db>_<code>`)
        from shared.config import env
        from shared.store import connect
        client = connect(env("MONGO_URL"), "bench")
        for name in client.list_database_names():
            if name == db_name or name.startswith(db_name + "_"):
                client.drop_database(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=578_500)
    ap.add_argument("--rounds", type=int, default=3, help="baseline and import alternate; medians are reported")
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from statistics import median
    big, small = make_file(args.persons), make_file(args.persons // 4)
    bases, imps = [], []
    for _ in range(args.rounds):  # alternate, so drift in the machine or the store hits both alike
        bases.append(measure("baseline", big))
        imps.append(measure("import", big))
    imp_small = measure("import", small)
    rate = lambda r: r["persons"] / r["seconds"]  # noqa: E731
    ratios = [rate(i) / rate(b) for b, i in zip(bases, imps)]
    base_rate, imp_rate = median(rate(b) for b in bases), median(rate(i) for i in imps)
    imp_rss = max(i["peak_rss_mb"] for i in imps)
    result = {
        "persons": args.persons, "rounds": args.rounds,
        "baseline_persons_per_s": round(base_rate), "import_persons_per_s": round(imp_rate),
        "ratio": round(median(ratios), 3), "ratios": [round(r, 3) for r in ratios],
        "baseline_peak_rss_mb": round(max(b["peak_rss_mb"] for b in bases), 1), "import_peak_rss_mb": round(imp_rss, 1),
        "import_peak_rss_mb_quarter_file": round(imp_small["peak_rss_mb"], 1),
        "memory_growth_4x_file": round(imp_rss / imp_small["peak_rss_mb"], 3),
        "import_seconds": round(median(i["seconds"] for i in imps), 1),
        "baseline_seconds": round(median(b["seconds"] for b in bases), 1),
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    out = ROOT / "var" / "bench" / "registry_import.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"goal: ratio >= 0.5 -> {'met' if result['ratio'] >= 0.5 else 'NOT met'}; "
          f"memory flat: {'yes' if result['memory_growth_4x_file'] < 1.25 else 'NO'}")


if __name__ == "__main__":
    main()

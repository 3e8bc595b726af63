"""Benchmark (issue 11): scoring's portal reads and evaluations at Dong'an size, beside `_id` reads.

    .venv/bin/python -m bench.scoring [--persons 578500] [--concurrency 8] [--requests 400]

Needs FerretDB (and RabbitMQ for the web app's readiness only) from `deploy/local.sh start`. On a
namespace and databases of its own (`bench<hex>_scoring_<county>`, dropped at the end) it

1. writes a Dong'an-size season straight into scoring's store, in the shape the repository writes:
   ~578,500 persons in ~200,000 households paid between 2019-09-01 and 2019-12-31 (Shanghai),
   spread over the 16 townships by task (each at its own rate) and over their villages; one counter
   document per township (cumulative, per day and per village: the sum of
   domain.progress.counted_increments of every payment) and one `progress_days` document per
   township and day (its entries as repository._note_entry writes them); registered-poor coverage,
   accuracy and the 2.4 entries, so the points evaluation is complete; then checks through
   repository.progress_as_of that the stored figures are the generated ones;
2. loads a TEST-ONLY copy of Nayong 2017 (its five-stage scheme) given Dong'an's townships and tasks
   and a made-up standard, with one fund credit per township and day (store.add_credit);
3. starts the scoring web app under gunicorn as tools.suite does (deploy/gunicorn.conf.py, gthread),
   and with `--concurrency` client threads measures GET rankings, GET scorecard, GET village
   drill-down, each beside two baselines issued with the same concurrency straight to the store with
   pymongo: the same `_id` reads the request makes (same documents, counted with pymongo command
   monitoring on the same code in this process), and the same number of `_id` reads of one small
   document; endpoint and baselines alternate in rounds so drift on a shared machine hits them alike;
4. times the Dong'an points evaluation (`POST .../evaluations/2020/points/1`, then two corrections)
   and the five Nayong stage evaluations, each beside the same `_id` reads issued one after another.

Prints a JSON report and appends it to bench/results.jsonl.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import bson
import requests
from pymongo import MongoClient, monitoring

from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock, iso
from shared.config import ROOT, _local_env
from tools.suite import free_port_block

DONGAN, NAYONG = "431122", "520525"
NOW = datetime(2021, 1, 4, 9, 0, tzinfo=SHANGHAI)  # after Dong'an's points as_of (2020-12-31T23:59:59)
AS_OF = datetime(2019, 12, 15, 12, 0, tzinfo=SHANGHAI)  # the portal reads' instant (issue 11)
SEASON = (date(2019, 9, 1), date(2019, 12, 31))
NAYONG_SEASON = (date(2016, 10, 26), date(2017, 2, 28))
NAYONG_STANDARD = 15000  # TEST-ONLY: 150 yuan (Nayong's notice prints no standard)
SIZES = (1, 2, 3, 4, 5)
SIZE_WEIGHTS = (0.15, 0.25, 0.28, 0.20, 0.12)  # mean 2.89: 578,500 persons ≈ 200,000 households
GOAL_RANKINGS_P99_MS, GOAL_EVALUATION_S = 50, 5


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


# ---- files: policies (Dong'an as shipped, with a bench places list; Nayong TEST-ONLY) and tokens -------

def write_files(tmp: Path, villages_total: int, tokens: dict[str, str]) -> dict[str, str]:
    d = tmp / "policies"  # the catalogue: every *.json in it is a policy file
    d.mkdir()
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    shipped: dict[str, list[str]] = {}
    with open(ROOT / "policies" / raw["places_file"], encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for t, v in rows:
            shipped.setdefault(t, []).append(v)
    names = [t["name"] for t in raw["townships"]]
    per = max(1, villages_total // len(names))
    with open(d / "dongan-2020-bench-villages.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["乡镇", "村（社区）"])
        for t in names:  # the shipped example villages, then made-up ones up to `per` a township
            vs = list(shipped.get(t, []))[:per]
            vs += [f"{t}第{k}村（测）" for k in range(len(vs) + 1, per + 1)]
            for v in vs:
                w.writerow([t, v])
    raw["source"] = "BENCH COPY: " + raw["source"] + f" — places list padded to {per} villages a township"
    raw["places_file"] = "dongan-2020-bench-villages.csv"
    (d / "dongan-2020-bench.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    ny = json.loads((ROOT / "policies" / "nayong-2017.json").read_text(encoding="utf-8"))
    ny["source"] = "TEST ONLY: " + ny["source"] + " — Dong'an's 16 townships and tasks, a made-up standard of 150 yuan"
    ny["townships"] = [{"name": t["name"], "task": t["task"]} for t in raw["townships"]]
    ny["standard_fen"] = NAYONG_STANDARD
    (d / "nayong-2017-bench.json").write_text(json.dumps(ny, ensure_ascii=False), encoding="utf-8")
    (tmp / "tokens.json").write_text(json.dumps({"tokens": [
        {"sha256": token_hash(tokens[DONGAN]), "subject": "bench-dongan", "role": "county", "county": DONGAN},
        {"sha256": token_hash(tokens[NAYONG]), "subject": "bench-nayong", "role": "county", "county": NAYONG}]}))
    return {"POLICY_DIR": str(d), "POLICY_FILE": str(d / "dongan-2020-bench.json"),
            "AUTH_TOKENS_FILE": str(tmp / "tokens.json")}


# ---- the season: generated, aggregated in memory, bulk-inserted ---------------------------------------

def add_nested(doc: dict, dotted: dict[str, int]) -> None:
    """Apply a `$inc` of dotted paths to a nested document in memory."""
    for path, v in dotted.items():
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = node.get(leaf, 0) + v


def generate(policy, persons: int, seed: int) -> list[dict]:
    """Every paid household: township, village, persons, instant (Shanghai), in time order per township."""
    rng = random.Random(seed)
    towns = policy.townships
    factor = {t.name: rng.uniform(0.88, 1.04) for t in towns}  # each township at its own rate
    weight = {t.name: t.task * factor[t.name] for t in towns}
    total_w = sum(weight.values())
    share = {t.name: int(persons * weight[t.name] / total_w) for t in towns}
    share[towns[0].name] += persons - sum(share.values())
    days = [SEASON[0] + timedelta(days=i) for i in range((SEASON[1] - SEASON[0]).days + 1)]
    out = []
    for ti, t in enumerate(towns):
        # a late township pays later: day weights rise towards December, more steeply for some
        steep = rng.uniform(0.5, 3.0)
        day_w = [(1 + 3 * (i / (len(days) - 1)) ** steep) * (1.3 if d.weekday() >= 5 else 1.0) for i, d in enumerate(days)]
        vs = list(t.villages) or [f"{t.name}村"]
        v_w = [rng.uniform(0.5, 1.5) for _ in vs]
        left, n = share[t.name], 0
        rows = []
        while left > 0:
            size = min(left, rng.choices(SIZES, SIZE_WEIGHTS)[0])
            left -= size
            day = rng.choices(days, day_w)[0]
            at = datetime(day.year, day.month, day.day, 8, 0, tzinfo=SHANGHAI) + timedelta(seconds=rng.randrange(13 * 3600))
            n += 1
            no = f"B{ti:02d}{n:06d}"
            rows.append({"township": t.name, "village": rng.choices(vs, v_w)[0], "persons": size, "at": at,
                         "household_no": no, "order_no": f"P{at.strftime('%Y%m%d%H%M%S')}{ti:02d}{n:06d}"})
        rows.sort(key=lambda r: r["at"])
        out += rows
    return out


def season_documents(year: int, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The counter documents and the progress_days documents the repository would have written."""
    from services.scoring.domain.progress import counted_increments, shanghai_day
    counters: dict[str, dict] = {}
    days: dict[str, dict] = {}
    for r in rows:
        t, day = r["township"], shanghai_day(r["at"])
        doc = counters.setdefault(t, {"_id": f"{year}:{t}", "inflight": [], "year": year, "township": t})
        add_nested(doc, counted_increments(day, r["village"], r["persons"], 1))
        key = f"paid:{year}:{r['household_no']}:{r['order_no']}"
        dd = days.setdefault(f"{year}:{t}:{day}", {"_id": f"{year}:{t}:{day}", "year": year, "township": t,
                                                   "day": day, "entries": []})
        dd["entries"].append({"fact": key, "at": iso(r["at"]), "persons": r["persons"], "households": 1,
                              "village": r["village"]})
    return list(counters.values()), list(days.values())


def load_dongan(c, policy, rows: list[dict], rng: random.Random) -> dict:
    from services.scoring import bootstrap as boot
    t0 = time.perf_counter()
    counters, day_docs = season_documents(policy.year, rows)
    t_build = time.perf_counter() - t0
    db = c.db
    db.progress.insert_many(counters, ordered=False)
    for i in range(0, len(day_docs), 100):
        db.progress_days.insert_many(day_docs[i:i + 100], ordered=False)
    repo, store = boot.repository(c), boot.assessments(c)
    for t in policy.townships:
        hardship = max(1, t.task // 20)
        enrolled = hardship - rng.choice((0, 0, 0, 1, 2, 5))
        repo.store_coverage({"year": policy.year, "county": DONGAN, "township": t.name, "category": "registered_poor",
                             "hardship_persons": hardship, "enrolled_persons": enrolled,
                             "not_enrolled_persons": hardship - enrolled, "rate_bp": enrolled * 10000 // hardship,
                             "as_of": "2019-12-31T12:00:00+08:00"})
        problems = rng.randrange(0, t.task // 200 + 1)
        repo.store_accuracy(policy.year, "2020-12-31T12:00:00+08:00", [{
            "township": t.name, "registered_persons": t.task, "persons_with_open_problems": problems,
            "rate_bp": (t.task - problems) * 10000 // t.task}])
        store.save_entry(policy.year, t.name, {"year": policy.year, "township": t.name,
                                               "incidents": rng.choice((0, 0, 0, 1)), "deductions": [],
                                               "reason": "bench: 2.4 entered", "by": "bench-dongan", "at": iso(NOW)})
    return {"counter_docs": len(counters), "day_docs": len(day_docs), "build_s": round(t_build, 1),
            "write_s": round(time.perf_counter() - t0 - t_build, 1),
            "counter_doc_kb_max": round(max(len(bson.encode(d)) for d in counters) / 1024, 1),
            "counter_doc_kb_mean": round(statistics.mean(len(bson.encode(d)) for d in counters) / 1024, 1),
            "day_doc_kb_mean": round(statistics.mean(len(bson.encode(d)) for d in day_docs) / 1024, 1)}


def check_dongan(c, policy, rows: list[dict]) -> dict:
    """The stored figures, read back through the repository, are the generated ones."""
    from services.scoring import bootstrap as boot
    repo = boot.repository(c)
    names = [t.name for t in policy.townships]
    for at in (AS_OF, AS_OF - timedelta(days=7), datetime(2019, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)):
        got = repo.progress_as_of(policy.year, names, at, villages=True)
        want: dict[str, list[int]] = {}
        want_v: Counter = Counter()
        for r in rows:
            if r["at"] <= at:
                w = want.setdefault(r["township"], [0, 0])
                w[0] += r["persons"]
                w[1] += 1
                want_v[(r["township"], r["village"])] += r["persons"]
        for t in names:
            s = got[t]
            assert [s.persons, s.households] == want.get(t, [0, 0]), (at, t, s.persons, want.get(t))
            assert {v: f.persons for v, f in s.villages.items() if f.persons} == \
                {v: n for (tt, v), n in want_v.items() if tt == t}, (at, t)
    total = sum(s.persons for s in got.values())
    assert total == sum(r["persons"] for r in rows)
    return {"persons": total, "households": sum(s.households for s in got.values()),
            "checked_as_of": [iso(AS_OF), iso(AS_OF - timedelta(days=7)), "2019-12-31T23:59:59+08:00"]}


def load_nayong(c, policy, rows: list[dict], rng: random.Random) -> dict:
    """One credit per township and day over Nayong's season (the township's generated persons, spread
    by the same rising curve), through store.add_credit; prior-year counts and coverage."""
    from services.scoring import bootstrap as boot
    t0 = time.perf_counter()
    store, repo = boot.assessments(c), boot.repository(c)
    persons = Counter()
    for r in rows:
        persons[r["township"]] += r["persons"]
    days = [NAYONG_SEASON[0] + timedelta(days=i) for i in range((NAYONG_SEASON[1] - NAYONG_SEASON[0]).days + 1)]
    n = 0
    for ti, t in enumerate(policy.townships):
        steep = rng.uniform(0.5, 3.0)
        w = [1 + 3 * (i / (len(days) - 1)) ** steep for i in range(len(days))]
        per_day = Counter(rng.choices(range(len(days)), w, k=persons[t.name]))
        for i, k in sorted(per_day.items()):
            d = days[i]
            store.add_credit(policy.year, t.name, f"N{ti:02d}{d:%Y%m%d}", k * NAYONG_STANDARD,
                             datetime(d.year, d.month, d.day, 16, 0, tzinfo=SHANGHAI), "bench-nayong", NOW)
            n += 1
    store.save_prior_year(policy.year, {"year": policy.year, "counted_year": 2016, "source": "bench",
                                        "rows": [{"township": t.name, "persons": int(t.task * rng.uniform(0.9, 1.0))}
                                                 for t in policy.townships],
                                        "loaded_by": "bench-nayong", "loaded_at": iso(NOW)})
    for t in policy.townships:
        hardship = max(1, t.task // 20)
        enrolled = hardship - rng.choice((0, 0, 1))
        repo.store_coverage({"year": policy.year, "county": NAYONG, "township": t.name, "category": "registered_poor",
                             "hardship_persons": hardship, "enrolled_persons": enrolled,
                             "not_enrolled_persons": hardship - enrolled, "rate_bp": enrolled * 10000 // hardship,
                             "as_of": "2016-11-30T12:00:00+08:00"})
    return {"credits": n, "s": round(time.perf_counter() - t0, 1)}


# ---- counting the store commands a read path makes (pymongo command monitoring) -----------------------

class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.on = False
        self.reads: list[tuple[str, object]] = []  # (collection, _id) of every find by `_id` alone
        self.other: Counter = Counter()

    def started(self, event) -> None:  # noqa: ANN001
        if not self.on or event.command_name in ("hello", "isMaster", "ismaster", "ping", "endSessions"):
            return
        cmd = event.command
        f = cmd.get("filter") if event.command_name == "find" else None
        if isinstance(f, dict) and list(f) == ["_id"] and not isinstance(f["_id"], dict):
            self.reads.append((cmd["find"], f["_id"]))
        elif isinstance(f, dict) and list(f) == ["_id"] and list(f["_id"]) == ["$in"]:
            self.reads.append((cmd["find"], ("$in", tuple(f["_id"]["$in"]))))  # one query for several `_id`s
        else:
            self.other[f"{event.command_name} {cmd.get(event.command_name)}"] += 1

    def succeeded(self, event) -> None:  # noqa: ANN001
        pass

    def failed(self, event) -> None:  # noqa: ANN001
        pass

    def record(self, fn):
        self.reads, self.other, self.on = [], Counter(), True
        try:
            fn()
        finally:
            self.on = False
        return list(self.reads), dict(self.other)


def read_summary(reads: list[tuple[str, object]]) -> dict:
    by_coll = Counter(coll for coll, _ in reads)
    ids = Counter(reads)
    return {"reads": len(reads), "by_collection": dict(by_coll), "distinct_documents": len(ids),
            "same_document_read_up_to": max(ids.values()) if ids else 0}


# ---- load generation --------------------------------------------------------------------------------

def run_concurrent(n: int, one, concurrency: int, budget_s: float) -> tuple[list[float], float]:
    """Latencies (ms) of `one(i)` for i < n with `concurrency` threads, and the wall time; no request
    starts after `budget_s` (the requests under way finish), so a slow read path is sampled, not
    waited out."""
    lat: list[float] = []
    lock = threading.Lock()
    state = {"next": 0}
    t0 = time.perf_counter()
    deadline = t0 + budget_s

    def worker():
        while True:
            with lock:
                i = state["next"]
                if i >= n or time.perf_counter() > deadline:
                    return
                state["next"] = i + 1
            t = time.perf_counter()
            one(i)
            ms = (time.perf_counter() - t) * 1000
            with lock:
                lat.append(ms)
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0


def summary(lat: list[float], wall: float) -> dict:
    return {"n": len(lat), "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
            "per_s": round(len(lat) / wall, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=578500)
    ap.add_argument("--villages", type=int, default=320, help="villages in the bench places list (16 townships)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400, help="requests per endpoint (and per baseline)")
    ap.add_argument("--rounds", type=int, default=2, help="endpoint/baseline alternations the requests are split into")
    ap.add_argument("--phase-seconds", type=float, default=25,
                    help="no request of a phase (one endpoint or baseline in one round) starts after this")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.jsonl"))
    args = ap.parse_args()
    t_start = time.perf_counter()

    local = _local_env()
    mongo_url = os.environ.get("MONGO_URL") or local["MONGO_URL"]
    ns = "bench" + uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    tokens = {DONGAN: uuid.uuid4().hex, NAYONG: uuid.uuid4().hex}
    files = write_files(tmp, args.villages, tokens)
    env = {**files, "MONGO_URL": mongo_url, "MONGO_DB": f"{ns}_scoring", "BUS_NAMESPACE": ns,
           "CLOCK_NOW": iso(NOW), "LOG_LEVEL": "WARNING", "SUITE_COUNTIES": ""}
    os.environ.update(env)
    web = None
    client = MongoClient(mongo_url, tz_aware=True)
    try:
        from services.scoring import bootstrap as boot
        from services.scoring.service_layer import assessments as svc
        from services.scoring.service_layer import handlers
        from services.scoring.service_layer import rankings as rk
        from services.scoring.adapters.assessment_store import AssessmentStore
        from services.scoring.adapters.repository import ProgressRepository
        from services.scoring.domain.scheme import scheme_of
        c = boot.bootstrap(FixedClock(NOW))
        cn = c.county(NAYONG)
        dongan, nayong = c.policy_for(2020), cn.policy_for(2017)
        rng = random.Random(args.seed)

        t = time.perf_counter()
        rows = generate(dongan, args.persons, args.seed)
        gen_s = time.perf_counter() - t
        load = {"generate_s": round(gen_s, 1), "households": len(rows), "persons": sum(r["persons"] for r in rows),
                "villages": sum(len(t.villages) for t in dongan.townships),
                **load_dongan(c, dongan, rows, rng)}
        t = time.perf_counter()
        load["check"] = check_dongan(c, dongan, rows)
        load["check_s"] = round(time.perf_counter() - t, 1)
        load["nayong"] = load_nayong(cn, nayong, rows, rng)
        print(f"loaded: {json.dumps(load, ensure_ascii=False)}", flush=True)

        # -- the web app under gunicorn, as tools.suite starts it -------------------------------------------
        port = free_port_block(2) + 1
        base = f"http://127.0.0.1:{port}"
        wenv = {**os.environ, **env, "PYTHONPATH": str(ROOT), "WEB_CONCURRENCY": str(args.web_workers),
                "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom")}
        wenv.pop("STORE_TRACE", None)
        log = open(tmp / "scoring-web.log", "ab")  # noqa: SIM115
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
                                "--timeout", "180", "services.scoring.entrypoints.flask_app:create_app()"], cwd=ROOT, env=wenv,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("scoring web did not start:\n" + (tmp / "scoring-web.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)

        local_s = threading.local()

        def session() -> requests.Session:
            if not hasattr(local_s, "s"):
                local_s.s = requests.Session()
            return local_s.s

        def get(path: str, token: str) -> None:
            r = session().get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=170)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])

        def post(path: str, token: str, body: dict) -> requests.Response:
            r = session().post(base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            assert r.status_code in (200, 201), (path, r.status_code, r.text[:500])
            return r

        # -- what each read path reads (the same code in this process, pymongo command monitoring) -------------
        rec = Recorder()
        rclient = MongoClient(mongo_url, tz_aware=True, event_listeners=[rec])
        rdb = rclient[f"{ns}_scoring_{DONGAN}"]
        rrepo, rstore = ProgressRepository(rdb), AssessmentStore(rdb)
        names = [t.name for t in dongan.townships]
        q = "as_of=" + quote(iso(AS_OF))
        paths = {
            "rankings": [f"/v1/counties/{DONGAN}/rankings/2020?{q}"] * 1,
            "rankings_now": [f"/v1/counties/{DONGAN}/rankings/2020"] * 1,  # a portal's usual read: no as_of
            "scorecard": [f"/v1/counties/{DONGAN}/scorecards/2020/{quote(t)}?{q}" for t in names],
            "villages": [f"/v1/counties/{DONGAN}/progress/2020/townships/{quote(t)}/villages?{q}" for t in names],
        }
        t = time.perf_counter()
        inproc_ms = {}
        reads = {"rankings": [rec.record(lambda: rk.rankings(rrepo, rstore, dongan, AS_OF))[0]],
                 "rankings_now": [rec.record(lambda: rk.rankings(rrepo, rstore, dongan, NOW, exact=False))[0]]}
        t1 = time.perf_counter()
        rk.rankings(ProgressRepository(c.db), AssessmentStore(c.db), dongan, AS_OF)
        inproc_ms["rankings"] = round((time.perf_counter() - t1) * 1000, 1)
        # a scorecard reads what rankings reads and the newest evaluations, the same for every township
        reads["scorecard"] = [rec.record(lambda: rk.scorecard(rrepo, rstore, dongan, names[0], AS_OF))[0]]
        reads["villages"] = [rec.record(lambda t=t: handlers.village_progress(rrepo, dongan, 2020, t, AS_OF))[0]
                             for t in names]
        count_s = time.perf_counter() - t
        small_id = ("accuracy", f"2020:{names[0]}")  # one small document (a township's accuracy figure)
        bsize: dict = {}

        def size_of(coll, _id):
            if isinstance(_id, tuple) and _id[:1] == ("$in",):
                return sum(size_of(coll, x) for x in _id[1])
            if (coll, _id) not in bsize:
                d = client[f"{ns}_scoring_{DONGAN}"][coll].find_one({"_id": _id})
                bsize[(coll, _id)] = len(bson.encode(d)) if d else 0
            return bsize[(coll, _id)]

        bdb = client[f"{ns}_scoring_{DONGAN}"]

        def replay(seq):
            for coll, _id in seq:
                if isinstance(_id, tuple) and _id[:1] == ("$in",):
                    list(bdb[coll].find({"_id": {"$in": list(_id[1])}}))
                else:
                    bdb[coll].find_one({"_id": _id})

        # -- the portal reads and their baselines, alternating -----------------------------------------------
        for kind in paths:  # warm-up: a few requests of each kind on every worker
            run_concurrent(4, lambda i, kind=kind: get(paths[kind][i % len(paths[kind])], tokens[DONGAN]), 4, 600)
        results: dict = {}
        per_round = max(1, args.requests // args.rounds)
        for kind in ("rankings", "rankings_now", "scorecard", "villages"):
            lat = {"endpoint": [], "same_reads": [], "small_reads": []}
            wall = dict.fromkeys(lat, 0.0)
            k = len(paths[kind])
            for _ in range(args.rounds):
                for what, one in (("endpoint", lambda i: get(paths[kind][i % k], tokens[DONGAN])),
                                  ("same_reads", lambda i: replay(reads[kind][i % len(reads[kind])])),
                                  ("small_reads", lambda i: replay([small_id] * len(reads[kind][i % len(reads[kind])])))):
                    ls, w = run_concurrent(per_round, one, args.concurrency, args.phase_seconds)
                    lat[what] += ls
                    wall[what] += w
            s = {what: summary(lat[what], wall[what]) for what in lat}
            rs = reads[kind][0]
            results[kind] = {
                **s["endpoint"],
                "store_reads_per_request": read_summary(rs),
                "kb_read_per_request": round(sum(size_of(*x) for x in rs) / 1024, 1),
                "baseline_same_reads": s["same_reads"],
                "baseline_small_reads": s["small_reads"],
                "ratio_p50_to_same_reads": round(s["endpoint"]["p50_ms"] / s["same_reads"]["p50_ms"], 2),
                "ratio_p99_to_same_reads": round(s["endpoint"]["p99_ms"] / s["same_reads"]["p99_ms"], 2),
                "ratio_p50_to_small_reads": round(s["endpoint"]["p50_ms"] / s["small_reads"]["p50_ms"], 2),
                "ratio_p99_to_small_reads": round(s["endpoint"]["p99_ms"] / s["small_reads"]["p99_ms"], 2)}
            print(f"{kind}: {json.dumps(results[kind], ensure_ascii=False)}", flush=True)
        results["rankings"]["in_process_one_call_ms"] = inproc_ms["rankings"]

        # -- evaluations: each POST timed beside the same reads made one after another ----------------------
        def evaluation(county, token, policy, rdb_, kind, no, reason):
            repo_, store_ = ProgressRepository(rdb_), AssessmentStore(rdb_)

            def reads_of_publish():  # what the POST reads: the newest version, then the evaluation itself
                store_.latest(policy.year, kind, no)
                svc.evaluate(repo_, store_, policy, kind, no, NOW)
            seq, _ = rec.record(reads_of_publish)
            t0 = time.perf_counter()
            r = post(f"/v1/counties/{county}/evaluations/{policy.year}/{kind}/{no}", token, {"reason": reason})
            post_s = time.perf_counter() - t0
            base = []
            for _ in range(3):
                t0 = time.perf_counter()
                replay_db = client[rdb_.name]
                for coll, _id in seq:
                    replay_db[coll].find_one({"_id": _id})
                base.append(time.perf_counter() - t0)
            doc = r.json()
            pending = Counter(f"{a['award']}: {a.get('reason') or ''}"[:160] for row in doc["rows"] for a in row["awards"]
                              if a["status"] == "pending")
            return {"kind": kind, "no": no, "version": doc["version"], "complete": doc["complete"],
                    "missing": doc["missing"], "pending_awards": dict(pending),
                    "post_ms": round(post_s * 1000, 1), "store_reads": read_summary(seq),
                    "store_writes": 3, "baseline_same_reads_ms": round(statistics.median(base) * 1000, 1),
                    "ratio_to_same_reads": round(post_s / statistics.median(base), 2)}

        ndb = rclient[f"{ns}_scoring_{NAYONG}"]
        evals = [evaluation(DONGAN, tokens[DONGAN], dongan, rdb, "points", 1, None),
                 evaluation(DONGAN, tokens[DONGAN], dongan, rdb, "points", 1, "bench: correction 1"),
                 evaluation(DONGAN, tokens[DONGAN], dongan, rdb, "points", 1, "bench: correction 2")]
        evals += [evaluation(NAYONG, tokens[NAYONG], nayong, ndb, "stage", s.no, None)
                  for s in scheme_of(nayong).stages]
        for e in evals:
            print(f"evaluation: {json.dumps(e, ensure_ascii=False)}", flush=True)

        worst_eval = max(e["post_ms"] for e in evals) / 1000
        report = {
            "bench": "scoring", "at": datetime.now().astimezone().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "persons": load["persons"], "households": load["households"], "townships": len(dongan.townships),
            "village_count": load["villages"], "concurrency": args.concurrency, "requests": per_round * args.rounds,
            "rounds": args.rounds, "phase_seconds": args.phase_seconds, "web_workers": args.web_workers, "web": "gunicorn gthread (deploy/gunicorn.conf.py)",
            "as_of": iso(AS_OF), "load": load, "read_paths_counted_s": round(count_s, 1),
            **results, "evaluations": evals,
            "goals": {"rankings_p99_ms": results["rankings"]["p99_ms"], "rankings_p99_goal_ms": GOAL_RANKINGS_P99_MS,
                      "rankings_p99_met": results["rankings"]["p99_ms"] < GOAL_RANKINGS_P99_MS,
                      "evaluation_worst_s": round(worst_eval, 2), "evaluation_goal_s": GOAL_EVALUATION_S,
                      "evaluation_met": worst_eval < GOAL_EVALUATION_S},
            "total_s": round(time.perf_counter() - t_start, 1)}
        print(json.dumps(report, ensure_ascii=False, indent=2))
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(report, ensure_ascii=False) + "\n")
        rclient.close()
        return 0
    finally:
        if web is not None and web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
        for name in client.list_database_names():
            if name.startswith(ns + "_"):
                client.drop_database(name)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Every benchmark at stated small scales, by one command; a dated section appended to bench/RESULTS.md.

    .venv/bin/python -m bench.all [--quick] [--only NAME,...] [--results bench/RESULTS.md]
    ./run bench [--quick]                    (starts RabbitMQ + FerretDB first)

Each benchmark runs as a subprocess, one after another (never two at once on this 2-core machine),
each beside its baseline measured in the same run:

| name | what | baseline |
| --- | --- | --- |
| broker | raw broker publish (persistent, publisher confirms) and consume (bench/broker.py) | — (it is the baseline of the event latencies) |
| registry_import | roster import through the real use case | bulk insert of the same household documents (raw store writes) |
| relay | registry's outbox relay draining an import | raw broker publish of as many envelopes |
| notifications | signed payment notifications flat out → confirmations → enrolment → scoring count | bare endpoint `POST /bench/baseline` (one write); raw broker publish → consume for the latencies |
| notifications_rate | the same at a constant arrival rate | offered rate; bare endpoint; raw broker |
| scoring | ranking, scorecard and drill-down queries under 8 clients, and the evaluations | the same `_id` reads straight to the store |
| locust_reads | quote, progress, rankings under locust (FastHttpUser), flat out and at a constant rate | bare endpoint `GET /years` under the same load |
| season | the season simulator (tools.simulate) at a small scale | — (its invariants must hold) |

Scales (SCALES below): the full set takes about 15 minutes on this 2-core machine (14 measured),
`--quick` about 5 (4.5 measured). Each benchmark's JSON report is kept in var/bench/all-<stamp>/
with its log (bench/results.jsonl is not written). The section appended to bench/RESULTS.md has the date (UTC), the commit (`-dirty` when
the work tree has changes), the machine, and one table: benchmark | scale | figure | value |
baseline (what) | baseline value | ratio. A benchmark that fails is listed under the table with
the end of its log and the command exits 1, after writing what ran.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from shared.config import ROOT

RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass
class Bench:
    name: str
    module: str
    full: list[str]
    quick: list[str]
    out: str = "option"  # "option": pass --out FILE and read its last line; "stdout": the last JSON object printed; "simulate"
    timeout_s: int = 1200


# Scales: what each benchmark is run at. Full ≈ 15 min on 2 cores, quick ≈ 5 min.
SCALES: list[Bench] = [
    Bench("broker", "bench.broker", ["--messages", "5000"], ["--messages", "1000"]),
    Bench("registry_import", "bench.registry_import", ["--persons", "60000", "--rounds", "3"],
          ["--persons", "10000", "--rounds", "1"], out="stdout"),
    Bench("relay", "bench.relay", ["--persons", "30000"], ["--persons", "5000"], out="stdout"),
    Bench("notifications", "bench.notifications", ["--households", "1000", "--concurrency", "24", "--web-workers", "3"],
          ["--households", "200", "--concurrency", "16", "--web-workers", "2"]),
    Bench("notifications_rate", "bench.notifications",
          ["--households", "1500", "--concurrency", "24", "--web-workers", "3", "--rate", "25"],
          ["--households", "300", "--concurrency", "16", "--web-workers", "2", "--rate", "20"]),
    Bench("scoring", "bench.scoring", ["--persons", "200000", "--requests", "200", "--rounds", "1", "--phase-seconds", "12"],
          ["--persons", "30000", "--villages", "128", "--requests", "60", "--rounds", "1", "--phase-seconds", "5"]),
    Bench("locust_reads", "bench.locust_reads", ["--households", "300", "--run-time", "30"],
          ["--households", "100", "--run-time", "8"]),
    Bench("season", "tools.simulate", ["--scale", "0.01", "--days", "30", "--seed", "7"],
          ["--scale", "0.002", "--days", "8", "--seed", "7"], out="simulate", timeout_s=1800),
]


# ---- running ------------------------------------------------------------------------------------

def last_json(text: str) -> dict:
    """The last JSON object printed at the start of a line (reports are printed last, indented or not)."""
    dec = json.JSONDecoder()
    starts = [i for i in range(len(text)) if text[i] == "{" and (i == 0 or text[i - 1] == "\n")]
    for i in reversed(starts):
        try:
            obj, _ = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ValueError("no JSON object in the output")


def run_one(b: Bench, quick: bool, run_dir: Path) -> dict:
    args = list(b.quick if quick else b.full)
    log = run_dir / f"{b.name}.log"
    out = run_dir / (f"{b.name}-sim" if b.out == "simulate" else f"{b.name}.jsonl")
    if b.out == "option":
        args += ["--out", str(out)]
    elif b.out == "simulate":
        args += ["--out", str(out), "--no-progress"]
    cmd = [sys.executable, "-m", b.module, *args]
    rec = {"name": b.name, "args": args, "log": str(log.relative_to(ROOT)), "ok": False, "result": None, "error": None}
    print(f"[bench] {b.name}: {' '.join(['python', '-m', b.module, *args])}", flush=True)
    t = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        try:
            code = p.wait(b.timeout_s)
        except subprocess.TimeoutExpired:  # SIGINT first: its `finally` stops the suite and drops its data
            p.send_signal(signal.SIGINT)
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            code = None
        except KeyboardInterrupt:  # the terminal's SIGINT reached the benchmark too: let it clean up
            p.wait(120)
            raise
    rec["seconds"] = round(time.monotonic() - t, 1)
    text = log.read_text(errors="replace")
    try:
        if b.out == "option":
            rec["result"] = json.loads(out.read_text(encoding="utf-8").strip().splitlines()[-1])
        elif b.out == "simulate":
            rec["result"] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        else:
            rec["result"] = last_json(text)
    except (OSError, ValueError, IndexError) as e:
        rec["error"] = f"no report ({e})"
    if code is None:
        rec["error"] = f"timed out after {b.timeout_s} s"
    elif code != 0:
        rec["error"] = f"exit status {code}" + (f"; {rec['error']}" if rec["error"] else "")
    rec["ok"] = rec["error"] is None
    if not rec["ok"]:
        rec["tail"] = text.strip().splitlines()[-12:]
    print(f"[bench] {b.name}: {'ok' if rec['ok'] else 'FAILED: ' + rec['error']} ({rec['seconds']} s)", flush=True)
    return rec


def _cmd(*argv: str) -> str:
    try:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    """What the figures were measured on (no credentials: versions only)."""
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")), "?")
        mem = Path("/proc/meminfo").read_text()
        kb = int(next(ln.split()[1] for ln in mem.splitlines() if ln.startswith("MemTotal")))
        info["ram_gib"] = round(kb / 1024 / 1024, 1)
        info["load_avg"] = Path("/proc/loadavg").read_text().split()[0]
    except (OSError, StopIteration, ValueError):
        pass
    from shared.config import _local_env
    local = {**_local_env(), **os.environ}
    try:
        import pika
        conn = pika.BlockingConnection(pika.URLParameters(local["AMQP_URL"]))
        info["rabbitmq"] = conn._impl.server_properties.get("version")  # noqa: SLF001 — pika keeps it there
        info["rabbitmq"] = info["rabbitmq"].decode() if isinstance(info["rabbitmq"], bytes) else info["rabbitmq"]
        conn.close()
    except Exception:  # noqa: BLE001 — the version is a nicety
        info["rabbitmq"] = None
    gomod = ROOT / "deploy" / "ferretdb" / "go.mod"
    try:
        v = next(ln.split()[1] for ln in gomod.read_text().splitlines() if "github.com/FerretDB/FerretDB " in ln)
        patches = len(list((ROOT / "deploy" / "ferretdb" / "patches").glob("*.patch")))
        info["store"] = f"FerretDB {v} on SQLite, {patches} patches (deploy/ferretdb)" \
            if local.get("ENROL_STORE_KIND", "ferretdb") == "ferretdb" else local.get("ENROL_STORE_KIND")
    except (OSError, StopIteration):
        info["store"] = local.get("ENROL_STORE_KIND")
    return info


def commit() -> str:
    head = _cmd("git", "rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if _cmd("git", "status", "--porcelain") else "")


# ---- the section ----------------------------------------------------------------------------------

def num(x, digits: int = 1) -> str:
    """1234.56 → '1,235'; 123.45 → '123.5'; 1.234 → '1.23'; 9.5 → '9.5'; None → '—'."""
    if x is None or x == "":
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and x != x:
        return "—"
    if isinstance(x, int) or float(x).is_integer() or abs(x) >= 1000:
        return f"{int(round(x)):,}"
    if abs(x) < 0.01:
        return f"{x:.2g}"
    if abs(x) < 10:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return f"{x:,.{digits}f}"


def ratio(a, b) -> str:
    try:
        r = float(a) / float(b)
    except (TypeError, ValueError, ZeroDivisionError):
        return "—"
    if r != r:
        return "—"
    return f"{r:.3g}" if r < 100 else f"{r:,.0f}"


def pair(*xs) -> str:
    return " / ".join(num(x) for x in xs)


def pair_ratio(xs, bs) -> str:
    return " / ".join(ratio(x, b) for x, b in zip(xs, bs))


Row = tuple  # (benchmark, scale, figure, value, baseline what, baseline value, ratio)

BROKER_WHAT = "raw broker publish → consume (pika, persistent, confirm each), p50 / p99 ms"


def rows_broker(r: dict, _ctx: dict) -> list[Row]:
    bm, sc = "raw broker (baseline)", f"{r['messages']:,} messages of {r['size_bytes']} B, own queue"
    return [(bm, sc, "published (confirmed) /s; consumed /s", pair(r["published_per_s"], r["consumed_per_s"]), "—", "—", "—"),
            (bm, sc, "publish → consume latency p50 / p99 ms", pair(r["latency_ms_p50"], r["latency_ms_p99"]), "—", "—", "—")]


def rows_registry_import(r: dict, _ctx: dict) -> list[Row]:
    bm, sc = "roster import", f"{r['persons']:,} persons, {r['rounds']} round(s)"
    return [(bm, sc, "persons/s", num(r["import_persons_per_s"]), "bulk insert of the same households (raw store writes), persons/s",
             num(r["baseline_persons_per_s"]), f"{r['ratio']:.3g}"),
            (bm, sc, "peak RSS MB", num(r["import_peak_rss_mb"]), "the import of a quarter-size file, MB",
             num(r["import_peak_rss_mb_quarter_file"]), f"{r['memory_growth_4x_file']:.3g}")]


def rows_relay(r: dict, _ctx: dict) -> list[Row]:
    bm, sc = "outbox relay (after an import)", f"{r['persons']:,} persons, {r['relay']['events']:,} events"
    ev = r["relay"]["events_per_s"]
    return [(bm, sc, "events/s", num(ev), "raw broker publish, one confirm wait per 200, /s",
             num(r["baseline"]["publish_many_per_s"]), ratio(ev, r["baseline"]["publish_many_per_s"])),
            (bm, sc, "events/s", num(ev), "raw broker publish, one confirm wait per message, /s",
             num(r["baseline"]["one_confirm_each_per_s"]), ratio(ev, r["baseline"]["one_confirm_each_per_s"]))]


def _latency_rows(bm: str, sc: str, r: dict, broker: dict | None) -> list[Row]:
    b = (broker or {}).get("latency_ms_p50"), (broker or {}).get("latency_ms_p99")
    out = []
    for what, key in (("notification → registry enrolment event", "notification_to_enrolment_ms"),
                      ("notification → scoring count (FIFO approx.)", "notification_to_scoring_count_ms")):
        xs = r.get(f"{key}_p50"), r.get(f"{key}_p99")
        out.append((bm, sc, f"{what} p50 / p99 ms", pair(*xs), BROKER_WHAT if broker else "raw broker (not measured)",
                    pair(*b) if broker else "—", pair_ratio(xs, b) if broker else "—"))
    return out


def rows_notifications(r: dict, ctx: dict) -> list[Row]:
    """Flat out: against the bare endpoint flat out (same sender, same concurrency). At a constant
    rate: against the offered rate; the bare endpoint and the floor are then measured flat out (a
    capacity beside it, not a like-for-like latency: no ratio)."""
    rate = r.get("offered_per_s")
    bm = "payment notifications, " + (f"constant {num(rate)}/s" if rate else "flat out")
    sc = f"{r['households']:,} households, concurrency {r['concurrency']}, {r['web_workers']} web workers"
    conf, base = r["confirmations_per_s"], r["baseline_per_s"]
    ack, bare = (r["ack_ms_p50"], r["ack_ms_p99"]), (r["baseline_ms_p50"], r["baseline_ms_p99"])
    bare_what = "bare endpoint POST /bench/baseline (one write)"
    if rate:
        rows = [(bm, sc, "confirmations/s (achieved)", num(conf), "offered /s", num(rate), ratio(conf, rate)),
                (bm, sc, "sender lag p99 ms", num(r.get("send_lag_ms_p99")), "—", "—", "—"),
                (bm, sc, "ack p50 / p99 ms", pair(*ack), f"{bare_what} flat out, p50 / p99 ms", pair(*bare), "—")]
    else:
        rows = [(bm, sc, "confirmations/s", num(conf), f"{bare_what}, /s", num(base), f"{r['ratio_to_baseline']:.3g}"),
                (bm, sc, "ack p50 / p99 ms", pair(*ack), f"{bare_what}, p50 / p99 ms", pair(*bare), pair_ratio(ack, bare))]
    rows += [
        (bm, sc, "floor (the 4 store operations alone) flat out, /s", num(r["floor_per_s"]),
         f"{bare_what} flat out, /s", num(base), f"{r['floor_ratio_to_baseline']:.3g}"),
        (bm, sc, "enrolled/s", num(r["enrolled_per_s"]), "confirmations/s (same run)", num(conf), ratio(r["enrolled_per_s"], conf)),
        *_latency_rows(bm, sc, r, ctx.get("broker")),
        (bm, sc, "backlog drained, s after the last enrolment", num(r["backlog_drained_s_after_last_enrolment"]), "—", "—", "—"),
    ]
    return rows


def rows_scoring(r: dict, _ctx: dict) -> list[Row]:
    bm = "ranking queries (scoring)"
    sc = f"{r['persons']:,} persons, {r['village_count']} villages, {r['concurrency']} clients"
    names = {"rankings": "GET rankings as_of", "rankings_now": "GET rankings now", "scorecard": "GET scorecard as_of",
             "villages": "GET village drill-down as_of"}
    rows = []
    for kind, label in names.items():
        k = r.get(kind)
        if not k:
            continue
        s = k["baseline_same_reads"]
        rows.append((bm, sc, f"{label} p50 / p99 ms (n {k['n']})", pair(k["p50_ms"], k["p99_ms"]),
                     "the same `_id` reads straight to the store, p50 / p99 ms", pair(s["p50_ms"], s["p99_ms"]),
                     pair_ratio((k["p50_ms"], k["p99_ms"]), (s["p50_ms"], s["p99_ms"]))))
    evals = r.get("evaluations") or []
    for kind, label in (("points", "points evaluation (Dong'an), worst POST ms"), ("stage", "stage evaluation (Nayong copy), worst POST ms")):
        es = [e for e in evals if e["kind"] == kind]
        if es:
            e = max(es, key=lambda e: e["post_ms"])
            rows.append((bm, sc, label, num(e["post_ms"]), "the same `_id` reads one after another, ms",
                         num(e["baseline_same_reads_ms"]), f"{e['ratio_to_same_reads']:.3g}"))
    return rows


def rows_locust(r: dict, _ctx: dict) -> list[Row]:
    rows = []
    for ph in r["phases"]:
        if ph["mode"] == "flat":
            bm, sc = "HTTP reads, locust flat out", f"{r['households']} households, {ph['users']} users, {r['run_time_s']} s each"
        else:
            bm = "HTTP reads, locust constant rate"
            sc = f"{r['households']} households, {ph['users']} users × {num(r['rate_per_user'])}/s = {num(ph['offered_per_s'])}/s offered"
        base = next((x for x in r["phases"] if x["mode"] == ph["mode"] and x["endpoint"] == "years"), None)
        bare = ph["endpoint"] == "years"
        fail = f", {ph['failures']} failed" if ph.get("failures") else ""
        lat = (ph.get("p50_ms"), ph.get("p95_ms"), ph.get("p99_ms"))
        blat = (base.get("p50_ms"), base.get("p95_ms"), base.get("p99_ms")) if base else (None,) * 3
        what = "bare endpoint GET /years (same load)"
        rows.append((bm, sc, f"{ph['label']}: req/s{fail}", num(ph.get("achieved_per_s")),
                     "—" if bare else f"{what}, req/s", "—" if bare else num(base and base.get("achieved_per_s")),
                     "—" if bare else ratio(ph.get("achieved_per_s"), base and base.get("achieved_per_s"))))
        rows.append((bm, sc, f"{ph['label']}: p50 / p95 / p99 ms", pair(*lat),
                     "—" if bare else f"{what}, p50 / p95 / p99 ms", "—" if bare else pair(*blat),
                     "—" if bare else pair_ratio(lat, blat)))
    return rows


def rows_season(r: dict, _ctx: dict) -> list[Row]:
    bm = "the season (tools.simulate)"
    sc = (f"scale {r['scale']}, {len(r['days'])} days, seed {r['seed']}: {r['households']:,} households, "
          f"{r['persons']:,} persons")
    w = r["wall_s"]
    inv = r.get("invariants") or []
    held = sum(1 for i in inv if i["passed"])
    mem = r.get("peak_rss_mb") or {}
    suite_mem = max((v for k, v in mem.items() if k != "simulator"), default=None)
    paid = (r.get("totals") or {}).get("paid_households")
    return [
        (bm, sc, "wall s: total (import / season / checks)", f"{num(w['total'])} ({pair(w['import'], w['season'], w['checks'])})",
         "—", "—", "—"),
        (bm, sc, "households paid; per season second", f"{num(paid)}; {num(paid / w['season']) if paid and w['season'] else '—'}",
         "—", "—", "—"),
        (bm, sc, "invariants held", f"{held} of {len(inv)}", "—", "—", "—"),
        (bm, sc, "peak RSS MB: largest suite process / simulator", pair(suite_mem, mem.get("simulator")), "—", "—", "—"),
    ]


ROWS = {"broker": rows_broker, "registry_import": rows_registry_import, "relay": rows_relay,
        "notifications": rows_notifications, "notifications_rate": rows_notifications, "scoring": rows_scoring,
        "locust_reads": rows_locust, "season": rows_season}


def cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def section(meta: dict, runs: list[dict]) -> str:
    """The Markdown section for one run of bench.all: `meta` (at, commit, quick, machine, wall_s) and
    each benchmark's record (name, ok, seconds, result: its JSON report, error, tail, args)."""
    m = meta["machine"]
    at = meta["at"]
    lines = [f"## All benchmarks{' (`--quick`)' if meta.get('quick') else ''}: {at:%Y-%m-%d %H:%M} UTC, commit `{meta['commit']}`",
             "",
             f"`{meta.get('command', 'python -m bench.all')}`. Machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), "
             f"{m.get('ram_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}, Python {m.get('python', '?')}, "
             f"RabbitMQ {m.get('rabbitmq') or '?'}, {m.get('store') or 'store ?'}; load average at the start "
             f"{m.get('load_avg', '?')}. Benchmarks one after another, {meta.get('wall_s', 0) / 60:.1f} min in all. "
             "Ratio: value ÷ baseline value (a rate below 1 does less per second than its baseline; a latency "
             "above 1 takes longer).",
             "",
             "| benchmark | scale | figure | value | baseline (what) | baseline value | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    ctx = {"broker": next((r["result"] for r in runs if r["name"] == "broker" and r.get("result")), None)}
    problems = []
    for r in runs:
        res = r.get("result")
        if res is not None:
            try:
                for row in ROWS[r["name"]](res, ctx):
                    lines.append("| " + " | ".join(cell(c) for c in row) + " |")
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
                problems.append(f"- `{r['name']}`: its report could not be tabled ({type(e).__name__}: {e})")
        if not r.get("ok"):
            tail = "; ".join(x.strip() for x in (r.get("tail") or [])[-4:])
            problems.append(f"- **`{r['name']}` failed**: {r.get('error')} (log `{r.get('log')}`){': ' + tail if tail else ''}")
    lines.append("")
    times = ", ".join(f"{r['name']} {num(r.get('seconds'))} s" for r in runs)
    lines.append(f"Run times: {times}.")
    if problems:
        lines += ["", *problems]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny scales (≈ 5 min instead of ≈ 15)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(b.name for b in SCALES))
    ap.add_argument("--results", default=str(RESULTS), help="the Markdown file the section is appended to")
    args = ap.parse_args()
    only = [x for x in args.only.split(",") if x]
    unknown = set(only) - {b.name for b in SCALES}
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    at = datetime.now(timezone.utc)
    run_dir = ROOT / "var" / "bench" / f"all-{at:%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"at": at, "commit": commit(), "quick": args.quick, "machine": machine(),
            "command": "python -m bench.all" + (" --quick" if args.quick else "") + (f" --only {args.only}" if only else "")}
    t0 = time.monotonic()
    runs = []
    try:
        for b in SCALES:
            if not only or b.name in only:
                runs.append(run_one(b, args.quick, run_dir))
    finally:
        meta["wall_s"] = time.monotonic() - t0
        text = section(meta, runs)
        (run_dir / "runs.json").write_text(json.dumps({**meta, "at": at.isoformat(), "runs": runs}, ensure_ascii=False,
                                                      indent=2, default=str), encoding="utf-8")
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
        print(text)
        print(f"[bench] appended to {args.results}; reports and logs in {run_dir.relative_to(ROOT)}")
    return 0 if runs and all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

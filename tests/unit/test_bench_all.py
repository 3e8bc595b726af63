"""bench.all's RESULTS.md section: a table from the benchmarks' JSON reports (no infrastructure)."""
from datetime import datetime, timezone

from bench.all import last_json, section

META = {"at": datetime(2026, 12, 8, 1, 30, tzinfo=timezone.utc), "commit": "abc1234-dirty", "quick": True,
        "wall_s": 420, "machine": {"nproc": 2, "cpu": "AMD EPYC", "ram_gib": 23.5, "kernel": "6.1", "python": "3.11.7",
                                   "rabbitmq": "3.10.8", "store": "FerretDB v1.24.2 on SQLite"}}
BROKER = {"messages": 1000, "size_bytes": 600, "published_per_s": 1255.0, "consumed_per_s": 1255.7,
          "latency_ms_p50": 0.49, "latency_ms_p99": 3.82}
IMPORT = {"persons": 10000, "rounds": 1, "import_persons_per_s": 4757, "baseline_persons_per_s": 14145, "ratio": 0.336,
          "import_peak_rss_mb": 56.3, "import_peak_rss_mb_quarter_file": 55.0, "memory_growth_4x_file": 1.024}


def test_a_section_has_the_heading_the_machine_and_one_row_per_figure_with_its_baseline_and_ratio():
    text = section(META, [{"name": "broker", "ok": True, "seconds": 1.5, "result": BROKER},
                          {"name": "registry_import", "ok": True, "seconds": 7.0, "result": IMPORT},
                          {"name": "relay", "ok": False, "seconds": 3.0, "result": None, "error": "exit status 1",
                           "log": "var/bench/x/relay.log", "tail": ["Traceback", "RuntimeError: broker down"]}])
    lines = text.splitlines()
    assert lines[0] == "## All benchmarks (`--quick`): 2026-12-08 01:30 UTC, commit `abc1234-dirty`"
    assert "2 cores (AMD EPYC)" in text and "RabbitMQ 3.10.8" in text and "FerretDB v1.24.2" in text
    assert "| benchmark | scale | figure | value | baseline (what) | baseline value | ratio |" in lines
    assert ("| roster import | 10,000 persons, 1 round(s) | persons/s | 4,757 | bulk insert of the same households "
            "(raw store writes), persons/s | 14,145 | 0.336 |") in lines
    assert "| raw broker (baseline) | 1,000 messages of 600 B, own queue | publish → consume latency p50 / p99 ms | " \
           "0.49 / 3.82 | — | — | — |" in lines
    assert any(ln.startswith("- **`relay` failed**: exit status 1") and "RuntimeError: broker down" in ln for ln in lines)


def test_the_report_is_the_last_json_object_printed():
    assert last_json('loaded\n{"a": 1}\n{\n  "b": [1, 2]\n}\ngoal: met\n') == {"b": [1, 2]}

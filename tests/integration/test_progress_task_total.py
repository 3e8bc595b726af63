"""The printed task table beside the progress figures, on the real store.

001_93f5b63ac6b4a653.txt 附件1 (东安县2020年度……目标任务分解表): the total line prints 合计 578500 while its sixteen
rows add up to 578501. Progress shows both figures and the rule the policy file chose (before: task_total 578501 and
nothing saying the document disagrees with itself).
"""
import json
import shutil
from datetime import datetime, timezone

from services.scoring.entrypoints.flask_app import create_app
from shared.clock import FixedClock
from shared.config import ROOT

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)


def test_progress_shows_the_printed_total_the_rows_and_the_rule(namespace):
    body = create_app(FixedClock(NOW)).test_client().get("/v1/counties/431122/progress/2020").json
    assert (body["task_total"], body["task_total_printed"], body["task_total_rows"], body["task_rule"]) == (
        578501, 578500, 578501, "rows")
    assert "578500" in body["task_warning"] and "578501" in body["task_warning"]
    assert sum(r["task"] for r in body["rows"]) == body["task_total_rows"]


def test_a_county_that_chose_the_printed_total_is_measured_against_it(namespace, tmp_path, monkeypatch):
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    (tmp_path / "dongan-2020.json").write_text(json.dumps(dict(raw, task_total_rule="printed"), ensure_ascii=False),
                                               encoding="utf-8")
    shutil.copy(ROOT / "policies" / "dongan-2020-villages.csv", tmp_path)
    monkeypatch.setenv("POLICY_FILE", str(tmp_path / "dongan-2020.json"))
    body = create_app(FixedClock(NOW)).test_client().get("/v1/counties/431122/progress/2020").json
    assert (body["task_total"], body["task_total_printed"], body["task_total_rows"], body["task_rule"]) == (
        578500, 578500, 578501, "printed")

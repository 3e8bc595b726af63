"""HTTP API of scoring: progress tables for county portals (public reads, as villages post them)."""
from __future__ import annotations

from flask import Flask
from marshmallow import Schema, fields

from shared.clock import Clock
from shared.errors import NotFound
from shared.logs import setup
from shared.web import county_routes, create_service_app, is_year

from .. import bootstrap as boot
from ..service_layer import handlers


class ProgressRow(Schema):
    rank = fields.Integer()
    township = fields.String()
    task = fields.Integer()
    enrolled_persons = fields.Integer()
    enrolled_households = fields.Integer()
    rate_bp = fields.Integer(metadata={"description": "参保率，万分比（9500 = 95.00%）"})
    rate_percent = fields.String()
    accuracy_bp = fields.Integer(allow_none=True, metadata={"description": "信息录入准确率（万分比），最近一次发布"})
    registered_poor = fields.Dict(allow_none=True, metadata={"description": "建档立卡贫困人口：人数、已参保、参保率（万分比）"})


class ProgressOut(Schema):
    county = fields.String()
    county_code = fields.String(metadata={"description": "县（区）区划代码（GB/T 2260）"})
    year = fields.Integer()
    task_total = fields.Integer(metadata={"description": "县任务合计：按 task_rule 取印刷合计或各乡镇任务之和"})
    task_total_printed = fields.Integer(allow_none=True, metadata={"description": "文件印刷的任务合计；未印出为 null"})
    task_total_rows = fields.Integer(metadata={"description": "各乡镇任务相加"})
    task_rule = fields.String(allow_none=True, metadata={"description": "两者不一致时县定的取数规则：rows | printed"})
    task_warning = fields.String(allow_none=True, metadata={"description": "印刷合计与各行相加不一致时的说明"})
    enrolled_total = fields.Integer()
    rows = fields.List(fields.Nested(ProgressRow))


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    return app


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    repo = boot.repository(c)

    @api.route("/v1/progress/{year}", "GET", summary="各乡镇参保进度（人数/任务）", response=ProgressOut)
    def get_progress(principal, year):
        if not is_year(year):
            raise NotFound("YEAR_UNKNOWN", "没有该年度的参保任务", {"year": year, "years": list(c.policies)})
        policy = c.policy_for(int(year))
        table = handlers.progress(repo, policy, int(year))
        acc = repo.accuracy(int(year), [t.name for t in policy.townships])
        poor = repo.coverage(int(year), [t.name for t in policy.townships], "registered_poor")
        mismatch = next((w for w in policy.warnings if w.code == "TASK_TOTAL_MISMATCH"), None)
        return {"county": policy.county, "county_code": policy.county_code, "year": policy.year,
                "task_total": policy.task_total,
                "task_total_printed": policy.declared_task_total, "task_total_rows": policy.task_rows_total,
                "task_rule": policy.task_total_rule, "task_warning": mismatch.message if mismatch else None,
                "enrolled_total": sum(r.enrolled_persons for _, r in table),
                "rows": [{"rank": rank, "township": r.township, "task": r.task, "enrolled_persons": r.enrolled_persons,
                          "enrolled_households": r.enrolled_households, "rate_bp": r.rate_bp,
                          "rate_percent": f"{r.rate_bp // 100}.{r.rate_bp % 100:02d}%",
                          "accuracy_bp": acc.get(r.township, {}).get("rate_bp"),
                          "registered_poor": ({k: poor[r.township][k] for k in ("hardship_persons", "enrolled_persons",
                                                                                "rate_bp")}
                                              if r.township in poor else None)} for rank, r in table]}

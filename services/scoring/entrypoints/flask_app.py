"""HTTP API of scoring: progress tables for county portals (public reads, as villages post them)."""
from __future__ import annotations

from flask import Flask, request
from marshmallow import Schema, fields

from shared.clock import Clock, iso
from shared.errors import NotFound
from shared.logs import setup
from shared.web import county_routes, create_service_app, is_year, query_instant, query_param

from .. import bootstrap as boot
from . import assessment_api
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
    as_of = fields.String(metadata={"description": "截至时刻（含），东八区 ISO 8601；未指定为当前时刻"})
    rows = fields.List(fields.Nested(ProgressRow))


class VillageRow(Schema):
    rank = fields.Integer(metadata={"description": "按参保人数排名，人数相同名次相同"})
    village = fields.String()
    listed = fields.Boolean(metadata={"description": "是否在县村（社区）名册中；false：仅见于缴费记录，请核对村名"})
    enrolled_persons = fields.Integer()
    enrolled_households = fields.Integer()


class VillageProgressOut(Schema):
    county = fields.String()
    county_code = fields.String(metadata={"description": "县（区）区划代码（GB/T 2260）"})
    year = fields.Integer()
    township = fields.String()
    as_of = fields.String(metadata={"description": "截至时刻（含），东八区 ISO 8601；未指定为当前时刻"})
    enrolled_persons = fields.Integer(metadata={"description": "本乡镇截至该时刻的参保人数"})
    enrolled_households = fields.Integer()
    places_loaded = fields.Boolean(metadata={"description": "本县是否已载入村（社区）名册"})
    villages = fields.List(fields.Nested(VillageRow))


AS_OF = query_param("as_of", format="date-time",
                    description="截至时刻（含），带时区的 ISO 8601，如 2016-11-15T17:00:00+08:00（+ 请写作 %2B）；"
                                "缺省为当前时刻（000 二：在截止时间内）")


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    return app


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    repo = boot.repository(c)
    assessment_api.declare(api, c)

    def year_policy(year: str):
        if not is_year(year):
            raise NotFound("YEAR_UNKNOWN", "没有该年度的参保任务", {"year": year, "years": list(c.policies)})
        return c.policy_for(int(year))

    @api.route("/v1/progress/{year}", "GET", summary="各乡镇参保进度（人数/任务），可指定截至时刻", response=ProgressOut,
               query=[AS_OF])
    def get_progress(principal, year):
        policy = year_policy(year)
        at = query_instant(request.args, "as_of")  # None: everything counted so far (now)
        table = handlers.progress(repo, policy, int(year), at)
        acc = repo.accuracy(int(year), [t.name for t in policy.townships])
        poor = repo.coverage(int(year), [t.name for t in policy.townships], "registered_poor")
        mismatch = next((w for w in policy.warnings if w.code == "TASK_TOTAL_MISMATCH"), None)
        return {"county": policy.county, "county_code": policy.county_code, "year": policy.year,
                "task_total": policy.task_total,
                "task_total_printed": policy.declared_task_total, "task_total_rows": policy.task_rows_total,
                "task_rule": policy.task_total_rule, "task_warning": mismatch.message if mismatch else None,
                "enrolled_total": sum(r.enrolled_persons for _, r in table), "as_of": iso(at or c.clock.now()),
                "rows": [{"rank": rank, "township": r.township, "task": r.task, "enrolled_persons": r.enrolled_persons,
                          "enrolled_households": r.enrolled_households, "rate_bp": r.rate_bp,
                          "rate_percent": f"{r.rate_bp // 100}.{r.rate_bp % 100:02d}%",
                          "accuracy_bp": acc.get(r.township, {}).get("rate_bp"),
                          "registered_poor": ({k: poor[r.township][k] for k in ("hardship_persons", "enrolled_persons",
                                                                                "rate_bp")}
                                              if r.township in poor else None)} for rank, r in table]}

    @api.route("/v1/progress/{year}/townships/{township}/villages", "GET",
               summary="某乡镇各村（社区）参保进度排名，可指定截至时刻", response=VillageProgressOut, query=[AS_OF])
    def get_village_progress(principal, year, township):
        policy = year_policy(year)
        at = query_instant(request.args, "as_of")
        found = boot.read_cache(c).get(("villages", c.county_code, policy.year, township, at),
                                       lambda: handlers.village_progress(repo, policy, int(year), township, at))
        if found is None:
            raise NotFound("TOWNSHIP_UNKNOWN", "乡镇不在本县该年度参保任务表中",
                           {"township": township[:40], "townships": [t.name for t in policy.townships]})
        town, standing, table = found
        return {"county": policy.county, "county_code": policy.county_code, "year": policy.year,
                "township": town.name, "as_of": iso(at or c.clock.now()), "enrolled_persons": standing.persons,
                "enrolled_households": standing.households,
                "places_loaded": any(t.villages for t in policy.townships),
                "villages": [{"rank": rank, "village": r.village, "listed": r.listed,
                              "enrolled_persons": r.enrolled_persons, "enrolled_households": r.enrolled_households}
                             for rank, r in table]}

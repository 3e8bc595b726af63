"""HTTP API of assessments (考核): evaluations and their versions, and the figures county staff load.

Reads need `scores:read` (county and township staff; a county portal gets a system token granted
it), writes `scores:manage` (county staff) or `funds:credit` (the county's fund-account records).
"""
from __future__ import annotations

from flask import request
from marshmallow import Schema, fields, validate

from shared.clock import iso
from shared.errors import NotFound, ValidationFailed
from shared.logs import correlation_id
from shared.web import XLSX, path_year, query_instant, query_param, table_file

from .. import bootstrap as boot
from ..service_layer import assessments as svc
from ..service_layer import rankings as rk


class AwardOut(Schema):
    award, name = fields.String(), fields.String()
    to, to_names = fields.List(fields.String()), fields.List(fields.String())
    status = fields.String(metadata={"description": "given（给予）| exempted（免除）| pending（待县里决定或待补数据）"})
    rule, reason = fields.String(), fields.String()
    missing, villages = fields.List(fields.String()), fields.List(fields.String())


class EvaluationRow(Schema):
    township = fields.String()
    rank = fields.Integer(allow_none=True, metadata={"description": "并列同名次，下一名次顺延；缺数据不排名"})
    task, counted = fields.Integer(allow_none=True), fields.Integer(allow_none=True)
    rate_bp = fields.Integer(allow_none=True)
    rate_percent = fields.String(allow_none=True)
    reached = fields.Boolean(allow_none=True)
    score = fields.String(allow_none=True, metadata={"description": "得分（两位小数，四舍五入显示）"})
    score_exact = fields.String(allow_none=True, metadata={"description": "得分的精确分数形式"})
    items = fields.List(fields.Dict(), metadata={"description": "各考核项：规则原文、数据、基数、差额、得分"})
    fund_fen = fields.Integer(allow_none=True)
    funds = fields.List(fields.Dict())
    awards = fields.List(fields.Nested(AwardOut))
    missing = fields.List(fields.String())


class EvaluationOut(Schema):
    year, county, kind, no, name = fields.Integer(), fields.String(), fields.String(), fields.Integer(), fields.String()
    county_name = fields.String()
    version = fields.Integer()
    corrects = fields.Integer(allow_none=True, metadata={"description": "更正的版本号；首次发布为 null"})
    as_of = fields.String(metadata={"description": "计数截止时刻"})
    evaluated_at, evaluated_by, trigger = fields.String(), fields.String(), fields.String()
    reason = fields.String(allow_none=True)
    source, counts, counts_rule = fields.String(), fields.String(), fields.String()
    reading, reading_rule = fields.String(allow_none=True), fields.String(allow_none=True)
    complete = fields.Boolean(metadata={"description": "false：有数据缺失或待县里决定的事项（见 missing 与各行）"})
    missing = fields.List(fields.String())
    notes = fields.List(fields.String(), metadata={"description": "方案的说明：文件未载明、本系统未计的事项"})
    fund_total_fen = fields.Integer(allow_none=True)
    rows = fields.List(fields.Nested(EvaluationRow))


class EvaluateIn(Schema):
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class VersionOut(Schema):
    version = fields.Integer()
    evaluated_at, evaluated_by, trigger = fields.String(), fields.String(), fields.String()
    reason = fields.String(allow_none=True)
    complete = fields.Boolean()


class VersionList(Schema):
    versions = fields.List(fields.Nested(VersionOut))


class PriorRow(Schema):
    township = fields.String(required=True)
    persons = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class PriorIn(Schema):
    counted_year = fields.Integer(required=True, strict=True, validate=validate.Range(min=2000, max=2100))
    source = fields.String(required=True, validate=validate.Length(min=1, max=300))
    rows = fields.List(fields.Nested(PriorRow), required=True, validate=validate.Length(min=1, max=500))


class PriorOut(Schema):
    year, counted_year = fields.Integer(), fields.Integer()
    source, loaded_by, loaded_at = fields.String(), fields.String(), fields.String()
    rows = fields.List(fields.Nested(PriorRow))


class Deduction(Schema):
    points = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=300))


class EntryIn(Schema):
    incidents = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100),
                               metadata={"description": "网络舆情例数（2.4项每例扣2分）"})
    deductions = fields.List(fields.Nested(Deduction), load_default=list)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class EntryOut(Schema):
    year = fields.Integer()
    township, by, at, reason = fields.String(), fields.String(), fields.String(), fields.String()
    incidents = fields.Integer()
    deductions = fields.List(fields.Nested(Deduction))


class CreditIn(Schema):
    year = fields.Integer(required=True, strict=True)
    township = fields.String(required=True, validate=validate.Length(min=1, max=100))
    ref = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"),
                        metadata={"description": "银行流水号：同一笔只记一次"})
    amount_fen = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    credited_at = fields.AwareDateTime(required=True, metadata={"description": "到账时刻（带时区）"})


class CreditOut(Schema):
    year, amount_fen = fields.Integer(), fields.Integer()
    township, ref, credited_at = fields.String(), fields.String(), fields.String()
    duplicate = fields.Boolean(metadata={"description": "true：该流水号已登记过，未重复计入"})


class ForecastOut(Schema):
    status = fields.String(metadata={"description": "reached | on_track | behind | insufficient_data（数据不足，不作预测）| no_target"})
    pace_per_day = fields.Float(allow_none=True, metadata={"description": "近7天日均新增参保人数"})
    projected_persons, projected_rate_bp = fields.Integer(allow_none=True), fields.Integer(allow_none=True)
    projected_completion = fields.String(allow_none=True, metadata={"description": "按此进度完成全部任务的日期"})
    needed_per_day = fields.Integer(allow_none=True, metadata={"description": "为按期达到目标，自现在起每天须新增的人数"})
    target_persons = fields.Integer(allow_none=True)


class RankingRow(Schema):
    township = fields.String()
    rank = fields.Integer(allow_none=True)
    task = fields.Integer(allow_none=True)
    counted = fields.Integer(allow_none=True, metadata={"description": "考核所计人数（按方案 counts：参保人数或汇划金额折算人数）"})
    enrolled_persons, enrolled_households = fields.Integer(), fields.Integer()
    rate_bp = fields.Integer(allow_none=True, metadata={"description": "counted ÷ task（万分比）"})
    rate_percent = fields.String(allow_none=True)
    band = fields.String(metadata={"description": "reached（已达标）| on_track（按期可达）| behind（进度落后）| no_data | no_target"})
    band_name = fields.String()
    rank_week_before = fields.Integer(allow_none=True)
    rank_change_week = fields.Integer(allow_none=True, metadata={"description": "较7天前上升的名次（负数为下降）"})
    rank_last_stage = fields.Integer(allow_none=True)
    rank_change_stage = fields.Integer(allow_none=True, metadata={"description": "较上一阶段考核上升的名次"})
    forecast = fields.Nested(ForecastOut)


class TargetOut(Schema):
    kind, name, deadline = fields.String(), fields.String(), fields.String()
    no = fields.Integer(allow_none=True)
    share_percent = fields.Integer()


class AverageOut(Schema):
    counted, task = fields.Integer(), fields.Integer()
    rate_bp = fields.Integer(allow_none=True, metadata={"description": "全县合计参保人数 ÷ 任务合计"})
    mean_rate_bp = fields.Integer(allow_none=True, metadata={"description": "各乡镇参保率的平均"})


class RankingOut(Schema):
    year = fields.Integer()
    county, county_name, as_of, method = fields.String(), fields.String(), fields.String(), fields.String()
    counts = fields.String(metadata={"description": "enrolled_persons | remitted_persons"})
    target = fields.Nested(TargetOut, allow_none=True)
    last_stage, last_stage_version = fields.Integer(allow_none=True), fields.Integer(allow_none=True)
    average = fields.Nested(AverageOut)
    top, bottom = fields.List(fields.String()), fields.List(fields.String())
    rows = fields.List(fields.Nested(RankingRow))


class HistoryOut(Schema):
    kind, name, as_of = fields.String(), fields.String(), fields.String()
    no, version = fields.Integer(), fields.Integer()
    rank, rate_bp, fund_fen = fields.Integer(allow_none=True), fields.Integer(allow_none=True), fields.Integer(allow_none=True)
    score = fields.String(allow_none=True)
    awards = fields.List(fields.Nested(AwardOut))


class ScorecardOut(Schema):
    year = fields.Integer()
    county, township, as_of = fields.String(), fields.String(), fields.String()
    target = fields.Nested(TargetOut, allow_none=True)
    current = fields.Nested(RankingRow)
    history = fields.List(fields.Nested(HistoryOut))
    awards_total = fields.Dict(keys=fields.String(), values=fields.Integer(),
                               metadata={"description": "各类结果累计次数（如黄牌）"})


AS_OF = query_param("as_of", format="date-time", description="截至时刻（含），带时区；未指定为当前（至今已计入的全部）")
KIND_PARAM = ("stage", "points", "funds")


def declare(api, c) -> None:
    """The assessment routes of one county (its container `c`)."""
    repo, store = boot.repository(c), boot.assessments(c)
    cache = boot.read_cache(c)  # portal reads: at most SCORES_CACHE_S old (shared/read_cache.py)

    def published(year: str, kind: str, no: str) -> dict:
        """The version asked for (?version=) or the newest; 404 until one is published."""
        kind, n = kind_no(kind, no)
        y = c.policy_for(path_year(year)).year
        v = request.args.get("version")
        doc = store.version(y, kind, n, int(v)) if v else store.latest(y, kind, n)
        if doc is None:
            raise NotFound("EVALUATION_NOT_PUBLISHED", "该项考核结果尚未发布", {"kind": kind, "no": n, "version": v})
        return doc

    def kind_no(kind: str, no: str) -> tuple[str, int]:
        if kind not in KIND_PARAM or not (no.isascii() and no.isdigit()) or not 1 <= int(no) <= 20:
            raise NotFound("EVALUATION_UNKNOWN", "考核方案中没有该项考核", {"kind": kind[:20], "no": no[:20]})
        return kind, int(no)

    @api.route("/v1/evaluations/{year}/{kind}/{no}", "POST", summary="发布考核结果（首次或更正为新版本，更正须写明理由）",
               permission="scores:manage", body=EvaluateIn, response=EvaluationOut, status=201, also=(200,))
    def publish_evaluation(principal, data, year, kind, no):
        kind, n = kind_no(kind, no)
        doc, wrote = svc.publish(repo, store, c.policy_for(path_year(year)), kind, n, c.clock.now(), principal.subject,
                                 data["reason"], "staff", correlation_id.get())
        return doc, 201 if wrote else 200

    @api.route("/v1/evaluations/{year}/{kind}/{no}", "GET", summary="考核结果（最新版本，或 ?version= 指定版本）",
               permission="scores:read", response=EvaluationOut, query=[query_param("version", "integer", minimum=1)])
    def get_evaluation(principal, year, kind, no):
        return {k: val for k, val in published(year, kind, no).items() if k != "_id"}

    @api.route("/v1/evaluations/{year}/{kind}/{no}/versions", "GET", summary="考核结果的各版本（更正记录）",
               permission="scores:read", response=VersionList)
    def list_versions(principal, year, kind, no):
        kind, n = kind_no(kind, no)
        y = c.policy_for(path_year(year)).year
        latest = store.latest(y, kind, n)
        docs = [store.version(y, kind, n, v) for v in range(1, (latest or {}).get("version", 0) + 1)]
        return {"versions": [{k: d.get(k) for k in ("version", "evaluated_at", "evaluated_by", "trigger", "reason",
                                                     "complete")} for d in docs if d]}

    def ranking_table(policy, asked, top=3, bottom=3):
        """The county's ranking at `asked` (None: now), from the read cache; scorecards share it."""
        return cache.get(("rankings", c.county_code, policy.year, asked, top, bottom), lambda: rk.rankings(
            repo, store, policy, asked or c.clock.now(), top, bottom, exact=asked is not None))

    @api.route("/v1/rankings/{year}", "GET", summary="各乡镇排名（并列同名次）、名次变化、达标色带、预测与前后N名",
               permission="scores:read", response=RankingOut, etag=True,
               query=[AS_OF, query_param("top", "integer", minimum=0, maximum=50),
                      query_param("bottom", "integer", minimum=0, maximum=50)])
    def get_rankings(principal, year):
        asked = query_instant(request.args, "as_of")
        policy = c.policy_for(path_year(year))
        return ranking_table(policy, asked, int(request.args.get("top", 3)), int(request.args.get("bottom", 3)))

    FORMAT = query_param("format", enum=["csv", "xlsx"], description="csv（默认）或 xlsx")

    @api.route("/v1/rankings/{year}/export", "GET", summary="导出各乡镇排名表（CSV 或 XLSX）", permission="scores:read",
               query=[AS_OF, FORMAT], produces=("text/csv", XLSX))
    def export_rankings(principal, year):
        asked = query_instant(request.args, "as_of")
        at = asked or c.clock.now()
        policy = c.policy_for(path_year(year))
        t = rk.rankings(repo, store, policy, at, exact=asked is not None)
        head = ["名次", "乡（镇、街道）", "任务数", "考核计数人数", "参保率", "达标情况", "较上周名次变化", "较上阶段名次变化",
                "预测截止时参保率", "每天须新增人数"]
        rows = [[r["rank"], r["township"], r["task"], r["counted"], r["rate_percent"], r["band_name"],
                 r["rank_change_week"], r["rank_change_stage"],
                 None if r["forecast"]["projected_rate_bp"] is None else f"{r['forecast']['projected_rate_bp'] / 100:.2f}%",
                 r["forecast"]["needed_per_day"]] for r in t["rows"]]
        rows.append(["", "全县合计", t["average"]["task"], t["average"]["counted"],
                     None if t["average"]["rate_bp"] is None else f"{t['average']['rate_bp'] / 100:.2f}%",
                     "", "", "", "", ""])
        return table_file(head, rows, f"{policy.county}{policy.year}年度乡镇排名（截至{iso(at)[:16].replace('T', ' ')}）",
                          request.args.get("format", "csv"))

    @api.route("/v1/evaluations/{year}/{kind}/{no}/export", "GET", summary="导出考核结果表（CSV 或 XLSX）",
               permission="scores:read", query=[query_param("version", "integer", minimum=1), FORMAT],
               produces=("text/csv", XLSX))
    def export_evaluation(principal, year, kind, no):
        doc = published(year, kind, no)
        head = ["名次", "乡（镇、街道）", "任务数", "考核计数人数", "参保率", "得分", "工作经费（元）", "考核结果", "待补数据"]
        rows = [[r["rank"], r["township"], r["task"], r["counted"], r["rate_percent"], r["score"],
                 None if r["fund_fen"] is None else f"{r['fund_fen'] / 100:.2f}",
                 "；".join(f"{a['name']}（{'、'.join(a['to_names'])}）{'' if a['status'] == 'given' else '·' + a['status']}"
                          for a in r["awards"]),
                 "；".join(r["missing"])] for r in doc["rows"]]
        return table_file(head, rows, f"{doc['county_name']}{doc['year']}年度{doc['name']}考核结果（第{doc['version']}版）",
                          request.args.get("format", "csv"))

    @api.route("/v1/scorecards/{year}/{township}", "GET", summary="乡镇考核档案：当前进度与预测、各阶段结果与累计（黄牌等）",
               permission="scores:read", response=ScorecardOut, etag=True, query=[AS_OF])
    def get_scorecard(principal, year, township):
        asked = query_instant(request.args, "as_of")
        policy = c.policy_for(path_year(year))
        return cache.get(("scorecard", c.county_code, policy.year, township, asked), lambda: rk.scorecard(
            repo, store, policy, township, asked or c.clock.now(), exact=asked is not None,
            table=ranking_table(policy, asked)))

    @api.route("/v1/prior-year/{year}", "PUT", summary="导入上年参合（参保）绝对数（各乡镇），记录导入人",
               permission="scores:manage", body=PriorIn, response=PriorOut)
    def put_prior(principal, data, year):
        policy = c.policy_for(path_year(year))
        known = {t.name for t in policy.townships}
        unknown = sorted({r["township"] for r in data["rows"]} - known)
        if unknown:
            raise ValidationFailed("TOWNSHIP_UNKNOWN", "任务表中没有这些乡（镇、街道）", {"townships": unknown[:20]})
        doc = {"year": policy.year, "counted_year": data["counted_year"], "source": data["source"],
               "rows": [{"township": r["township"], "persons": r["persons"]} for r in data["rows"]],
               "loaded_by": principal.subject,
               "loaded_at": iso(c.clock.now())}
        store.save_prior_year(policy.year, doc)
        return render_prior(doc)

    @api.route("/v1/prior-year/{year}", "GET", summary="上年参合（参保）绝对数及导入人", permission="scores:read",
               response=PriorOut)
    def get_prior(principal, year):
        policy = c.policy_for(path_year(year))
        doc = store.prior_year(policy.year)
        if doc is None:
            raise NotFound("PRIOR_YEAR_NOT_LOADED", "上年参合（参保）绝对数尚未导入", {"year": policy.year})
        return render_prior(doc)

    @api.route("/v1/assessment-entries/{year}/{township}", "PUT", summary="录入由县经办机构评定的考核项（如2.4项网络舆情扣分），记录录入人与理由",
               permission="scores:manage", body=EntryIn, response=EntryOut)
    def put_entry(principal, data, year, township):
        policy = c.policy_for(path_year(year))
        if policy.township(township) is None:
            raise NotFound("TOWNSHIP_UNKNOWN", "任务表中没有该乡（镇、街道）", {"township": township[:100]})
        doc = {"year": policy.year, "township": township, "incidents": data["incidents"],
               "deductions": data["deductions"], "reason": data["reason"], "by": principal.subject,
               "at": iso(c.clock.now())}
        store.save_entry(policy.year, township, doc)
        return doc

    @api.route("/v1/fund-credits", "POST", summary="登记乡镇汇划县基金专户的到账款项（按流水号只记一次）",
               permission="funds:credit", body=CreditIn, response=CreditOut, status=201, also=(200,))
    def add_credit(principal, data):
        policy = c.policy_for(data["year"])
        if policy.township(data["township"]) is None:
            raise ValidationFailed("TOWNSHIP_UNKNOWN", "任务表中没有该乡（镇、街道）", {"township": data["township"]})
        fresh = store.add_credit(policy.year, data["township"], data["ref"], data["amount_fen"], data["credited_at"],
                                 principal.subject, c.clock.now())
        stored = store.credit(policy.year, data["ref"])
        out = {"year": policy.year, "township": stored["township"], "ref": data["ref"],
               "amount_fen": stored["amount_fen"], "credited_at": iso(stored["credited_at"]), "duplicate": not fresh}
        return out, 201 if fresh else 200


def render_prior(doc: dict) -> dict:
    return {"year": doc["year"], "counted_year": doc["counted_year"], "source": doc["source"],
            "loaded_by": doc["loaded_by"], "loaded_at": doc["loaded_at"],
            "rows": doc["rows"]}

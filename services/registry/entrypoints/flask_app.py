"""HTTP API of the registry (thin: parse, call a use case, render)."""
from __future__ import annotations

import io
import uuid

from flask import Flask, Response, request

from shared.clock import Clock, iso
from shared.consistency import mid_year_token
from shared.errors import NotFound, ValidationFailed
from shared.logs import correlation_id, setup
from shared.masking import mask_id, mask_phone
from shared.policy import PHASE_NAMES, phase_at, refuse_if_closed
from shared.resident_id import parse_resident_id
from shared.web import county_routes, create_service_app, path_year, query_flag, query_param

from .. import bootstrap as boot
from ..adapters.roster_files import write_csv, write_xlsx
from ..domain.model import Household
from ..service_layer import handlers
from .schemas import (ChangeIn, CorrectionIn, CorrectionList, CorrectionOut, DecisionIn, DuplicateList, DuplicateOut,
                      ExclusionIn, ExclusionOut, HouseholdIn, HouseholdOut, ImportOut, MergeIn, MidYearIn, MidYearOut,
                      MidYearWithdrawalIn, MidYearWithdrawalOut, PersonLookupIn, ProblemsOut, ResolutionIn, SplitIn,
                      SplitOut, AccuracyOut, YearsOut)

CORRECTION_STATUSES = ["open", "approved", "rejected"]


def render(hh: Household, full_ids: bool = False, duplicates: dict | None = None) -> dict:
    """`duplicates`: person_id → open case (多地重复参保); such members carry `duplicate` with every
    household registering them, until county staff decide."""
    out = {"household_no": hh.household_no, "year": hh.year, "county": hh.county, "township": hh.township,
           "village": hh.village, "head_name": hh.head.name, "head_phone": mask_phone(hh.head_phone),
           "status": hh.enrolment.get("status", "registered"),
           "members": [{"id_number": m.person_id if full_ids else mask_id(m.person_id), "name": m.name,
                        "relation": m.relation, "category": m.category, "status": m.status} for m in hh.members]}
    for m, row in zip(hh.members, out["members"]):
        case = (duplicates or {}).get(m.person_id)
        if case is not None:
            row["duplicate"] = {"status": "open", "households": handlers.duplicate_places(case)}
        start = hh.benefits_from(m.person_id)
        if start is not None:
            row["benefits_from"] = start
    return out


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    return app


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    repo = boot.repository(c)
    duplicates = boot.duplicates(c)

    @api.route("/v1/households", "POST", summary="登记一户（户主及家庭成员）", permission="households:write", body=HouseholdIn,
               response=HouseholdOut, status=201)
    def register_household(principal, data):
        hh = handlers.register_household(repo, c.policy_for(data["year"]), data, principal, correlation_id.get(), duplicates, c.clock)
        out = render(hh, duplicates=duplicates.open_cases(hh.year, [m.person_id for m in hh.members]))
        out["excluded"] = [{"id_number": mask_id(x["id_number"]), "name": x["name"], "code": "EMPLOYEE_INSURED",
                            "message": "已参加城镇职工医保，不纳入城乡居民医保"} for x in hh.excluded]
        return out

    @api.route("/v1/households/{year}/{household_no}", "GET", summary="查询一户", permission="households:read",
               response=HouseholdOut)
    def get_household(principal, year, household_no):
        hh = handlers.get_household(repo, path_year(year), household_no, principal)
        return render(hh, duplicates=duplicates.open_cases(hh.year, [m.person_id for m in hh.members]))

    imports = boot.imports(c)
    corrections = boot.corrections(c)

    year_of = path_year

    @api.route("/v1/households/{year}/{household_no}/changes", "POST", summary="办理异动（出生、死亡、迁入、迁出）",
               permission="households:write", body=ChangeIn, response=HouseholdOut)
    def change(principal, data, year, household_no):
        hh = handlers.change_household(repo, year_of(year), household_no, data, principal, correlation_id.get(),
                                       duplicates, c.clock)
        return render(hh, duplicates=duplicates.open_cases(hh.year, [m.person_id for m in hh.members]))

    mid_year_decisions = boot.mid_year(c)

    api.moved("/v1/mid-year/approvals/{year}/{id_number}/withdrawal", "POST", "POST /v1/mid-year/approvals/{year}/withdrawal",
              summary="（已停用）撤销中途参保批准")

    @api.route("/v1/mid-year/approvals/{year}/withdrawal", "POST", summary="撤销中途参保批准（缴费前；身份证号码在请求体）",
               permission="mid_year:decide", body=MidYearWithdrawalIn, response=MidYearWithdrawalOut)
    def withdraw_mid_year(principal, data, year):
        doc = handlers.withdraw_mid_year(repo, mid_year_decisions, c.clock, year_of(year), data["id_number"],
                                         data["reason"], principal, correlation_id.get())
        return {"id_number": mask_id(doc["person_id"]), "household_no": doc["household_no"], "year": doc["year"],
                "status": doc["status"], "reason": doc["withdrawal"]["reason"]}

    @api.route("/v1/mid-year/decisions", "POST", summary="中途参保资格判定（附理由）；指明已登记人员时记录批准结果",
               permission="mid_year:decide", body=MidYearIn, response=MidYearOut, also=(201,))
    def mid_year(principal, data):
        d, record, created = handlers.decide_mid_year(repo, mid_year_decisions, c.policy_for(data.get("year") or c.policy.year), c.clock, data, principal,
                                                      correlation_id.get())
        out = {"allowed": d.allowed, "code": d.code, "reason": d.reason, "pays": d.pays,
               "benefits_from": d.benefits_from.isoformat() if d.benefits_from else None,
               "benefits_rule": d.benefits_rule, "rule": d.rule, "recorded": record is not None}
        if record is not None:
            out.update(id_number=mask_id(record["person_id"]), household_no=record["household_no"],
                       year=record["year"])
            # read-your-writes: a quote naming this waits until payments has seen this approval
            stored = mid_year_decisions.get(record["year"], record["person_id"]) or record
            out["consistency_token"] = mid_year_token(record["year"], record["household_no"], record["person_id"],
                                                      stored.get("version") or 1)
        return out, 201 if created else 200

    def render_accuracy(rows) -> dict:
        return {"county": c.policy.county, "rows": [
            {"township": r.township, "registered_persons": r.registered_persons,
             "persons_with_open_problems": r.persons_with_open_problems, "rate_bp": r.rate_bp,
             "rate_percent": f"{r.rate_bp // 100}.{r.rate_bp % 100:02d}%"} for r in rows]}

    @api.route("/v1/accuracy/{year}", "GET", summary="各乡镇信息录入准确率（定义见 docs/accuracy.md）",
               permission="households:read", response=AccuracyOut)
    def get_accuracy(principal, year):
        return render_accuracy(handlers.accuracy(repo, corrections, duplicates, c.policy_for(year_of(year)), year_of(year)))

    @api.route("/v1/accuracy/{year}/publish", "POST", summary="发布信息录入准确率（供考核 2.2 项；同一时刻重复发布只记一次）",
               permission="accuracy:publish", response=AccuracyOut, status=201)
    def publish_accuracy(principal, year):
        rows = handlers.publish_accuracy(c.outbox, repo, corrections, duplicates, c.policy_for(year_of(year)), year_of(year), c.clock.now())
        return render_accuracy(rows)

    api.moved("/v1/persons/{id_number}", "GET", "POST /v1/persons/lookup", summary="（已停用）按身份证号码查询所在户")

    @api.route("/v1/persons/lookup", "POST", summary="按身份证号码查询所在户（号码在请求体，不进网址和访问日志）",
               permission="households:read", body=PersonLookupIn, response=HouseholdOut)
    def find_person(principal, data):
        number = parse_resident_id(data["id_number"], field="id_number").number
        year = data["year"] or c.policy.year
        key = repo.household_of(year, number)
        if key is None:
            raise NotFound("PERSON_NOT_FOUND", "未找到该人员的登记信息", {"id_number": mask_id(number)})
        return render(handlers.get_household(repo, year, key.split(":", 1)[1], principal))

    def render_case(d: dict) -> dict:
        return {"year": d["year"], "id_number": mask_id(d["person_id"]), "status": d["status"], "kept": d["kept"],
                "others": d.get("others", []), "refused": d.get("refused", []), "resolution": {k: (iso(v) if hasattr(v, "isoformat") else v)
                                                                for k, v in (d.get("resolution") or {}).items()}}

    @api.route("/v1/duplicates", "GET", summary="多地重复参保记录（县医保局处理）", permission="duplicates:manage",
               response=DuplicateList, query=[query_param("status", enum=["open", "resolved"])])
    def list_duplicates(principal):
        return {"duplicates": [render_case(d) for d in duplicates.listing(request.args.get("status"))]}

    api.moved("/v1/duplicates/{year}/{id_number}/resolution", "POST", "POST /v1/duplicates/{year}/resolution",
              summary="（已停用）处理重复参保")

    @api.route("/v1/duplicates/{year}/resolution", "POST", summary="处理重复参保（保留在现户或另一登记户，其余户移出该人员；号码在请求体）",
               permission="duplicates:manage", body=ResolutionIn, response=DuplicateOut)
    def resolve_duplicate(principal, data, year):
        return render_case(handlers.resolve_duplicate(repo, duplicates, year_of(year), data["id_number"].strip().upper(),
                                                      data["keep"], data["note"], principal, c.clock.now(),
                                                      correlation_id.get(), data.get("household_no")))

    @api.route("/v1/exclusions", "POST", summary="导入已参加城镇职工医保人员名单（不纳入居民医保）",
               permission="duplicates:manage",
               body=ExclusionIn, response=ExclusionOut)
    def add_exclusions(principal, data):
        ids = [parse_resident_id(x, field=f"id_numbers[{i}]").number for i, x in enumerate(data["id_numbers"])]
        added = duplicates.exclude(data["year"], ids, data["source"], c.clock.now())
        return {"received": len(ids), "added": added}

    @api.route("/v1/households/{year}/{household_no}/split", "POST", summary="分户（缴费登记前）", permission="households:write",
               body=SplitIn, response=SplitOut, status=201)
    def split(principal, data, year, household_no):
        source, new = handlers.split_household(repo, year_of(year), household_no, data, principal, correlation_id.get(),
                                               duplicates)
        return {"source": render(source, duplicates=duplicates.open_cases(source.year, [m.person_id for m in source.members])),
                "new": render(new, duplicates=duplicates.open_cases(new.year, [m.person_id for m in new.members]))}

    @api.route("/v1/households/{year}/{household_no}/merge", "POST", summary="合户（缴费登记前）", permission="households:write",
               body=MergeIn, response=HouseholdOut)
    def merge(principal, data, year, household_no):
        hh = handlers.merge_households(repo, year_of(year), household_no, data, principal, correlation_id.get(), duplicates)
        return render(hh, duplicates=duplicates.open_cases(hh.year, [m.person_id for m in hh.members]))

    def due_estimated(filed_at, due_at) -> bool:
        """The 3 working days run through a year with no official holiday schedule loaded, or were counted
        before it was loaded (the stored due date is not the one the official schedule gives)."""
        from shared.clock import SHANGHAI
        from shared.workdays import estimated_between

        from ..domain.corrections import due
        return (estimated_between(filed_at.astimezone(SHANGHAI).date(), due_at.astimezone(SHANGHAI).date())
                or due(filed_at) != due_at)

    def render_correction(x) -> dict:
        return {"correction_id": x.correction_id, "household_no": x.household_no, "year": x.year,
                "township": x.township, "village": x.village, "id_number": mask_id(x.person_id),
                "changes": {k: (mask_id(v) if k == "id_number" else mask_phone(v) if k == "head_phone" else v)
                            for k, v in x.changes.items()},
                "reason": x.reason, "status": x.status, "filed_at": iso(x.filed_at),
                "due_at": iso(x.due_at), "overdue": x.is_overdue(c.clock.now()),
                "due_estimated": due_estimated(x.filed_at, x.due_at)}

    @api.route("/v1/corrections", "POST", summary="提交信息更正申请（乡镇报县医保局，3个工作日内办结）",
               permission="corrections:file",
               body=CorrectionIn, response=CorrectionOut, status=201)
    def file_correction(principal, data):
        return render_correction(handlers.file_correction(repo, corrections, c.clock, data, principal))

    @api.route("/v1/corrections", "GET", summary="更正申请列表（可筛选未办结、已逾期）",
               permission="corrections:file", response=CorrectionList,
               query=[query_param("status", enum=CORRECTION_STATUSES), query_param("overdue", "boolean")])
    def list_corrections(principal):
        items = corrections.listing(request.args.get("status"), principal.township if principal.role == "township" else None)
        if query_flag(request.args, "overdue"):
            items = [x for x in items if x.is_overdue(c.clock.now())]
        return {"corrections": [render_correction(x) for x in items]}

    @api.route("/v1/corrections/{correction_id}/decision", "POST", summary="县医保局审批更正申请", permission="corrections:decide",
               body=DecisionIn, response=CorrectionOut)
    def decide(principal, data, correction_id):
        return render_correction(handlers.decide_correction(repo, corrections, c.clock, correction_id, data["approve"],
                                                            data["note"], principal, correlation_id.get()))

    def render_import(doc: dict) -> dict:
        return {"import_id": doc["_id"], "status": doc["status"], "file_name": doc["file_name"], "year": doc["year"],
                "fraction": doc.get("fraction", 0.0), "counts": doc.get("counts", {}), "error": doc.get("error"),
                "problems_url": f"/v1/imports/{doc['_id']}/problems?page=0"}

    @api.route("/v1/imports", "POST", summary="上传花名册（CSV/XLSX），后台导入",
               permission="households:write", response=ImportOut, status=202,
               query=[query_param("year", "integer"), query_param("kind", maxLength=10, description="csv | xlsx (ROSTER_FORMAT otherwise)"),
                      query_param("name", maxLength=200, description="文件名（请求体为文件本身时）")],
               raw_body={"multipart/form-data": "字段 file：花名册文件（docs/roster.md）",
                         "text/csv": "花名册 CSV 本身（UTF-8）",
                         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "花名册 XLSX 本身"})
    def upload_import(principal):
        upload = request.files.get("file")
        name = upload.filename if upload else request.args.get("name", "roster")
        kind = (request.args.get("kind") or name.rsplit(".", 1)[-1]).lower()
        if kind not in ("csv", "xlsx"):
            raise ValidationFailed("ROSTER_FORMAT", "花名册文件格式应为 CSV 或 XLSX", {"kind": kind})
        year = request.args.get("year", str(c.policy.year))
        refuse_if_closed(c.policy_for(path_year(year)), c.clock.now())
        stream = upload.stream if upload else request.stream
        who = {"subject": principal.subject, "role": principal.role, "county": principal.county,
               "township": principal.township}
        doc = imports.create("I" + uuid.uuid4().hex[:16], stream, kind=kind, file_name=name, year=int(year),
                             principal=who, at=c.clock.now())
        if doc["size"] == 0:
            raise ValidationFailed("ROSTER_EMPTY", "花名册为空")
        return render_import(doc)

    def own_import(principal, import_id):
        doc = imports.get(import_id)
        if doc is None:
            raise NotFound("IMPORT_NOT_FOUND", "导入任务不存在", {"import_id": import_id})
        if principal.role == "township" and (doc.get("principal") or {}).get("township") != principal.township:
            raise NotFound("IMPORT_NOT_FOUND", "导入任务不存在", {"import_id": import_id})
        return doc

    @api.route("/v1/imports/{import_id}", "GET", summary="导入进度与结果", permission="households:write",
               response=ImportOut)
    def get_import(principal, import_id):
        return render_import(own_import(principal, import_id))

    @api.route("/v1/imports/{import_id}/problems", "GET", summary="导入问题行（分页，每页500条）",
               permission="households:write", response=ProblemsOut,
               query=[query_param("page", "integer", minimum=0, maximum=1_000_000)])
    def import_problems(principal, import_id):
        own_import(principal, import_id)
        page = request.args.get("page", "0")
        if not (page.isascii() and page.isdigit()):
            raise ValidationFailed("BAD_PAGE", "页码必须是非负整数", {"page": page})
        problems = imports.problems(import_id, int(page)) or []
        return {"import_id": import_id, "page": int(page), "problems": problems}

    @api.route("/v1/exports/{year}/{township}/{village}", "GET", summary="按村（社区）导出参保缴费名册（CSV 或 XLSX）",
               permission="households:read", query=[query_param("format", enum=["csv", "xlsx"])],
               produces=("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))
    def export_village(principal, year, township, village):
        principal.check_township(township)
        path_year(year)
        fmt = request.args.get("format", "csv")
        rows = handlers.village_roster(repo, int(year), township, village)
        filename = f"{year}-{township}-{village}-参保缴费名册.{fmt}"
        from urllib.parse import quote
        disposition = f"attachment; filename*=UTF-8''{quote(filename)}"
        if fmt == "xlsx":
            buf = io.BytesIO()
            write_xlsx(rows, buf, f"{township}{village}")
            return Response(buf.getvalue(), headers={"Content-Disposition": disposition},
                            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        out = io.StringIO()
        out.write("\ufeff")  # Excel opens UTF-8 CSV correctly with a BOM
        write_csv(rows, out)
        return Response(out.getvalue(), headers={"Content-Disposition": disposition}, mimetype="text/csv")

    # ---- after a household's payment (issue 9 item 3): whom the township still enrols, what staff review
    from .schemas import AwaitingMidYearList, ReviewList

    def _townships(y: int) -> list[str]:
        return [t.name for t in c.policy_for(y).townships]

    @api.route("/v1/mid-year/awaiting/{year}", "GET", summary="户已缴费后新增、待办理中途参保和补缴的人员（如新生儿）",
               permission="households:read", response=AwaitingMidYearList)
    def awaiting_mid_year(principal, year):
        y = year_of(year)
        return {"year": y, "members": [
            {**{k: r[k] for k in ("household_no", "township", "village", "order_no", "name", "birth_date",
                                  "approval")}, "id_number": mask_id(r["person_id"])}
            for r in handlers.awaiting_mid_year(repo, y, _townships(y), principal, mid_year_decisions)]}

    @api.route("/v1/enrolment/review/{year}", "GET", summary="缴费所含人员已不在户内（死亡、迁出、合户）等待县医保局核处",
               permission="households:read", response=ReviewList)
    def needing_review(principal, year):
        y = year_of(year)
        return {"year": y, "persons": [
            {**{k: r[k] for k in ("household_no", "township", "village", "order_no", "reason")},
             "id_number": mask_id(r["person_id"])} for r in handlers.needing_review(repo, y, _townships(y), principal)]}

    # ---- holiday schedules (issue 10 item 3): the State Council's yearly schedule, loaded by county staff;
    # every working-day deadline of this process counts it (shared.workdays), others within 30 s
    from shared import workdays as wd

    from ..adapters.holidays import HolidayStore
    from .schemas import HolidayScheduleIn, HolidayScheduleOut
    holidays = HolidayStore(c.db, c.outbox)
    # the schedule is the State Council's, one for the country: this process's calendar reads what any
    # county of the suite loaded (each county's payments reads its own county's copy)
    loaders = c.shared.setdefault("holiday_loaders", [])
    loaders.append(holidays.all)
    wd.use_source(lambda: [s for load in loaders for s in load()])

    def holiday_calendar(y: int) -> dict:
        doc = holidays.get(y) if wd.schedule_source(y) == "official" else None
        return {**wd.calendar_of(y), "loaded_by": (doc or {}).get("loaded_by"), "loaded_at": (doc or {}).get("loaded_at")}

    @api.route("/v1/holidays/{year}", "PUT", summary="导入国务院办公厅当年节假日安排（含调休上班日）", roles=("county",),
               body=HolidayScheduleIn, response=HolidayScheduleOut)
    def load_holidays(principal, data, year):
        y = year_of(year)
        if data["year"] != y:
            raise ValidationFailed("YEAR_MISMATCH", "请求体年度与路径年度不一致", {"year": year, "body_year": data["year"]})
        schedule = wd.schedule_from(data)
        holidays.save(schedule, principal.subject, c.clock.now(), correlation_id.get())
        wd.install(schedule)
        return holiday_calendar(y)

    @api.route("/v1/holidays/{year}", "GET", summary="当年所用的节假日安排（官方或估算）", roles=("county", "township"),
               response=HolidayScheduleOut)
    def get_holidays(principal, year):
        return holiday_calendar(year_of(year))

    # ---- the county's policy years and where each stands (draft → window_open → benefit_year → closed)

    @api.route("/v1/years", "GET", summary="本县（区）已载入的政策年度及所处阶段（筹备、集中缴费期、待遇享受期、已结束）",
               roles=("county", "township"), response=YearsOut)
    def policy_years(principal):
        at = c.clock.now()
        return {"county_code": c.county_code, "county": c.policy.county, "at": iso(at), "years": [{
            "year": y, "phase": phase_at(p, at), "phase_name": PHASE_NAMES[phase_at(p, at)],
            "window_opens": p.window_opens and p.window_opens.isoformat(),
            "window_closes": p.window_closes and p.window_closes.isoformat(),
            "benefit_starts": p.benefit_starts.isoformat(), "benefit_ends": p.benefit_ends.isoformat(),
            "standard_fen": p.standard_fen, "task_total": p.task_total, "default": y == c.policy.year,
            "source_file": p.source_file} for y, p in c.policies.items()]}

    # ---- year rollover (issue 10 item 2): year Y's roster starts from year Y-1's as it stands
    # (service_layer/rollover.py); county staff call it until `done`, one bounded batch per call
    from marshmallow import Schema, fields as mf

    from ..service_layer.rollover import roll_over
    rollover_runs = boot.rollovers(c)

    class RolloverCounts(Schema):
        read, created, unchanged = mf.Integer(), mf.Integer(), mf.Integer()
        rejected = mf.Integer()
        ended = mf.Integer(metadata={"description": "已合户终止、无成员的户（不结转）"})

    class RolloverRefusal(Schema):
        household_no, code, message = mf.String(), mf.String(), mf.String()

    class RolloverOut(Schema):
        from_year, to_year = mf.Integer(), mf.Integer()
        done = mf.Boolean(metadata={"description": "false：还有下一批，请再次调用"})
        batch, total = mf.Nested(RolloverCounts), mf.Nested(RolloverCounts)
        refusals = mf.List(mf.Nested(RolloverRefusal))

    @api.route("/v1/years/{year}/rollover", "POST", summary="年度切换：按上一年度户籍名册结转本年度登记（每次一批，至 done）",
               roles=("county",), response=RolloverOut, query=[query_param("limit", "integer")])
    def rollover(principal, year):
        y = year_of(year)
        policy = c.policy_for(y)
        refuse_if_closed(policy, c.clock.now())
        c.policy_for(y - 1)
        limit = request.args.get("limit", "500")
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 2000:
            raise ValidationFailed("BAD_LIMIT", "每批户数须为1至2000的整数", {"limit": limit})
        return roll_over(repo, rollover_runs, duplicates, policy, y - 1, c.clock.now(), limit=int(limit),
                         correlation_id=correlation_id.get())

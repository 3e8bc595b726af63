"""HTTP API of subsidy (thin: parse, call a use case, render): the identity batch feed for systems
that cannot publish to RabbitMQ, identities with history, entitlements (single and batch, for
payments and gateways), coverage, claims and the funding ledger."""
from __future__ import annotations

import csv
import io
import secrets
from datetime import datetime

from flask import Flask, Response, request

from shared.resident_id import parse_resident_id
from shared.clock import Clock, iso, parse_instant, stamp
from shared.errors import DomainError, Forbidden, NotFound, ValidationFailed
from shared.logs import correlation_id, setup
from shared.masking import mask_id
from shared.money import yuan
from shared.web import county_routes, create_service_app, path_year, query_param

from .. import bootstrap as boot
from ..domain.coverage import UNREGISTERED_NAME, rows_of
from ..domain.entitlement import Entitlement
from ..domain.identity import Rejected, parse_update
from ..domain.rules import CATEGORY_NAMES
from ..service_layer import handlers
from ..service_layer.handlers import UNATTRIBUTED
from . import identity_feed
from .schemas import (BatchOut, ClaimListOut, ClaimOut, ClaimPaidIn, CoverageOut, EntitlementListOut, EntitlementOut,
                      EntitlementLookupIn, EntitlementQueryIn, IdentitiesOut, IdentityBatchIn, LedgerOut, PersonIn,
                      UpdateReportOut)

CLAIMS_PAGE = 5000  # claims a page of GET /v1/claims/{year}


_year = path_year


def _instant(text: str | None, clock: Clock) -> datetime:
    if not text:
        return clock.now()
    try:
        return parse_instant(text)
    except ValueError:
        raise ValidationFailed("BAD_INSTANT", "时间格式应为 ISO 8601（如 2019-11-15T10:00:00+08:00）", {"at": text[:40]})


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    return app


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    ctx = boot.context(c)
    repo, rules = ctx.repo, c.rules

    def check_reach(principal, year: int, pids: list[str]) -> None:
        """Township staff see hardship identities and entitlements of their township's residents
        only (as registry's events placed them); a person registered nowhere is outside it too."""
        if principal.role != "township":
            return
        for pid in pids:
            r = repo.resident(year, pid)
            if r is None or r.get("township") != principal.township:
                raise Forbidden("SCOPE_TOWNSHIP", "无权查看其他乡镇人员的困难身份与资助待遇", {"id_number": mask_id(pid)})

    def render_ent(e: Entitlement, at: datetime) -> dict:
        return {"id_number": mask_id(e.id_number), "year": e.year, "at": iso(at), "category": e.category,
                "category_name": CATEGORY_NAMES.get(e.category) if e.category else None,
                "standard_fen": e.standard_fen, "subsidy_fen": e.subsidy_fen, "payable_fen": e.payable_fen,
                "full_coverage": e.full_coverage, "department": e.department,
                "department_name": rules.department_name(e.department), "reimbursable_fen": e.reimbursable_fen,
                "configured": e.configured, "frozen": e.frozen,
                "effective_from": e.effective_from.isoformat() if e.effective_from else None,
                "categories": list(e.categories), "reason": e.reason}

    # ---- identity feed (HTTP batch) ------------------------------------------------------------
    @api.route("/v1/identity-batches", "POST", summary="批量提交困难群众身份变更（无法接入消息队列的系统）",
               permission="identities:submit", body=IdentityBatchIn, response=BatchOut, status=202)
    def submit_batch(principal, data):
        batch_id = "B" + stamp(c.clock.now()) + secrets.token_hex(4).upper()
        items, messages = [], []
        for i, raw in enumerate(data["updates"]):
            item = {"index": i, "source_system": raw.get("source_system") if isinstance(raw.get("source_system"), str) else None,
                    "source_ref": str(raw.get("source_ref"))[:80] if raw.get("source_ref") is not None else None,
                    "message_id": f"{batch_id}:{i}", "status": "queued", "code": None, "message": None}
            try:
                u = parse_update(raw, rules)
                if principal.role == "system" and principal.subject != u.source_system:
                    raise Rejected("SOURCE_NOT_ALLOWED", "只能提交本系统（来源）的身份变更",
                                   {"source_system": u.source_system})
                if raw.get("county", c.county_code) != c.county_code:
                    raise Rejected("COUNTY_MISMATCH", "身份变更所属县（区）与提交地址不一致", {"county": raw.get("county")})
                messages.append((item["message_id"], f"identity.{u.source_system}", {**raw, "county": c.county_code}))
            except Rejected as e:
                item.update(status="rejected", code=e.code, message=e.message)
                handlers.report_rejection(ctx, raw, e, via="http", message_id=item["message_id"])
            items.append(item)
        repo.add_batch({"_id": batch_id, "submitted_by": principal.subject, "at": c.clock.now(), "state": "publishing",
                        "items": items})
        try:
            identity_feed.publish(c.settings.amqp_url, c.identity_topology, messages)
        except Exception:  # noqa: BLE001 — broker down: say so; resubmitting the batch is safe
            repo.set_batch_state(batch_id, "broker_failed")
            raise DomainError("BROKER_UNAVAILABLE", "消息服务暂不可用，请稍后重新提交整批（重复提交不会重复生效）",
                              {"batch_id": batch_id}, status=503)
        repo.set_batch_state(batch_id, "queued")
        return {"batch_id": batch_id, "received": len(items), "queued": len(messages),
                "rejected": len(items) - len(messages), "items": [_public_item(x) for x in items]}

    def _public_item(x: dict) -> dict:
        return {k: x[k] for k in ("index", "source_system", "source_ref", "status", "code", "message")}

    @api.route("/v1/identity-batches/{batch_id}", "GET", summary="查询批次处理结果", permission="identities:submit",
               response=BatchOut)
    def get_batch(principal, batch_id):
        b = repo.batch(batch_id)
        if b is None or (principal.role == "system" and b["submitted_by"] != principal.subject):
            raise NotFound("BATCH_NOT_FOUND", "批次不存在", {"batch_id": batch_id})
        items = []
        for x in b["items"]:
            if x["status"] == "queued":
                done = repo.update_log(f"{x['source_system']}:{x['source_ref']}")
                rejected = repo.update_log(f"rejected:{x['message_id']}")
                if rejected is not None:
                    x = {**x, "status": "rejected", "code": rejected["code"], "message": rejected["message"]}
                elif done is not None and done.get("message_id") == x["message_id"]:
                    x = {**x, "status": done["outcome"], "code": done.get("code"), "message": done.get("message")}
                elif done is not None:
                    x = {**x, "status": "duplicate", "code": "DUPLICATE", "message": "重复的身份变更，只生效一次"}
            items.append(_public_item(x))
        return {"batch_id": batch_id, "received": len(items), "queued": sum(1 for x in b["items"] if x["status"] == "queued"),
                "rejected": sum(1 for x in items if x["status"] == "rejected"), "items": items}

    @api.route("/v1/identity-updates", "GET", summary="身份变更处理报告（可按结果、来源筛选）",
               permission="identities:report", response=UpdateReportOut, query=[
                   query_param("outcome", maxLength=40), query_param("source", maxLength=80),
                   query_param("limit", "integer", minimum=1, maximum=1000, description="默认100")])
    def update_report(principal):
        limit = int(request.args.get("limit", "100"))
        docs = repo.updates(request.args.get("outcome"), request.args.get("source"), limit)
        out = []
        for d in docs:
            row = {k: v for k, v in d.items() if k not in ("id_number",)}
            if d.get("id_number"):
                row["id_number_masked"] = mask_id(d["id_number"])
            row["key"] = row.pop("_id")
            row["received_at"] = iso(d["received_at"])
            row.pop("last_duplicate_at", None)
            out.append(row)
        return {"updates": out}

    # ---- identities and entitlements --------------------------------------------------------------
    api.moved("/v1/persons/{id_number}/identities", "GET", "POST /v1/persons/identities",
              summary="（已停用）某人的困难群众身份及变更历史")

    @api.route("/v1/persons/identities", "POST", summary="某人的困难群众身份及变更历史（号码在请求体）",
               permission="identities:read", body=PersonIn, response=IdentitiesOut)
    def identities(principal, data):
        pid = parse_resident_id(data["id_number"], field="id_number").number
        check_reach(principal, c.policy.year, [pid])
        loaded = repo.person(pid)
        if loaded is None:
            raise NotFound("NO_IDENTITY", "该人员没有困难群众身份记录", {"id_number": mask_id(pid)})
        person, _ = loaded
        current = person.granted_at(c.clock.now())
        return {"id_number": mask_id(pid),
                "current": [{"category": k, "category_name": CATEGORY_NAMES.get(k, k), "effective_date": v.isoformat()}
                            for k, v in sorted(current.items())],
                "history": [{"category": h["category"], "category_name": CATEGORY_NAMES.get(h["category"], h["category"]),
                             "action": h["action"], "effective_date": h["effective_date"].isoformat(),
                             "source_system": h["source_system"], "source_ref": h["source_ref"],
                             "recorded_at": iso(h["recorded_at"])} for h in person.history]}

    api.moved("/v1/entitlements/{year}/{id_number}", "GET", "POST /v1/entitlements/{year}/lookup",
              summary="（已停用）某人某年度在某时刻的资助待遇")

    @api.route("/v1/entitlements/{year}/lookup", "POST", summary="某人某年度在某时刻的资助待遇（号码在请求体）",
               permission="identities:read", body=EntitlementLookupIn, response=EntitlementOut)
    def entitlement(principal, year, data):
        at = _instant(data.get("at"), c.clock)
        y = _year(year)
        pid = parse_resident_id(data["id_number"], field="id_number").number
        handlers.check_year(ctx, y)
        check_reach(principal, y, [pid])
        return render_ent(handlers.entitlement_of(ctx, y, pid, at), at)

    @api.route("/v1/entitlements/{year}/query", "POST", summary="批量查询资助待遇（供缴费与支付渠道使用）",
               permission="identities:read", body=EntitlementQueryIn, response=EntitlementListOut)
    def entitlements(principal, year, data):
        at = _instant(data.get("at"), c.clock)
        y = _year(year)
        handlers.check_year(ctx, y)
        pids = [parse_resident_id(x, field=f"id_numbers[{i}]").number for i, x in enumerate(data["id_numbers"])]
        check_reach(principal, y, pids)
        return {"year": y, "at": iso(at),
                "results": [render_ent(handlers.entitlement_of(ctx, y, pid, at), at) for pid in pids]}

    # ---- coverage --------------------------------------------------------------------------------
    @api.route("/v1/coverage/{year}", "GET", summary="困难群众参保情况（按乡镇、身份类别；目标100%）",
               permission="identities:read",
               response=CoverageOut)
    def coverage(principal, year):
        y = _year(year)
        handlers.check_year(ctx, y)
        towns = [t.name for t in c.policy_for(y).townships] + [""]
        if principal.role == "township":
            towns = [principal.township]
        counters = repo.coverage(y, towns)
        rows = [r for t in towns for r in rows_of(t, counters.get(t, {}))]
        return {"county": c.policy.county, "year": y, "target_bp": 10000,
                "hardship_persons": sum(r.hardship_persons for r in rows),
                "enrolled_persons": sum(r.enrolled_persons for r in rows),
                "rows": [{"township": r.township, "township_name": r.township or UNREGISTERED_NAME,
                          "category": r.category, "category_name": CATEGORY_NAMES.get(r.category, r.category),
                          "hardship_persons": r.hardship_persons, "enrolled_persons": r.enrolled_persons,
                          "not_enrolled_persons": r.not_enrolled, "rate_bp": r.rate_bp} for r in rows]}

    # ---- claims (先缴后补) -------------------------------------------------------------------------
    def render_claim(d: dict) -> dict:
        return {"claim_id": d["_id"], "id_number": mask_id(d["id_number"]), "name": d.get("name", ""),
                "year": d["year"], "category": d["category"], "amount_fen": d["amount_fen"],
                "department": d["department"], "effective_date": d["effective_date"],
                "household_no": d.get("household_no"), "township": d.get("township"), "village": d.get("village"),
                "status": d["status"], "payment_ref": d.get("payment_ref"), "paid_on": d.get("paid_on")}

    @api.route("/v1/claims/{year}", "GET", summary="先缴后补报销申请（可按状态、部门筛选）",
               permission="claims:read", response=ClaimListOut,
               query=[query_param("status", enum=["pending", "paid", "cancelled"]), query_param("department", maxLength=80),
                      query_param("page", "integer", minimum=0, description=f"页码（每页{CLAIMS_PAGE}条，按生成先后）")])
    def claims(principal, year):
        y = _year(year)
        handlers.check_year(ctx, y)
        page = int(request.args.get("page", "0"))  # a non-negative integer: the declared query is checked first
        # every matching claim is read (a filter scan of a collection of hardship cases only), so that
        # the total is the county's, not the page's; a page before was the first 5,000 and no more
        docs = repo.claims(y, request.args.get("status"), request.args.get("department"), 0)
        if principal.role == "township":
            docs = [d for d in docs if d.get("township") == principal.township]
        return {"claims": [render_claim(d) for d in docs[page * CLAIMS_PAGE:(page + 1) * CLAIMS_PAGE]],
                "total_fen": sum(d["amount_fen"] for d in docs if d["status"] != "cancelled"), "total": len(docs),
                "page": page, "page_size": CLAIMS_PAGE}

    api.moved("/v1/claims/{year}/{id_number}/paid", "POST", "POST /v1/claims/{year}/paid",
              summary="（已停用）登记先缴后补报销已支付")

    @api.route("/v1/claims/{year}/paid", "POST", summary="登记先缴后补报销已支付（号码在请求体）",
               permission="claims:pay", body=ClaimPaidIn, response=ClaimOut)
    def claim_paid(principal, year, data):
        pid = parse_resident_id(data["id_number"], field="id_number").number
        return render_claim(handlers.pay_claim(ctx, _year(year), pid, data["payment_ref"], data["paid_on"],
                                               correlation_id.get()))

    # ---- funding ledger (直接代缴) ------------------------------------------------------------------
    departments = list(rules.departments) + [UNATTRIBUTED]

    @api.route("/v1/ledger/{year}", "GET", summary="各资助部门应划入县财政专户的代缴金额", permission="ledger:read",
               response=LedgerOut)
    def ledger(principal, year):
        y = _year(year)
        handlers.check_year(ctx, y)
        counters = repo.ledger(y, departments)
        pending, paid = {}, {}
        for d in repo.claims(y, None, None, 100_000):
            if d["status"] == "cancelled":  # its payment was reversed: nothing to reimburse
                continue
            target = paid if d["status"] == "paid" else pending
            target[d["department"]] = target.get(d["department"], 0) + d["amount_fen"]
        rows = [{"department": d, "department_name": rules.departments.get(d, "未能归属部门（缴费时无对应身份）"),
                 "persons": counters.get(d, {}).get("persons", 0), "owed_fen": counters.get(d, {}).get("owed_fen", 0),
                 "claims_pending_fen": pending.get(d, 0), "claims_paid_fen": paid.get(d, 0)}
                for d in departments if d != UNATTRIBUTED or d in counters]
        return {"county": c.policy.county, "year": y, "rows": rows, "total_owed_fen": sum(r["owed_fen"] for r in rows)}

    @api.route("/v1/ledger/{year}/{department}/statement.csv", "GET", summary="资助部门代缴对账单（CSV）",
               permission="ledger:read", produces="text/csv")
    def statement(principal, year, department):
        y = _year(year)
        handlers.check_year(ctx, y)
        if department not in departments:
            raise NotFound("DEPARTMENT_UNKNOWN", "没有该资助部门", {"department": department})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["序号", "身份证号码", "姓名", "乡镇", "村（社区）", "户编号", "身份类别", "资助金额（元）", "订单号", "收据号", "缴费时间"])
        total = 0
        rows = repo.ledger_rows(y, department)
        for i, r in enumerate(rows, start=1):
            total += r["subsidy_fen"]
            w.writerow([i, mask_id(r["id_number"]), r["name"], r["township"], r["village"], r["household_no"],
                        CATEGORY_NAMES.get(r.get("category") or "", "无") + ("（冲正退回）" if r.get("reversal_id") else ""),
                        yuan(r["subsidy_fen"]), r["order_no"],
                        r["receipt_no"], iso(r["paid_at"])])
        w.writerow(["合计", "", "", "", "", "", "", yuan(total), "", "", f"{sum(r.get('persons', 1) for r in rows)}人"])
        name = f"statement-{y}-{department}.csv"
        return Response("\ufeff" + buf.getvalue(), mimetype="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f"attachment; filename={name}"})

    # ---- year rollover (issue 10 item 2): the worker publishes each live year's entitlements of every
    # standing identity (handlers.publish_year, bootstrap.rollover_loop); county staff follow it here
    from marshmallow import Schema, fields as mf

    class EntitlementRolloverOut(Schema):
        year = mf.Integer()
        started = mf.Boolean(metadata={"description": "false：工作进程尚未开始该年度的结转"})
        done = mf.Boolean()
        persons_seen = mf.Integer(metadata={"description": "已读取的有困难身份记录的人数"})
        published = mf.Integer(metadata={"description": "为该年度发布了资助待遇的人数"})
        frozen = mf.Integer(metadata={"description": "该年度已缴费（待遇已固定、不再补退）的人数"})
        at = mf.String(allow_none=True)

    @api.route("/v1/rollover/{year}", "GET", summary="年度切换：困难身份资助待遇结转进度（由工作进程分批执行）",
               roles=("county",), response=EntitlementRolloverOut)
    def entitlement_rollover(principal, year):
        y = _year(year)
        handlers.check_year(ctx, y)
        run = repo.rollover(y) or {}
        return {"year": y, "started": bool(run), "done": bool(run.get("done")), "persons_seen": run.get("seen", 0),
                "published": run.get("published", 0), "frozen": run.get("frozen", 0),
                "at": iso(run["at"]) if run.get("at") else None}

"""HTTP API of notices: what was sent (or queued) to a household, each notice's delivery (attempts,
receipts), the dead ones and their resend, and the SMS provider's receipt push (docs/notice-delivery.md)."""
from __future__ import annotations

import hmac
import logging
import re

from flask import Flask, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from shared.clock import Clock, iso
from shared.config import env
from shared.errors import DomainError, Forbidden, NotFound, Unauthorized
from shared.logs import setup
from shared.masking import mask_email, mask_phone
from shared.web import county_routes, create_service_app, path_year, query_param

from .. import bootstrap as boot
from ..domain.delivery import template_of
from ..service_layer import delivery as deliver
from . import bulletin_api

log = logging.getLogger(__name__)


class NoticeOut(Schema):
    notice_id = fields.String()
    kind = fields.String()
    household_no = fields.String(allow_none=True, metadata={"description": "null on a town's list item about no one household"})
    recipient_name = fields.String(allow_none=True)
    recipient_phone = fields.String(allow_none=True, metadata={"description": "masked; null when no phone is known"})
    channel = fields.String()
    status = fields.String()
    text = fields.String()


class NoticeList(Schema):
    notices = fields.List(fields.Nested(NoticeOut))
    total = fields.Integer(metadata={"description": "清单总条数"})
    page = fields.Integer(metadata={"description": "页码（从0起，每页200条）"})


def render(d: dict) -> dict:
    return {"notice_id": d["_id"], "kind": d["kind"], "household_no": d.get("household_no"),
            "recipient_name": d.get("recipient_name"), "recipient_phone": mask_phone(d.get("recipient_phone")),
            "channel": d["channel"], "status": d["status"], "text": d["text"]}


class AttemptOut(Schema):
    attempt_id = fields.String(allow_none=True)
    at = fields.String(allow_none=True)
    result = fields.String(metadata={"description": "accepted | retry | dead | unknown (interrupted, sent again)"})
    error = fields.String(allow_none=True)
    provider_id = fields.String(allow_none=True)
    latency_ms = fields.Float(allow_none=True)


class ReceiptOut(Schema):
    at = fields.String(allow_none=True, metadata={"description": "when we received it"})
    success = fields.Boolean()
    err_code = fields.String(allow_none=True)
    report_time = fields.String(allow_none=True)
    send_time = fields.String(allow_none=True)
    biz_id = fields.String(allow_none=True)


class DeliveryOut(Schema):
    delivery_id = fields.String(allow_none=True, metadata={"description": "OutId at the provider: county|notice|round"})
    round = fields.Integer()
    attempt_no = fields.Integer()
    next_at = fields.String(allow_none=True)
    provider_id = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class NoticeDeliveryOut(NoticeOut):
    township = fields.String(allow_none=True)
    year = fields.Integer(allow_none=True)
    urgent = fields.Boolean()
    template_code = fields.String()
    created_at = fields.String(allow_none=True)
    delivery = fields.Nested(DeliveryOut, allow_none=True)
    attempts = fields.List(fields.Nested(AttemptOut))
    receipts = fields.List(fields.Nested(ReceiptOut))


class DeadNoticeOut(Schema):
    notice_id = fields.String()
    kind = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    township = fields.String(allow_none=True)
    year = fields.Integer(allow_none=True)
    at = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class DeadList(Schema):
    notices = fields.List(fields.Nested(DeadNoticeOut))


class ReceiptIn(Schema):
    """One 状态报告 as the provider pushes it (docs/notice-delivery.md "Receipts")."""
    class Meta:
        unknown = EXCLUDE
    out_id = fields.String(required=True, validate=validate.Length(max=300))
    success = fields.Boolean(required=True)
    err_code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    biz_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))
    phone_number = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    send_time = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    report_time = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))


class ReceiptsAck(Schema):
    code = fields.Integer(metadata={"description": "0: received (the provider stops pushing them)"})
    msg = fields.String()
    applied = fields.Integer()
    duplicate = fields.Integer()
    waiting = fields.Integer()
    stale = fields.Integer()
    unmatched = fields.Integer()


RECEIPT_TOKEN_HEADER = "X-Sms-Receipt-Token"
MAX_RECEIPTS = 1000


def render_delivery(d: dict) -> dict:
    code, _params = template_of(d)
    dl = d.get("delivery")
    return {**render(d), "township": d.get("township"), "year": d.get("year"), "urgent": bool(d.get("urgent")),
            "template_code": code, "created_at": iso(d.get("created_at")),
            "delivery": None if dl is None else {
                "delivery_id": dl.get("id"), "round": dl.get("round", 1), "attempt_no": dl.get("attempt_no", 0),
                "next_at": iso(dl.get("next_at")), "provider_id": dl.get("provider_id"), "error": dl.get("error")},
            "attempts": [{"attempt_id": a.get("attempt_id"), "at": iso(a.get("at")), "result": a.get("result"),
                          "error": a.get("error"), "provider_id": a.get("provider_id"),
                          "latency_ms": a.get("latency_ms")} for a in d.get("attempts") or []],
            "receipts": [{"at": iso(r.get("at")), "success": bool(r.get("success")), "err_code": r.get("err_code"),
                          "report_time": r.get("report_time"), "send_time": r.get("send_time"),
                          "biz_id": r.get("biz_id")} for r in d.get("receipts") or []]}


_NOTICE_ID = re.compile(r"[^\x00-\x1f\x7f]{1,300}")


def notice_or_404(store, notice_id: str) -> dict:
    doc = store.notice(notice_id) if _NOTICE_ID.fullmatch(notice_id or "") else None
    if doc is None:
        raise NotFound("NOTICE_NOT_FOUND", "没有这条通知", {"notice_id": notice_id[:80]})
    return doc


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    county_routes(api, c, bulletin_api.declare)
    receipts_route(api, c)
    return app


def receipts_route(api, c) -> None:
    """The provider pushes every county's receipts to one URL; the OutId names the county."""

    def store_of(code: str):
        try:
            return boot.deliveries(c.county(code))
        except NotFound:
            return None

    @api.route("/v1/sms/receipts", "POST", summary="短信状态报告回执（短信服务商推送）", response=ReceiptsAck,
               headers=[{"name": RECEIPT_TOKEN_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
                         "description": "the shared receipt token (SMS_RECEIPT_TOKEN); docs/notice-delivery.md"}])
    def sms_receipts(principal):
        expected = env("SMS_RECEIPT_TOKEN") or ""
        given = request.headers.get(RECEIPT_TOKEN_HEADER) or ""
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            raise Unauthorized("RECEIPT_TOKEN_INVALID", "状态报告回执令牌无效")
        payload = request.get_json(silent=True)
        if not isinstance(payload, list):
            raise DomainError("RECEIPTS_NOT_A_LIST", "请求体应为状态报告的 JSON 数组", status=400)
        if len(payload) > MAX_RECEIPTS:
            raise DomainError("RECEIPTS_TOO_MANY", f"一次最多推送{MAX_RECEIPTS}条状态报告", status=400)
        receipts = ReceiptIn(many=True).load(payload)
        counts = deliver.receive_receipts(store_of, receipts, c.clock.now())
        if counts["unmatched"]:
            log.warning("receipts matching no notice: %s", counts["unmatched"])
        return {"code": 0, "msg": "接收成功", **counts}

    op = api.doc.operations[-1][2]  # the body is a JSON array of receipts
    op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
        "type": "array", "maxItems": MAX_RECEIPTS, "items": ReceiptIn}}}}


class TemplateOut(Schema):
    name = fields.String(metadata={"description": "<kind>.<channel>"})
    version = fields.Integer()
    code = fields.String(allow_none=True, metadata={"description": "短信服务商的模板编号"})
    urgent = fields.Boolean(metadata={"description": "true：可在夜间免打扰时段发送"})
    params = fields.List(fields.String())


class TemplateList(Schema):
    templates = fields.List(fields.Nested(TemplateOut))


class PreviewIn(Schema):
    params = fields.Dict(keys=fields.String(), required=True)


class PreviewOut(Schema):
    name, text = fields.String(), fields.String()
    version = fields.Integer()
    code = fields.String(allow_none=True)
    sms_segments = fields.Integer(allow_none=True, metadata={"description": "短信按服务商计费的条数（70字一条，超出按67字一条）"})


class Leader(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    phone = fields.String(required=True, validate=validate.Regexp(r"^1[3-9][0-9]{9}$", error="手机号码应为11位"),
                          metadata={"description": "手机号码；回复中屏蔽"})
    role = fields.String(load_default="head", validate=validate.OneOf(["head", "deputy", "staff"]),
                         metadata={"description": "head 主要负责人 | deputy 分管负责人 | staff 经办人员"})
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=200))
    prefers = fields.String(load_default="sms", validate=validate.OneOf(["sms", "email"]),
                            metadata={"description": "接收方式：sms（默认）| email（须填 email）"})

    @validates_schema
    def _email_when_preferred(self, data, **_):
        if data.get("prefers") == "email" and not data.get("email"):
            raise ValidationError("选择邮件接收时须填写邮箱", "email")


class LeadersIn(Schema):
    leaders = fields.List(fields.Nested(Leader), required=True, validate=validate.Length(max=20))


class LeaderOut(Schema):
    name, role, prefers = fields.String(), fields.String(), fields.String()
    email = fields.String(allow_none=True, metadata={"description": "屏蔽后的邮箱"})
    phone = fields.String(metadata={"description": "屏蔽后的号码（139****1001）"})


class OptOutIn(Schema):
    opt_out = fields.List(fields.String(validate=validate.OneOf(["reminder"])), required=True,
                          metadata={"description": "户不再接收的通知种类；仅催缴提醒（reminder）可退订，收据与资金类通知照发"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=300))


class OptOutOut(Schema):
    household_no, updated_by, updated_at, reason = fields.String(), fields.String(), fields.String(), fields.String()
    year = fields.Integer()
    opt_out = fields.List(fields.String())


class LeadersOut(Schema):
    township = fields.String()
    leaders = fields.List(fields.Nested(LeaderOut))
    updated_by, updated_at = fields.String(allow_none=True), fields.String(allow_none=True)


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    repo = boot.repository(c)
    book = boot.templates(c)

    def shown(leader: dict) -> dict:
        """A leader as replies show them: the number masked (by the reply's one masking pass), the address too."""
        return {"name": leader["name"], "role": leader.get("role", "head"), "phone": leader["phone"],
                "prefers": leader.get("prefers", "sms"), "email": mask_email(leader.get("email"))}

    @api.route("/v1/households/{year}/{household_no}/notice-preferences", "PUT",
               summary="户的通知退订（仅催缴提醒可退订；收据、代扣失败、资助退款等照发）", permission="households:write",
               body=OptOutIn, response=OptOutOut)
    def put_opt_out(principal, data, year, household_no):
        y = path_year(year)
        contact = repo.contact(y, household_no)
        if contact is None:
            raise NotFound("HOUSEHOLD_UNKNOWN", "通知服务尚无该户的登记信息", {"household_no": household_no[:40]})
        principal.check_township(contact.get("township"))
        at = c.clock.now()
        repo.set_opt_out(y, household_no, sorted(set(data["opt_out"])), principal.subject, data["reason"], at)
        return {"household_no": household_no, "year": y, "opt_out": sorted(set(data["opt_out"])),
                "updated_by": principal.subject, "updated_at": iso(at), "reason": data["reason"]}

    def known_township(township: str) -> str:
        if c.policy.township(township) is None:
            raise NotFound("TOWNSHIP_UNKNOWN", "任务表中没有该乡（镇、街道）", {"township": township[:100]})
        return township

    @api.route("/v1/township-leaders/{township}", "PUT", summary="登记乡镇领导的手机号码（接收排名短信；003 以短信发给各乡镇主要领导）",
               roles=("county",), body=LeadersIn, response=LeadersOut)
    def put_leaders(principal, data, township):
        doc = repo.save_leaders(known_township(township), data["leaders"], principal.subject, c.clock.now())
        return {"township": township, "leaders": [shown(x) for x in doc["leaders"]], "updated_by": doc["updated_by"],
                "updated_at": iso(doc["updated_at"])}

    @api.route("/v1/township-leaders/{township}", "GET", summary="乡镇领导（号码已屏蔽）", roles=("county", "township"),
               response=LeadersOut)
    def get_leaders(principal, township):
        principal.check_township(township)
        doc = repo.leaders(known_township(township)) or {"township": township, "leaders": []}
        return {"township": township, "leaders": [shown(x) for x in doc["leaders"]], "updated_by": doc.get("updated_by"),
                "updated_at": iso(doc.get("updated_at"))}

    @api.route("/v1/templates", "GET", summary="通知模板（版本、短信模板编号、参数）", roles=("county",),
               response=TemplateList)
    def list_templates(principal):
        return {"templates": [{"name": k, "version": v["version"], "code": v.get("code"), "urgent": bool(v.get("urgent")),
                               "params": v["params"]} for k, v in sorted(book.manifest.items())]}

    @api.route("/v1/templates/{name}/preview", "POST", summary="按参数预览通知文本（含签名与短信条数），不发送",
               roles=("county",), body=PreviewIn, response=PreviewOut)
    def preview_template(principal, data, name):
        from ..adapters.templates import TemplateError, sms_segments
        spec = book.manifest.get(name)
        if spec is None:
            raise NotFound("TEMPLATE_UNKNOWN", "没有该通知模板", {"name": name[:80]})
        try:
            text = book.render(name, data["params"])
        except TemplateError as e:
            raise DomainError("TEMPLATE_PARAMS", "模板参数不全", {"name": name, "params": spec["params"]},
                              status=400) from e
        except (TypeError, ValueError, AttributeError) as e:  # a parameter of the wrong kind (a date, an amount)
            raise DomainError("TEMPLATE_PARAMS", f"模板参数格式不对：{type(e).__name__}",
                              {"name": name, "params": spec["params"]}, status=400) from e
        return {"name": name, "text": text, "version": spec["version"], "code": spec.get("code"),
                "sms_segments": sms_segments(text) if name.endswith(".sms") else None}

    @api.route("/v1/households/{year}/{household_no}/notices", "GET", summary="某户的通知记录",
               permission="notices:read", response=NoticeList)
    def household_notices(principal, year, household_no):
        path_year(year)
        docs = repo.for_household(household_no, int(year))
        for d in docs:
            principal.check_township(d["township"])
        return {"notices": [render(d) for d in docs], "total": len(docs), "page": 0}

    @api.route("/v1/events/{event_id}/notices", "GET", summary="某一事件（如一笔缴费、一次考核发布）产生的全部通知",
               permission="notices:read", response=NoticeList)
    def event_notices(principal, event_id):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", event_id):
            raise DomainError("BAD_EVENT_ID", "事件编号格式不正确", {"event_id": event_id[:64]}, status=400)
        docs = [d for d in repo.for_event(event_id)
                if principal.role != "township" or d.get("township") == principal.township]
        return {"notices": [render(d) for d in docs], "total": len(docs), "page": 0}

    @api.route("/v1/townships/{township}/notices/{year}", "GET", summary="乡镇工作清单（代扣失败、困难群众未参保等；每页200条）",
               permission="notices:read", response=NoticeList,
               query=[query_param("kind", maxLength=60), query_param("page", "integer", minimum=0, maximum=100000)])
    def township_notices(principal, township, year):
        principal.check_township(township)
        page = int(request.args.get("page") or 0)
        docs, total = repo.listing(path_year(year), township, request.args.get("kind"), offset=page * 200)
        return {"notices": [render(d) for d in docs], "total": total, "page": page}

    @api.route("/v1/offices/{office}/notices/{year}", "GET",
               summary="某一单位收到的通知（县税务局、县医保局、民政部门、乡镇人民政府的工作清单；每页200条）",
               permission="notices:read", response=NoticeList,
               query=[query_param("page", "integer", minimum=0, maximum=100000)])
    def office_notices(principal, office, year):
        if len(office) > 60:
            raise DomainError("BAD_OFFICE", "单位名称过长", {"max": 60}, status=400)
        if principal.role == "township" and office != f"{principal.township}人民政府":
            raise Forbidden("SCOPE_TOWNSHIP", "乡镇只能查看本乡镇人民政府的通知", {"office": office})
        page = int(request.args.get("page") or 0)
        docs, total = repo.for_office(path_year(year), office, offset=page * 200)
        return {"notices": [render(d) for d in docs], "total": total, "page": page}

    store = boot.deliveries(c)

    @api.route("/v1/notices/{notice_id}", "GET", summary="一条通知的送达情况（发送尝试与状态报告）",
               permission="notices:read", response=NoticeDeliveryOut)
    def notice_delivery(principal, notice_id):
        doc = notice_or_404(store, notice_id)
        principal.check_township(doc.get("township"))
        return render_delivery(doc)

    @api.route("/v1/notices/{notice_id}/resend", "POST", summary="重发发送失败或送达失败的通知", roles=("county",),
               response=NoticeDeliveryOut, status=202)
    def notice_resend(principal, notice_id):
        notice_or_404(store, notice_id)
        return render_delivery(deliver.resend(store, notice_id, c.clock.now())), 202

    @api.route("/v1/deliveries/dead", "GET", summary="发送失败（已停止重试）的通知", permission="notices:read",
               response=DeadList, query=[query_param("limit", "integer", minimum=1, maximum=500)])
    def dead_notices(principal):
        limit = int(request.args.get("limit") or 100)
        rows = []
        for p in store.dead(limit):
            if principal.role == "township" and p.get("township") != principal.township:
                continue
            rows.append({"notice_id": p["_id"], "kind": p.get("kind"), "channel": p.get("channel"),
                         "township": p.get("township"), "year": p.get("year"), "at": iso(p.get("at")),
                         "error": p.get("error")})
        return {"notices": rows}

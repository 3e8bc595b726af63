"""HTTP API of payments: signed gateway calls (quotes, orders, notifications, reversals, withholding
results, daily statements), staff calls (receipts, audits, withholding, reports) and the public
receipt check."""
from __future__ import annotations

import re
import secrets
from datetime import date

from flask import Flask, Response, jsonify, request

from shared import signing
from shared.clock import Clock, iso
from shared.config import env
from shared.consistency import SyncPending, parse_mid_year_token
from shared.errors import DomainError, Forbidden, NotFound, Unauthorized, ValidationFailed
from shared.logs import correlation_id, setup
from shared.masking import mask_id, mask_json
from shared.store import insert_once
from shared.web import county_routes, IDEMPOTENCY_KEY, create_service_app, path_year, query_param

from .. import bootstrap as boot
from ..domain import withholding as wh
from ..domain.model import Order, Quote, QuoteLine
from ..domain.receipts import mask_name, verification
from ..domain.reconciliation import REMITTANCE_INTERVAL_DAYS

MONEY_LOG_PAGE = 500  # rows of a day's money log per page
from ..service_layer import handlers
from .schemas import (AckOut, AgreementIn, AgreementOut, BatchIn, BatchOut, BatchResultOut, MoneyLogOut,
                      NotificationIn, OrderIn, OrderOut, OverdueOut, PaymentOut, QuoteIn, QuoteOut, ReceiptOut,
                      ReceiptVerificationOut, ReconciliationOut, RemittancesOut, ReturnsOut, ReversalIn, ReversalOut, StatementIn)

MAX_RESULT_FILE = 20 * 1024 * 1024


def render_line(l: QuoteLine, collector: bool = False) -> dict:
    """A collector sees what to collect per member, the name masked and no hardship category."""
    return {"id_number": mask_id(l.person_id), "name": mask_name(l.name) if collector else l.name,
            "category": None if collector else l.category,
            "standard_fen": l.standard_fen, "subsidy_fen": l.subsidy_fen, "payable_fen": l.payable_fen}


def render_quote(q: Quote, collector: bool = False) -> dict:
    return {"household_no": q.household_no, "year": q.year, "standard_fen": q.standard_total_fen,
            "subsidy_fen": q.subsidy_total_fen, "total_fen": q.total_fen, "mid_year": q.mid_year,
            "lines": [render_line(l, collector) for l in q.lines]}


def render_order(o: Order, collector: bool = False) -> dict:
    return {"order_no": o.order_no, "household_no": o.household_no, "year": o.year, "amount_fen": o.amount_fen,
            "channel": o.channel, "status": o.status, "expires_at": iso(o.expires_at),
            "receipt_no": o.receipt_no, "transaction_id": o.transaction_id, "paid_at": iso(o.paid_at),
            "lines": [render_line(l, collector) for l in o.lines]}


def render_receipt(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("_id", "gateway", "transaction_id", "county")}


def render_payment(p: dict) -> dict:
    return {"household_no": p["household_no"], "year": p["year"], "order_no": p["order_no"],
            "receipt_no": p["receipt_no"], "status": p["status"], "amount_fen": p["amount_fen"],
            "subsidy_fen": p.get("subsidy_fen", 0), "channel": p["channel"], "paid_at": iso(p["paid_at"]),
            "township": p["township"],
            "history": [{**h, "at": iso(h["at"])} for h in p.get("history", [])]}


def render_batch(b: dict) -> dict:
    return {"batch_no": b["_id"], "bank": b["bank"], "year": b["year"], "retry_of": b.get("retry_of"),
            "status": b["status"], "count": b["count"], "total_fen": b["total_fen"], "skipped": b.get("skipped", []),
            "summary": b.get("summary"),
            "lines": [{**{k: v for k, v in l.items() if k not in ("account_no", "account_name")},
                       "account_no": wh.mask_account(l["account_no"])} for l in b["lines"]]}


_year = path_year


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    if env("PAYMENTS_BENCH_BASELINE") == "1":
        @app.post("/bench/baseline")
        def bench_baseline():
            """The benchmark's baseline: the same stack writing one document, nothing else."""
            insert_once(c.db["bench_baseline"], {"_id": secrets.token_hex(12), "body": request.get_json(silent=True)})
            return {"code": "SUCCESS"}

        @app.post("/bench/floor")
        def bench_floor():
            """The store operations no confirmation can do without, and nothing else: the nonce
            (replay), the order (amount, expiry), the one-per-household insert, the outbox pointer,
            into scratch collections. What the stack allows a confirmation at best."""
            body = request.get_json(silent=True) or {}
            insert_once(c.db["bench_floor_nonces"], {"_id": secrets.token_hex(16)})
            order = c.db["orders"].find_one({"_id": str(body.get("order_no"))})
            key = secrets.token_hex(12)
            insert_once(c.db["bench_floor_payments"], {"_id": key, "order": order and order["_id"], "body": body})
            insert_once(c.db["bench_floor_outbox"], {"_id": key, "coll": "bench_floor_payments", "agg": key})
            return {"code": "SUCCESS"}

    return app


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    repo = boot.repository(c)
    work_calendar = boot.calendar(repo)

    def gateway() -> str:
        """Check the request's signature, time window and nonce; returns the gateway id."""
        h = request.headers
        gw_id, ts, nonce, sig = (h.get("X-Gateway-Id"), h.get("X-Timestamp"), h.get("X-Nonce"), h.get("X-Signature"))
        if not all((gw_id, ts, nonce, sig)):
            raise Unauthorized("SIGNATURE_REQUIRED", "缺少签名头（X-Gateway-Id、X-Timestamp、X-Nonce、X-Signature）")
        gw = c.gateways.get(gw_id)
        if gw is None or not signing.verify(gw.secret, sig, request.method, request.path, ts, nonce, request.get_data()):
            raise Unauthorized("SIGNATURE_INVALID", "签名校验失败")
        if c.county_code not in gw.counties:
            raise Forbidden("SCOPE_COUNTY", "该支付渠道未签约本县（区）", {"county": c.county_code})
        if not re.fullmatch(r"[0-9]{1,12}", ts) or abs(c.clock.now().timestamp() - int(ts)) > signing.SKEW_SECONDS:
            raise Unauthorized("TIMESTAMP_OUT_OF_WINDOW", "请求时间戳超出允许范围（±5分钟）")
        if not (16 <= len(nonce) <= 64):
            raise Unauthorized("NONCE_INVALID", "随机串长度应为16至64位")
        if not repo.use_nonce(gw_id, nonce, c.clock.now()):
            raise Unauthorized("NONCE_REPLAYED", "重复的请求（随机串已使用）")
        return gw_id

    sig = dict(guard=gateway)

    def within_reach(gw_id: str, year: int, household_no: str) -> bool:
        """A village collector quotes and orders only for households of its villages (an unknown
        household gets the same refusal, so numbers cannot be probed); True: it is a collector."""
        gw = c.gateways[gw_id]
        if not gw.collector:
            return False
        hh = repo.household(year, household_no)
        if hh is None or not gw.covers(hh.get("township"), hh.get("village")):
            raise Forbidden("GATEWAY_SCOPE", "该户不在本代收点负责的村（社区）范围内", {"household_no": household_no})
        return True

    # ---- gateways (signed) ----------------------------------------------------------------
    @api.route("/v1/quotes", "POST", summary="按户试算应缴金额（整户，含困难群众资助；村级代收员仅限本村，姓名屏蔽）",
               body=QuoteIn, response=QuoteOut, **sig)
    def create_quote(principal, data):
        collector = within_reach(principal, data["year"], data["household_no"])
        seen = parse_mid_year_token(data["consistency_token"]) if data.get("consistency_token") else None
        try:
            q = handlers.make_quote(repo, c.policy_for(data["year"]), c.clock, data["year"], data["household_no"], seen=seen)
        except SyncPending as e:
            resp = jsonify(mask_json(e.to_json()))
            resp.status_code, resp.headers["Retry-After"] = e.status, str(e.retry_after)
            return resp
        return render_quote(q, collector)

    @api.route("/v1/orders", "POST", summary="创建缴费订单（需 Idempotency-Key；金额创建时固定）", body=OrderIn,
               response=OrderOut, status=201, also=(200,), headers=[IDEMPOTENCY_KEY], **sig)
    def create_order(principal, data):
        key = request.headers.get("Idempotency-Key", "")
        if not (8 <= len(key) <= 64):
            raise DomainError("IDEMPOTENCY_KEY_REQUIRED", "缺少或无效的幂等键（Idempotency-Key，8至64位）", status=400)
        collector = within_reach(principal, data["year"], data["household_no"])
        order, created = handlers.create_order(repo, c.policy_for(data["year"]), c.clock, principal, key, data,
                                               c.gateways[principal].channels)
        return render_order(order, collector), 201 if created else 200

    @api.route("/v1/notifications", "POST", summary="支付结果异步通知（签名；重复通知再次确认、无二次效果）",
               body=NotificationIn, response=AckOut, **sig)
    def notify(principal, data):
        return handlers.confirm_payment(repo, c.clock, principal, data, correlation_id.get())

    @api.route("/v1/reversals", "POST", summary="冲正或多缴退款通知（签名）", body=ReversalIn, response=ReversalOut, **sig)
    def reverse(principal, data):
        return handlers.reverse_payment(repo, c.clock, principal, data, correlation_id.get())

    @api.route("/v1/withholding/batches/{batch_no}/results", "POST",
               summary="银行代扣回盘文件（text/csv，签名；格式见 docs/withholding.md）", response=BatchResultOut,
               raw_body={"text/csv": "回盘文件（UTF-8，≤20 MB），签名覆盖原始字节；格式见 docs/withholding.md"}, **sig)
    def batch_results(principal, batch_no):
        if request.content_length and request.content_length > MAX_RESULT_FILE:
            raise ValidationFailed("RESULT_FILE_TOO_LARGE", "回盘文件过大")
        try:
            text = request.get_data().decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("RESULT_FILE_ENCODING", "回盘文件须为 UTF-8 编码") from None
        return handlers.import_results(repo, c.clock, principal, batch_no, text, correlation_id.get())

    @api.route("/v1/reconciliation/statements", "POST", summary="渠道日对账单（签名；格式见 docs/reconciliation.md）",
               body=StatementIn, response=ReconciliationOut, **sig)
    def statement(principal, data):
        return handlers.import_statement(repo, c.clock, principal, data, correlation_id.get())

    # ---- staff ------------------------------------------------------------------------------
    @api.route("/v1/orders/{order_no}", "GET", summary="查询订单", permission="payments:manage", response=OrderOut)
    def get_order(principal, order_no):
        return render_order(handlers.order_status(repo, order_no))

    @api.route("/v1/payments/{year}/{household_no}", "GET", summary="查询某户缴费及资金状态变更记录",
               permission="payments:read",
               response=PaymentOut)
    def get_payment(principal, year, household_no):
        p = repo.payment(_year(year), household_no)
        if p is None:
            raise NotFound("PAYMENT_NOT_FOUND", "该户本年度无缴费记录", {"household_no": household_no})
        principal.check_township(p["township"])
        return render_payment(p)

    @api.route("/v1/payments/{year}/{household_no}/audit", "POST", summary="缴款审核（税务部门）",
               permission="payments:audit", response=PaymentOut)
    def audit(principal, year, household_no):
        return render_payment(handlers.audit_payment(repo, c.clock, _year(year), household_no, principal.subject,
                                                     "staff", correlation_id.get()))

    @api.route("/v1/audits/overdue", "GET", summary="超过3个工作日未审核的缴费", permission="payments:read",
               response=OverdueOut, query=[query_param("year", "integer", required=True)])
    def overdue(principal):
        year = _year(request.args.get("year", ""))
        return {"year": year, "overdue": handlers.overdue_audits(repo, c.clock, principal, year, work_calendar)}

    @api.route("/v1/receipts/{receipt_no}", "GET", summary="查询电子收据", permission="payments:read", response=ReceiptOut)
    def get_receipt(principal, receipt_no):
        return render_receipt(handlers.receipt_for_staff(repo, principal, receipt_no))

    @api.route("/v1/receipts/{receipt_no}/verification", "GET", summary="按收据号和校验码核验收据（公开，只读）",
               response=ReceiptVerificationOut, query=[query_param("check_code", required=True, maxLength=64)])
    def verify_receipt(principal, receipt_no):
        return verification(handlers.verify_receipt(repo, receipt_no, request.args.get("check_code", "")))

    @api.route("/v1/withholding/agreements", "POST", summary="登记三方代扣协议", permission="withholding:agree", body=AgreementIn,
               response=AgreementOut, status=201)
    def agreement(principal, data):
        banks = {g.id for g in c.gateways.values() if g.kind == "bank"}
        return wh.render_agreement(handlers.sign_agreement(repo, c.clock, principal, banks, data))

    @api.route("/v1/withholding/agreements/{household_no}", "GET", summary="查询三方代扣协议", permission="payments:read",
               response=AgreementOut)
    def get_agreement(principal, household_no):
        a = repo.agreement(household_no)
        if a is None:
            raise NotFound("AGREEMENT_NOT_FOUND", "该户未签订代扣协议", {"household_no": household_no})
        principal.check_township(a["township"])
        return wh.render_agreement(a)

    @api.route("/v1/withholding/batches", "POST", summary="生成代扣批次（或对余额不足者重扣）", permission="payments:manage",
               body=BatchIn, response=BatchOut, status=201)
    def batch(principal, data):
        if data["bank"] not in c.gateways:
            raise ValidationFailed("BANK_UNKNOWN", "该银行未接入代扣", {"bank": data["bank"]})
        return render_batch(handlers.create_batch(repo, c.policy_for(data["year"]), c.clock, principal, data,
                                                  secrets.token_hex(3).upper()))

    @api.route("/v1/withholding/batches/{batch_no}", "GET", summary="查询代扣批次", permission="payments:manage",
               response=BatchOut)
    def get_batch(principal, batch_no):
        b = repo.batch(batch_no)
        if b is None:
            raise NotFound("BATCH_NOT_FOUND", "代扣批次不存在", {"batch_no": batch_no})
        return render_batch(b)

    @api.route("/v1/withholding/batches/{batch_no}/file", "GET", summary="下载给银行的代扣文件（text/csv）",
               permission="payments:manage", produces="text/csv")
    def batch_file(principal, batch_no):
        b = repo.batch(batch_no)
        if b is None:
            raise NotFound("BATCH_NOT_FOUND", "代扣批次不存在", {"batch_no": batch_no})
        return Response(wh.export_csv(b), mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename={batch_no}.csv"})

    @api.route("/v1/withholding/batches/{batch_no}/returns", "GET",
               summary="代扣失败发回乡镇的名单（余额不足等，按乡镇）", permission="payments:read",
               response=ReturnsOut)
    def batch_returns(principal, batch_no):
        return {"batch_no": batch_no, "lines": handlers.returned_to_town(repo, principal, batch_no)}

    @api.route("/v1/reconciliation/{gateway_id}/{day}", "GET", summary="查询某渠道某日对账结果", permission="payments:manage",
               response=ReconciliationOut)
    def get_reconciliation(principal, gateway_id, day):
        r = repo.reconciliation(f"{gateway_id}:{day}")
        if r is None:
            raise NotFound("RECONCILIATION_NOT_FOUND", "该渠道当日尚未对账", {"gateway": gateway_id, "date": day})
        return {"gateway": gateway_id, "date": day, **r["report"]}

    @api.route("/v1/remittances", "GET", summary="解款汇总（每3天一期）", permission="payments:read",
               response=RemittancesOut, query=[query_param("year", "integer", required=True)])
    def remittances(principal):
        year = _year(request.args.get("year", ""))
        return {"year": year, "interval_days": REMITTANCE_INTERVAL_DAYS,
                "periods": handlers.remittances(repo, c.policy_for(year), c.clock, principal, year)}

    @api.route("/v1/money-log", "GET", summary="资金状态变更审计日志（按对象或日期）",
               permission="payments:manage", response=MoneyLogOut,
               query=[query_param("ref", maxLength=120), query_param("day", format="date"),
                      query_param("page", "integer", minimum=0, description="按日期查询时的页码（每页500条，按时间先后）")])
    def money_log(principal):
        ref, day = request.args.get("ref"), None
        if request.args.get("day"):
            try:
                day = date.fromisoformat(request.args["day"]).isoformat()
            except ValueError:
                raise ValidationFailed("BAD_DAY", "日期格式应为 YYYY-MM-DD") from None
        if not ref and not day:
            raise ValidationFailed("FILTER_REQUIRED", "请按对象（ref）或日期（day）查询")
        page = request.args.get("page", "0")
        if not (page.isascii() and page.isdigit()):
            raise ValidationFailed("BAD_PAGE", "页码必须是非负整数", {"page": page})
        extra: dict[str, int] = {}
        if ref:
            rows = repo.money_log_of(ref)
            if day:
                rows = [e for e in rows if e["day"] == day]
        else:
            rows, total = repo.money_log_of_day(day, int(page) * MONEY_LOG_PAGE, MONEY_LOG_PAGE)
            extra = {"page": int(page), "page_size": MONEY_LOG_PAGE, "total": total}
        return {"entries": [{**{k: v for k, v in e.items() if k != "_id"}, "at": iso(e["at"])} for e in rows], **extra}


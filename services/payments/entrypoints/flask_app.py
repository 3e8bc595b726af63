"""HTTP API of payments: signed gateway calls (quotes, orders, notifications) and staff reads."""
from __future__ import annotations

from flask import Flask, request

from shared import signing
from shared.clock import Clock
from shared.errors import DomainError, NotFound, Unauthorized
from shared.logs import correlation_id, setup
from shared.masking import mask_id
from shared.web import create_base_app

from .. import bootstrap as boot
from ..domain.model import Order, Quote
from ..service_layer import handlers
from .schemas import AckOut, NotificationIn, OrderIn, OrderOut, QuoteIn, QuoteOut


def render_quote(q: Quote) -> dict:
    return {"household_no": q.household_no, "year": q.year, "total_fen": q.total_fen,
            "lines": [{"id_number": mask_id(l.person_id), "name": l.name, "standard_fen": l.standard_fen,
                       "subsidy_fen": l.subsidy_fen, "payable_fen": l.payable_fen} for l in q.lines]}


def render_order(o: Order) -> dict:
    return {"order_no": o.order_no, "household_no": o.household_no, "year": o.year, "amount_fen": o.amount_fen,
            "channel": o.channel, "status": o.status, "expires_at": o.expires_at.isoformat(),
            "receipt_no": o.receipt_no}


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_base_app(c.service, c.tokens, {"store": c.store_ok, "broker": c.broker_ok})
    repo = boot.repository(c)

    def gateway() -> str:
        """Check the request's signature, time window and nonce; returns the gateway id."""
        h = request.headers
        gw_id, ts, nonce, sig = (h.get("X-Gateway-Id"), h.get("X-Timestamp"), h.get("X-Nonce"), h.get("X-Signature"))
        if not all((gw_id, ts, nonce, sig)):
            raise Unauthorized("SIGNATURE_REQUIRED", "缺少签名头（X-Gateway-Id、X-Timestamp、X-Nonce、X-Signature）")
        gw = c.gateways.get(gw_id)
        if gw is None or not signing.verify(gw.secret, sig, request.method, request.path, ts, nonce, request.get_data()):
            raise Unauthorized("SIGNATURE_INVALID", "签名校验失败")
        if not ts.isdigit() or abs(c.clock.now().timestamp() - int(ts)) > signing.SKEW_SECONDS:
            raise Unauthorized("TIMESTAMP_OUT_OF_WINDOW", "请求时间戳超出允许范围（±5分钟）")
        if not (16 <= len(nonce) <= 64):
            raise Unauthorized("NONCE_INVALID", "随机串长度应为16至64位")
        if not repo.use_nonce(gw_id, nonce, c.clock.now()):
            raise Unauthorized("NONCE_REPLAYED", "重复的请求（随机串已使用）")
        return gw_id

    sig = dict(guard=gateway)

    @api.route("/v1/quotes", "POST", summary="按户试算应缴金额（整户）", body=QuoteIn, response=QuoteOut, **sig)
    def create_quote(principal, data):
        return render_quote(handlers.make_quote(repo, c.policy, c.clock, data["year"], data["household_no"]))

    @api.route("/v1/orders", "POST", summary="创建缴费订单（需 Idempotency-Key）", body=OrderIn, response=OrderOut,
               status=201, **sig)
    def create_order(principal, data):
        gw = principal
        key = request.headers.get("Idempotency-Key", "")
        if not (8 <= len(key) <= 64):
            raise DomainError("IDEMPOTENCY_KEY_REQUIRED", "缺少或无效的幂等键（Idempotency-Key，8至64位）", status=400)
        order, created = handlers.create_order(repo, c.policy, c.clock, gw, key, data)
        return render_order(order), 201 if created else 200

    @api.route("/v1/notifications", "POST", summary="支付结果异步通知（签名）", body=NotificationIn, response=AckOut, **sig)
    def notify(principal, data):
        return handlers.confirm_payment(repo, c.clock, principal, data, correlation_id.get())

    @api.route("/v1/orders/{order_no}", "GET", summary="查询订单", roles=("county",), response=OrderOut)
    def get_order(principal, order_no):
        o = repo.order(order_no)
        if o is None:
            raise NotFound("ORDER_NOT_FOUND", "订单不存在", {"order_no": order_no})
        return render_order(o)

    return app

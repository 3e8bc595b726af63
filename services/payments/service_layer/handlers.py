"""Use cases of payments: quotes, orders from gateways, signed notifications, and the read model."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from shared.clock import Clock
from shared.errors import Conflict, NotFound
from shared.events import Envelope
from shared.policy import PolicyYear

from ..adapters.repository import PaymentsRepository
from ..domain.model import Order, Quote, quote

log = logging.getLogger(__name__)


def on_household_registered(repo: PaymentsRepository, env: Envelope) -> None:
    repo.upsert_household(env.payload)


def make_quote(repo: PaymentsRepository, policy: PolicyYear, clock: Clock, year: int, household_no: str) -> Quote:
    return quote(repo.household(year, household_no), policy, clock.now(), repo.payment(year, household_no) is not None)


def create_order(repo: PaymentsRepository, policy: PolicyYear, clock: Clock, gateway: str, idem_key: str,
                 data: dict[str, Any]) -> tuple[Order, bool]:
    """Returns (order, created). The same key and body return the same order; another body is refused."""
    body_hash = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    prior = repo.idempotent(gateway, idem_key)
    if prior:
        return _replay(repo, prior, body_hash), False
    q = make_quote(repo, policy, clock, data["year"], data["household_no"])
    order = Order.create(q, gateway, data["channel"], clock.now())
    repo.add_order(order)
    if not repo.claim_idempotency(gateway, idem_key, order.order_no, body_hash, clock.now()):
        repo.drop_order(order.order_no)  # lost a race with the same key: answer with the winner's order
        return _replay(repo, repo.idempotent(gateway, idem_key), body_hash), False
    return order, True


def _replay(repo: PaymentsRepository, prior: dict[str, Any], body_hash: str) -> Order:
    if prior["body_hash"] != body_hash:
        raise Conflict("IDEMPOTENCY_KEY_REUSED", "幂等键已用于内容不同的请求", {"order_no": prior["order_no"]})
    order = repo.order(prior["order_no"])
    if order is None:
        raise NotFound("ORDER_NOT_FOUND", "订单不存在")
    return order


def confirm_payment(repo: PaymentsRepository, clock: Clock, gateway: str, data: dict[str, Any],
                    correlation_id: str | None) -> dict[str, Any]:
    """A signed payment notification. Duplicates are acknowledged again with no second effect."""
    order = repo.order(data["order_no"])
    if order is None:
        raise NotFound("ORDER_NOT_FOUND", "订单不存在", {"order_no": data["order_no"]})
    now = clock.now()
    order.check_notification(gateway, data["amount_fen"], now)
    if order.status != "created":
        return _ack(order, duplicate=True)
    household = repo.household(order.year, order.household_no)
    order.transaction_id = data["transaction_id"]
    order.paid_at = data["paid_at"].isoformat()
    order.receipt_no = order.receipt()
    event = order.confirmed_event(household, order.transaction_id, order.paid_at)
    if repo.record_payment(order, event, now, correlation_id):
        order.status = "paid"
    else:
        existing = repo.payment(order.year, order.household_no)
        if existing and existing["order_no"] == order.order_no:
            order.status = "paid"  # a concurrent copy of this notification won; same effect
        else:
            order.status = "duplicate_payment"  # the household was already paid by another order: refund case
            log.warning("household paid twice; order %s needs a refund", order.order_no,
                        extra={"order_no": order.order_no})
    repo.mark_order(order)
    return _ack(order, duplicate=False)


def _ack(order: Order, duplicate: bool) -> dict[str, Any]:
    return {"code": "SUCCESS", "message": "成功", "order_no": order.order_no, "status": order.status,
            "receipt_no": order.receipt_no, "duplicate": duplicate}

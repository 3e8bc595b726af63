"""Quotes, orders and confirmed payments (缴费) of whole households, in integer fen.

Rules: 001_93f5b63ac6b4a653.txt 三 (250 yuan per person, paid once a year in full), 四 (window
2019-09-01..12-31), 五 (the household pays as a whole; no split or selective payment).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.errors import Conflict, DomainError, ValidationFailed
from shared.events import Event
from shared.policy import PolicyYear

ORDER_TTL = timedelta(hours=2)
CHANNELS = ("mobile_app", "online_banking", "pos", "bank_counter", "self_service", "village_cash", "withholding")


@dataclass(frozen=True)
class QuoteLine:
    person_id: str
    name: str
    standard_fen: int
    subsidy_fen: int

    @property
    def payable_fen(self) -> int:
        return self.standard_fen - self.subsidy_fen


@dataclass(frozen=True)
class Quote:
    household_no: str
    year: int
    lines: tuple[QuoteLine, ...]

    @property
    def total_fen(self) -> int:
        return sum(l.payable_fen for l in self.lines)


def quote(household: dict[str, Any] | None, policy: PolicyYear, at: datetime, already_paid: bool) -> Quote:
    """The whole household, every active member, at the standard of the policy year."""
    if household is None:
        raise DomainError("HOUSEHOLD_UNKNOWN", "未找到该户的登记信息（登记后数据同步可能有延迟，请稍后再试）", status=404)
    if household["year"] != policy.year:
        raise ValidationFailed("YEAR_NOT_OPEN", "该政策年度未开放缴费", {"year": household["year"]})
    if already_paid:
        raise Conflict("HOUSEHOLD_ALREADY_PAID", "该户本年度已缴费", {"household_no": household["household_no"]})
    if not policy.window_open_at(at):
        raise DomainError("WINDOW_CLOSED", "不在集中参保缴费期内（{}至{}）".format(
            policy.window_opens.isoformat(), policy.window_closes.isoformat()), {"at": at.isoformat()})
    lines = tuple(QuoteLine(m["person_id"], m["name"], policy.standard_fen, 0) for m in household["members"])
    return Quote(household["household_no"], household["year"], lines)


def new_order_no(at: datetime) -> str:
    return "P" + at.strftime("%Y%m%d%H%M%S") + secrets.token_hex(4).upper()


@dataclass
class Order:
    order_no: str
    household_no: str
    year: int
    gateway: str
    channel: str
    amount_fen: int
    lines: tuple[QuoteLine, ...]
    created_at: datetime
    expires_at: datetime
    status: str = "created"  # created → paid | duplicate_payment
    transaction_id: str | None = None
    paid_at: str | None = None
    receipt_no: str | None = None

    @classmethod
    def create(cls, q: Quote, gateway: str, channel: str, at: datetime) -> "Order":
        if channel not in CHANNELS:
            raise ValidationFailed("UNKNOWN_CHANNEL", "不支持的缴费渠道", {"channel": channel})
        return cls(new_order_no(at), q.household_no, q.year, gateway, channel, q.total_fen, q.lines, at, at + ORDER_TTL)

    def check_notification(self, gateway: str, amount_fen: int, at: datetime) -> None:
        if gateway != self.gateway:
            raise DomainError("ORDER_GATEWAY_MISMATCH", "订单不属于该支付渠道", status=403)
        if amount_fen != self.amount_fen:
            raise ValidationFailed("AMOUNT_MISMATCH", "支付金额与订单金额不一致",
                                   {"order_fen": self.amount_fen, "paid_fen": amount_fen})
        if self.status == "created" and at > self.expires_at:
            raise DomainError("ORDER_EXPIRED", "订单已过期", {"expires_at": self.expires_at.isoformat()})

    def receipt(self) -> str:
        return "R" + self.order_no[1:]

    def confirmed_event(self, household: dict[str, Any], transaction_id: str, paid_at: str) -> Event:
        return Event("payments.payment.confirmed", {
            "order_no": self.order_no, "receipt_no": self.receipt(), "household_no": self.household_no,
            "year": self.year, "county": household["county"], "township": household["township"],
            "village": household["village"], "head_name": household["head_name"],
            "head_phone": household.get("head_phone"), "amount_fen": self.amount_fen, "channel": self.channel,
            "gateway": self.gateway, "transaction_id": transaction_id, "paid_at": paid_at,
            "members": [{"person_id": l.person_id, "name": l.name, "standard_fen": l.standard_fen,
                         "subsidy_fen": l.subsidy_fen, "payable_fen": l.payable_fen} for l in self.lines]})

"""先缴后补 reimbursement claims (001_93f5b63ac6b4a653.txt 六: 2019年10月1日之后新增的困难群众……全额缴费、
先缴后补): a claim is opened once per person and year (pending) and paid back once (paid). Allowed
transitions are data; the write that pays it checks the version it read, so two departments'
clerks reporting the same claim paid at once cannot both pay it (nor announce it twice).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from shared.aggregate import machine
from shared.clock import SHANGHAI
from shared.errors import Conflict, ValidationFailed

CLAIM = machine("CLAIM", {"pending": ("paid", "cancelled"), "paid": (), "cancelled": ()},
                {"pending": "待支付", "paid": "已支付", "cancelled": "已撤销（缴费已冲正）"})


def cancel(claim: dict[str, Any], order_no: str, reversal_id: str, at: datetime) -> dict[str, Any] | None:
    """The fields to write when the payment a claim reimburses is reversed (冲正): nothing is
    reimbursed for money that went back, so a pending claim is cancelled; one paid already keeps its
    status and records the reversal, for the county to recover (追回). None when the claim belongs
    to another payment or this reversal is recorded already (a redelivery)."""
    if claim.get("order_no") != order_no or claim.get("reversal_id") == reversal_id:
        return None
    if claim["status"] == "paid":
        return {"reversal_id": reversal_id, "payment_reversed_at": at}
    CLAIM.check(claim["status"], "cancelled")
    return {"status": "cancelled", "reversal_id": reversal_id, "cancelled_at": at}


def pay(claim: dict[str, Any], payment_ref: str, paid_on: date, at: datetime) -> dict[str, Any] | None:
    """The fields that record the claim paid, or None when this very payment is recorded already
    (a repeated request). Another payment of a paid claim is refused (CLAIM_ALREADY_PAID)."""
    if claim["status"] == "paid":
        if claim.get("payment_ref") == payment_ref:
            return None
        raise Conflict("CLAIM_ALREADY_PAID", "该报销申请已支付（支付凭证号不同）", {"payment_ref": claim.get("payment_ref")})
    CLAIM.check(claim["status"], "paid")
    if paid_on < claim["created_at"].astimezone(SHANGHAI).date():
        raise ValidationFailed("PAID_BEFORE_CLAIM", "支付日期早于报销申请生成日期", {"paid_on": paid_on.isoformat()})
    return {"status": "paid", "payment_ref": payment_ref, "paid_on": paid_on.isoformat(), "paid_recorded_at": at}

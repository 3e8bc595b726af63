"""Electronic receipts (电子收据): one per household payment, naming the head, the members, the
amounts, the time and the channel (001 五: 以户为单位开具收据，注明户主、家庭成员姓名、缴费金额、缴费时间).

A receipt carries a check code (校验码) so that anyone holding it can verify it by number without
being able to enumerate other households' receipts.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from shared.masking import mask_id

from .model import CHANNEL_NAMES


def check_code(key: bytes, receipt_no: str, amount_fen: int, paid_at: str) -> str:
    digest = hmac.new(key, f"{receipt_no}|{amount_fen}|{paid_at}".encode(), hashlib.sha256).hexdigest()
    return digest[:12].upper()


def mask_name(name: str) -> str:
    """张三丰 → 张**: enough for a payer to recognise, not enough to identify."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def benefit_start_line(member: dict[str, Any], year: int) -> dict[str, Any]:
    """A mid-year member's 待遇享受起始日, shown when it is not the benefit year's start (Jan 1 of the
    policy year: the resident insurance year is the calendar year), with the printed line."""
    start = member.get("benefits_from")
    if not start or start <= f"{year}-01-01":
        return {}
    y, m, d = (int(x) for x in start.split("-"))
    return {"benefits_from": start, "benefits_note": f"中途参保，{y}年{m}月{d}日起享受医保待遇"}


def build_receipt(payment: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The receipt of a recorded household payment, from the payment document alone (it carries the
    head, the members and their amounts as charged), so the worker that issues it after the
    confirmation and a reader that arrives first build the same document."""
    paid_at = payment["paid_at"]
    return {
        "_id": payment["receipt_no"], "receipt_no": payment["receipt_no"], "order_no": payment["order_no"],
        "household_no": payment["household_no"], "year": payment["year"], "county": payment["county"],
        "township": payment["township"], "village": payment["village"], "head_name": payment["head_name"],
        "members": [{"name": m["name"], "id_number": mask_id(m["person_id"]), "category": m.get("category"),
                     "standard_fen": m["standard_fen"], "subsidy_fen": m["subsidy_fen"],
                     "payable_fen": m["payable_fen"], **benefit_start_line(m, payment["year"])}
                    for m in payment["members"]],
        "standard_fen": payment["standard_fen"], "subsidy_fen": payment["subsidy_fen"],
        "amount_fen": payment["amount_fen"], "paid_at": paid_at, "channel": payment["channel"],
        "channel_name": CHANNEL_NAMES[payment["channel"]], "gateway": payment["gateway"],
        "transaction_id": payment["transaction_id"], "proof": payment.get("proof") or {},
        "status": "reversed" if payment.get("status") == "reversed" else "valid",
        "check_code": check_code(key, payment["receipt_no"], payment["amount_fen"], paid_at),
    }


def verification(receipt: dict[str, Any]) -> dict[str, Any]:
    """What a public check of a receipt shows: enough to match the paper, nothing more."""
    return {"receipt_no": receipt["receipt_no"], "valid": receipt["status"] == "valid", "status": receipt["status"],
            "year": receipt["year"], "head_name": mask_name(receipt["head_name"]),
            "member_count": len(receipt["members"]), "amount_fen": receipt["amount_fen"],
            "paid_at": receipt["paid_at"], "channel": receipt["channel"], "channel_name": receipt["channel_name"]}

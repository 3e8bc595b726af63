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

from .model import CHANNEL_NAMES, Order


def check_code(key: bytes, receipt_no: str, amount_fen: int, paid_at: str) -> str:
    digest = hmac.new(key, f"{receipt_no}|{amount_fen}|{paid_at}".encode(), hashlib.sha256).hexdigest()
    return digest[:12].upper()


def mask_name(name: str) -> str:
    """张三丰 → 张**: enough for a payer to recognise, not enough to identify."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def build_receipt(order: Order, household: dict[str, Any], proof: dict[str, str], key: bytes) -> dict[str, Any]:
    paid_at = order.paid_at or ""
    return {
        "_id": order.receipt(), "receipt_no": order.receipt(), "order_no": order.order_no,
        "household_no": order.household_no, "year": order.year, "county": household["county"],
        "township": household["township"], "village": household["village"], "head_name": household["head_name"],
        "members": [{"name": l.name, "id_number": mask_id(l.person_id), "category": l.category,
                     "standard_fen": l.standard_fen, "subsidy_fen": l.subsidy_fen, "payable_fen": l.payable_fen}
                    for l in order.lines],
        "standard_fen": sum(l.standard_fen for l in order.lines),
        "subsidy_fen": sum(l.subsidy_fen for l in order.lines),
        "amount_fen": order.amount_fen, "paid_at": paid_at, "channel": order.channel,
        "channel_name": CHANNEL_NAMES[order.channel], "gateway": order.gateway,
        "transaction_id": order.transaction_id, "proof": proof, "status": "valid",
        "check_code": check_code(key, order.receipt(), order.amount_fen, paid_at),
    }


def verification(receipt: dict[str, Any]) -> dict[str, Any]:
    """What a public check of a receipt shows: enough to match the paper, nothing more."""
    return {"receipt_no": receipt["receipt_no"], "valid": receipt["status"] == "valid", "status": receipt["status"],
            "year": receipt["year"], "head_name": mask_name(receipt["head_name"]),
            "member_count": len(receipt["members"]), "amount_fen": receipt["amount_fen"],
            "paid_at": receipt["paid_at"], "channel": receipt["channel"], "channel_name": receipt["channel_name"]}

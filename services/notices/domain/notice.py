"""Notices (通知) to people: here the payment receipt notice to the household head (户主).

Rule: 001_93f5b63ac6b4a653.txt 五 — the receipt names the head, the members, the amount and the
time of payment.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.clock import SHANGHAI
from shared.money import yuan


@dataclass(frozen=True)
class Notice:
    notice_id: str
    kind: str  # receipt | reminder | failure | bulletin
    household_no: str
    year: int
    township: str
    recipient_name: str
    recipient_phone: str | None
    channel: str  # sms | email | webhook
    text: str
    status: str = "queued"  # queued → sent | failed | no_contact


def receipt_notice(p: dict[str, Any]) -> Notice:
    paid_at = datetime.fromisoformat(p["paid_at"]).astimezone(SHANGHAI)
    names = "、".join(m["name"] for m in p["members"])
    text = (f"【{p['county']}医保】{p['head_name']}户主您好：您户{len(p['members'])}人（{names}）"
            f"{p['year']}年度城乡居民医保费共{yuan(p['amount_fen'])}元已于"
            f"{paid_at:%Y年%m月%d日 %H:%M}缴纳成功，电子收据号{p['receipt_no']}。")
    return Notice(f"receipt:{p['order_no']}", "receipt", p["household_no"], p["year"], p["township"], p["head_name"],
                  p.get("head_phone"), "sms", text, "queued" if p.get("head_phone") else "no_contact")

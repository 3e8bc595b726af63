"""Delivery of a notice (通知送达): its states, quiet hours, per-number limits and retry backoff.

Pure Python: the rules the delivery loop (service_layer/delivery.py) applies, testable with a clock
and nothing else. Times are instants; the rules speak Asia/Shanghai wall time (docs/guarantees.md "Time").

States of a notice's delivery (the `status` field of the notice document):

    queued ──▶ sending ──▶ sent ──▶ delivered        (SMS: the provider's 状态报告 says so)
      ▲           │          └────▶ failed            (the receipt names the carrier's error code)
      │           ├──▶ delivered                     (webhook 2xx, internal work list: at once)
      └── retry ──┤
                  └──▶ dead                          (the last retry, or a refusal no retry cures)
    dead / failed ──resend──▶ queued                 (county staff, a new delivery round)
    dead ──▶ delivered                               (a receipt for a send whose reply we lost)

`no_contact` (no phone known) is never due.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from shared.aggregate import machine
from shared.clock import SHANGHAI

STATES = machine("NOTICE", {
    "queued": ("sending",),
    "sending": ("sent", "delivered", "queued", "dead"),
    "sent": ("delivered", "failed"),
    "failed": ("delivered", "queued"),  # a later receipt may say delivered after all; staff may resend
    "dead": ("queued", "delivered"),  # a receipt proves a send whose reply was lost (timeout) delivered
    "delivered": (),
    "no_contact": (),
}, labels={"queued": "待发送", "sending": "发送中", "sent": "已提交运营商", "delivered": "已送达",
           "failed": "送达失败", "dead": "发送失败（已停止重试）", "no_contact": "无联系方式"})

RESENDABLE = ("dead", "failed")
GENERIC_TEMPLATE = "GENERIC"


@dataclass(frozen=True)
class QuietHours:
    """Non-urgent SMS are not sent between `start` and `end` Shanghai wall time (a window that may
    cross midnight, "21:00-08:00", NOTICE_QUIET_HOURS); they wait until `end`."""
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> "QuietHours":
        try:
            a, b = (part.strip() for part in text.split("-"))
            return cls(time.fromisoformat(a), time.fromisoformat(b))
        except ValueError:
            raise ValueError(f"NOTICE_QUIET_HOURS must look like 21:00-08:00, not {text!r}") from None

    def is_quiet(self, at: datetime) -> bool:
        t = at.astimezone(SHANGHAI).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def release_at(self, at: datetime) -> datetime | None:
        """When a message held at `at` may go: the next `end` (08:00); None if `at` is not quiet."""
        if not self.is_quiet(at):
            return None
        local = at.astimezone(SHANGHAI)
        end = datetime.combine(local.date(), self.end, SHANGHAI)
        return end if end > local else end + timedelta(days=1)

    def next_morning(self, at: datetime) -> datetime:
        """The end of the next quiet period after the Shanghai day of `at` (next day 08:00): where a
        message held by the daily limit goes."""
        local = at.astimezone(SHANGHAI)
        return datetime.combine(local.date() + timedelta(days=1), self.end, SHANGHAI)


def may_send_now(channel: str, urgent: bool, at: datetime, quiet: QuietHours) -> datetime | None:
    """None: send now. Otherwise the instant to hold the notice until. Only SMS wake people up:
    the township's work list and webhooks are not held; an urgent SMS goes at once."""
    if channel != "sms" or urgent:
        return None
    return quiet.release_at(at)


def backoff(attempt_no: int, base_s: float = 60.0, cap_s: float = 3600.0) -> timedelta:
    """Wait before attempt `attempt_no + 1` after `attempt_no` failed: base × 2^(n-1), at most cap
    (60 s, 2 min, 4 min, 8 min … with the defaults)."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(attempt_no - 1, 0)))


def day_counter_id(phone: str, at: datetime) -> str:
    """The per-number daily counter's `_id`: "<phone>:<YYYY-MM-DD>" of the Shanghai day."""
    return f"{phone}:{at.astimezone(SHANGHAI).date().isoformat()}"


def text_guard_id(phone: str, text: str) -> str:
    """The identical-text guard's `_id`: one identical text per number per 30 s (providers refuse
    repeats, and a repeat within seconds is our own bug or a duplicate event)."""
    return f"{phone}:text:{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def delivery_id(county: str, notice_id: str, round_no: int) -> str:
    """Our id of one delivery round of a notice, sent to the provider as OutId and named by its
    receipts: "<county>|<notice id>|<round>". The county routes a receipt (pushed to one URL for the
    suite) to its county's store; the round keeps a late receipt of an earlier round off a resend."""
    return f"{county}|{notice_id}|{round_no}"


def parse_delivery_id(out_id: Any) -> tuple[str, str, int] | None:
    if not isinstance(out_id, str):
        return None
    parts = out_id.split("|")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isascii() or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def template_of(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The provider template code and its parameters: the notice's `template` when it has one
    (services/notices/templates), else the GENERIC template carrying the whole text."""
    t = doc.get("template")
    if isinstance(t, dict) and t.get("code"):
        return str(t["code"]), dict(t.get("params") or {})
    return GENERIC_TEMPLATE, {"text": doc.get("text") or ""}


def receipt_key(r: dict[str, Any]) -> str:
    """A receipt's identity: the same report pushed twice has the same key and changes nothing."""
    raw = "|".join(str(r.get(k)) for k in ("out_id", "biz_id", "phone_number", "report_time", "success", "err_code"))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def status_after_receipt(current: str, success: bool) -> str | None:
    """The status a receipt moves a sent notice to; None: the receipt is history only. Delivered is
    final (a failure reported after a delivery is kept, not believed); a failure may still be
    followed by a delivery (a carrier's own retry)."""
    target = "delivered" if success else "failed"
    return target if STATES.can(current, target) else None

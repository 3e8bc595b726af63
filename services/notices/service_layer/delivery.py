"""Delivering notices: the loop's one pass (`Deliverer.run_once(now)`), receipts, resend.

The rules (docs/notice-delivery.md):
- quiet hours: a non-urgent SMS due between 21:00 and 08:00 Shanghai (NOTICE_QUIET_HOURS) is held
  to 08:00; urgent ones, webhooks and work-list notices go at once;
- per number: at most NOTICE_SMS_PER_NUMBER_PER_DAY SMS (5) a Shanghai day, the next one is held
  to the next day's 08:00, never dropped; one identical text per number per 30 s;
- per channel: at most NOTICE_SMS_PER_SECOND sends a second from this process;
- a retryable failure is tried again after 60 s × 2^(n-1) (NOTICE_RETRY_BASE_S), up to
  NOTICE_MAX_ATTEMPTS (5) attempts, then the notice is dead: listed for staff, who may resend it.

Never twice through a crash between our own writes: the notice is set to "sending" by a
compare-and-set naming the attempt BEFORE the provider is called, and its result is written with a
compare-and-set on that attempt; the pointer is removed only after the notice says it is done, and
a pointer whose notice is done is just removed.

A crash DURING the provider call (the notice stays "sending" past NOTICE_SENDING_TIMEOUT_S) is the
one case our writes cannot settle, and the rule chosen is AT-LEAST-ONCE with OutId for dedupe: if
a receipt for the delivery id has arrived meanwhile, the send happened and the notice is "sent";
otherwise the attempt is recorded as "unknown" and the notice is sent again with the same OutId
(our delivery id; the provider and its receipts name it, so a duplicate is visible and its receipt
changes nothing). Why not "unknown" for staff: these notices tell a household its receipt or that a
withholding failed and money must be deposited; one lost is worse than one repeated, the window is
one crash long, and the number's daily count is not charged twice (counted once per notice).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from shared import metrics
from shared.clock import Clock
from shared.config import env
from shared.errors import Conflict, NotFound

from ..adapters.channels import Channel, Delivery, SendResult
from ..adapters.deliveries import DeliveryStore, fresh_delivery
from ..domain.delivery import (RESENDABLE, STATES, QuietHours, backoff, day_counter_id, may_send_now,
                               parse_delivery_id, receipt_key, status_after_receipt, template_of, text_guard_id)

log = logging.getLogger(__name__)
SERVICE = "notices"


@dataclass(frozen=True)
class DeliverySettings:
    quiet: QuietHours
    per_number_per_day: int = 5
    identical_window: timedelta = timedelta(seconds=30)
    sms_per_second: float = 10.0
    max_attempts: int = 5
    retry_base_s: float = 60.0
    retry_cap_s: float = 3600.0
    sending_timeout: timedelta = timedelta(seconds=120)
    batch: int = 50

    @classmethod
    def from_env(cls) -> "DeliverySettings":
        return cls(quiet=QuietHours.parse(env("NOTICE_QUIET_HOURS", "21:00-08:00")),
                   per_number_per_day=int(env("NOTICE_SMS_PER_NUMBER_PER_DAY", "5")),
                   identical_window=timedelta(seconds=float(env("NOTICE_SMS_IDENTICAL_WINDOW_S", "30"))),
                   sms_per_second=float(env("NOTICE_SMS_PER_SECOND", "10")),
                   max_attempts=int(env("NOTICE_MAX_ATTEMPTS", "5")),
                   retry_base_s=float(env("NOTICE_RETRY_BASE_S", "60")),
                   retry_cap_s=float(env("NOTICE_RETRY_CAP_S", "3600")),
                   sending_timeout=timedelta(seconds=float(env("NOTICE_SENDING_TIMEOUT_S", "120"))),
                   batch=int(env("NOTICE_DELIVERY_BATCH", "50")))


class RateLimiter:
    """At most `per_second` sends a second (a token bucket on real time: the provider counts real
    seconds whatever the suite's clock says). One per channel per process, shared by the counties."""

    def __init__(self, per_second: float, sleep: Callable[[float], None] = time.sleep):
        self.per_second = per_second
        self.sleep = sleep
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def acquire(self) -> None:
        if self.per_second <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(self._next, now)
            self._next = at + 1.0 / self.per_second
        if at > now:
            self.sleep(at - now)


class Deliverer:
    """One county's delivery: takes due pointers and sends their notices by their channel."""

    def __init__(self, store: DeliveryStore, channels: dict[str, Channel], settings: DeliverySettings,
                 clock: Clock, limiters: dict[str, RateLimiter] | None = None):
        self.store, self.channels, self.settings, self.clock = store, channels, settings, clock
        self.limiters = limiters if limiters is not None else {"sms": RateLimiter(settings.sms_per_second)}

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over the due pointers at `now` (the suite's clock by default); outcome → count."""
        now = now or self.clock.now()
        out: dict[str, int] = {}
        for p in self.store.due(now, self.settings.batch):
            try:
                what = self._one(p, now)
            except Exception:  # noqa: BLE001 — one notice's trouble must not stop the others
                log.exception("delivery of %s failed", p["_id"])
                self.store.reschedule(p["_id"], now + timedelta(seconds=60), "error")
                what = "error"
            out[what] = out.get(what, 0) + 1
        metrics.NOTICES_QUIET_BACKLOG.labels(SERVICE, self.store.county).set(self.store.held_count("quiet"))
        return out

    def _one(self, p: dict, now: datetime) -> str:
        nid = p["_id"]
        doc = self.store.notice(nid)
        status = (doc or {}).get("status")
        if status == "sending":
            since = doc["delivery"].get("sending_since")
            if since is not None and now - since < self.settings.sending_timeout:
                self.store.reschedule(nid, since + self.settings.sending_timeout, "in_flight")
                return "in_flight"
            return self._recover(doc, now)
        if status == "dead":  # a crash between the notice's last write and the pointers'
            self.store.mark_dead(doc, now, doc["delivery"].get("error"))
        if status != "queued":
            self.store.done(nid)
            return "done"
        d = doc.get("delivery") or fresh_delivery(self.store.county, nid)
        if d.get("attempt_no") and self._delivered_after_all(doc, d, now):
            return "delivered"
        if d.get("next_at") is not None and d["next_at"] > now:  # a retry's backoff not over yet
            self.store.reschedule(nid, d["next_at"], "retry")
            return "later"
        channel = doc["channel"]
        hold = may_send_now(channel, bool(doc.get("urgent")), now, self.settings.quiet)
        if hold is not None:
            return self._hold(doc, hold, "quiet")
        if channel == "sms":
            phone = doc.get("recipient_phone") or ""
            if not self.store.take_daily(day_counter_id(phone, now), nid, self.settings.per_number_per_day):
                return self._hold(doc, self.settings.quiet.next_morning(now), "daily_limit")
            later = self.store.take_text(text_guard_id(phone, doc.get("text") or ""), nid, now,
                                         self.settings.identical_window)
            if later is not None:
                return self._hold(doc, later, "identical_text")
        limiter = self.limiters.get(channel)
        if limiter is not None:
            limiter.acquire()
        attempt_no = d["attempt_no"] + 1
        attempt_id = f"{d['id']}#{attempt_no}"
        if not self.store.begin_attempt(doc, attempt_id, now):
            return "raced"  # another loop took it
        result, seconds = self._send(doc, d, attempt_id, now)
        return self._record(doc, d["id"], attempt_id, attempt_no, result, seconds, now)

    def _delivered_after_all(self, doc: dict, d: dict, now: datetime) -> bool:
        """A retry waiting for its turn whose earlier attempt reached the phone after all (a timeout
        the provider had in fact accepted): its success receipt, kept while the notice was queued,
        delivers it now, and no second SMS goes out."""
        receipts = [r for r in self.store.waiting(d["id"]) if r.get("success")]
        if not receipts:
            return False
        r = receipts[0]
        if self.store.apply_receipt(doc["_id"], d["id"], receipt_key(r), receipt_record(r, now), "delivered", ("queued",)):
            metrics.NOTICES_DELIVERED.labels(SERVICE, doc.get("channel") or "sms", doc.get("kind") or "").inc()
        self.store.drop_waiting(d["id"])
        self.store.done(doc["_id"])
        return True

    def _hold(self, doc: dict, until: datetime, reason: str) -> str:
        self.store.reschedule(doc["_id"], until, reason)
        metrics.NOTICES_HELD.labels(SERVICE, doc["channel"], reason).inc()
        return reason

    def _send(self, doc: dict, d: dict, attempt_id: str, now: datetime) -> tuple[SendResult, float]:
        code, params = template_of(doc)
        delivery = Delivery(notice_id=doc["_id"], delivery_id=d["id"], attempt_id=attempt_id, channel=doc["channel"],
                            kind=doc.get("kind") or "", county=self.store.county, township=doc.get("township") or "",
                            household_no=doc.get("household_no"), year=doc.get("year"),
                            recipient_name=doc.get("recipient_name"), phone=doc.get("recipient_phone"),
                            text=doc.get("text") or "", template_code=code, template_params=params,
                            urgent=bool(doc.get("urgent")), at=now,
                            sign_name=(doc.get("template") or {}).get("sign_name"), email=doc.get("recipient_email"))
        channel = self.channels.get(doc["channel"])
        t0 = time.perf_counter()
        try:
            result = channel.send(delivery) if channel else SendResult(False, error=f"NO_CHANNEL: {doc['channel']}")
        except Exception as e:  # noqa: BLE001 — a channel's bug is a failed attempt, retried
            log.exception("channel %s raised", doc["channel"])
            result = SendResult(False, retryable=True, error=f"CHANNEL_ERROR: {type(e).__name__}")
        seconds = time.perf_counter() - t0
        metrics.NOTICE_PROVIDER_LATENCY.labels(SERVICE, doc["channel"]).observe(seconds)
        return result, seconds

    def _record(self, doc: dict, delivery_id: str, attempt_id: str, attempt_no: int, result: SendResult,
                seconds: float, now: datetime) -> str:
        nid, channel, kind = doc["_id"], doc["channel"], doc.get("kind") or ""
        attempt: dict[str, Any] = {"attempt_id": attempt_id, "at": now, "error": result.error,
                                   "provider_id": result.provider_id, "latency_ms": round(seconds * 1000, 1)}
        if result.accepted:
            status = "sent" if channel == "sms" else "delivered"  # a webhook's 2xx, the work list: delivered
            if self.store.finish_attempt(nid, attempt_id, status, {**attempt, "result": "accepted"},
                                         provider_id=result.provider_id, error=None, next_at=None):
                metrics.NOTICES_SENT.labels(SERVICE, channel, kind).inc()
                if status == "delivered":
                    metrics.NOTICES_DELIVERED.labels(SERVICE, channel, kind).inc()
                self.store.done(nid)
                apply_waiting(self.store, delivery_id, now)
            return "sent"
        metrics.NOTICES_FAILED.labels(SERVICE, channel, kind, "attempt").inc()
        if result.retryable and attempt_no < self.settings.max_attempts:
            next_at = now + backoff(attempt_no, self.settings.retry_base_s, self.settings.retry_cap_s)
            if self.store.finish_attempt(nid, attempt_id, "queued", {**attempt, "result": "retry"},
                                         next_at=next_at, error=result.error):
                self.store.reschedule(nid, next_at, "retry")
            return "retry"
        if self.store.finish_attempt(nid, attempt_id, "dead", {**attempt, "result": "dead"}, error=result.error,
                                     next_at=None):
            metrics.NOTICES_DEAD.labels(SERVICE, channel, kind).inc()
            self.store.mark_dead(doc, now, result.error)
            self.store.done(nid)
        return "dead"

    def _recover(self, doc: dict, now: datetime) -> str:
        """A notice left "sending" past the timeout (module docstring: at-least-once, same OutId)."""
        d = doc["delivery"]
        attempt = {"attempt_id": d.get("sending"), "at": now, "provider_id": None, "latency_ms": None}
        seen = self.store.waiting(d["id"])
        if seen:  # the provider took it: a receipt names our delivery id
            biz = next((r.get("biz_id") for r in seen if r.get("biz_id")), None)
            if self.store.finish_attempt(doc["_id"], d.get("sending"), "sent",
                                         {**attempt, "result": "accepted", "provider_id": biz,
                                          "error": "RECOVERED: reply lost, a receipt names the delivery"},
                                         provider_id=biz, error=None, next_at=None):
                metrics.NOTICES_SENT.labels(SERVICE, doc["channel"], doc.get("kind") or "").inc()
                self.store.done(doc["_id"])
                apply_waiting(self.store, d["id"], now)
            return "recovered_sent"
        self.store.finish_attempt(doc["_id"], d.get("sending"), "queued",
                                  {**attempt, "result": "unknown",
                                   "error": "INTERRUPTED: no reply recorded; sending again with the same OutId"},
                                  next_at=None)
        self.store.reschedule(doc["_id"], now, None)
        return "recovered_resend"


# ---- receipts (状态报告) ---------------------------------------------------------------------------

def receipt_record(r: dict, now: datetime) -> dict:
    return {"at": now, "success": bool(r.get("success")), "err_code": r.get("err_code"),
            "report_time": r.get("report_time"), "send_time": r.get("send_time"), "biz_id": r.get("biz_id"),
            "out_id": r.get("out_id")}


def apply_receipt(store: DeliveryStore, r: dict, now: datetime) -> str:
    """One receipt → "applied" | "duplicate" | "waiting" | "stale" | "unmatched". Matched by OutId
    (our delivery id), never by the provider's BizId; a second copy changes nothing (its key is on
    the notice); one that comes before our send's result is kept and applied when that is written."""
    parsed = parse_delivery_id(r.get("out_id"))
    if parsed is None:
        return "unmatched"
    _county, nid, _round = parsed
    key = receipt_key(r)
    for _ in range(4):  # a concurrent write (the send's result, another receipt) makes us read again
        doc = store.notice(nid)
        if doc is None:
            return "unmatched"
        d = doc.get("delivery") or {}
        if d.get("id") != r["out_id"]:
            return "stale"  # an earlier round's (the notice was resent), or not ours
        if key in (doc.get("receipt_keys") or []):
            return "duplicate"
        status = doc["status"]
        if status in ("queued", "sending"):
            store.keep_waiting(r["out_id"], r)
            again = store.notice(nid) or {}
            if again.get("status") in ("queued", "sending"):
                return "waiting"  # the send's result, when written, applies it (apply_waiting)
            continue  # the result was written meanwhile: apply it ourselves (the key keeps it once)
        target = status_after_receipt(status, bool(r.get("success")))
        if store.apply_receipt(nid, r["out_id"], key, receipt_record(r, now), target, (status,)):
            kind, channel = doc.get("kind") or "", doc.get("channel") or "sms"
            if target == "delivered":
                metrics.NOTICES_DELIVERED.labels(SERVICE, channel, kind).inc()
                if status == "dead":
                    store.unmark_dead(nid)
            elif target == "failed":
                metrics.NOTICES_FAILED.labels(SERVICE, channel, kind, "receipt").inc()
            return "applied"
    return "duplicate"


def apply_waiting(store: DeliveryStore, delivery_id: str, now: datetime) -> None:
    """The receipts that came before the send's result was written, applied now it is."""
    waiting = store.waiting(delivery_id)
    for r in waiting:
        apply_receipt(store, r, now)
    if waiting:
        store.drop_waiting(delivery_id)


def receive_receipts(stores: Callable[[str], DeliveryStore | None], receipts: list[dict], now: datetime) -> dict[str, int]:
    """A provider's push: each receipt to the store of the county its OutId names."""
    out = {"applied": 0, "duplicate": 0, "waiting": 0, "stale": 0, "unmatched": 0}
    for r in receipts:
        parsed = parse_delivery_id(r.get("out_id"))
        store = stores(parsed[0]) if parsed else None
        what = apply_receipt(store, r, now) if store is not None else "unmatched"
        out[what] += 1
    return out


# ---- staff ------------------------------------------------------------------------------------

def resend(store: DeliveryStore, notice_id: str, now: datetime) -> dict:
    """A dead or failed notice goes back to due, as a new delivery round (a new OutId). Repeating
    the request for a notice already queued again only makes sure it is due (safe after a crash)."""
    for _ in range(4):
        doc = store.notice(notice_id)
        if doc is None:
            raise NotFound("NOTICE_NOT_FOUND", "没有这条通知", {"notice_id": notice_id})
        if doc["status"] == "queued":
            store.point_due(notice_id, now, doc["channel"])
            store.unmark_dead(notice_id)
            return doc
        if doc["status"] not in RESENDABLE:
            label = (STATES.labels or {}).get(doc["status"], doc["status"])
            raise Conflict("NOTICE_NOT_RESENDABLE", f"通知当前状态为「{label}」，只有发送失败或送达失败的通知可以重发",
                           {"notice_id": notice_id, "status": doc["status"]})
        if store.resend(doc, store.county):
            store.point_due(notice_id, now, doc["channel"])
            store.unmark_dead(notice_id)
            return store.notice(notice_id)
    raise Conflict("NOTICE_BUSY", "该通知正被同时修改，请稍后重试", {"notice_id": notice_id})

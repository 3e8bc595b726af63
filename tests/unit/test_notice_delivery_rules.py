"""The pure rules of notice delivery (services/notices/domain/delivery.py): quiet hours, per-number
limits' keys, retry backoff, delivery ids, templates, receipts (docs/notice-delivery.md)."""
from datetime import datetime, timedelta

import pytest

from services.notices.adapters.channels import sms_signature, webhook_signature
from services.notices.domain import delivery as d
from services.notices.service_layer.delivery import RateLimiter
from shared.clock import SHANGHAI

QUIET = d.QuietHours.parse("21:00-08:00")


def sh(h, m=0, day=15):
    return datetime(2019, 11, day, h, m, tzinfo=SHANGHAI)


@pytest.mark.parametrize("at, quiet", [(sh(20, 59), False), (sh(21), True), (sh(23, 59), True), (sh(0), True),
                                       (sh(7, 59), True), (sh(8), False), (sh(12), False)])
def test_quiet_hours_cross_midnight_in_shanghai_time(at, quiet):
    assert QUIET.is_quiet(at) is quiet
    assert QUIET.is_quiet(at.astimezone(SHANGHAI).replace(tzinfo=SHANGHAI)) is quiet


def test_a_message_held_at_night_goes_at_eight_the_next_morning_or_the_same_morning():
    assert QUIET.release_at(sh(22, 30)) == sh(8, day=16)
    assert QUIET.release_at(sh(3, 0)) == sh(8)
    assert QUIET.release_at(sh(9, 0)) is None
    assert QUIET.next_morning(sh(10, 0)) == sh(8, day=16)  # where the daily limit puts the sixth SMS


def test_only_non_urgent_sms_wait_for_the_morning():
    night = sh(22, 30)
    assert d.may_send_now("sms", False, night, QUIET) == sh(8, day=16)
    assert d.may_send_now("sms", True, night, QUIET) is None
    assert d.may_send_now("internal", False, night, QUIET) is None
    assert d.may_send_now("webhook", False, night, QUIET) is None


def test_quiet_hours_setting_is_checked():
    with pytest.raises(ValueError):
        d.QuietHours.parse("9pm to 8am")
    assert not d.QuietHours.parse("08:00-08:00").is_quiet(sh(3))  # an empty window: never quiet
    day_window = d.QuietHours.parse("12:00-14:00")
    assert day_window.is_quiet(sh(13)) and not day_window.is_quiet(sh(14))


def test_backoff_doubles_from_the_base_and_stops_at_the_cap():
    assert [d.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert d.backoff(20) == timedelta(hours=1)
    assert d.backoff(3, base_s=1, cap_s=10) == timedelta(seconds=4)


def test_counters_are_keyed_by_number_and_shanghai_day():
    # 2019-11-15 23:30 Shanghai is 15:30 UTC the same date, 00:30 Shanghai the 16th is the 15th UTC
    assert d.day_counter_id("13900001111", sh(23, 30)) == "13900001111:2019-11-15"
    assert d.day_counter_id("13900001111", sh(0, 30, day=16).astimezone(SHANGHAI)) == "13900001111:2019-11-16"
    assert d.text_guard_id("139", "a") == d.text_guard_id("139", "a") != d.text_guard_id("139", "b")


def test_delivery_ids_name_county_notice_and_round():
    out = d.delivery_id("431122", "wfail:B7:P7", 2)
    assert d.parse_delivery_id(out) == ("431122", "wfail:B7:P7", 2)
    for bad in (None, 7, "", "x", "a|b", "a|b|c", "|b|1", "a||1", "a|b|²"):
        assert d.parse_delivery_id(bad) is None


def test_a_notice_without_template_is_sent_as_generic_text():
    assert d.template_of({"text": "你好"}) == ("GENERIC", {"text": "你好"})
    assert d.template_of({"text": "x", "template": {"name": "receipt.sms", "params": {"a": 1}}}) == ("GENERIC", {"text": "x"})
    assert d.template_of({"text": "x", "template": {"name": "receipt.sms", "version": "1", "code": "SMS_RECEIPT_V1",
                                                    "params": {"a": 1}}}) == ("SMS_RECEIPT_V1", {"a": 1})


def test_receipts_move_a_sent_notice_once_and_delivered_is_final():
    assert d.status_after_receipt("sent", True) == "delivered"
    assert d.status_after_receipt("sent", False) == "failed"
    assert d.status_after_receipt("failed", True) == "delivered"
    assert d.status_after_receipt("delivered", False) is None
    assert d.status_after_receipt("dead", True) == "delivered"  # a lost reply's send was delivered after all
    r = {"out_id": "a|b|1", "biz_id": "9", "success": True}
    assert d.receipt_key(r) == d.receipt_key(dict(r)) != d.receipt_key({**r, "success": False})


def test_the_state_table_allows_resend_only_from_dead_or_failed():
    assert d.STATES.can("dead", "queued") and d.STATES.can("failed", "queued")
    assert not d.STATES.can("delivered", "queued") and not d.STATES.can("no_contact", "queued")


def test_signatures_are_fixed_by_their_documents():
    # docs/notice-webhooks.md: hex HMAC-SHA256 over timestamp "." body
    import hashlib
    import hmac
    assert webhook_signature("s", "1", b"{}") == hmac.new(b"s", b"1.{}", hashlib.sha256).hexdigest()
    # docs/notice-delivery.md: the provider's signature ignores the order of parameters, not their values
    p = {"B": "2", "A": "一 1", "Signature": "x"}
    assert sms_signature("k", p) == sms_signature("k", dict(reversed(list(p.items()))))
    assert sms_signature("k", p) != sms_signature("k", {**p, "A": "一 2"})


def test_the_rate_limiter_spaces_sends():
    slept = []
    lim = RateLimiter(10, sleep=slept.append)
    for _ in range(3):
        lim.acquire()
    assert len(slept) >= 1 and all(0 < s <= 0.21 for s in slept)

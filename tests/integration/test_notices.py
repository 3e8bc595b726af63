"""Notices from events over the real bus: a withholding failure reaches the town's work list once
(002_9137bd928f251374.txt 六(二): 对余额不足的代扣帐户发回各镇)."""
import json

from prometheus_client import REGISTRY
from datetime import datetime, timezone

from services.notices import bootstrap as notices_boot
from shared.clock import FixedClock
from shared.events import Envelope, Event
from tests.helpers import declare, publish, running
from tools.clients import wait_for

NOW = datetime(2017, 12, 1, 2, 0, tzinfo=timezone.utc)


def count(kind: str, etype: str) -> float:
    return REGISTRY.get_sample_value(f"events_{kind}_total", {"service": "notices", "type": etype}) or 0


def handled(etype: str) -> float:
    """Deliveries of `etype` the notices consumer finished in this process, applied or skipped."""
    return count("consumed", etype) + count("duplicate", etype)


def test_a_withholding_failure_becomes_an_sms_and_a_line_on_the_towns_list_once(namespace, infra):
    c = notices_boot.bootstrap(FixedClock(NOW))
    handlers = notices_boot.event_handlers(c)
    declare(c, handlers)
    env = Envelope.new(Event("payments.withholding.failed", {
        "batch_no": "B7", "order_no": "P7", "household_no": "H7", "year": 2018, "county": "431122", "township": "花桥镇",
        "village": "花桥村", "head_name": "黄某", "head_phone": "13800004444", "amount_fen": 36000, "bank": "农商银行",
        "reason": "INSUFFICIENT_BALANCE", "reason_text": "账户余额不足", "retryable": True}), "payments", NOW)
    before, applied = handled(env.type), count("consumed", env.type)
    with running(c.consumer(handlers)):
        for _ in range(2):  # delivered twice
            publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
        # both deliveries handled (the second one skipped as a duplicate), not just the first marker
        wait_for(lambda: handled(env.type) >= before + 2, what="both deliveries handled")
    assert count("consumed", env.type) == applied + 1  # the redelivery was skipped, not handled again
    docs = list(c.db.notices.find({"household_no": "H7"}))
    assert sorted(d["channel"] for d in docs) == ["internal", "sms"]
    town = notices_boot.repository(c).listing(2018, "花桥镇", "withholding_failure")
    assert [d["_id"] for d in town if d["channel"] == "internal"] == ["wfail-town:B7:P7"]

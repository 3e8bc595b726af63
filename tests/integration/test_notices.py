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
    town, _ = notices_boot.repository(c).listing(2018, "花桥镇", "withholding_failure")
    assert [d["_id"] for d in town if d["channel"] == "internal"] == ["wfail-town:B7:P7"]
    # by the event that made them
    assert sorted(d["_id"] for d in notices_boot.repository(c).for_event(env.id)) == ["wfail-town:B7:P7", "wfail:B7:P7"]


def test_lists_by_household_and_township_are_read_by_id_a_page_at_a_time_and_one_per_notice(namespace):
    """A work list is its own document (notice_lists), never a scan of the county's notices (issue 13:
    ~1 s at 3,000 households before); a notice added twice is listed once."""
    from services.notices.domain.notice import Notice
    c = notices_boot.bootstrap(FixedClock(NOW))
    repo = notices_boot.repository(c)
    for i in range(5):
        n = Notice(f"coverage:test:{i}", "coverage_alert", "HL-1" if i < 2 else None, 2018, "石期市镇", "石期市镇人民政府",
                   None, "internal", f"第{i}条")
        repo.add(n, NOW)
        repo.add(n, NOW)  # redelivered
    page, total = repo.listing(2018, "石期市镇", "coverage_alert", offset=3, limit=2)
    assert total == 5 and [d["_id"] for d in page] == ["coverage:test:3", "coverage:test:4"]
    assert [d["_id"] for d in repo.for_household("HL-1", 2018)] == ["coverage:test:0", "coverage:test:1"]
    everything, total_all = repo.listing(2018, "石期市镇", None)
    assert total_all == 5 and len(everything) == 5
    assert c.db.notice_lists.find_one({"_id": "township:2018:石期市镇:coverage_alert"})["n"] == 5
    assert c.db.notice_lists.find_one({"_id": "township:2018:石期市镇:coverage_alert#0"})["items"][0]["id"] == "coverage:test:0"


def test_a_townships_list_is_paged_so_no_write_rewrites_the_whole_list(namespace):
    """1,234 receipts of one township (a large township has tens of thousands): pages of 500
    behind a head with the count; a page of the work list reads only the pages it falls in; a
    redelivered batch lists nothing twice."""
    from services.notices.adapters.repository import PAGE
    from services.notices.domain.notice import Notice
    c = notices_boot.bootstrap(FixedClock(NOW))
    repo = notices_boot.repository(c)
    made = [(Notice(f"receipt:PG{i:05d}", "receipt", f"PG-{i}", 2018, "芦洪市镇", "户主", "13900000000", "sms", f"收据{i}"),
             f"ev-{i}") for i in range(1234)]
    for start in range(0, 1234, 100):
        repo.add_many(made[start:start + 100], NOW)
    repo.add_many(made[300:400], NOW)  # a batch delivered again
    head = c.db.notice_lists.find_one({"_id": "township:2018:芦洪市镇:receipt"})
    assert head["n"] == 1234 and PAGE == 500
    sizes = [len(c.db.notice_lists.find_one({"_id": f"township:2018:芦洪市镇:receipt#{k}"})["items"]) for k in range(3)]
    assert sizes == [500, 500, 234]
    page, total = repo.listing(2018, "芦洪市镇", "receipt", offset=990, limit=20)
    assert total == 1234 and [d["_id"] for d in page] == [f"receipt:PG{i:05d}" for i in range(990, 1010)]
    assert [d["_id"] for d in repo.listing(2018, "芦洪市镇", "receipt", offset=1200, limit=200)[0]] == [
        f"receipt:PG{i:05d}" for i in range(1200, 1234)]
    everything, total_all = repo.listing(2018, "芦洪市镇", None, offset=0, limit=5000)
    assert total_all == 1234 and len({d["_id"] for d in everything}) == 1234

"""Scoring read models on the real store: progress counts (001 附件1/附件2 2.1) and accuracy (2.2)."""
from datetime import datetime, timezone

from services.scoring import bootstrap as scoring_boot
from services.scoring.service_layer.handlers import on_enrolment_changed
from shared.clock import FixedClock
from shared.events import Envelope, Event

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)


def enrolment(status, order="P1", hh="S1", n=3):
    return Envelope.new(Event("registry.enrolment.changed", {
        "household_no": hh, "year": 2020, "county": "东安县", "township": "紫溪市镇", "village": "紫溪市一村",
        "status": status, "person_ids": [f"43112219800506{i:03d}X" for i in range(n)], "order_no": order}),
        "registry", NOW)


def test_a_reversed_payment_takes_its_persons_out_once_and_a_new_payment_counts_again(namespace):
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)
    for env in (enrolment("paid"), enrolment("paid"), enrolment("confirmed"), enrolment("revoked"), enrolment("revoked")):
        on_enrolment_changed(repo, env)
    assert c.db.progress.find_one({"_id": "2020:紫溪市镇"})["persons"] == 0
    on_enrolment_changed(repo, enrolment("paid", order="P2"))
    doc = c.db.progress.find_one({"_id": "2020:紫溪市镇"})
    assert (doc["persons"], doc["households"]) == (3, 1)


def test_the_latest_accuracy_report_wins_even_when_an_older_one_arrives_late(namespace):
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)
    row = {"township": "紫溪市镇", "registered_persons": 100, "persons_with_open_problems": 3, "rate_bp": 9700}
    repo.store_accuracy(2020, "2019-12-01T00:00:00+08:00", [row])
    repo.store_accuracy(2020, "2019-11-01T00:00:00+08:00", [dict(row, rate_bp=9000)])
    assert repo.accuracy(2020, ["紫溪市镇"])["紫溪市镇"]["rate_bp"] == 9700

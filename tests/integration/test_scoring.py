"""Scoring read models on the real store: progress counts (001 附件1/附件2 2.1) and accuracy (2.2)."""
from datetime import datetime, timezone

from services.scoring import bootstrap as scoring_boot
from services.scoring.service_layer.handlers import on_enrolment_changed
from shared.clock import FixedClock
from shared.events import Envelope, Event

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)


def enrolment(status, order="P1", hh="S1", n=3, **extra):
    return Envelope.new(Event("registry.enrolment.changed", {
        "household_no": hh, "year": 2020, "county": "431122", "township": "紫溪市镇", "village": "紫溪市一村",
        "status": status, "person_ids": [f"43112219800506{i:03d}X" for i in range(n)], "order_no": order, **extra}),
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


def test_a_newborns_supplementary_payment_adds_a_person_and_no_second_household(namespace):
    """001 四: a newborn enrolled after the household paid (补缴) is one more insured person of the
    same household; its reversal takes the person out again, the household stays counted (before:
    households 2 after the supplement)."""
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)

    def counts():
        doc = c.db.progress.find_one({"_id": "2020:紫溪市镇"}) or {}
        return doc.get("persons", 0), doc.get("households", 0)
    persons, households = counts()  # other tests of this module count into the same township
    on_enrolment_changed(repo, enrolment("paid", order="P1", hh="SUPP"))
    on_enrolment_changed(repo, enrolment("paid", order="P2", hh="SUPP", n=1, supplement=True))
    on_enrolment_changed(repo, enrolment("paid", order="P2", hh="SUPP", n=1, supplement=True))  # redelivered
    assert counts() == (persons + 4, households + 1)
    on_enrolment_changed(repo, enrolment("revoked", order="P2", hh="SUPP", n=1, supplement=True))
    assert counts() == (persons + 3, households + 1)


def test_the_latest_accuracy_report_wins_even_when_an_older_one_arrives_late(namespace):
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)
    row = {"township": "紫溪市镇", "registered_persons": 100, "persons_with_open_problems": 3, "rate_bp": 9700}
    repo.store_accuracy(2020, "2019-12-01T00:00:00+08:00", [row])
    repo.store_accuracy(2020, "2019-11-01T00:00:00+08:00", [dict(row, rate_bp=9000)])
    assert repo.accuracy(2020, ["紫溪市镇"])["紫溪市镇"]["rate_bp"] == 9700


def test_registered_poor_coverage_is_shown_beside_progress(namespace):
    # 001 附件2 2.3: 建档立卡贫困户参保率100%
    from services.scoring.entrypoints.flask_app import create_app
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)
    cov = {"year": 2020, "county": "431122", "township": "紫溪市镇", "category": "registered_poor", "hardship_persons": 40,
           "enrolled_persons": 39, "not_enrolled_persons": 1, "rate_bp": 9750, "as_of": "2019-12-01T00:00:00+08:00"}
    repo.store_coverage(cov)
    repo.store_coverage(dict(cov, enrolled_persons=30, rate_bp=7500, as_of="2019-11-01T00:00:00+08:00"))  # late, older
    rows = create_app(FixedClock(NOW)).test_client().get("/v1/counties/431122/progress/2020").json["rows"]
    zx = next(r for r in rows if r["township"] == "紫溪市镇")
    assert zx["registered_poor"] == {"hardship_persons": 40, "enrolled_persons": 39, "rate_bp": 9750}
    assert next(r for r in rows if r["township"] == "花桥镇")["registered_poor"] is None


def test_coverage_figures_of_one_instant_are_ordered_by_subsidys_counter_version(namespace):
    """Every payment of a simulated day is at 10:00, so subsidy's coverage events share their `as_of`:
    the first one delivered (1 of 5 enrolled) used to stay while the later, fuller ones were dropped,
    and the season simulator's 2.3 score (附件2: 建档立卡贫困户参保率100%) came out at 20 %. The counter
    version decides, whatever the arrival order, also when two workers store at once (driven)."""
    import threading
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)
    cov = {"year": 2020, "county": "431122", "township": "白牙市镇", "category": "registered_poor",
           "hardship_persons": 5, "not_enrolled_persons": 0, "as_of": "2019-12-31T10:00:00+08:00"}
    figures = [dict(cov, enrolled_persons=e, rate_bp=e * 2000, not_enrolled_persons=5 - e, version=v)
               for v, e in ((7, 1), (9, 3), (12, 5), (10, 4))]
    for f in figures:  # arrival order: 1, 3, 5, then the older 4
        repo.store_coverage(f)
    assert repo.coverage(2020, ["白牙市镇"], "registered_poor")["白牙市镇"]["enrolled_persons"] == 5
    for round_ in range(5):  # two workers, each with one figure, released together
        town = f"横塘镇{round_}"
        older, newer = (dict(f, township=town) for f in (figures[0], figures[2]))
        gate = threading.Barrier(2)

        def store(f):
            gate.wait()
            repo.store_coverage(f)
        threads = [threading.Thread(target=store, args=(f,)) for f in (newer, older)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert repo.coverage(2020, [town], "registered_poor")[town]["enrolled_persons"] == 5

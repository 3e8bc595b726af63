"""Progress as of an instant and per village, as pure rules (services/scoring/domain/progress.py).

000_6db0cfefa235a8dc.txt 二: 每阶段考核结果按各乡(镇、街道)在截止时间内……计算人数的参合率排名;
(一) 第一阶段(截止2016年11月15日下午5时) — a deadline is an Asia/Shanghai instant, inclusive.
二(二): 本乡(镇、街道)排名后两位村(社区)的挂村干部 — villages are ranked within their township.
"""
from datetime import datetime, timezone

import pytest

from services.registry.domain.model import Household
from services.scoring.domain.progress import (Figures, Standing, counted_increments, effective_at, shanghai_day,
                                              standing_as_of, village_key, village_name, village_table)
from shared.clock import SHANGHAI
from shared.events import validate_payload
from tests.unit.test_corrections_and_enrolment import POLICY
from tests.unit.test_household import household

DEADLINE = datetime(2016, 11, 15, 17, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize("name", ["五一村", "a.b", "$x", "x$", "%2E", "%24村", "%", "", "..$"])
def test_a_village_name_becomes_a_field_key_without_dots_or_a_leading_dollar_and_back(name):
    key = village_key(name)
    assert "." not in key and not key.startswith("$") and key != ""
    assert village_name(key) == name


def test_village_keys_of_different_names_never_collide():
    names = ["a.b", "a%2Eb", "a%252Eb", "$a", "%24a", "", "%"]
    assert len({village_key(n) for n in names}) == len(names)


def test_the_day_of_an_instant_is_its_shanghai_calendar_day():
    assert shanghai_day(datetime(2016, 11, 14, 16, 30, tzinfo=timezone.utc)) == "2016-11-15"  # 00:30 in Shanghai
    assert shanghai_day(datetime(2016, 11, 15, 15, 59, tzinfo=timezone.utc)) == "2016-11-15"


def test_an_event_counts_at_its_payment_or_reversal_time_else_when_it_was_published():
    published = "2016-11-16T09:00:00+08:00"
    assert effective_at({"status": "paid", "paid_at": "2016-11-15T17:00:00+08:00"}, published) == DEADLINE
    assert effective_at({"status": "revoked", "reversed_at": "2016-11-15T09:00:00Z"}, published) == DEADLINE
    assert effective_at({"status": "paid"}, published) == datetime(2016, 11, 16, 9, tzinfo=SHANGHAI)  # an older event


def test_one_fact_increments_cumulative_day_and_village_together_and_no_village_of_the_day():
    # a village's past figures come from the day documents' entries: the counter stays a township's days
    inc = counted_increments("2016-11-15", "a.b", 3, 1)
    assert inc == {"persons": 3, "households": 1, "villages.a%2Eb.persons": 3, "villages.a%2Eb.households": 1,
                   "days.2016-11-15.persons": 3, "days.2016-11-15.households": 1}
    assert counted_increments(None, None, -2, 0) == {"persons": -2, "households": 0}


def counter_and_entries():
    """Day 14: 5 persons in 一村; day 15: 3 at 17:00:00 and 2 at 17:00:01 in 二村; 1 counted undated."""
    entries = [{"fact": "paid:a", "at": "2016-11-15T17:00:00+08:00", "persons": 3, "households": 1, "village": "二村"},
               {"fact": "paid:b", "at": "2016-11-15T09:00:01Z", "persons": 2, "households": 1, "village": "二村"}]
    counter = {"persons": 11, "households": 4,
               "villages": {"一村": {"persons": 5, "households": 1}, "二村": {"persons": 5, "households": 2}},
               "days": {"2016-11-14": {"persons": 5, "households": 1,
                                       "villages": {"一村": {"persons": 5, "households": 1}}},
                        "2016-11-15": {"persons": 5, "households": 2,
                                       "villages": {"二村": {"persons": 5, "households": 2}}}}}
    return counter, entries


def test_as_of_a_deadline_counts_the_days_before_and_that_day_up_to_the_second_inclusive():
    counter, entries = counter_and_entries()
    s = standing_as_of(counter, entries, DEADLINE)
    assert (s.persons, s.households) == (1 + 5 + 3, 1 + 1 + 1)  # 17:00:01 belongs to the next stage
    assert s.villages == {"一村": Figures(5, 1), "二村": Figures(3, 1)}
    later = standing_as_of(counter, entries, datetime(2016, 11, 15, 17, 0, 1, tzinfo=SHANGHAI))
    assert (later.persons, later.villages["二村"]) == (11, Figures(5, 2))
    day_14 = [{"fact": "paid:c", "at": "2016-11-14T12:00:00+08:00", "persons": 5, "households": 1, "village": "一村"}]
    before = standing_as_of(counter, day_14 + entries, datetime(2016, 11, 14, 23, 59, 59, tzinfo=SHANGHAI))
    assert (before.persons, before.villages["二村"]) == (1 + 5, Figures(0, 0))  # day 15 not yet (its entries)
    assert standing_as_of(counter, day_14, datetime(2016, 11, 14, 23, 59, 59, tzinfo=SHANGHAI),
                          villages=False).persons == 1 + 5  # the township's figure needs at's day alone
    assert standing_as_of(counter, day_14 + entries, datetime(2016, 11, 14, 11, tzinfo=SHANGHAI)).persons == 1  # undated only
    tomorrow = standing_as_of(counter, [], datetime(2016, 11, 16, tzinfo=SHANGHAI))
    assert tomorrow.persons == 11 and tomorrow.villages == {"一村": Figures(5, 1), "二村": Figures(5, 2)}


def test_nothing_counted_is_zero():
    assert standing_as_of(None, [], DEADLINE) == Standing(0, 0, {})


def test_a_revocation_takes_the_persons_out_from_its_time_on():
    entries = [{"fact": "paid:a", "at": "2016-11-15T10:00:00+08:00", "persons": 3, "households": 1, "village": "二村"},
               {"fact": "revoked:a", "at": "2016-11-15T16:00:00+08:00", "persons": -3, "households": -1,
                "village": "二村"}]
    counter = {"persons": 0, "households": 0, "villages": {"二村": {"persons": 0, "households": 0}},
               "days": {"2016-11-15": {"persons": 0, "households": 0,
                                       "villages": {"二村": {"persons": 0, "households": 0}}}}}
    assert standing_as_of(counter, entries, datetime(2016, 11, 15, 15, tzinfo=SHANGHAI)).persons == 3
    assert standing_as_of(counter, entries, DEADLINE).persons == 0


def test_villages_rank_by_persons_with_ties_sharing_a_rank_and_unlisted_villages_shown():
    s = Standing(9, 4, {"一村": Figures(3, 1), "二村": Figures(3, 1), "某村": Figures(1, 1), "四村": Figures(2, 1)})
    table = village_table(("一村", "二村", "三村", "四村"), s)
    assert [(rank, r.village, r.listed, r.enrolled_persons) for rank, r in table] == [
        (1, "一村", True, 3), (1, "二村", True, 3), (3, "四村", True, 2), (4, "某村", False, 1), (5, "三村", True, 0)]


def test_registrys_enrolment_events_carry_when_the_payment_was_recorded_and_when_it_was_reversed():
    hh = Household.register(POLICY, household())
    hh.events.clear()
    hh.record_payment("P1", [m.person_id for m in hh.members], "2019-11-15T09:00:00+00:00")
    hh.record_audit("P1", "2019-11-18T10:00:00+08:00")
    hh.record_reversal("P1", "gateway_reversal", "2019-11-20T10:00:00+08:00")
    paid, confirmed, revoked = (e.payload for e in hh.events)
    assert paid["paid_at"] == confirmed["paid_at"] == "2019-11-15T17:00:00+08:00"  # shared.clock.iso
    assert revoked["reversed_at"] == "2019-11-20T10:00:00+08:00" and "paid_at" not in revoked
    for e in hh.events:
        validate_payload(e.type, e.payload)

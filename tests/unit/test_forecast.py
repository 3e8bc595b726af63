"""The forecast's stated method (services/scoring/domain/forecast.py): the last 7 Shanghai days'
pace, projected to the deadline; not enough data → no forecast, never a guess."""
from datetime import date, datetime, timedelta
from fractions import Fraction

from services.scoring.domain.forecast import forecast, method
from shared.clock import SHANGHAI

AT = datetime(2016, 11, 12, 9, 0, tzinfo=SHANGHAI)
DEADLINE = datetime(2016, 11, 15, 17, 0, tzinfo=SHANGHAI)  # 000 二(一): 截止2016年11月15日下午5时


def days(per_day, n=10):
    return {AT.date() - timedelta(days=i): per_day for i in range(1, n + 1)}


def test_a_township_at_its_pace_reaches_the_share_by_the_deadline_or_is_behind_with_what_it_needs_a_day():
    # task 1000, share 40 % → 400; 3 days 8 hours left
    on = forecast(1000, 300, days(35), AT, DEADLINE, Fraction(40, 100))
    assert (on.status, on.band, on.pace_per_day) == ("on_track", "on_track", 35)
    assert on.projected_persons == 300 + int(35 * Fraction(80, 24)) == 416
    assert on.needed_per_day == 30  # 100 more in 3⅓ days
    behind = forecast(1000, 300, days(10), AT, DEADLINE, Fraction(40, 100))
    assert (behind.status, behind.projected_persons, behind.projected_rate) == ("behind", 333, Fraction(333, 1000))
    assert behind.projected_completion == AT.date() + timedelta(days=70)  # 700 left at 10 a day


def test_no_forecast_without_enough_data_and_reached_is_reached():
    young = {AT.date() - timedelta(days=1): 50, AT.date() - timedelta(days=2): 50}  # two days of data
    f = forecast(1000, 100, young, AT, DEADLINE, Fraction(40, 100))
    assert (f.status, f.projected_persons, f.needed_per_day) == ("insufficient_data", None, 90)
    stalled = forecast(1000, 100, {AT.date() - timedelta(days=20): 100, AT.date() - timedelta(days=19): 1,
                                   AT.date() - timedelta(days=18): 1}, AT, DEADLINE, Fraction(40, 100))
    assert stalled.status == "insufficient_data"  # nothing in the last 7 days
    done = forecast(1000, 400, days(10), AT, DEADLINE, Fraction(40, 100))
    assert (done.status, done.needed_per_day) == ("reached", 0)  # 以上 includes the figure
    assert forecast(None, 10, days(1), AT, DEADLINE, Fraction(40, 100)).status == "no_target"
    assert forecast(1000, 10, days(1), AT, None, None).band == "no_target"
    assert "近7天" in method()


def test_the_pace_counts_whole_days_before_the_instant_not_the_morning_so_far():
    d = days(10)
    d[AT.date()] = 500  # today's figures are partial: not in the pace
    assert forecast(1000, 300, d, AT, DEADLINE, Fraction(40, 100)).pace_per_day == 10

"""Rankings, scorecards and forecasts for county portals, as of any instant.

Every figure is as of the instant asked; "now" is everything counted so far (the year's counters,
one query); the week before is the end of the Shanghai day seven days earlier (the counters' day
totals); the last stage is the newest published version of
the last evaluation due by then. Targets come from the scheme's next stage, else the year's target
rate by the window's close; a township without a task or a county without a target says so.
"""
from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from shared.clock import SHANGHAI, iso, shanghai_end_of_day
from shared.errors import NotFound
from shared.events import Event
from shared.policy import PolicyYear

from ..adapters.assessment_store import AssessmentStore
from ..adapters.repository import ProgressRepository
from ..domain.assessment import bp, pct
from ..domain.ranking import competition_ranks
from ..domain.forecast import BANDS, forecast, method
from ..domain.scheme import scheme_of
from ..domain.progress import shanghai_day
from .assessments import SeasonCounts


def target_at(policy: PolicyYear, at: datetime) -> dict[str, Any] | None:
    """The target a township is measured against at `at`: the next stage (a deadline at `at` is
    still that stage's), else the year's target rate at the window's close."""
    scheme = scheme_of(policy)
    if scheme is not None and scheme.stages:
        nxt = next((s for s in scheme.stages if s.deadline >= at), scheme.stages[-1])
        return {"kind": "stage", "no": nxt.no, "name": nxt.name, "deadline": nxt.deadline,
                "share": Fraction(nxt.share_percent, 100)}
    if policy.target_rate_percent and policy.window_closes:
        return {"kind": "window", "no": None, "name": "集中缴费期参保目标",
                "deadline": shanghai_end_of_day(policy.window_closes), "share": Fraction(policy.target_rate_percent, 100)}
    return None


def last_stage(policy: PolicyYear, at: datetime) -> int | None:
    scheme = scheme_of(policy)
    done = [s.no for s in (scheme.stages if scheme else ()) if s.deadline <= at]
    return done[-1] if done else None


def _ranks(rates: dict[str, Fraction | None]) -> dict[str, int]:
    known = sorted(((r, t) for t, r in rates.items() if r is not None), key=lambda x: (-x[0], x[1]))
    return {t: k for (_, t), k in zip(known, competition_ranks([r for r, _ in known]))}


def rankings(repo: ProgressRepository, store: AssessmentStore, policy: PolicyYear, at: datetime,
             top: int = 3, bottom: int = 3, exact: bool = True) -> dict[str, Any]:
    """`exact` False: `at` is now, and the figures are everything counted so far (the counters
    alone); True: as of the instant `at` (a bulletin's, a forecast's, an `as_of` asked for)."""
    names = [t.name for t in policy.townships]
    if not names:
        raise NotFound("TASKS_NOT_CONFIGURED", f"{policy.county}{policy.year}年度的政策文件未载乡（镇、街道）任务表，无法排名",
                       {"year": policy.year})
    scheme = scheme_of(policy)
    counts = scheme.counts if scheme else "enrolled_persons"
    season = SeasonCounts(repo, store, policy, counts)  # the counters (and credits) read once
    at_ = at if exact else None  # "now": everything counted so far, no day documents
    standing = season.standing(at_)  # households, whatever the scheme counts
    now = season.persons(at_)
    week_day = shanghai_day(at - timedelta(days=7))
    week = season.persons(None, day_end=week_day)
    daily = season.daily()
    tasks = {t.name: t.task for t in policy.townships}

    def rate(persons, t):
        return Fraction(persons, tasks[t]) if tasks[t] and persons is not None else None
    ranks = _ranks({t: rate(now[t], t) for t in names})
    ranks_week = _ranks({t: rate(week[t], t) for t in names})
    stage_no = last_stage(policy, at)
    stage_doc = store.latest(policy.year, "stage", stage_no) if stage_no else None
    ranks_stage = {r["township"]: r["rank"] for r in (stage_doc or {}).get("rows", [])}
    target = target_at(policy, at)
    rows = []
    for t in names:
        f = forecast(tasks[t], now[t], daily.get(t) or {}, at, target and target["deadline"],
                     target and target["share"])
        r = rate(now[t], t)
        rows.append({
            "township": t, "rank": ranks.get(t), "task": tasks[t], "counted": now[t],
            "enrolled_persons": standing[t].persons, "enrolled_households": standing[t].households,
            "rate_bp": bp(r), "rate_percent": pct(r),
            "band": f.band, "band_name": BANDS[f.band],
            "rank_week_before": ranks_week.get(t),
            "rank_change_week": (ranks_week[t] - ranks[t]) if t in ranks and t in ranks_week else None,
            "rank_last_stage": ranks_stage.get(t),
            "rank_change_stage": (ranks_stage[t] - ranks[t]) if ranks_stage.get(t) and t in ranks else None,
            "forecast": render_forecast(f)})
    rows.sort(key=lambda x: (x["rank"] is None, x["rank"] or 0, x["township"]))
    total_task = sum(v for v in tasks.values() if v)
    total = sum(now[t] or 0 for t in names)
    ranked = [x for x in rows if x["rank"] is not None]
    return {"year": policy.year, "county": policy.county_code, "county_name": policy.county, "as_of": iso(at),
            "target": None if target is None else {
                "kind": target["kind"], "no": target["no"], "name": target["name"], "deadline": iso(target["deadline"]),
                "share_percent": int(target["share"] * 100)},
            "last_stage": stage_no, "last_stage_version": (stage_doc or {}).get("version"),
            "method": method(),
            "counts": counts,
            "average": {"counted": total, "task": total_task,
                        "rate_bp": bp(Fraction(total, total_task)) if total_task else None,
                        "mean_rate_bp": bp(sum((Fraction(x["counted"], x["task"]) for x in ranked), Fraction(0))
                                           / len(ranked)) if ranked else None},
            "top": [x["township"] for x in ranked if x["rank"] <= top],
            "bottom": [x["township"] for x, k in zip(reversed(ranked), competition_ranks(
                [x["rate_bp"] for x in reversed(ranked)])) if k <= bottom],
            "rows": rows}


def render_forecast(f) -> dict[str, Any]:
    return {"status": f.status, "pace_per_day": None if f.pace_per_day is None else round(float(f.pace_per_day), 1),
            "projected_persons": f.projected_persons, "projected_rate_bp": bp(f.projected_rate),
            "projected_completion": f.projected_completion and f.projected_completion.isoformat(),
            "needed_per_day": f.needed_per_day, "target_persons": f.target_persons}


def scorecard(repo: ProgressRepository, store: AssessmentStore, policy: PolicyYear, township: str,
              at: datetime, exact: bool = True, table: dict[str, Any] | None = None) -> dict[str, Any]:
    """One township: its standing and forecast now, and what every published evaluation gave it.
    `table`: the county's ranking at `at` already computed (every township's scorecard shares it)."""
    if policy.township(township) is None:
        raise NotFound("TOWNSHIP_UNKNOWN", "任务表中没有该乡（镇、街道）", {"township": township[:100]})
    table = table or rankings(repo, store, policy, at, exact=exact)
    [row] = [r for r in table["rows"] if r["township"] == township]
    scheme = scheme_of(policy)
    history, cards = [], {}
    evaluations = [("stage", s.no) for s in (scheme.stages if scheme else ())]
    evaluations += [("points", 1)] if scheme and scheme.points else []
    evaluations += [("funds", 1)] if scheme and scheme.funds else []
    for kind, no in evaluations:
        doc = store.latest(policy.year, kind, no)
        mine = next((r for r in (doc or {}).get("rows", []) if r["township"] == township), None)
        if doc is None or mine is None:
            continue
        for a in mine["awards"]:
            if a["status"] == "given":
                cards[a["award"]] = cards.get(a["award"], 0) + 1
        history.append({"kind": kind, "no": no, "name": doc["name"], "version": doc["version"], "as_of": doc["as_of"],
                        "rank": mine["rank"], "rate_bp": mine["rate_bp"], "score": mine["score"],
                        "fund_fen": mine["fund_fen"], "awards": mine["awards"]})
    return {"year": policy.year, "county": policy.county_code, "township": township, "as_of": table["as_of"],
            "target": table["target"], "current": row, "history": history, "awards_total": cards}


# ---- forecasts published before each deadline ----------------------------------------------------

def days_before() -> int:
    return int(os.environ.get("FORECAST_DAYS_BEFORE", "3"))


def forecast_event(table: dict[str, Any]) -> Event:
    """scoring.forecast.published: the townships that will miss the next stage at their pace, and
    the persons a day each would need (notices tells them)."""
    return Event("scoring.forecast.published", {
        "year": table["year"], "county": table["county"], "county_name": table["county_name"],
        "stage": table["target"]["no"], "name": table["target"]["name"], "deadline": table["target"]["deadline"],
        "share_percent": table["target"]["share_percent"], "as_of": table["as_of"], "method": table["method"],
        "rows": [{"township": r["township"], "rate_bp": r["rate_bp"], "status": r["forecast"]["status"],
                  "projected_rate_bp": r["forecast"]["projected_rate_bp"],
                  "needed_per_day": r["forecast"]["needed_per_day"]}
                 for r in table["rows"] if r["forecast"]["status"] in ("behind", "insufficient_data")]})


def publish_forecasts(repo: ProgressRepository, store: AssessmentStore, policies: dict[int, PolicyYear],
                      now: datetime) -> list[dict[str, Any]]:
    """Once per stage, FORECAST_DAYS_BEFORE days before its deadline: the forecast as of then."""
    written = []
    for policy in policies.values():
        scheme = scheme_of(policy)
        if scheme is None or not policy.townships:
            continue
        for s in scheme.stages:
            if not (s.deadline - timedelta(days=days_before()) <= now < s.deadline):
                continue
            table = rankings(repo, store, policy, now)
            if table["target"]["no"] != s.no:
                continue
            doc = {"year": policy.year, "kind": "forecast", "no": s.no, "version": 1, "as_of": table["as_of"],
                   "table": {k: v for k, v in table.items() if k != "rows"}, "rows": table["rows"]}
            if store.publish(doc, [forecast_event(table)]):
                written.append(doc)
    return written


# ---- the ranking published on the county's rhythm (每周四通报, 一月一通报) ------------------------------

def season(policy: PolicyYear) -> tuple[datetime, datetime] | None:
    """When a year's rankings are published: from its window's opening to a day after its close."""
    if policy.window_opens is None or policy.window_closes is None:
        return None
    from shared.clock import shanghai_start_of_day
    return shanghai_start_of_day(policy.window_opens), shanghai_end_of_day(policy.window_closes) + timedelta(days=1)


def ranking_event(table: dict[str, Any], rule: str, previous: dict[str, Any] | None) -> Event:
    """scoring.ranking.published: the township ranking at a bulletin instant, each row with its
    change since the previous bulletin (notices sends it to the townships' leaders, 003: 以短信的方式
    发给各乡镇主要领导)."""
    before = {r["township"]: r["rank"] for r in (previous or {}).get("rows", [])}
    return Event("scoring.ranking.published", {
        "year": table["year"], "county": table["county"], "county_name": table["county_name"], "as_of": table["as_of"],
        "rule": rule, "target_share_percent": (table["target"] or {}).get("share_percent"),
        "total_rate_bp": table["average"]["rate_bp"], "townships": len(table["rows"]),
        "rows": [{"township": r["township"], "rank": r["rank"], "rate_bp": r["rate_bp"], "band": r["band"],
                  "rank_change": (before[r["township"]] - r["rank"]) if before.get(r["township"]) and r["rank"] else None}
                 for r in table["rows"]]})


def publish_rankings(repo: ProgressRepository, store: AssessmentStore, policies: dict[int, PolicyYear],
                     now: datetime) -> list[dict[str, Any]]:
    """The newest bulletin instant of each rhythm, once (`<year>:ranking:<YYYYMMDDHHMM>`)."""
    from ..domain.scheme import latest_bulletin
    written = []
    for policy in policies.values():
        scheme, span = scheme_of(policy), season(policy)
        if scheme is None or span is None or not policy.townships:
            continue
        for b in scheme.bulletins:
            at = latest_bulletin(b, now, *span)
            if at is None:
                continue
            no = int(at.astimezone(SHANGHAI).strftime("%Y%m%d%H%M"))
            if store.latest(policy.year, "ranking", no) is not None:
                continue
            table = rankings(repo, store, policy, at)
            previous = store.last_of(policy.year, "ranking")
            doc = {"year": policy.year, "kind": "ranking", "no": no, "version": 1, "as_of": table["as_of"],
                   "rule": b.rule, "rows": table["rows"], "average": table["average"], "target": table["target"]}
            if store.publish(doc, [ranking_event(table, b.rule, previous)]):
                store.note_last(policy.year, "ranking", no)
                written.append(doc)
    return written

"""Assessments (考核): gather a county's figures as of an instant, run the engine, publish versions.

An evaluation is published once per version and never changed: the deadline's own run is version
1 (the worker's loop, a grace period after the deadline so payments recorded before it have
arrived), a correction by county staff is the next version with its reason and author. A stage
reads the cards of the newest versions of the stages before it (cards accumulate).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from shared.clock import iso
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import Event
from shared.policy import PolicyYear

from ..adapters.assessment_store import AssessmentStore
from ..adapters.repository import ProgressRepository
from ..domain.assessment import (Figures, Row, bp, evaluate_funds, evaluate_points, evaluate_stage, pct)
from ..domain.progress import end_of_day, shanghai_day
from ..domain.scheme import AWARDS, Scheme, scheme_of

KINDS = ("stage", "points", "funds")
MISSING_TOWNSHIPS = "乡（镇、街道）任务表未配置（政策文件未载任务分解表）"


def grace() -> timedelta:
    """How long after a deadline the automatic evaluation waits for payments recorded before it."""
    return timedelta(seconds=int(os.environ.get("EVALUATION_GRACE_S", "600")))


def scheme_for(policy: PolicyYear) -> Scheme:
    scheme = scheme_of(policy)
    if scheme is None:
        raise NotFound("SCHEME_UNKNOWN", f"{policy.county}{policy.year}年度的政策文件未载考核方案", {"year": policy.year})
    return scheme


def as_of(scheme: Scheme, kind: str, no: int) -> tuple[datetime, str]:
    """The instant an evaluation counts to, and its name; an unknown kind or number is a clear 404."""
    if kind == "stage" and scheme.stage(no) is not None:
        return scheme.stage(no).deadline, scheme.stage(no).name
    if kind == "points" and no == 1 and scheme.points is not None:
        return scheme.points.as_of, "年度考核计分"
    if kind == "funds" and no == 1 and scheme.funds:
        at = next((f.as_of for f in scheme.funds if f.as_of), None) or (scheme.points and scheme.points.as_of)
        if at is not None:
            return at, "工作经费"
    raise NotFound("EVALUATION_UNKNOWN", "考核方案中没有该项考核", {"kind": kind, "no": no})


MISSING_STANDARD = "个人缴费标准未配置，无法由汇划县基金专户的金额折算人数"


class SeasonCounts:
    """A year's counts for one request, read once: the township counters (one query) and, where the
    scheme counts remitted money (Nayong 000 二: 汇划县新农合基金专户累计金额计算人数), the fund
    credits (one query); then persons as of any instant, at the end of a day, and gained per day."""

    def __init__(self, repo: ProgressRepository, store: AssessmentStore, policy: PolicyYear, counts: str):
        self.repo, self.policy, self.counts = repo, policy, counts
        self.names = [t.name for t in policy.townships]
        self.counters = repo.counters(policy.year, self.names)
        self.credits = store.credit_lists(policy.year, self.names) if counts == "remitted_persons" else {}
        self._standings: dict = {}

    def standing(self, at: datetime | None):
        """Enrolled persons and households as of `at` (None: all so far), whatever the scheme counts
        (each instant's day documents read once per request)."""
        if at not in self._standings:
            self._standings[at] = self.repo.progress_as_of(self.policy.year, self.names, at, counters=self.counters)
        return self._standings[at]

    def persons(self, at: datetime | None, day_end: str | None = None) -> dict[str, int | None]:
        """Persons by the scheme's count as of `at` (None: all so far), or at the end of `day_end`
        (YYYY-MM-DD, Shanghai) from the day totals alone. None per township without a standard to
        divide remitted money by."""
        if self.counts == "enrolled_persons":
            if day_end is not None:
                return {t: end_of_day(self.counters.get(t), day_end) for t in self.names}
            return {t: s.persons for t, s in self.standing(at).items()}
        if not self.policy.standard_fen:
            return {t: None for t in self.names}
        out = {}
        for t in self.names:
            fen = sum(c["amount_fen"] for c in self.credits.get(t, [])
                      if (day_end is not None and shanghai_day(c["credited_at"]) <= day_end)
                      or (day_end is None and (at is None or c["credited_at"] <= at)))
            out[t] = fen // self.policy.standard_fen  # whole persons the money pays for
        return out

    def daily(self) -> dict[str, dict]:
        """Persons gained per Shanghai day and township, by the same count (the forecast's pace)."""
        from datetime import date
        if self.counts == "enrolled_persons":
            return {t: {date.fromisoformat(d): v.get("persons", 0) for d, v in ((doc or {}).get("days") or {}).items()}
                    for t, doc in self.counters.items()}
        if not self.policy.standard_fen:
            return {}
        out = {}
        for t, credits in self.credits.items():
            by_day: dict = {}
            for c in credits:
                d = date.fromisoformat(shanghai_day(c["credited_at"]))
                by_day[d] = by_day.get(d, 0) + c["amount_fen"]
            running, before, days = 0, 0, {}
            for d in sorted(by_day):
                running += by_day[d]
                days[d] = running // self.policy.standard_fen - before
                before += days[d]
            out[t] = days
        return out


def figures(repo: ProgressRepository, store: AssessmentStore, policy: PolicyYear, scheme: Scheme,
            at: datetime) -> tuple[list[Figures], list[str]]:
    """Every township's figures as of `at`, and what the county has not provided."""
    names = [t.name for t in policy.townships]
    missing = [] if names else [MISSING_TOWNSHIPS]
    counted = SeasonCounts(repo, store, policy, scheme.counts).persons(at)
    if scheme.counts == "remitted_persons" and not policy.standard_fen:
        missing.append(MISSING_STANDARD)
    prior = {r["township"]: r["persons"] for r in (store.prior_year(policy.year) or {}).get("rows") or []}
    if scheme.prior_year is not None and not prior:
        missing.append(f"{scheme.prior_year}年参合（参保）绝对数未导入")
    poor = repo.coverage(policy.year, names, "registered_poor")
    accuracy = repo.accuracy(policy.year, names)
    out = []
    for t in policy.townships:
        p = poor.get(t.name)
        entry = store.entry(policy.year, t.name)
        out.append(Figures(
            t.name, t.task, counted.get(t.name), prior.get(t.name),
            Fraction(p["enrolled_persons"], p["hardship_persons"]) if p and p["hardship_persons"] else None,
            Fraction(accuracy[t.name]["rate_bp"], 10000) if t.name in accuracy else None,
            {"incidents": entry["incidents"], "deductions": entry.get("deductions", []), "by": entry["by"],
             "reason": entry.get("reason")} if entry else None))
    return out, missing


def history(store: AssessmentStore, year: int, before: int) -> dict[str, dict[int, list[str]]]:
    """township → stage → awards given, from the newest version of each earlier stage."""
    out: dict[str, dict[int, list[str]]] = {}
    for no in range(1, before):
        doc = store.latest(year, "stage", no)
        for row in (doc or {}).get("rows", []):
            given = [a["award"] for a in row["awards"] if a["status"] == "given"]
            out.setdefault(row["township"], {})[no] = given
    return out


def _num(x: Fraction | None) -> str | None:
    """A score or amount for reading: two decimals (half up); the exact value travels beside it."""
    if x is None:
        return None
    cents = int(x * 100 + Fraction(1, 2)) if x >= 0 else -int(-x * 100 + Fraction(1, 2))
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def render_row(r: Row) -> dict[str, Any]:
    return {"township": r.township, "rank": r.rank, "task": r.task, "counted": r.counted,
            "rate_bp": bp(r.rate), "rate_percent": pct(r.rate), "reached": r.reached,
            "score": _num(r.score), "score_exact": None if r.score is None else str(r.score),
            "items": [{**{k: v for k, v in i.items() if k != "score"}, "score": _num(i["score"]),
                       "score_exact": None if i["score"] is None else str(i["score"])} for i in r.items],
            "fund_fen": r.fund_fen, "funds": r.funds, "awards": [a.to_dict() for a in r.awards], "missing": r.missing}


def evaluate(repo: ProgressRepository, store: AssessmentStore, policy: PolicyYear, kind: str, no: int,
             now: datetime) -> dict[str, Any]:
    """The evaluation as it would be published now (nothing written)."""
    scheme = scheme_for(policy)
    at, name = as_of(scheme, kind, no)
    if at > now:
        raise Conflict("EVALUATION_NOT_DUE", f"{name}的截止时间（{iso(at)}）未到，不能发布考核结果；进度与预测见进度接口",
                       {"as_of": iso(at)})
    figs, missing = figures(repo, store, policy, scheme, at)
    notes = []
    if kind == "stage":
        result = evaluate_stage(scheme, scheme.stage(no), figs, history(store, policy.year, no))
        rows, missing = result.rows, missing + result.missing
        health = scheme.health_points or {}
        if no in health.get("stages", []):
            notes.append(f"本阶段结果计入卫生重点目标考核（第{'、'.join(map(str, health['stages']))}阶段合计"
                         f"{health['points']}分：{health['rule']}）；各阶段如何折算分值文件未载明，本系统不折算。")
    elif kind == "points":
        result = evaluate_points(scheme, figs)
        rows, missing = result.rows, missing + result.missing
    else:
        rows = evaluate_funds(scheme, figs)
        missing = missing + sorted({m for r in rows for m in r.missing})
    rendered = [render_row(r) for r in sorted(rows, key=lambda r: (r.rank is None, r.rank or 0, r.township))]
    complete = not missing and all(a["status"] != "pending" for r in rendered for a in r["awards"])
    return {"year": policy.year, "county": policy.county_code, "county_name": policy.county, "kind": kind,
            "no": no, "name": name,
            "as_of": iso(at), "source": scheme.source, "counts": scheme.counts, "counts_rule": scheme.counts_rule,
            "reading": scheme.points.reading if scheme.points else None,
            "reading_rule": scheme.points.reading_rule if scheme.points else None,
            "complete": complete, "missing": sorted(set(missing)), "notes": notes + list(scheme.notes.values()),
            "rows": rendered,
            "fund_total_fen": sum(r["fund_fen"] or 0 for r in rendered) if kind != "stage" else None}


def evaluated_event(doc: dict[str, Any]) -> Event:
    """scoring.stage.evaluated: what notices tell the townships named (one builder for the event)."""
    return Event("scoring.stage.evaluated", {
        "year": doc["year"], "county": doc["county"], "county_name": doc["county_name"], "kind": doc["kind"],
        "no": doc["no"], "name": doc["name"],
        "version": doc["version"], "as_of": doc["as_of"], "evaluated_at": doc["evaluated_at"],
        "evaluated_by": doc["evaluated_by"], "reason": doc.get("reason"), "complete": doc["complete"],
        "rows": [{"township": r["township"], "rank": r["rank"], "rate_bp": r["rate_bp"], "score": r["score"],
                  "fund_fen": r["fund_fen"],
                  "awards": [{"award": a["award"], "name": AWARDS[a["award"]], "to": a["to"],
                              "to_names": a["to_names"], "status": a["status"]}
                             for a in r["awards"]]} for r in doc["rows"]]})


def publish(repo: ProgressRepository, store: AssessmentStore, policy: PolicyYear, kind: str, no: int,
            now: datetime, by: str, reason: str | None, trigger: str, correlation_id: str | None = None,
            only_first: bool = False) -> tuple[dict[str, Any], bool]:
    """Publish the next version (a correction needs its reason); `only_first`: the deadline's run,
    which publishes version 1 or nothing. Returns (the newest version, whether this call wrote it)."""
    for _ in range(5):  # another correction may take the next number first: take the one after
        latest = store.latest(policy.year, kind, no)
        if latest is not None and only_first:
            return latest, False
        if latest is not None and not (reason or "").strip():
            raise ValidationFailed("REASON_REQUIRED", "已发布的考核结果只能以新版本更正，须写明更正理由",
                                   {"version": latest["version"]})
        doc = {**evaluate(repo, store, policy, kind, no, now), "version": (latest or {}).get("version", 0) + 1,
               "evaluated_at": iso(now), "evaluated_by": by, "trigger": trigger, "reason": reason or None,
               "corrects": (latest or {}).get("version")}
        if store.publish(doc, [evaluated_event(doc)], correlation_id):
            return doc, True
    raise Conflict("EVALUATION_BUSY", "考核结果正在被其他人更正，请稍后再试", {"kind": kind, "no": no})


def due(policy: PolicyYear, now: datetime) -> list[tuple[str, int]]:
    """Evaluations whose instant passed more than the grace period ago (the loop publishes version 1)."""
    scheme = scheme_of(policy)
    if scheme is None:
        return []
    out = [("stage", s.no) for s in scheme.stages if s.deadline + grace() <= now]
    for kind in ("points", "funds"):
        try:
            at, _ = as_of(scheme, kind, 1)
        except NotFound:
            continue
        if at + grace() <= now:
            out.append((kind, 1))
    return out


def publish_due(repo: ProgressRepository, store: AssessmentStore, policies: dict[int, PolicyYear],
                now: datetime) -> list[dict[str, Any]]:
    """The deadline's own run for every due evaluation without a version yet (once, by `_id`)."""
    written = []
    for policy in policies.values():
        for kind, no in due(policy, now):
            if store.latest(policy.year, kind, no) is None:
                doc, wrote = publish(repo, store, policy, kind, no, now, "system:deadline", None, "deadline",
                                     only_first=True)
                if wrote:
                    written.append(doc)
    return written

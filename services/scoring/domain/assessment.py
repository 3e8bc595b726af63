"""The assessment engine (考核): one reading of every county's scheme (domain/scheme.py).

Pure: figures in, results out, each result with the sentence of the document that gave it and the
figures it used. Readings the documents leave open are fixed here and stated once:
- **Rates are exact fractions** (counted / task); ranks are competition ranks: ties share a rank
  and the next rank is skipped (1, 2, 2, 4).
- **"以上"/"以下" include the figure itself** (民法典第一千二百五十九条: 所称的"以上"、"以下"、"以内"、
  "届满"，包括本数): 40 % 以上 is rate ≥ 40 %; 高于2016年200人以上 is 200 or more.
- **Top N / bottom N are counted among the townships a rule's `requires` admit** ("the top 6 of
  those that reached the share"); `then_requires` then filters the chosen ones, and `exempt_if`
  spares a chosen one without handing its place to the next (Nayong 四: 可免除本次处罚).
- **A tie across the N-th place** is not broken by guessing: the tied townships get the award as
  `pending` with the reason, for the county to decide; no more than N are ever `given`.
- **Unknown figures never count as met**: a condition on a figure the county has not loaded (the
  2016 count, the registered-poor rate, a village task) makes the outcome `pending`, naming what is
  missing; a township without a task or a count is listed unranked with what it lacks.
- **Points per percentage point**: `whole` counts complete points only (96.99 % is one point above
  95 %), `proportional` counts parts too (1.99 points); a scheme names its reading. An item never
  goes below zero; points above the item's value are kept (Dong'an's work funds reward them).
- **Money** is integer fen, rounded half up once per township.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from math import floor
from typing import Iterable

from .ranking import competition_ranks
from .scheme import AWARDS, RECIPIENTS, Funds, Item, Rule, Scheme, Stage

UNKNOWN = None  # a condition on a figure nobody loaded


@dataclass(frozen=True)
class Figures:
    """A township's figures as of the instant evaluated (what the scheme counts)."""
    township: str
    task: int | None
    counted: int | None  # persons, by the scheme's `counts`; None: not known
    prior_year: int | None = None  # 上年参合（参保）绝对数, imported by the county
    registered_poor_rate: Fraction | None = None  # 建档立卡贫困人口参保率
    accuracy_rate: Fraction | None = None  # 信息录入准确率
    entered: dict | None = None  # items scored by county staff (2.4): {"incidents": n, "deductions": [...], "by", "reason"}
    villages: tuple[tuple[str, Fraction | None], ...] = ()  # (village, rate) where village tasks are known

    @property
    def rate(self) -> Fraction | None:
        if self.task is None or self.task <= 0 or self.counted is None:
            return None
        return Fraction(self.counted, self.task)


@dataclass
class Award:
    award: str
    to: tuple[str, ...]
    status: str  # given | exempted | pending
    rule: str
    reason: str
    missing: list[str] = field(default_factory=list)
    villages: list[str] = field(default_factory=list)  # the two lowest villages, where the award reaches their cadres

    def to_dict(self) -> dict:
        return {"award": self.award, "name": AWARDS[self.award], "to": list(self.to),
                "to_names": [RECIPIENTS[t] for t in self.to], "status": self.status, "rule": self.rule,
                "reason": self.reason, "missing": self.missing, "villages": self.villages}


@dataclass
class Row:
    township: str
    task: int | None
    counted: int | None
    rate: Fraction | None
    rank: int | None
    awards: list[Award] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reached: bool | None = None
    score: Fraction | None = None
    items: list[dict] = field(default_factory=list)
    fund_fen: int | None = None
    funds: list[dict] = field(default_factory=list)


def bp(x: Fraction | None) -> int | None:
    """A rate in basis points (9500 = 95.00 %), half up; for display only — decisions use the fraction."""
    return None if x is None else int(x * 10000 + Fraction(1, 2))


def pct(x: Fraction | None) -> str | None:
    b = bp(x)
    return None if b is None else f"{b // 100}.{b % 100:02d}%"


# ---- conditions ----------------------------------------------------------------------------------

MISSING_PRIOR = "上年参合（参保）绝对数未导入"
MISSING_POOR = "建档立卡贫困人口参保率未收到"


def holds(cond: str, row: Row, f: Figures, share: Fraction | None, history: dict[int, list[str]],
          stage_no: int | None) -> tuple[bool | None, str | None]:
    """(True/False/None, what is missing when None). `history`: stage number → awards given there
    (this stage's so far included under `stage_no`)."""
    name, _, arg = cond.partition(":")
    rate = row.rate
    if name in ("reached", "not_reached"):
        ok = rate >= share
        return (ok if name == "reached" else not ok), None
    if name in ("task_met", "task_not_met"):
        ok = f.counted >= f.task
        return (ok if name == "task_met" else not ok), None
    if name == "below_share":
        return rate < Fraction(int(arg), 100), None
    if name in ("above_prior_year", "below_prior_year", "prior_year_plus"):
        if f.prior_year is None:
            return UNKNOWN, MISSING_PRIOR
        if name == "above_prior_year":
            return f.counted > f.prior_year, None
        if name == "below_prior_year":
            return f.counted < f.prior_year, None
        return f.counted - f.prior_year >= int(arg), None
    if name == "registered_poor_below":
        if f.registered_poor_rate is None:
            return UNKNOWN, MISSING_POOR
        return f.registered_poor_rate < Fraction(int(arg), 100), None
    if name == "awarded":
        return arg in history.get(stage_no, []), None
    if name == "consecutive":
        award, n = arg.split(":")
        return all(award in history.get(s, []) for s in range(stage_no - int(n) + 1, stage_no + 1)), None
    if name == "total":
        award, n = arg.split(":")
        return sum(h.count(award) for h in history.values()) >= int(n), None
    if name == "awarded_in":
        award, stages = arg.split(":")
        return all(award in history.get(int(s), []) for s in stages.split(",")), None
    raise ValueError(f"unknown condition {cond}")  # the scheme's loader refuses these


def _all(conds: Iterable[str], row, f, share, history, stage_no) -> tuple[bool | None, list[str]]:
    """Every condition: False if one fails, None if none fails but one is unknown."""
    result, missing = True, []
    for c in conds:
        ok, why = holds(c, row, f, share, history, stage_no)
        if ok is False:
            return False, []
        if ok is None:
            result = None
            missing.append(why)
    return result, missing


def _reason(rule: Rule, row: Row, share: Fraction | None, n_place: str) -> str:
    rate = f"参合（参保）率{pct(row.rate)}" if row.rate is not None else ""
    target = f"（目标{int(share * 100)}%）" if share is not None else ""
    return f"{rate}{target}，{n_place}" if rate else n_place


def apply_rules(rules: tuple[Rule, ...], rows: list[Row], figs: dict[str, Figures], share: Fraction | None,
                history: dict[str, dict[int, list[str]]], stage_no: int | None, key) -> None:
    """Give each rule's award, in order (a later rule may name an award an earlier one gave).
    `key(row)`: what ranks rows (higher is better); unranked rows take no award."""
    ranked = [r for r in rows if r.rank is not None]
    for rule in rules:
        sel, _, n = rule.select.partition(":")
        candidates = []
        for r in ranked:
            ok, missing = _all(rule.requires, r, figs[r.township], share, history[r.township], stage_no)
            if ok is not False:
                candidates.append((r, missing))
        chosen: list[tuple[Row, list[str], str]] = []
        if sel == "each":
            chosen = [(r, m, "") for r, m in candidates]
        else:
            n = int(n)
            order = sorted(candidates, key=lambda c: key(c[0]), reverse=(sel == "top"))
            ranks = competition_ranks([key(c[0]) for c in order])
            inside = [(c, k) for c, k in zip(order, ranks) if k <= n]
            boundary = max((k for _, k in inside), default=None)
            over = len(inside) > n
            for (r, m), k in inside:
                place = f"{'前' if sel == 'top' else '后'}{n}位中第{k}位" if sel == "top" else f"排名后{n}位（倒数第{k}位）"
                if over and k == boundary:
                    m = m + [f"与其他乡镇并列{'第' if sel == 'top' else '倒数第'}{k}位，超出{n}个名额，由县里决定"]
                chosen.append((r, m, place))
        for r, missing, place in chosen:
            f = figs[r.township]
            ok, more = _all(rule.then_requires, r, f, share, history[r.township], stage_no)
            if ok is False:
                continue
            missing = missing + more
            status = "pending" if missing else "given"
            exempt, why = (_all(rule.exempt_if, r, f, share, history[r.township], stage_no) if rule.exempt_if
                           else (False, []))
            if exempt is True:
                status = "exempted"
            elif exempt is None:
                status, missing = "pending", missing + why
            award = Award(rule.award, rule.to, status, rule.rule, _reason(rule, r, share, place or "符合条件"), missing)
            if "village_cadres" in rule.to:
                award.villages, lacking = lowest_villages(f)
                if lacking:
                    award.missing.append(lacking)
            r.awards.append(award)
            if status == "given":
                history[r.township].setdefault(stage_no, []).append(rule.award)


def lowest_villages(f: Figures, n: int = 2) -> tuple[list[str], str | None]:
    """The township's n lowest villages by rate (their cadres are named in Nayong's warnings; the
    township reports who they are: 由乡镇〈街道〉上报名单)."""
    known = [(v, r) for v, r in f.villages if r is not None]
    if len(known) < n:
        return [], "村（社区）任务数未配置，无法确定排名后两位村（社区）；挂村干部名单由乡（镇、街道）上报"
    return [v for v, _ in sorted(known, key=lambda x: (x[1], x[0]))[:n]], None


def _rank(rows: list[Row], key) -> None:
    ranked = sorted((r for r in rows if key(r) is not None), key=key, reverse=True)
    for r, k in zip(ranked, competition_ranks([key(r) for r in ranked])):
        r.rank = k


def _base_rows(figures: list[Figures], missing_count: str) -> list[Row]:
    rows = []
    for f in figures:
        r = Row(f.township, f.task, f.counted, f.rate, None)
        if f.task is None or f.task <= 0:
            r.missing.append("未配置参保任务数")
        if f.counted is None:
            r.missing.append(missing_count)
        rows.append(r)
    return rows


# ---- stages (Nayong) ------------------------------------------------------------------------------

@dataclass
class StageResult:
    stage: Stage
    rows: list[Row]
    missing: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing and all(not r.missing for r in self.rows) and \
            all(a.status != "pending" for r in self.rows for a in r.awards)


def evaluate_stage(scheme: Scheme, stage: Stage, figures: list[Figures],
                   history: dict[str, dict[int, list[str]]] | None = None, missing_count: str = "未取得人数") -> StageResult:
    """One stage at its deadline: rank by rate, mark who reached the share, give the stage's awards.
    `history`: township → stage number → awards given in earlier stages (cards accumulate)."""
    share = Fraction(stage.share_percent, 100)
    rows = _base_rows(figures, missing_count)
    _rank(rows, lambda r: r.rate)
    for r in rows:
        r.reached = None if r.rate is None else r.rate >= share
    hist = {f.township: {k: list(v) for k, v in ((history or {}).get(f.township) or {}).items()} for f in figures}
    figs = {f.township: f for f in figures}
    apply_rules(stage.rules, rows, figs, share, hist, stage.no, key=lambda r: r.rate)
    missing = sorted({m for r in rows for m in r.missing})
    return StageResult(stage, rows, missing)


# ---- points (Dong'an) -----------------------------------------------------------------------------

def point_delta(diff_points: Fraction, per: int, reading: str) -> Fraction:
    """Points for `diff_points` percentage points at `per` points each: whole points only, or parts too."""
    return Fraction(floor(diff_points) * per) if reading == "whole" else diff_points * per


def score_item(item: Item, f: Figures, reading: str) -> dict:
    """One item's score with its breakdown (figures, base, difference, points, the rule)."""
    out = {"code": item.code, "name": item.name, "points": item.points, "rule": item.rule, "reading": reading}
    if item.measure == "entered":
        if f.entered is None:
            return {**out, "score": None, "missing": f"{item.code}{item.name}尚未由县经办机构录入"}
        incidents = int(f.entered.get("incidents", 0))
        other = sum(Fraction(str(d["points"])) for d in f.entered.get("deductions", []))
        score = max(Fraction(0), item.points - incidents * item.per_incident - other)
        return {**out, "incidents": incidents, "deducted": str(incidents * item.per_incident + other),
                "entered_by": f.entered.get("by"), "entered_reason": f.entered.get("reason"),
                "score": score, "missing": None}
    value = {"enrolment_rate": f.rate, "accuracy_rate": f.accuracy_rate,
             "registered_poor_rate": f.registered_poor_rate}[item.measure]
    if value is None:
        return {**out, "score": None, "missing": f"{item.code}{item.name}：无数据"}
    diff = value * 100 - item.base_percent  # percentage points against the base
    delta = (point_delta(diff, item.per_point_above, reading) if diff > 0
             else -point_delta(-diff, item.per_point_below, reading) if diff < 0 else Fraction(0))
    score = max(Fraction(0), item.points + delta)
    return {**out, "value_bp": bp(value), "base_percent": item.base_percent, "diff_points": str(diff),
            "delta": str(delta), "score": score, "missing": None}


@dataclass
class PointsResult:
    rows: list[Row]
    missing: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing and all(a.status != "pending" for r in self.rows for a in r.awards)


def evaluate_points(scheme: Scheme, figures: list[Figures]) -> PointsResult:
    """Every township's 100-point score with its items, the rewards and the work funds."""
    pts = scheme.points
    rows = _base_rows(figures, "未取得参保人数")
    figs = {f.township: f for f in figures}
    for r in rows:
        r.items = [score_item(i, figs[r.township], pts.reading) for i in pts.items]
        lacking = [i["missing"] for i in r.items if i["missing"]]
        r.missing.extend(lacking)
        r.score = None if lacking else sum((i["score"] for i in r.items), Fraction(0))
    _rank(rows, lambda r: r.score)
    hist = {f.township: {} for f in figures}
    apply_rules(pts.rewards, rows, figs, None, hist, 0, key=lambda r: r.score)
    for fund in scheme.funds:
        for r in rows:
            add_fund(fund, r, figs[r.township])
    return PointsResult(rows, sorted({m for r in rows for m in r.missing}))


def fund_fen(fund: Funds, persons: int, score: Fraction | None) -> Fraction:
    """工作经费 in fen before rounding: a flat amount per person, or (Dong'an) the base at the base
    score, plus `per_point_above_fen` per point above, minus `per_point_below_fen` per point below."""
    if fund.base_score is None:
        return Fraction(persons * fund.base_fen_per_person)
    diff = score - fund.base_score
    per = fund.base_fen_per_person + (diff * fund.per_point_above_fen if diff > 0 else diff * fund.per_point_below_fen)
    return persons * per


def add_fund(fund: Funds, r: Row, f: Figures) -> None:
    """A fund for a township its `requires` admit (e.g. task_met), with its breakdown."""
    if r.rate is None:
        return
    ok, missing = _all(fund.requires, r, f, None, {}, 0)
    if ok is False:
        return
    if fund.base_score is not None and r.score is None:
        r.funds.append({"rule": fund.rule, "fen": None, "missing": "考核得分不完整，暂不能计算工作经费"})
        return
    exact = fund_fen(fund, f.counted, r.score)
    fen = max(0, floor(exact + Fraction(1, 2)))
    r.funds.append({"rule": fund.rule, "persons": f.counted, "score": None if r.score is None else str(r.score),
                    "fen": fen, "exact_fen": str(exact), "rounding": "四舍五入到分", "missing": missing or None})
    r.fund_fen = (r.fund_fen or 0) + fen


def evaluate_funds(scheme: Scheme, figures: list[Figures]) -> list[Row]:
    """Funds alone (Wuming): money per enrolled person for the towns the rule admits."""
    rows = _base_rows(figures, "未取得参保人数")
    _rank(rows, lambda r: r.rate)
    figs = {f.township: f for f in figures}
    for fund in scheme.funds:
        for r in rows:
            add_fund(fund, r, figs[r.township])
    return rows


def stage_due(scheme: Scheme, at: datetime) -> list[Stage]:
    """Stages whose deadline has passed at `at` (their evaluation is due)."""
    return [s for s in scheme.stages if s.deadline <= at]

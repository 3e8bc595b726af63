"""Assessment schemes (考核方案) as policy data: the `assessment` part of a county's policy file.

One engine (domain/assessment.py) reads every county's scheme; adding a county is a new file.
Three shapes occur in the documents, and a scheme may combine them:
- **stages** (Nayong 000 二): staged deadlines, each a task share, with ranked awards (流动红旗,
  黄牌, warnings) chosen by `rules`;
- **points** (Dong'an 001 附件2): items scored against a base with points per percentage point,
  rewards for the top ones and work funds (工作经费) by score;
- **funds** (Wuming 002 五(五)): money per enrolled person for towns that completed their task.

A rule's words are the document's: every part keeps the sentence it implements in `rule`, so an
evaluation can show which sentence gave which result. Validated at load: a bad file stops scoring
with the file and the field named (shared.policy.PolicyError).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from shared.clock import SHANGHAI
from shared.policy import PolicyError, PolicyYear, flatten_errors

# who a consequence falls on (Nayong 二: 主要负责人, 分管负责人, 排名后两位村(社区)的挂村干部)
RECIPIENTS = {"township": "乡（镇、街道）", "head": "主要负责人", "deputy": "分管负责人",
              "village_cadres": "排名后两位村（社区）的挂村干部"}
# what a rule gives; the Chinese names are what notices and portals print
AWARDS = {
    "red_flag": "流动红旗", "praise": "全县通报表扬", "yellow_card": "黄牌", "red_card": "红牌",
    "talk": "约谈", "yellow_warning": "黄色预警", "red_warning": "红色预警", "admonition_recall": "诫勉谈话并召回管理",
    "accountability": "启动问责程序", "supervision_accountability": "县监察局启动行政效能监察问责程序",
    "may_lift_yellow_card": "可申请解除一次黄牌", "may_lift_yellow_warning": "可申请解除一次黄色预警",
    "inspection": "专项督办", "named_last": "全县通报并取消年度评先评优资格",
}
# conditions a rule may name: on the stage's figures, on the prior year, on what was awarded before
CONDITION = re.compile(
    r"^(reached|not_reached|above_prior_year|below_prior_year|task_met|task_not_met"
    r"|below_share:\d{1,3}|prior_year_plus:\d{1,6}|registered_poor_below:\d{1,3}"
    r"|awarded:[a-z_]+|consecutive:[a-z_]+:\d|total:[a-z_]+:\d|awarded_in:[a-z_]+:\d(,\d)*)$")
SELECT = re.compile(r"^(top:\d{1,3}|bottom:\d{1,3}|each)$")
READINGS = ("whole", "proportional")  # "per percentage point": only whole points count, or partial ones too


class _Base(Schema):
    class Meta:
        unknown = RAISE


class _Condition(fields.String):
    def _deserialize(self, value, attr, data, **kw):
        value = super()._deserialize(value, attr, data, **kw)
        if not CONDITION.match(value):
            raise ValidationError(f"unknown condition {value!r} (see services/scoring/domain/scheme.py CONDITION)")
        award = value.split(":")[1] if value.startswith(("awarded", "consecutive", "total")) else None
        if award is not None and award not in AWARDS:
            raise ValidationError(f"unknown award {award!r} in condition {value!r}")
        return value


class RuleSchema(_Base):
    award = fields.String(required=True, validate=validate.OneOf(list(AWARDS)))
    select = fields.String(required=True, validate=validate.Regexp(SELECT, error="top:N, bottom:N or each"))
    requires = fields.List(_Condition(), load_default=list)
    then_requires = fields.List(_Condition(), load_default=list)
    exempt_if = fields.List(_Condition(), load_default=list)
    to = fields.List(fields.String(validate=validate.OneOf(list(RECIPIENTS))), load_default=lambda: ["township"])
    rule = fields.String(required=True, validate=validate.Length(min=1))


class StageSchema(_Base):
    no = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=20))
    name = fields.String(required=True)
    deadline = fields.String(required=True, metadata={"description": "Asia/Shanghai wall time, YYYY-MM-DDTHH:MM:SS"})
    share_percent = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
    rule = fields.String(required=True)
    rules = fields.List(fields.Nested(RuleSchema), required=True)

    @validates_schema
    def _deadline(self, data, **_):
        try:
            at = datetime.fromisoformat(data["deadline"])
        except ValueError as e:
            raise ValidationError(f"not a wall-clock time: {e}", "deadline") from e
        if at.tzinfo is not None:
            raise ValidationError("a deadline is Asia/Shanghai wall time, written without an offset", "deadline")


class ItemSchema(_Base):
    code = fields.String(required=True)
    name = fields.String(required=True)
    points = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
    measure = fields.String(required=True, validate=validate.OneOf(
        ["enrolment_rate", "accuracy_rate", "registered_poor_rate", "entered"]))
    base_percent = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1, max=100))
    per_point_above = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))
    per_point_below = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))
    per_incident = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))
    rule = fields.String(required=True)

    @validates_schema
    def _base(self, data, **_):
        if data["measure"] != "entered" and data.get("base_percent") is None:
            raise ValidationError("a rate item needs base_percent", "base_percent")


class PointsSchema(_Base):
    as_of = fields.String(required=True, metadata={"description": "统计截止时刻（北京时间）"})
    reading = fields.String(required=True, validate=validate.OneOf(READINGS))
    reading_rule = fields.String(required=True)
    items = fields.List(fields.Nested(ItemSchema), required=True, validate=validate.Length(min=1))
    rewards = fields.List(fields.Nested(RuleSchema), load_default=list)


class FundsSchema(_Base):
    requires = fields.List(_Condition(), required=True)
    base_fen_per_person = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    base_score = fields.Integer(strict=True, allow_none=True, load_default=None)
    per_point_above_fen = fields.Integer(strict=True, load_default=0)
    per_point_below_fen = fields.Integer(strict=True, load_default=0)
    as_of = fields.String(load_default=None, allow_none=True, metadata={"description": "“按时”：计人数的截止时刻（北京时间）"})
    payee = fields.String(load_default="township", validate=validate.OneOf(["township", "county_agency"]))
    rule = fields.String(required=True)


class BulletinSchema(_Base):
    """A reporting rhythm (通报): the ranking published weekly on a weekday or monthly on a day."""
    every = fields.String(required=True, validate=validate.OneOf(["week", "month"]))
    weekday = fields.Integer(strict=True, load_default=None, validate=validate.Range(min=1, max=7))  # ISO: 4 = Thursday
    day = fields.Integer(strict=True, load_default=None, validate=validate.Range(min=1, max=28))
    at = fields.String(required=True, validate=validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))
    rule = fields.String(required=True)

    @validates_schema
    def _when(self, data, **_):
        if data["every"] == "week" and data.get("weekday") is None:
            raise ValidationError("a weekly bulletin names its weekday (1 = Monday … 7 = Sunday)", "weekday")
        if data["every"] == "month" and data.get("day") is None:
            raise ValidationError("a monthly bulletin names its day of the month", "day")


class PriorYearSchema(_Base):
    year = fields.Integer(strict=True, required=True)
    rule = fields.String(required=True)


class AssessmentSchema(_Base):
    source = fields.String(required=True)
    counts = fields.String(required=True, validate=validate.OneOf(["enrolled_persons", "remitted_persons"]))
    counts_rule = fields.String(required=True)
    prior_year = fields.Nested(PriorYearSchema, allow_none=True, load_default=None)
    stages = fields.List(fields.Nested(StageSchema), load_default=list)
    health_points = fields.Dict(load_default=None, allow_none=True)
    points = fields.Nested(PointsSchema, load_default=None, allow_none=True)
    funds = fields.List(fields.Nested(FundsSchema), load_default=list)
    bulletins = fields.List(fields.Nested(BulletinSchema), load_default=list)
    notes = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)

    @validates_schema
    def _order(self, data, **_):
        nos = [s["no"] for s in data["stages"]]
        if nos != list(range(1, len(nos) + 1)):
            raise ValidationError("stages are numbered 1, 2, … in order", "stages")
        deadlines = [s["deadline"] for s in data["stages"]]
        if deadlines != sorted(deadlines):
            raise ValidationError("stage deadlines must follow one another", "stages")
        if not (data["stages"] or data["points"] or data["funds"]):
            raise ValidationError("a scheme has stages, points or funds", "stages")


# ---- the loaded scheme ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    award: str
    select: str
    requires: tuple[str, ...]
    then_requires: tuple[str, ...]
    exempt_if: tuple[str, ...]
    to: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class Stage:
    no: int
    name: str
    deadline: datetime  # aware, Asia/Shanghai
    share_percent: int
    rule: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    points: int
    measure: str
    base_percent: int | None
    per_point_above: int
    per_point_below: int
    per_incident: int
    rule: str


@dataclass(frozen=True)
class Points:
    as_of: datetime
    reading: str
    reading_rule: str
    items: tuple[Item, ...]
    rewards: tuple[Rule, ...]


@dataclass(frozen=True)
class Funds:
    requires: tuple[str, ...]
    base_fen_per_person: int
    base_score: int | None
    per_point_above_fen: int
    per_point_below_fen: int
    rule: str
    as_of: datetime | None = None
    payee: str = "township"  # township | county_agency (Wuming's data-entry budget goes to the agency)


@dataclass(frozen=True)
class Bulletin:
    every: str
    weekday: int | None
    day: int | None
    at: str  # HH:MM, Asia/Shanghai
    rule: str


@dataclass(frozen=True)
class Scheme:
    county_code: str
    year: int
    source: str
    counts: str  # what a township's figure is: enrolled_persons | remitted_persons
    counts_rule: str
    prior_year: int | None
    prior_year_rule: str | None
    stages: tuple[Stage, ...]
    health_points: dict | None
    points: Points | None
    funds: tuple[Funds, ...]
    notes: dict = field(default_factory=dict)
    bulletins: tuple[Bulletin, ...] = ()

    def stage(self, no: int) -> Stage | None:
        return next((s for s in self.stages if s.no == no), None)


def _rule(d: dict) -> Rule:
    return Rule(d["award"], d["select"], tuple(d["requires"]), tuple(d["then_requires"]), tuple(d["exempt_if"]),
                tuple(d["to"]), d["rule"])


def _wall(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


_PARSED: dict[int, tuple[PolicyYear, "Scheme | None"]] = {}


def scheme_of(policy: PolicyYear) -> Scheme | None:
    """The policy's scheme, validated; None where the file has no `assessment` part. Parsed once
    per policy object (rankings ask for it on every request; the entry keeps the policy, so its id
    is never reused)."""
    hit = _PARSED.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    scheme = _parse_scheme(policy)
    _PARSED[id(policy)] = (policy, scheme)
    return scheme


def _parse_scheme(policy: PolicyYear) -> Scheme | None:
    raw = policy.raw.get("assessment")
    if raw is None:
        return None
    try:
        d = AssessmentSchema().load(raw)
    except ValidationError as e:
        errors = {f"assessment.{k}": v for k, v in flatten_errors(e.messages).items()}
        first = next(iter(errors.items()))
        raise PolicyError(f"invalid assessment scheme: {first[0]}: {first[1][0]}", policy.source_file, errors) from e
    points = d["points"]
    return Scheme(
        county_code=policy.county_code, year=policy.year, source=d["source"], counts=d["counts"],
        counts_rule=d["counts_rule"], prior_year=(d["prior_year"] or {}).get("year"),
        prior_year_rule=(d["prior_year"] or {}).get("rule"),
        stages=tuple(Stage(s["no"], s["name"], _wall(s["deadline"]), s["share_percent"], s["rule"],
                           tuple(_rule(r) for r in s["rules"])) for s in d["stages"]),
        health_points=d["health_points"],
        points=None if points is None else Points(
            _wall(points["as_of"]), points["reading"], points["reading_rule"],
            tuple(Item(**i) for i in points["items"]), tuple(_rule(r) for r in points["rewards"])),
        funds=tuple(Funds(tuple(f["requires"]), f["base_fen_per_person"], f["base_score"], f["per_point_above_fen"],
                          f["per_point_below_fen"], f["rule"], f["as_of"] and _wall(f["as_of"]), f["payee"])
                    for f in d["funds"]),
        notes=d["notes"], bulletins=tuple(Bulletin(**b) for b in d["bulletins"]))


def latest_bulletin(b: Bulletin, now: datetime, start: datetime, end: datetime) -> datetime | None:
    """The newest instant of the rhythm at or before `now` inside [start, end] (Shanghai wall time);
    None before the first. Only the newest is published: a worker back after days does not send the
    bulletins it missed, which would only confuse who reads them."""
    from datetime import timedelta
    hour, minute = map(int, b.at.split(":"))
    local = min(now, end).astimezone(SHANGHAI)
    day = local.date()
    for _ in range(40):  # at most a month back
        fits = day.isoweekday() == b.weekday if b.every == "week" else day.day == b.day
        at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)
        if fits and at <= min(now, end):
            return at if at >= start else None
        day -= timedelta(days=1)
    return None

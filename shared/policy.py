"""A county's policy year (政策年度): standard, payment window, townships and their tasks, mid-year
rules and subsidies — one validated JSON file per county and year under policies/ (the catalogue).

Every file is built from the county's own notice. A figure the notice does not give is null with a
note saying so (never invented); a disagreement inside the notice (a printed total its rows do not
add up to) is reported at load as a structured warning, with the rule the county chose.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .clock import shanghai_end_of_day, shanghai_start_of_day
from .errors import Conflict

log = logging.getLogger(__name__)

TASK_TOTAL_RULES = ("rows", "printed")
PHASES = ("draft", "window_open", "benefit_year", "closed")
PHASE_NAMES = {"draft": "筹备中", "window_open": "集中参保缴费期", "benefit_year": "待遇享受期", "closed": "已结束"}


@dataclass(frozen=True)
class Township:
    name: str
    task: int  # 参保任务（人）
    villages: tuple[str, ...] = ()  # 村（社区）; empty when the county has not loaded its places
    population: int | None = None  # the base the task was computed from, where printed (Wuming: 2016年底人口数)

    def has_village(self, village: str) -> bool:
        return village in self.villages


@dataclass(frozen=True)
class PolicyWarning:
    """A disagreement found at load: machine code, the file and field, the figures, a zh-CN message."""
    code: str
    file: str
    field: str
    message: str
    data: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


@dataclass(frozen=True)
class MidYearPeriod:
    """A yearly stretch (month-day to month-day, both inclusive) in which enrolment for the current year
    is open (`open`) or refused (`closed`) for the groups named; `except_` lists who is still accepted."""
    starts: str  # "MM-DD"
    ends: str
    kind: str  # "open" | "closed"
    who: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    rule: str = ""


@dataclass(frozen=True)
class MidYearRules:
    # 筹资标准 (individual + government part), integer fen, for enrolment after the window (Dong'an 001 四);
    # None = not set (the notice prints no figure).
    financing_standard_fen: int | None = None
    newborn_within_days: int | None = None    # Dong'an 五: 出生28天以内新生儿
    newborn_within_months: int | None = None  # Wuming 五(二): 出生未超过3个月的新生儿
    special_cases: tuple[str, ...] = ()       # codes of the notice's named grounds
    benefits_from: str | None = None          # "next_month" (Dong'an: 从缴费的下个月起享受医保待遇)
    periods: tuple[MidYearPeriod, ...] = ()


@dataclass(frozen=True)
class PolicyYear:
    county: str  # the county's name as its notice prints it (东安县)
    year: int
    standard_fen: int | None  # 个人缴费标准, integer fen; None where the notice prints none (Nayong 2017)
    window_opens: date | None
    window_closes: date | None
    townships: tuple[Township, ...]
    declared_task_total: int | None
    target_rate_percent: int | None
    warnings: tuple[PolicyWarning, ...] = field(default=())
    financing_standard_fen: int | None = None
    task_total_rule: str | None = None  # which figure counts when the printed total and the rows differ
    benefit_starts: date | None = None
    benefit_ends: date | None = None
    mid_year: MidYearRules | None = None
    source_file: str = ""
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    county_code: str = ""  # GB/T 2260 code (431122): the county's key in URLs, events, tokens and databases

    def __post_init__(self):
        if self.benefit_starts is None:  # the resident insurance year is the calendar year of the policy year
            object.__setattr__(self, "benefit_starts", date(self.year, 1, 1))
        if self.benefit_ends is None:
            object.__setattr__(self, "benefit_ends", date(self.year, 12, 31))

    @property
    def key(self) -> tuple[str, int]:
        return (self.county_code, self.year)

    def township(self, name: str) -> Township | None:
        return next((t for t in self.townships if t.name == name), None)

    @property
    def task_rows_total(self) -> int:
        return sum(t.task for t in self.townships)

    @property
    def task_total(self) -> int:
        """The county total by the county's rule: the printed 合计 or the sum of the rows."""
        if self.task_total_rule == "printed" and self.declared_task_total is not None:
            return self.declared_task_total
        return self.task_rows_total

    def window_open_at(self, at: datetime) -> bool:
        """集中参保缴费期: both ends inclusive, Asia/Shanghai calendar days."""
        if self.window_opens is None or self.window_closes is None:
            return False
        return shanghai_start_of_day(self.window_opens) <= at <= shanghai_end_of_day(self.window_closes)

    def after_window_in_year_at(self, at: datetime) -> bool:
        """After the window closed and before the policy year (待遇享受期, Jan 1 - Dec 31) ends: when a
        mid-year enrolment (中途参保) for this year can still be paid."""
        if self.window_closes is None:
            return False
        return shanghai_end_of_day(self.window_closes) < at <= shanghai_end_of_day(self.benefit_ends)


class PolicyError(ValueError):
    """A policy file that cannot be used; `errors` maps each field path to its messages."""

    def __init__(self, message: str, file: str = "", errors: dict[str, list[str]] | None = None):
        self.file, self.errors = file, errors or {}
        super().__init__(f"{file}: {message}" if file else message)


# ---- schema -------------------------------------------------------------------------------------------

class StrictInt(fields.Integer):
    """An integer in the JSON (no 250.0, no "250", no true): money and counts are exact."""

    def __init__(self, **kw):
        super().__init__(strict=True, **kw)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class _Base(Schema):
    class Meta:
        unknown = RAISE


class WindowSchema(_Base):
    opens = fields.Date(required=True)
    closes = fields.Date(required=True)
    rule = fields.String()

    @validates_schema
    def _order(self, data, **_):
        if data["closes"] < data["opens"]:
            raise ValidationError("payment window closes before it opens (缴费期结束早于开始)", "closes")


class BenefitSchema(_Base):
    starts = fields.Date(required=True)
    ends = fields.Date(required=True)
    rule = fields.String()


class TownshipSchema(_Base):
    name = fields.String(required=True, validate=validate.Length(min=1))
    task = StrictInt(required=True, validate=validate.Range(min=1, error="task must be a positive integer"))
    population = StrictInt(validate=validate.Range(min=0))


_MONTH_DAY = validate.Regexp(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$", error="month-day must be MM-DD")


class PeriodSchema(_Base):
    starts = fields.String(required=True, validate=_MONTH_DAY)
    ends = fields.String(required=True, validate=_MONTH_DAY)
    kind = fields.String(required=True, validate=validate.OneOf(["open", "closed"]))
    who = fields.List(fields.String())
    except_ = fields.List(fields.String(), data_key="except")
    rule = fields.String()
    note = fields.String()


class MidYearSchema(_Base):
    financing_standard_fen = StrictInt(allow_none=True, validate=validate.Range(min=0))
    newborn_within_days = StrictInt(allow_none=True, validate=validate.Range(min=1))
    newborn_within_months = StrictInt(allow_none=True, validate=validate.Range(min=1))
    special_cases = fields.List(fields.String())
    benefits_from = fields.String(allow_none=True, validate=validate.OneOf(["next_month"]))
    periods = fields.List(fields.Nested(PeriodSchema))
    rule = fields.String()
    rules = fields.Dict(keys=fields.String(), values=fields.String())
    note = fields.String()

    @validates_schema
    def _financing_note(self, data, **_):
        if "financing_standard_fen" in data and data["financing_standard_fen"] is None and not data.get("note"):
            raise ValidationError("null (unset) needs a note saying why", "note")


class CategorySchema(_Base):
    code = fields.String(required=True)
    subsidy_fen = StrictInt(allow_none=True, validate=validate.Range(min=0))
    full_coverage = fields.Boolean()
    department = fields.String(allow_none=True)
    sources = fields.List(fields.String())
    rule = fields.String(required=True)
    note = fields.String()

    @validates_schema
    def _amount_or_note(self, data, **_):
        if not data.get("full_coverage") and data.get("subsidy_fen") is None and not data.get("note"):
            raise ValidationError("a category with no amount (subsidy_fen null) needs a note", "note")


class SubsidySchema(_Base):
    rule = fields.String()
    note = fields.String()
    new_hardship_after = fields.Date(allow_none=True)
    new_hardship_rule = fields.String()
    freeze_rule = fields.String()
    departments = fields.Dict(keys=fields.String(), values=fields.String())
    groups = fields.List(fields.String())
    categories = fields.List(fields.Nested(CategorySchema))


# Top-level fields a notice may leave out: null in the file, and then `notes[<field>]` says why.
NULLABLE_WITH_NOTE = ("standard_fen", "window", "townships", "declared_task_total", "target_rate_percent",
                      "mid_year", "subsidy")


class PolicySchema(_Base):
    source = fields.String(required=True)
    county = fields.String(required=True, validate=validate.Length(min=1))
    county_code = fields.String(required=True, validate=validate.Regexp(
        r"^[1-9][0-9]{5}$", error="county_code must be the county's six-digit GB/T 2260 code"))
    year = StrictInt(required=True, validate=validate.Range(min=2000, max=2100))
    standard_fen = StrictInt(required=True, allow_none=True,
                             validate=validate.Range(min=0, error="standard_fen must be a non-negative integer (fen)"))
    standard_rule = fields.String()
    window = fields.Nested(WindowSchema, required=True, allow_none=True)
    benefit_period = fields.Nested(BenefitSchema)
    mid_year = fields.Nested(MidYearSchema, allow_none=True)
    target_rate_percent = StrictInt(allow_none=True, validate=validate.Range(min=1, max=100))
    target_rule = fields.String()
    townships = fields.List(fields.Nested(TownshipSchema), required=True, allow_none=True)
    declared_task_total = StrictInt(allow_none=True)
    declared_population_total = StrictInt(allow_none=True)
    task_total_rule = fields.String(allow_none=True, validate=validate.OneOf(TASK_TOTAL_RULES))
    task_table_rule = fields.String()
    places_file = fields.String()
    places_note = fields.String()
    subsidy = fields.Nested(SubsidySchema, allow_none=True)
    notes = fields.Dict(keys=fields.String(), values=fields.String())
    assessment = fields.Dict(allow_none=True, metadata={
        "description": "考核方案: validated by scoring (services/scoring/domain/scheme.py)"})

    @validates_schema
    def _cross_checks(self, data, **_):
        errors: dict[str, list[str]] = {}
        notes = data.get("notes") or {}
        for name in NULLABLE_WITH_NOTE:
            if name in data and data[name] is None and not notes.get(name):
                errors.setdefault(name, []).append(f"null needs notes.{name} saying the document gives no figure")
        towns = data.get("townships") or []
        names = [t["name"] for t in towns]
        if len(set(names)) != len(names):
            errors.setdefault("townships", []).append("township names must be unique")
        declared = data.get("declared_task_total")
        rows = sum(t["task"] for t in towns)
        if towns and declared is not None and declared != rows and not data.get("task_total_rule"):
            errors.setdefault("task_total_rule", []).append(
                f"the printed total {declared} differs from the rows' sum {rows}: choose \"rows\" or \"printed\"")
        financing = (data.get("mid_year") or {}).get("financing_standard_fen")
        standard = data.get("standard_fen")
        if financing is not None and standard is not None and financing < standard:
            errors.setdefault("mid_year.financing_standard_fen", []).append(
                "must be null (unset) or integer fen not below standard_fen: it includes the individual part")
        if errors:
            raise ValidationError(errors)


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for k, v in messages.items():
            key = (prefix if k == "_schema" else f"{prefix}[{k}]" if isinstance(k, int)
                   else f"{prefix}.{k}" if prefix else str(k))
            for kk, vv in flatten_errors(v, key).items():
                out.setdefault(kk, []).extend(vv)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "(file)"] = list(messages)
    elif isinstance(messages, list):
        for i, m in enumerate(messages):
            out.update(flatten_errors(m, f"{prefix}[{i}]"))
    else:
        out[prefix or "(file)"] = [str(messages)]
    return out


# ---- loading ------------------------------------------------------------------------------------------

def load_policy(path: Path | str) -> PolicyYear:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PolicyError(f"not valid JSON: {e}", path.name) from e
    villages = load_places(path.parent / raw["places_file"]) if isinstance(raw, dict) and raw.get("places_file") else {}
    policy = parse_policy(raw, villages, file=path.name)
    for w in policy.warnings:  # reported at load, once per load, with its figures
        log.warning("%s", w, extra={"policy_warning": json.dumps(
            {"code": w.code, "file": w.file, "field": w.field, **w.data}, ensure_ascii=False)})
    return policy


def load_places(path: Path) -> dict[str, list[str]]:
    """Villages per township from a CSV with the headers 乡镇,村（社区）."""
    import csv
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["乡镇"].strip(), []).append(row["村（社区）"].strip())
    return out


def parse_policy(raw: dict, villages: dict[str, list[str]] | None = None, *, file: str = "<policy>") -> PolicyYear:
    if not isinstance(raw, dict):
        raise PolicyError("a policy file is a JSON object", file)
    try:
        data = PolicySchema().load(raw)
    except ValidationError as e:
        errors = flatten_errors(e.messages)
        detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(errors.items()))
        raise PolicyError(f"invalid policy file: {detail}", file, errors) from e
    from .resident_id import county_name
    printed = county_name(data["county_code"])
    if printed is None:
        raise PolicyError(f"county_code: {data['county_code']} is not a county-level GB/T 2260 code", file,
                          {"county_code": ["not a county-level GB/T 2260 code"]})
    if data["county"] not in printed:
        raise PolicyError(f"county_code: {data['county_code']} is {printed}, not {data['county']}", file,
                          {"county_code": [f"is {printed}, not {data['county']}"]})
    towns = tuple(Township(t["name"], t["task"], tuple((villages or {}).get(t["name"], ())), t.get("population"))
                  for t in data["townships"] or ())
    unknown = set(villages or {}) - {t.name for t in towns}
    if unknown:
        raise PolicyError(f"places_file: names townships not in the task table: {sorted(unknown)}", file,
                          {"places_file": [f"unknown townships {sorted(unknown)}"]})
    warnings = []
    declared, rows = data.get("declared_task_total"), sum(t.task for t in towns)
    rule = data.get("task_total_rule")
    if towns and declared is not None and declared != rows:
        chosen = declared if rule == "printed" else rows
        warnings.append(PolicyWarning(
            "TASK_TOTAL_MISMATCH", file, "declared_task_total",
            f"任务合计与各乡镇任务之和不一致：印刷合计 {declared}，各行相加 {rows}，差 {rows - declared}；"
            f"按 task_total_rule={rule}（{'印刷合计' if rule == 'printed' else '各行相加'}）取 {chosen}",
            {"task_total_printed": declared, "task_total_rows": rows, "task_rule": rule, "task_total": chosen}))
    pop = data.get("declared_population_total")
    pop_rows = sum(t.population or 0 for t in towns)
    if pop is not None and any(t.population is not None for t in towns) and pop != pop_rows:
        warnings.append(PolicyWarning("POPULATION_TOTAL_MISMATCH", file, "declared_population_total",
                                      f"人口合计与各行之和不一致：印刷合计 {pop}，各行相加 {pop_rows}",
                                      {"printed": pop, "rows": pop_rows}))
    window, benefit, mid = data["window"], data.get("benefit_period") or {}, data.get("mid_year")
    mid_rules = None if mid is None else MidYearRules(
        financing_standard_fen=mid.get("financing_standard_fen"),
        newborn_within_days=mid.get("newborn_within_days"), newborn_within_months=mid.get("newborn_within_months"),
        special_cases=tuple(mid.get("special_cases") or ()), benefits_from=mid.get("benefits_from"),
        periods=tuple(MidYearPeriod(p["starts"], p["ends"], p["kind"], tuple(p.get("who") or ()),
                                    tuple(p.get("except_") or ()), p.get("rule", "")) for p in mid.get("periods") or ()))
    target = data["target_rate_percent"] if "target_rate_percent" in data else 95
    return PolicyYear(county=data["county"], year=data["year"], standard_fen=data["standard_fen"],
                      window_opens=window["opens"] if window else None,
                      window_closes=window["closes"] if window else None, townships=towns,
                      declared_task_total=declared, target_rate_percent=target, warnings=tuple(warnings),
                      financing_standard_fen=mid_rules.financing_standard_fen if mid_rules else None,
                      task_total_rule=rule, benefit_starts=benefit.get("starts"), benefit_ends=benefit.get("ends"),
                      mid_year=mid_rules, source_file=file, raw=raw, county_code=data["county_code"])


# ---- the catalogue ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Catalogue:
    """Every county-year loaded from a directory, keyed (county code, year)."""
    policies: dict[tuple[str, int], PolicyYear]

    def get(self, county: str, year: int) -> PolicyYear | None:
        return self.policies.get((county, year))

    def counties(self) -> list[str]:
        return sorted({c for c, _ in self.policies})

    def years(self, county: str) -> list[int]:
        return sorted(y for c, y in self.policies if c == county)

    def __len__(self) -> int:
        return len(self.policies)

    @property
    def warnings(self) -> tuple[PolicyWarning, ...]:
        return tuple(w for p in self.policies.values() for w in p.warnings)


def load_catalogue(directory: Path | str) -> Catalogue:
    """All `*.json` files directly under `directory` (holidays/ and places files are not policies).
    Two files for one county-year are refused: which one counts would be a guess."""
    directory = Path(directory)
    found: dict[tuple[str, int], PolicyYear] = {}
    for path in sorted(directory.glob("*.json")):
        p = load_policy(path)
        if p.key in found:
            raise PolicyError(f"two policy files for {p.county} ({p.county_code}) {p.year}: {found[p.key].source_file} and {path.name}",
                              path.name, {"county": [f"duplicate of {found[p.key].source_file}"]})
        found[p.key] = p
    if not found:
        raise PolicyError(f"no policy files in {directory}", str(directory))
    return Catalogue(found)


# ---- lifecycle ----------------------------------------------------------------------------------------

def phase_at(policy: PolicyYear, at: datetime) -> str:
    """Where a policy year stands at instant `at` (pure; Asia/Shanghai calendar days, both ends inclusive):

    draft        before its window opens (no window printed: before its benefit year starts)
    window_open  during the centralised payment window (集中参保缴费期); wins where it overlaps the benefit year
    benefit_year after the window closed, until Dec 31 of the year (待遇享受期; mid-year enrolment rules apply)
    closed       after the benefit year ended
    """
    if at.tzinfo is None:
        raise ValueError("phase_at needs an aware instant")
    if at > shanghai_end_of_day(policy.benefit_ends):
        return "closed"
    if policy.window_open_at(at):
        return "window_open"
    if policy.window_opens is not None and at < shanghai_start_of_day(policy.window_opens):
        return "draft"
    if policy.window_opens is None and at < shanghai_start_of_day(policy.benefit_starts):
        return "draft"
    return "benefit_year"


def refuse_if_closed(policy: PolicyYear, at: datetime) -> None:
    """A closed year (its benefit year over) takes no new households, roster imports or rollover:
    nobody can pay for it any more (payments refuses it too), so a roster written now would only
    lower its figures. Changes and corrections of its households stay possible (audits)."""
    if phase_at(policy, at) == "closed":
        raise Conflict("YEAR_CLOSED", f"{policy.county}{policy.year}年度已结束（待遇享受期至{policy.benefit_ends.isoformat()}），"
                       "不能再登记该年度的参保户", {"year": policy.year, "phase": "closed",
                                          "benefit_ends": policy.benefit_ends.isoformat()})


# ---- mid-year benefit start ---------------------------------------------------------------------------

def mid_year_benefit_start(rule: str | None, paid_on: date) -> date | None:
    """待遇享受起始日 of a mid-year enrolment paid on `paid_on`, by the policy's `mid_year.benefits_from`
    (next_month, Dong'an 001 四: 从缴费的下个月起享受医保待遇); None where the policy sets no rule (never
    guessed). One reading for registry's decision and payments' receipt."""
    if rule == "next_month":
        return date(paid_on.year + (paid_on.month == 12), paid_on.month % 12 + 1, 1)
    return None

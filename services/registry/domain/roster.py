"""The township roster (参保缴费花名册): one row per person, rows of a household together.

Rule: 001_93f5b63ac6b4a653.txt 七(一) — townships print a roster per village, villages check it
household by household (逐户逐人核对), and the data must be 100 % accurate. A household with any
invalid member is refused whole (不得拆分参保), so it is never half-imported.

Column headers are the ones a township clerk uses (see docs/roster-template.csv).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable, Iterator

from shared.errors import DomainError

from .model import CATEGORIES, RELATIONS

# header → field; alternatives townships write are accepted too
HEADERS: dict[str, str] = {
    "户编号": "household_no", "户号": "household_no",
    "乡镇": "township", "乡（镇）": "township", "乡镇（街道）": "township",
    "村（社区）": "village", "村(社区)": "village", "村": "village",
    "姓名": "name",
    "身份证号码": "id_number", "公民身份号码": "id_number", "身份证号": "id_number",
    "性别": "sex",
    "出生日期": "birth_date",
    "与户主关系": "relation",
    "人员类别": "category",
    "联系电话": "phone",
}
REQUIRED = ("household_no", "township", "village", "name", "id_number", "relation")
TEMPLATE_HEADERS = ("户编号", "乡镇", "村（社区）", "姓名", "身份证号码", "性别", "出生日期", "与户主关系", "人员类别", "联系电话")
# The printed roster (参保缴费名册) is the template's columns and each member's payment status, so the
# village can check who has paid household by household; an import ignores the extra column, so an
# exported roster can be corrected and uploaded again.
EXPORT_HEADERS = TEMPLATE_HEADERS + ("缴费状态",)
PAYMENT_STATUS_LABELS = {"registered": "未缴费", "paid": "已缴费（待审核）", "confirmed": "已缴费（已审核）"}
CATEGORY_LABELS = {"rural": "农村居民", "urban_non_employed": "城镇非从业居民", "student": "在校学生",
                   "resident_non_local": "非本县户籍常住人口"}
SEX = {"男": "M", "女": "F", "M": "M", "F": "F"}
CATEGORY_NAMES = {"农村居民": "rural", "城镇非从业居民": "urban_non_employed", "在校学生": "student",
                  "非本县户籍常住人口": "resident_non_local", **{c: c for c in CATEGORIES}}


@dataclass(frozen=True)
class RowProblem:
    row: int
    field: str | None
    code: str
    message: str
    household_no: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "code": self.code, "message": self.message,
                "household_no": self.household_no}


@dataclass
class HouseholdRows:
    """One household's rows as read, before domain validation."""
    household_no: str
    first_row: int
    township: str
    village: str
    phone: str | None
    members: list[dict[str, Any]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def as_registration(self, year: int) -> dict[str, Any]:
        return {"household_no": self.household_no, "year": year, "township": self.township,
                "village": self.village, "head_phone": self.phone, "members": self.members}


def map_headers(header: Iterable[Any]) -> dict[int, str]:
    cols = {}
    for i, h in enumerate(header):
        key = HEADERS.get(str(h or "").strip().replace(" ", ""))
        if key and key not in cols.values():
            cols[i] = key
    missing = [f for f in REQUIRED if f not in cols.values()]
    if missing:
        names = {v: k for k, v in reversed(list(HEADERS.items()))}
        raise DomainError("ROSTER_HEADERS", "花名册缺少必填列：" + "、".join(names[m] for m in missing),
                          {"missing": [names[m] for m in missing]}, status=400)
    return cols


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # spreadsheets turn digit strings into numbers
    if isinstance(v, (datetime, date)):
        return v.strftime("%Y-%m-%d")
    return str(v).strip()


def _parse_date(text: str) -> date:
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueError(text)


def parse_row(row_no: int, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[RowProblem]]:
    """A person row → a member dict for Household.register, or the row's problems."""
    hh = values.get("household_no") or None
    problems = []
    for f in REQUIRED:
        if not values.get(f):
            problems.append(RowProblem(row_no, f, "FIELD_REQUIRED", f"必填项为空：{f}", hh))
    member: dict[str, Any] = {"id_number": values.get("id_number", ""), "name": values.get("name", ""),
                              "relation": values.get("relation", ""), "birth_date": None, "sex": None,
                              "category": "rural"}
    if values.get("relation") and values["relation"] not in RELATIONS:
        problems.append(RowProblem(row_no, "relation", "UNKNOWN_RELATION", "与户主关系不在规定取值内", hh))
    if values.get("sex"):
        if values["sex"] not in SEX:
            problems.append(RowProblem(row_no, "sex", "BAD_SEX", "性别应为“男”或“女”", hh))
        else:
            member["sex"] = SEX[values["sex"]]
    if values.get("birth_date"):
        try:
            member["birth_date"] = _parse_date(values["birth_date"])
        except ValueError:
            problems.append(RowProblem(row_no, "birth_date", "BAD_DATE", "出生日期格式应为 YYYY-MM-DD", hh))
    if values.get("category"):
        if values["category"] not in CATEGORY_NAMES:
            problems.append(RowProblem(row_no, "category", "UNKNOWN_CATEGORY", "人员类别不在规定取值内", hh))
        else:
            member["category"] = CATEGORY_NAMES[values["category"]]
    return (None if problems else member), problems


def group_households(rows: Iterable[tuple[int, dict[str, str]]], closed=None) -> Iterator[HouseholdRows]:
    """Stream households from person rows; a household's rows must stand together (as printed).

    Holds one household in memory at a time. `closed` remembers the household numbers already seen
    (`add`, `__contains__`) to report a household whose rows are split across the file; a plain set
    by default, a fixed-size structure for county files (services.registry.service_layer.importer).
    """
    current: HouseholdRows | None = None
    closed = set() if closed is None else closed
    for row_no, values in rows:
        no = values.get("household_no", "")
        if current is not None and no != current.household_no:
            closed.add(current.household_no)
            yield current
            current = None
        if current is None:
            current = HouseholdRows(no, row_no, values.get("township", ""), values.get("village", ""),
                                    values.get("phone") or None)
            if no and no in closed:
                current.problems.append(RowProblem(row_no, "household_no", "HOUSEHOLD_NOT_CONTIGUOUS",
                                                   "同一户的人员应连续排列（该户在前面已出现）", no))
        current.rows.append(row_no)
        if values.get("township", "") != current.township or values.get("village", "") != current.village:
            current.problems.append(RowProblem(row_no, "village", "HOUSEHOLD_SPLIT_PLACES",
                                               "同一户的人员应在同一乡镇、同一村（社区）", no))
        if values.get("phone") and not current.phone:
            current.phone = values["phone"]
        member, problems = parse_row(row_no, values)
        current.problems.extend(problems)
        if member is not None:
            member["_row"] = row_no
            current.members.append(member)
    if current is not None:
        yield current


def domain_problem(hh: HouseholdRows, err: DomainError) -> RowProblem:
    """Turn a domain refusal into a report row, pointing at the member row where there is one."""
    details = err.details if isinstance(err.details, dict) else {}
    fieldname = details.get("field")
    row = hh.first_row
    if fieldname and fieldname.startswith("members["):
        idx = int(fieldname[len("members["):fieldname.index("]")])
        if idx < len(hh.members):
            row = hh.members[idx].get("_row", row)
        fieldname = fieldname.split(".", 1)[1] if "." in fieldname else fieldname
    return RowProblem(row, fieldname, err.code, err.message, hh.household_no)



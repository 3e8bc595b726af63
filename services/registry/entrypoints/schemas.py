"""Request and response bodies of the registry API (also the source of its OpenAPI document)."""
from marshmallow import Schema, fields, validate

from shared.policy import PHASES
from shared.web import year_range

from ..domain.model import CATEGORIES, RELATIONS


class MemberIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "18位居民身份证号码"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    relation = fields.String(required=True, validate=validate.OneOf(RELATIONS))
    category = fields.String(load_default="rural", validate=validate.OneOf(CATEGORIES))
    birth_date = fields.Date(load_default=None)
    sex = fields.String(load_default=None, validate=validate.OneOf(["M", "F"]))


class HouseholdIn(Schema):
    household_no = fields.String(required=True, validate=validate.Regexp(r"^[0-9A-Za-z-]{4,40}$"))
    year = fields.Integer(validate=year_range(), required=True)
    township = fields.String(required=True)
    village = fields.String(required=True)
    head_phone = fields.String(load_default=None, validate=validate.Regexp(r"^1[3-9]\d{9}$"))
    members = fields.List(fields.Nested(MemberIn), required=True, validate=validate.Length(min=1, max=30))


class MemberOut(Schema):
    id_number = fields.String(metadata={"description": "masked unless the caller's scope needs it"})
    name = fields.String()
    relation = fields.String()
    category = fields.String()
    status = fields.String()
    duplicate = fields.Dict(metadata={"description": "only while the person's duplicate enrolment case (多地重复参保) "
                                                     "is open: {status, households: every household registering them}"})
    benefits_from = fields.String(metadata={"description": "待遇享受起始日 of a member enrolled mid-year, present only "
                                  "when it is not the year's start (the county's rule applied to the payment date)"})


class ExcludedOut(Schema):
    id_number = fields.String(metadata={"description": "masked"})
    name = fields.String()
    code = fields.String(metadata={"description": "EMPLOYEE_INSURED"})
    message = fields.String()


class HouseholdOut(Schema):
    household_no = fields.String()
    year = fields.Integer()
    county = fields.String()
    township = fields.String()
    village = fields.String()
    head_name = fields.String()
    head_phone = fields.String(allow_none=True, metadata={"description": "masked; null when none was given"})
    status = fields.String()
    members = fields.List(fields.Nested(MemberOut))
    excluded = fields.List(fields.Nested(ExcludedOut), metadata={
        "description": "only in the registration reply: members left out (already in employee insurance)"})


class PersonLookupIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "18位居民身份证号码（放在请求体，不放网址）"})
    year = fields.Integer(validate=year_range(), load_default=None, metadata={"description": "政策年度（默认本政策年度）"})


class AccuracyRowOut(Schema):
    township = fields.String()
    registered_persons = fields.Integer()
    persons_with_open_problems = fields.Integer()
    rate_bp = fields.Integer(metadata={"description": "万分比"})
    rate_percent = fields.String()


class AccuracyOut(Schema):
    county = fields.String()
    rows = fields.List(fields.Nested(AccuracyRowOut))


class ImportOut(Schema):
    import_id = fields.String()
    status = fields.String(metadata={"description": "queued | running | done | failed"})
    file_name = fields.String()
    year = fields.Integer()
    fraction = fields.Float(metadata={"description": "0..1 of the file read"})
    counts = fields.Dict(metadata={"description": "rows, households_created/unchanged/rejected, persons_created, problems"})
    error = fields.Dict(allow_none=True)
    problems_url = fields.String()


class ProblemOut(Schema):
    row = fields.Integer()
    household_no = fields.String(allow_none=True)
    field = fields.String(allow_none=True)
    code = fields.String()
    message = fields.String()


class ProblemsOut(Schema):
    import_id = fields.String()
    page = fields.Integer()
    problems = fields.List(fields.Nested(ProblemOut))


class ChangeIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(["birth", "death", "move_in", "move_out"]),
                         metadata={"description": "异动类型：出生、死亡、迁入、迁出"})
    member = fields.Nested(MemberIn, load_default=None)
    id_number = fields.String(load_default=None, metadata={"description": "移出人员的身份证号码"})
    reason = fields.String(load_default="", validate=validate.Length(max=200))


class CorrectionIn(Schema):
    household_no = fields.String(required=True)
    year = fields.Integer(validate=year_range(), required=True)
    id_number = fields.String(load_default=None, metadata={"description": "被更正人员（人员信息更正时必填）"})
    changes = fields.Dict(required=True, metadata={"description": "name, id_number, relation, category, birth_date, sex, village, head_phone"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class DecisionIn(Schema):
    approve = fields.Boolean(required=True)
    note = fields.String(load_default=None, validate=validate.Length(max=200))


class CorrectionOut(Schema):
    correction_id = fields.String()
    household_no = fields.String()
    year = fields.Integer()
    township = fields.String()
    village = fields.String()
    id_number = fields.String(allow_none=True, metadata={"description": "masked"})
    changes = fields.Dict()
    reason = fields.String()
    status = fields.String()
    filed_at = fields.String()
    due_at = fields.String()
    overdue = fields.Boolean()
    due_estimated = fields.Boolean(metadata={"description": "true：期限经过尚无官方节假日安排的年度，按法定固定日期节日估算"})


class CorrectionList(Schema):
    corrections = fields.List(fields.Nested(CorrectionOut))


class MidYearIn(Schema):
    on = fields.Date(load_default=None, metadata={"description": "办理日期（默认今天，上海时间）"})
    birth_date = fields.Date(load_default=None)
    special_case = fields.String(load_default=None, metadata={"description": "one of the county policy's "
                                 "mid_year.special_cases (Dong'an: moved_in, demobilised, graduate, newborn_late, "
                                 "welfare_infant, released_prisoner, employee_ended, new_registered_poor)"})
    hardship = fields.Boolean(load_default=False)
    id_number = fields.String(load_default=None, metadata={"description": "已登记人员的身份证号码：批准时记录"
                              "（每人每年度一次），供缴费服务在集中缴费期后按其缴费"})
    year = fields.Integer(validate=year_range(), load_default=None, metadata={"description": "政策年度（默认本政策年度）"})


class MidYearOut(Schema):
    allowed = fields.Boolean()
    code = fields.String()
    reason = fields.String()
    pays = fields.String(allow_none=True, metadata={"description": "individual | full_financing"})
    benefits_from = fields.String(allow_none=True, metadata={
        "description": "待遇享受起始日 if paid today; null where the county's policy sets no start"})
    benefits_rule = fields.String(allow_none=True, metadata={
        "description": "how the start follows from the payment date (next_month: 从缴费的下个月起享受医保待遇)"})
    rule = fields.String(metadata={"description": "the document's wording of the rule applied (from the policy file)"})
    recorded = fields.Boolean(metadata={"description": "an approval of the named person is on record"})
    id_number = fields.String(metadata={"description": "masked"})
    household_no = fields.String()
    year = fields.Integer()
    consistency_token = fields.String(metadata={"description": (
        "when recorded: pass it to payments' POST /v1/quotes (`consistency_token`) to be answered 409 SYNC_PENDING "
        "with Retry-After until payments has seen this approval, never WINDOW_CLOSED")})


class MidYearWithdrawalIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "被批准人员的身份证号码"})
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200),
                           metadata={"description": "撤销原因（如：批准有误）"})


class MidYearWithdrawalOut(Schema):
    id_number = fields.String(metadata={"description": "masked"})
    household_no = fields.String()
    year = fields.Integer()
    status = fields.String(metadata={"description": "withdrawn"})
    reason = fields.String()


class DuplicateOut(Schema):
    year = fields.Integer()
    id_number = fields.String(metadata={"description": "masked"})
    status = fields.String()
    kept = fields.Dict(metadata={"description": "the household holding the person (after resolution: keeping them)"})
    others = fields.List(fields.Dict(), metadata={
        "description": "other households registered with the person while the case is open (each is registered)"})
    refused = fields.List(fields.Dict(), metadata={"description": "cases from before: households refused then"})
    resolution = fields.Dict()


class DuplicateList(Schema):
    duplicates = fields.List(fields.Nested(DuplicateOut))


class ResolutionIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "重复参保人员的身份证号码"})
    keep = fields.String(required=True, validate=validate.OneOf(["current", "other"]), metadata={
        "description": "current: the household holding the person keeps them; other: the other registering household"})
    household_no = fields.String(load_default=None, metadata={
        "description": "with keep=other: which household, when several registered the person"})
    note = fields.String(load_default=None, validate=validate.Length(max=200))


class ExclusionIn(Schema):
    year = fields.Integer(validate=year_range(), required=True)
    id_numbers = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=10000))
    source = fields.String(load_default="职工医保参保名单")


class ExclusionOut(Schema):
    received = fields.Integer()
    added = fields.Integer()


class SplitIn(Schema):
    id_numbers = fields.List(fields.String(), required=True, validate=validate.Length(min=1),
                             metadata={"description": "分出人员的身份证号码"})
    new_household_no = fields.String(required=True, validate=validate.Regexp(r"^[0-9A-Za-z-]{4,40}$"))
    new_head = fields.String(required=True, metadata={"description": "新户户主的身份证号码（须为分出人员之一）"})
    reason = fields.String(load_default="", validate=validate.Length(max=200))


class SplitOut(Schema):
    source = fields.Nested(HouseholdOut)
    new = fields.Nested(HouseholdOut)


class MergeIn(Schema):
    other_household_no = fields.String(required=True, metadata={"description": "并入本户的另一户"})
    reason = fields.String(load_default="", validate=validate.Length(max=200))


# ---- after a household's payment: members awaiting mid-year enrolment, payments for staff review ----

class MidYearApprovalRef(Schema):
    code = fields.String(metadata={"description": "e.g. NEWBORN_28_DAYS"})
    pays = fields.String(metadata={"description": "individual | full_financing"})
    decided_on = fields.String(metadata={"description": "ISO date"})


class AwaitingMidYearOut(Schema):
    household_no = fields.String()
    township = fields.String()
    village = fields.String()
    order_no = fields.String(allow_none=True, metadata={"description": "the household's payment they were not in"})
    id_number = fields.String(metadata={"description": "masked"})
    name = fields.String()
    birth_date = fields.String(metadata={"description": "ISO date"})
    approval = fields.Nested(MidYearApprovalRef, allow_none=True,
                             metadata={"description": "the recorded mid-year approval (then only the supplementary "
                                                      "payment, 补缴, is due); null: approval still to be decided"})


class AwaitingMidYearList(Schema):
    year = fields.Integer()
    members = fields.List(fields.Nested(AwaitingMidYearOut))


class ReviewOut(Schema):
    household_no = fields.String()
    township = fields.String()
    village = fields.String()
    order_no = fields.String(allow_none=True, metadata={"description": "the payment that paid for the person"})
    id_number = fields.String(metadata={"description": "masked"})
    reason = fields.String(metadata={"description": "left_after_order | merged_away | already_enrolled"})


class ReviewList(Schema):
    year = fields.Integer()
    persons = fields.List(fields.Nested(ReviewOut))


# ---- holiday schedules (issue 10): the file format of policies/holidays/<year>.json, as the API takes it
from shared.workdays import HolidayScheduleSchema as HolidayScheduleIn  # noqa: E402 — one definition of the format


class HolidayDay(Schema):
    date = fields.String()
    name = fields.String()


class HolidayScheduleOut(Schema):
    year = fields.Integer()
    source = fields.String(metadata={"description": "official（县医保局已导入）| chinese_calendar（程序库所载）| "
                                                     "estimate（仅按法定固定日期节日估算）"})
    estimated = fields.Boolean(metadata={"description": "true：该年度尚无官方安排，按此计算的期限均为估算"})
    document = fields.String(allow_none=True)
    loaded_by = fields.String(allow_none=True)
    loaded_at = fields.String(allow_none=True)
    holidays = fields.List(fields.Nested(HolidayDay))
    workdays = fields.List(fields.Nested(HolidayDay), metadata={"description": "调休上班的周六、周日"})


class PolicyYearOut(Schema):
    year = fields.Integer()
    phase = fields.String(validate=validate.OneOf(PHASES), metadata={
        "description": "draft（集中缴费期未开始）| window_open（集中参保缴费期）| benefit_year（待遇享受期，中途参保规则适用）"
                       "| closed（已结束，不再登记、不再收费）；按文件所载日期与当前时刻（北京时间）"})
    phase_name = fields.String()
    window_opens, window_closes = fields.String(allow_none=True), fields.String(allow_none=True)
    benefit_starts, benefit_ends = fields.String(), fields.String()
    standard_fen = fields.Integer(allow_none=True, metadata={"description": "个人缴费标准（分）；文件未载明时为 null"})
    task_total = fields.Integer()
    default = fields.Boolean(metadata={"description": "请求未写年度时所用的年度"})
    source_file = fields.String()


class YearsOut(Schema):
    county_code, county, at = fields.String(), fields.String(), fields.String()
    years = fields.List(fields.Nested(PolicyYearOut))

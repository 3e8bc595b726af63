"""The event envelope and the one catalogue of every event on the bus.

Routing key = event type = `<service>.<entity>.<event>`. Each entry names its publisher, its
consumers and the marshmallow schema of its payload; the bus validates payloads against it on
publish and on consume, so a malformed message is refused where it is made and dead-lettered
where it arrives.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from .clock import iso

SERVICES = ("registry", "payments", "subsidy", "scoring", "notices")


@dataclass(frozen=True)
class Event:
    """What a domain records: a type and a JSON-ready payload. The envelope is added on write."""

    type: str
    payload: dict[str, Any]


@dataclass
class Envelope:
    id: str
    type: str
    version: int
    occurred_at: str
    producer: str
    correlation_id: str
    causation_id: str | None
    payload: dict[str, Any]
    seq: str = field(default="")
    county: str | None = None  # GB/T 2260 code of the county whose data it is; None: not a county's event


    @classmethod
    def new(cls, event: Event, producer: str, occurred_at: datetime, correlation_id: str | None = None,
            causation_id: str | None = None, county: str | None = None) -> "Envelope":
        eid = uuid.uuid4().hex
        return cls(id=eid, type=event.type, version=CATALOGUE[event.type].version,
                   occurred_at=iso(occurred_at), producer=producer,
                   correlation_id=correlation_id or eid, causation_id=causation_id, payload=event.payload,
                   county=county)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "version": self.version, "occurred_at": self.occurred_at,
                "producer": self.producer, "correlation_id": self.correlation_id,
                "causation_id": self.causation_id, "payload": self.payload, "seq": self.seq, "county": self.county}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Envelope":
        EnvelopeSchema().load(d)
        return cls(**{k: d.get(k) for k in ("id", "type", "version", "occurred_at", "producer", "correlation_id",
                                              "causation_id", "payload")}, seq=d.get("seq") or "",
                   county=d.get("county"))


class EnvelopeSchema(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    type = fields.String(required=True, validate=validate.Regexp(r"^[a-z]+\.[a-z_]+\.[a-z_]+$"))
    version = fields.Integer(required=True)
    occurred_at = fields.String(required=True)
    producer = fields.String(required=True, validate=validate.OneOf(SERVICES))
    correlation_id = fields.String(required=True)
    causation_id = fields.String(allow_none=True, load_default=None)
    payload = fields.Dict(required=True)
    seq = fields.String(load_default="")
    county = fields.String(allow_none=True, load_default=None, validate=validate.Regexp(r"^[1-9][0-9]{5}$"))


# ---- payload schemas -------------------------------------------------------------------------

class MemberSchema(Schema):
    person_id = fields.String(required=True, validate=validate.Length(equal=18))  # 身份证号码
    name = fields.String(required=True)
    relation = fields.String(load_default="")
    category = fields.String(load_default="rural")


class HouseholdRegisteredSchema(Schema):
    """registry.household.registered: a household (户) was registered for a policy year."""
    household_no = fields.String(required=True)
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    township = fields.String(required=True)
    village = fields.String(required=True)
    head_name = fields.String(required=True)
    head_phone = fields.String(load_default=None, allow_none=True)
    members = fields.List(fields.Nested(MemberSchema), required=True, validate=validate.Length(min=1))


class HouseholdChangedSchema(HouseholdRegisteredSchema):
    """registry.household.changed: a household's members or place changed (异动 or an approved
    correction); the payload is the whole new snapshot, so a consumer simply replaces its copy."""
    change = fields.String(required=True, validate=validate.OneOf(
        ["birth", "death", "move_in", "move_out", "correction", "split", "merge"]))
    reason = fields.String(load_default="")


class CorrectionOverdueSchema(Schema):
    """registry.correction.overdue: a correction was not handled within 3 working days (001 七(一))."""
    correction_id = fields.String(required=True)
    household_no = fields.String(required=True)
    year = fields.Integer(required=True)
    township = fields.String(required=True)
    village = fields.String(required=True)
    filed_at = fields.String(required=True)
    due_at = fields.String(required=True)


class AccuracyRowSchema(Schema):
    township = fields.String(required=True)
    registered_persons = fields.Integer(required=True, validate=validate.Range(min=0))
    persons_with_open_problems = fields.Integer(required=True, validate=validate.Range(min=0))
    rate_bp = fields.Integer(required=True, validate=validate.Range(min=0, max=10000))


class AccuracyPublishedSchema(Schema):
    """registry.accuracy.published: information accuracy per township (001 附件2 2.2), docs/accuracy.md."""
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    as_of = fields.String(required=True)
    rows = fields.List(fields.Nested(AccuracyRowSchema), required=True)


class HouseholdPlaceSchema(Schema):
    """The fields naming a household and its place, shared by the events about one household."""
    household_no = fields.String(required=True)
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    township = fields.String(required=True)
    village = fields.String(required=True)


class PaymentRefSchema(HouseholdPlaceSchema):
    """A household payment: its order and receipt."""
    order_no = fields.String(required=True)
    receipt_no = fields.String(required=True)
    # 补缴: a supplementary payment for members who joined after the household's payment (a newborn
    # approved for mid-year enrolment, 001_93f5b63ac6b4a653.txt 四); it covers its members alone and
    # the household's first payment stands. Sent only when true.
    supplement = fields.Boolean(load_default=False)


class HouseholdDissolvedSchema(HouseholdPlaceSchema):
    """registry.household.dissolved: a household merged into another (合户) and no longer exists for
    the year; its members are in `merged_into`'s next snapshot. Payments stops quoting it."""
    merged_into = fields.String(required=True)
    reason = fields.String(load_default="")


class HouseholdRefSchema(Schema):
    household_no = fields.String(required=True)
    township = fields.String(allow_none=True)
    village = fields.String(allow_none=True)


class DuplicateChangedSchema(Schema):
    """registry.duplicate.changed: a person's duplicate enrolment case (多地重复参保) opened, re-opened
    (another household registered them too) or was resolved by county staff. `household_no` is the
    household holding the person, `households` every household registering them (the holder first;
    after a resolution only the one kept). Payments refuses the quote of every household with the
    person while the case is open (it keys the case by person)."""
    year = fields.Integer(required=True)
    person_id = fields.String(required=True, validate=validate.Length(equal=18))
    status = fields.String(required=True, validate=validate.OneOf(["open", "resolved"]))
    household_no = fields.String(required=True, allow_none=True)  # the household holding the person
    township = fields.String(required=True, allow_none=True)
    village = fields.String(required=True, allow_none=True)
    keep = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["current", "other"]))
    version = fields.Integer(load_default=None, allow_none=True)  # the case's write count: newest wins
    households = fields.List(fields.Nested(HouseholdRefSchema), load_default=list)


class MidYearApprovedSchema(HouseholdPlaceSchema):
    """registry.mid_year.approved: a registered person may enrol for the current year after the window
    (中途参保, 001_93f5b63ac6b4a653.txt 四), with the decision's reason and what they pay: `full_financing`
    (按当年度筹资标准（含个人缴费部分和财政补助部分）一次性足额缴纳) or `individual` (the individual standard)."""
    person_id = fields.String(required=True, validate=validate.Length(equal=18))
    code = fields.String(required=True)
    reason = fields.String(required=True)  # zh-CN
    pays = fields.String(required=True, validate=validate.OneOf(["individual", "full_financing"]))
    special_case = fields.String(load_default=None, allow_none=True)
    decided_on = fields.String(required=True)  # ISO date
    benefits_from = fields.String(load_default=None, allow_none=True)  # ISO date, if paid on decided_on
    # how the benefit start follows from the payment date (policy mid_year.benefits_from, e.g. "next_month":
    # 从缴费的下个月起享受医保待遇); absent or null: the policy sets none
    benefits_rule = fields.String(load_default=None, allow_none=True)
    version = fields.Integer(load_default=None, allow_none=True)  # the approval's write count: newest wins


class MidYearWithdrawnSchema(HouseholdPlaceSchema):
    """registry.mid_year.withdrawn: county or township staff withdrew a mid-year approval recorded in
    error, before its payment; payments no longer charges the person after the window."""
    person_id = fields.String(required=True, validate=validate.Length(equal=18))
    reason = fields.String(required=True)  # zh-CN
    withdrawn_on = fields.String(required=True)  # ISO date
    version = fields.Integer(required=True)


class PaidMemberSchema(Schema):
    person_id = fields.String(required=True)
    name = fields.String(required=True)
    standard_fen = fields.Integer(required=True)
    subsidy_fen = fields.Integer(required=True)
    payable_fen = fields.Integer(required=True)
    # a mid-year member's 待遇享受起始日 (ISO date) where the county's policy sets a start; absent otherwise
    benefits_from = fields.String(load_default=None)


class PaymentConfirmedSchema(PaymentRefSchema):
    """payments.payment.confirmed: a gateway's signed notification confirmed a household payment."""
    head_name = fields.String(required=True)
    head_phone = fields.String(load_default=None, allow_none=True)
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    channel = fields.String(required=True)
    gateway = fields.String(required=True)
    transaction_id = fields.String(required=True)
    paid_at = fields.String(required=True)
    members = fields.List(fields.Nested(PaidMemberSchema), required=True, validate=validate.Length(min=1))


class EnrolmentChangedSchema(HouseholdPlaceSchema):
    """registry.enrolment.changed: members of a household moved to a new enrolment status for a year."""
    status = fields.String(required=True, validate=validate.OneOf(["registered", "paid", "confirmed", "revoked"]))
    person_ids = fields.List(fields.String(), required=True)
    order_no = fields.String(load_default=None, allow_none=True)
    # the change came from a supplementary payment (补缴): `person_ids` joined a household counted
    # already, so they add persons, not a household. Sent only when true.
    supplement = fields.Boolean(load_default=False)
    # person_id → 待遇享受起始日 (ISO date) of mid-year members whose county sets a start; sent only then
    benefits_from = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None)
    # when the change took effect, as shared.clock.iso renders it: `paid_at` the instant the payment
    # was recorded as paid (its gateway's time; a supplement's own), on status paid and confirmed;
    # `reversed_at` the instant its money went back, on status revoked. Scoring dates its progress
    # by them (staged deadlines, 000 二); absent in events published before they were sent, when a
    # consumer takes the envelope's occurred_at.
    paid_at = fields.String(load_default=None)
    reversed_at = fields.String(load_default=None)


class EntitlementChangedSchema(Schema):
    """subsidy.entitlement.changed: what a person's hardship identity entitles them to for a year.

    Payments charges by the entitlement current at the time of payment (001_93f5b63ac6b4a653.txt 六:
    税务部门将依据缴费人当前身份进行征收); a change after payment is neither topped up nor refunded.
    """
    person_id = fields.String(required=True, validate=validate.Length(equal=18))
    year = fields.Integer(required=True)
    category = fields.String(allow_none=True, load_default=None)  # None: no hardship identity any more
    subsidy_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    full_coverage = fields.Boolean(load_default=False)
    department = fields.String(allow_none=True, load_default=None)
    effective_from = fields.String(required=True)  # ISO date
    reason = fields.String(load_default="")


class PaymentAuditedSchema(PaymentRefSchema):
    """payments.payment.audited: the tax bureau's audit of a confirmed payment is done (001 七(二):
    3个工作日内完成缴款审核……由县医保局确认完成参保登记和缴费登记); registry confirms the enrolment."""
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    person_ids = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    audited_at = fields.String(required=True)
    audited_by = fields.String(required=True)  # "reconciliation:<gateway>:<date>" or a staff subject
    source = fields.String(required=True, validate=validate.OneOf(["reconciliation", "staff"]))


class OverdueAuditTownSchema(Schema):
    township = fields.String(required=True)
    payments = fields.Integer(required=True, validate=validate.Range(min=1))
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    oldest_paid_day = fields.String(required=True)


class AuditsOverdueSchema(Schema):
    """payments.audits.overdue: the day's digest of confirmed payments past their 3-working-day audit
    (001 七(二): 税务局应于3个工作日内完成缴款审核工作……12月25日前完成全县缴款审核工作)."""
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    as_of = fields.String(required=True)  # the Shanghai day of the digest
    payments = fields.Integer(required=True, validate=validate.Range(min=1))
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    oldest_paid_day = fields.String(required=True)
    county_deadline = fields.String(required=True)
    townships = fields.List(fields.Nested(OverdueAuditTownSchema), required=True, validate=validate.Length(min=1))


class PaymentReversedSchema(PaymentRefSchema):
    """payments.payment.reversed: the money of a household payment went back (a gateway reversal or
    an overpayment refund); registry revokes the enrolment it paid for. Never sent for an identity
    change after payment (001 六: 缴费后特殊身份标识发生变化的，不再补退)."""
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    person_ids = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    reason = fields.String(required=True, validate=validate.OneOf(["gateway_reversal", "overpayment"]))
    reversal_id = fields.String(required=True)
    reversed_at = fields.String(required=True)


class WithholdingFailedSchema(HouseholdPlaceSchema):
    """payments.withholding.failed: a bank could not withhold a household's contribution (002 六(二)3:
    不成功的名单进行分类汇总，对余额不足的代扣帐户发回各镇); notices tells the town and the household."""
    batch_no = fields.String(required=True)
    order_no = fields.String(required=True)
    head_name = fields.String(required=True)
    head_phone = fields.String(load_default=None, allow_none=True)
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=0))
    bank = fields.String(required=True)
    reason = fields.String(required=True)  # INSUFFICIENT_BALANCE, ACCOUNT_CLOSED, AGREEMENT_INVALID, ...
    reason_text = fields.String(required=True)  # zh-CN
    retryable = fields.Boolean(required=True)  # True: deposit and the retry batch takes it again


class ClaimCreatedSchema(Schema):
    """subsidy.claim.created: a reimbursement claim (先缴后补) for a person who paid in full and became a
    hardship case after the cutoff (001_93f5b63ac6b4a653.txt 六: 2019年10月1日之后新增的困难群众……
    全额缴费、先缴后补); notices announces it to the household."""
    claim_id = fields.String(required=True)  # "<year>:<person_id>"
    person_id = fields.String(required=True, validate=validate.Length(equal=18))
    name = fields.String(load_default="")
    year = fields.Integer(required=True)
    category = fields.String(required=True)
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=1))
    department = fields.String(required=True)
    effective_date = fields.String(required=True)  # ISO date the identity took effect
    household_no = fields.String(allow_none=True, load_default=None)
    county = fields.String(allow_none=True, load_default=None)
    township = fields.String(allow_none=True, load_default=None)
    village = fields.String(allow_none=True, load_default=None)
    order_no = fields.String(allow_none=True, load_default=None)


class ClaimPaidSchema(Schema):
    """subsidy.claim.paid: the department paid a reimbursement claim back to the person."""
    claim_id = fields.String(required=True)
    person_id = fields.String(required=True, validate=validate.Length(equal=18))
    name = fields.String(load_default="")
    year = fields.Integer(required=True)
    amount_fen = fields.Integer(required=True, validate=validate.Range(min=1))
    department = fields.String(required=True)
    payment_ref = fields.String(required=True)
    paid_on = fields.String(required=True)  # ISO date
    household_no = fields.String(allow_none=True, load_default=None)
    county = fields.String(allow_none=True, load_default=None)
    township = fields.String(allow_none=True, load_default=None)
    village = fields.String(allow_none=True, load_default=None)


class CoverageChangedSchema(Schema):
    """subsidy.coverage.changed: hardship persons of a township and category, and how many enrolled
    (001 六: 以上所有困难群众必须确保100%参保; 附件2 2.3 registered poor 100 %). The highest `version`
    wins: the change number of subsidy's township counter the figures were read at (one simulated day
    gave every payment the same `as_of`, and a later, fuller figure lost to the first). Events from
    before `version` existed fall back to the latest `as_of`."""
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    township = fields.String(required=True)  # "" = hardship persons in no registered household yet
    category = fields.String(required=True)
    hardship_persons = fields.Integer(required=True, validate=validate.Range(min=0))
    enrolled_persons = fields.Integer(required=True, validate=validate.Range(min=0))
    not_enrolled_persons = fields.Integer(required=True, validate=validate.Range(min=0))
    rate_bp = fields.Integer(required=True)  # basis points, rounded down; the target is 10000
    as_of = fields.String(required=True)
    version = fields.Integer(validate=validate.Range(min=0))


class HolidayDaySchema(Schema):
    date = fields.Date(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1))


class HolidaysPublishedSchema(Schema):
    """registry.holidays.published: county staff loaded (or corrected) the State Council's schedule of a
    year through registry's API: every day off (放假) and every weekend day worked (调休上班), one a row.
    `version` is the schedule's write count in registry: a service keeping it lets the newest win."""
    year = fields.Integer(required=True, validate=validate.Range(min=2000, max=2100))
    source = fields.String(required=True)  # the notice's title and number (zh-CN)
    holidays = fields.List(fields.Nested(HolidayDaySchema), required=True, validate=validate.Length(min=1))
    workdays = fields.List(fields.Nested(HolidayDaySchema), required=True)
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    loaded_at = fields.String(required=True)  # ISO instant


class EvaluatedAwardSchema(Schema):
    award = fields.String(required=True)
    name = fields.String(required=True)  # zh-CN (流动红旗, 黄牌, …)
    to = fields.List(fields.String(), required=True)  # township | head | deputy | village_cadres
    to_names = fields.List(fields.String(), required=True)  # zh-CN (主要负责人, …)
    status = fields.String(required=True, validate=validate.OneOf(["given", "exempted", "pending"]))


class EvaluatedRowSchema(Schema):
    township = fields.String(required=True)
    rank = fields.Integer(allow_none=True, required=True)
    rate_bp = fields.Integer(allow_none=True, required=True)
    score = fields.String(allow_none=True, required=True)  # points schemes: two decimals
    fund_fen = fields.Integer(allow_none=True, required=True)
    awards = fields.List(fields.Nested(EvaluatedAwardSchema), required=True)


class StageEvaluatedSchema(Schema):
    """scoring.stage.evaluated: a version of an evaluation was published (immutable; a correction is
    the next version, naming its reason)."""
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    county_name = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["stage", "points", "funds"]))
    no = fields.Integer(required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    as_of = fields.String(required=True)
    evaluated_at = fields.String(required=True)
    evaluated_by = fields.String(required=True)
    reason = fields.String(allow_none=True, load_default=None)
    complete = fields.Boolean(required=True)
    rows = fields.List(fields.Nested(EvaluatedRowSchema), required=True)


class ForecastRowSchema(Schema):
    township = fields.String(required=True)
    rate_bp = fields.Integer(allow_none=True, required=True)
    status = fields.String(required=True, validate=validate.OneOf(["behind", "insufficient_data"]))
    projected_rate_bp = fields.Integer(allow_none=True, required=True)
    needed_per_day = fields.Integer(allow_none=True, required=True)


class ForecastPublishedSchema(Schema):
    """scoring.forecast.published: days before a stage's deadline, the townships that will miss it
    at their recent pace (or cannot be forecast), with the persons a day they would need."""
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    county_name = fields.String(required=True)
    stage = fields.Integer(required=True)
    name = fields.String(required=True)
    deadline = fields.String(required=True)
    share_percent = fields.Integer(required=True)
    as_of = fields.String(required=True)
    method = fields.String(required=True)  # zh-CN, the forecast's stated method
    rows = fields.List(fields.Nested(ForecastRowSchema), required=True)


class RankingRowSchema(Schema):
    township = fields.String(required=True)
    rank = fields.Integer(allow_none=True, required=True)
    rate_bp = fields.Integer(allow_none=True, required=True)
    band = fields.String(required=True)
    rank_change = fields.Integer(allow_none=True, required=True)  # places gained since the previous bulletin


class RankingPublishedSchema(Schema):
    """scoring.ranking.published: the township ranking at a bulletin instant of the county's rhythm."""
    year = fields.Integer(required=True)
    county = fields.String(required=True)
    county_name = fields.String(required=True)
    as_of = fields.String(required=True)
    rule = fields.String(required=True)  # the document's sentence for the rhythm
    target_share_percent = fields.Integer(allow_none=True, required=True)
    total_rate_bp = fields.Integer(allow_none=True, required=True)
    townships = fields.Integer(required=True)
    rows = fields.List(fields.Nested(RankingRowSchema), required=True)


@dataclass(frozen=True)
class EventSpec:
    type: str
    schema: type[Schema]
    publisher: str
    consumers: tuple[str, ...]
    version: int = 1
    doc: str = ""


CATALOGUE: dict[str, EventSpec] = {
    spec.type: spec
    for spec in (
        EventSpec("registry.household.registered", HouseholdRegisteredSchema, "registry", ("payments", "subsidy", "notices", "registry"),
                  doc="A household and its members registered for a policy year; payments keeps a read model."),
        EventSpec("payments.payment.confirmed", PaymentConfirmedSchema, "payments",
                  ("registry", "notices", "subsidy", "payments"),
                  doc="A household payment was confirmed by a signed gateway notification (payments itself then "
                      "issues the receipt, the money-log row and the order status)."),
        EventSpec("registry.household.changed", HouseholdChangedSchema, "registry", ("payments", "subsidy", "notices", "registry"),
                  doc="A household changed (birth, death, move in/out, approved correction): the new snapshot."),
        EventSpec("registry.household.dissolved", HouseholdDissolvedSchema, "registry", ("payments", "registry"),
                  doc="A household merged into another and ended for the year."),
        EventSpec("registry.correction.overdue", CorrectionOverdueSchema, "registry", ("notices",),
                  doc="A roster correction passed its 3-working-day limit unhandled."),
        EventSpec("registry.accuracy.published", AccuracyPublishedSchema, "registry", ("scoring",),
                  doc="Information accuracy per township as of a moment (scoring's 2.2 item)."),
        EventSpec("registry.duplicate.changed", DuplicateChangedSchema, "registry", ("payments",),
                  doc="A duplicate enrolment case opened or was resolved, naming every household with the person; payments refuses each one's quote while it is open."),
        EventSpec("registry.mid_year.approved", MidYearApprovedSchema, "registry", ("payments",),
                  doc="A registered person was approved for mid-year enrolment after the window; payments charges them alone."),
        EventSpec("registry.mid_year.withdrawn", MidYearWithdrawnSchema, "registry", ("payments",),
                  doc="A mid-year approval was withdrawn before its payment; payments stops charging the person."),
        EventSpec("registry.holidays.published", HolidaysPublishedSchema, "registry", ("payments",),
                  doc="County staff loaded a year's official holiday schedule (days off and make-up working days); payments counts its working-day deadlines by it."),
        EventSpec("registry.enrolment.changed", EnrolmentChangedSchema, "registry", ("scoring", "subsidy", "notices"),
                  doc="Members' enrolment status for a year changed (registered → paid → confirmed, or revoked); "
                      "`paid_at` / `reversed_at` say when it took effect (scoring counts progress as of an instant by them)."),
        EventSpec("subsidy.entitlement.changed", EntitlementChangedSchema, "subsidy", ("payments",),
                  doc="A person's subsidy entitlement for a year changed: one event per live policy year (and, at a year's rollover, every standing identity once for the new year); payments keeps a read model."),
        EventSpec("subsidy.claim.created", ClaimCreatedSchema, "subsidy", ("notices",),
                  doc="A 先缴后补 reimbursement claim was created for a person who paid in full; notices announces it."),
        EventSpec("subsidy.claim.paid", ClaimPaidSchema, "subsidy", ("notices",),
                  doc="A reimbursement claim was paid by its department; notices announces it."),
        EventSpec("subsidy.coverage.changed", CoverageChangedSchema, "subsidy", ("scoring", "notices"),
                  doc="Hardship persons and enrolled hardship persons of a township and category changed (target 100 %)."),
        EventSpec("payments.payment.audited", PaymentAuditedSchema, "payments", ("registry", "payments"),
                  doc="A confirmed payment passed the tax bureau's audit (reconciled or by staff); registry confirms "
                      "enrolment (payments itself completes the money-log row)."),
        EventSpec("payments.payment.reversed", PaymentReversedSchema, "payments", ("registry", "subsidy", "payments"),
                  doc="A household payment was reversed (gateway reversal or overpayment refund); registry revokes the "
                      "enrolment, subsidy takes the members' subsidies out of the departments' ledger and cancels their "
                      "先缴后补 claims (payments itself completes the receipt, money-log row and order status)."),
        EventSpec("payments.audits.overdue", AuditsOverdueSchema, "payments", ("notices",),
                  doc="Once a day while confirmed payments wait past their 3-working-day audit: how many and how much "
                      "per township; notices puts it on the tax bureau's work list."),
        EventSpec("payments.withholding.failed", WithholdingFailedSchema, "payments", ("notices",),
                  doc="A bank withholding failed, classified; insufficient balances go back to their town for a notice and a retry batch."),
        EventSpec("scoring.ranking.published", RankingPublishedSchema, "scoring", ("notices",),
                  doc="The township ranking on the county's reporting rhythm (Wuming every Thursday, Dong'an monthly), with each township's change since the previous one; notices sends it to the townships' leaders by SMS."),
        EventSpec("scoring.forecast.published", ForecastPublishedSchema, "scoring", ("notices",),
                  doc="FORECAST_DAYS_BEFORE days before a stage's deadline: the townships that will miss it at their recent pace, and the persons a day each needs; notices warns them."),
        EventSpec("scoring.stage.evaluated", StageEvaluatedSchema, "scoring", ("notices",),
                  doc="A version of a stage evaluation, a points score or the work funds was published (at its deadline or corrected by county staff): ranks, awards (流动红旗, 黄牌, warnings) and their status per township; for notices to tell the townships named."),
    )
}


_SCHEMAS: dict[str, Schema] = {}


def validate_payload(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Raises ValidationError for unknown types and bad payloads (schemas are built once: loading
    is stateless, and building one costs more than the load itself)."""
    spec = CATALOGUE.get(event_type)
    if spec is None:
        raise ValidationError({"type": [f"unknown event type {event_type}"]})
    schema = _SCHEMAS.get(event_type)
    if schema is None:
        schema = _SCHEMAS[event_type] = spec.schema()
    return schema.load(payload)


def publisher_of(event_type: str) -> str | None:
    """The one service that may publish an event type (consumers refuse it from anyone else)."""
    spec = CATALOGUE.get(event_type)
    return spec.publisher if spec else None


def consumed_by(service: str) -> list[str]:
    return [t for t, spec in CATALOGUE.items() if service in spec.consumers]


def catalogue_markdown() -> str:
    """The catalogue as a table for docs/events.md (kept in sync by a test)."""
    lines = ["| event | publisher | consumers | payload fields | meaning |", "| --- | --- | --- | --- | --- |"]
    for spec in CATALOGUE.values():
        names = ", ".join(spec.schema().fields)
        lines.append(f"| `{spec.type}` v{spec.version} | {spec.publisher} | {', '.join(spec.consumers)} | {names} | {spec.doc} |")
    return "\n".join(lines) + "\n"

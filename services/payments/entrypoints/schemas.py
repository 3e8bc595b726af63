from marshmallow import Schema, fields, validate

from shared.web import year_range

from ..domain.model import CHANNELS

MAX_FEN = 10 ** 12  # 100 million yuan: far above any household's payment, far below the store's 8-byte integers


def fen_amount():
    """A gateway's amount in fen: a 20-digit amount on a statement line overflowed the store (500)."""
    return validate.Range(min=0, max=MAX_FEN, error="金额应为0至1000000000000之间的整数（分）")


class QuoteIn(Schema):
    household_no = fields.String(required=True)
    year = fields.Integer(validate=year_range(), required=True)
    consistency_token = fields.String(load_default=None, validate=validate.Length(max=200), metadata={"description": (
        "optional: the `consistency_token` of registry's mid-year approval reply (POST /v1/mid-year/decisions). "
        "Until payments has seen that approval the quote answers 409 SYNC_PENDING with Retry-After (seconds), "
        "never WINDOW_CLOSED; without it nothing changes")})


class QuoteLineOut(Schema):
    id_number = fields.String(metadata={"description": "masked"})
    name = fields.String()
    category = fields.String(allow_none=True, metadata={"description": "hardship identity used for the subsidy"})
    standard_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    payable_fen = fields.Integer()


class QuoteOut(Schema):
    household_no = fields.String()
    year = fields.Integer()
    standard_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    total_fen = fields.Integer(metadata={"description": "what the household pays, in fen"})
    mid_year = fields.Boolean(metadata={"description": "after the window: only the members approved for mid-year "
                                        "enrolment (中途参保), at the standard their decision names"})
    lines = fields.List(fields.Nested(QuoteLineOut))


class OrderIn(Schema):
    household_no = fields.String(required=True)
    year = fields.Integer(validate=year_range(), required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    person_ids = fields.List(fields.String(), load_default=None, metadata={
        "description": "optional; when given it must name every member (no split, no selective payment)"})


class OrderOut(Schema):
    order_no = fields.String()
    household_no = fields.String()
    year = fields.Integer()
    amount_fen = fields.Integer()
    channel = fields.String()
    status = fields.String()
    expires_at = fields.String()
    receipt_no = fields.String(allow_none=True)
    transaction_id = fields.String(allow_none=True)
    paid_at = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(QuoteLineOut))


class NotificationIn(Schema):
    order_no = fields.String(required=True)
    transaction_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount_fen = fields.Integer(required=True, strict=True, validate=fen_amount())
    paid_at = fields.AwareDateTime(required=True)
    proof = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.Length(max=64)), load_default=None,
                        metadata={"description": "proof of payment per channel, see docs/gateway-signing.md"})


class AckOut(Schema):
    code = fields.String(metadata={"description": "SUCCESS: stop retrying"})
    message = fields.String()
    order_no = fields.String()
    status = fields.String()
    receipt_no = fields.String(allow_none=True)
    duplicate = fields.Boolean()


class ReversalIn(Schema):
    reversal_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    order_no = fields.String(required=True)
    transaction_id = fields.String(required=True)
    amount_fen = fields.Integer(required=True, strict=True, validate=fen_amount())
    reason = fields.String(load_default="gateway_reversal", validate=validate.OneOf(["gateway_reversal", "overpayment"]))


class ReversalOut(Schema):
    code = fields.String()
    message = fields.String()
    order_no = fields.String()
    reason = fields.String()
    revokes_enrolment = fields.Boolean()
    duplicate = fields.Boolean()


class ReceiptMemberOut(Schema):
    name = fields.String()
    id_number = fields.String(metadata={"description": "masked"})
    category = fields.String(allow_none=True)
    standard_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    payable_fen = fields.Integer()
    benefits_from = fields.String(metadata={"description": "待遇享受起始日 of a mid-year member, present only when "
                                  "it is not the benefit year's start (e.g. 从缴费的下个月起享受医保待遇)"})
    benefits_note = fields.String(metadata={"description": "the printed line for it (zh-CN)"})


class ReceiptOut(Schema):
    receipt_no = fields.String()
    order_no = fields.String()
    household_no = fields.String()
    year = fields.Integer()
    township = fields.String()
    village = fields.String()
    head_name = fields.String()
    members = fields.List(fields.Nested(ReceiptMemberOut))
    standard_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    amount_fen = fields.Integer()
    paid_at = fields.String()
    channel = fields.String()
    channel_name = fields.String()
    proof = fields.Dict()
    status = fields.String(metadata={"description": "valid | reversed"})
    check_code = fields.String(metadata={"description": "printed on the receipt; verifies it by number"})


class ReceiptVerificationOut(Schema):
    receipt_no = fields.String()
    valid = fields.Boolean()
    status = fields.String()
    year = fields.Integer()
    head_name = fields.String(metadata={"description": "masked"})
    member_count = fields.Integer()
    amount_fen = fields.Integer()
    paid_at = fields.String()
    channel = fields.String()
    channel_name = fields.String()


class PaymentOut(Schema):
    household_no = fields.String()
    year = fields.Integer()
    order_no = fields.String()
    receipt_no = fields.String()
    status = fields.String(metadata={"description": "confirmed → audited, or reversed"})
    amount_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    channel = fields.String()
    paid_at = fields.String()
    township = fields.String()
    history = fields.List(fields.Dict())


class AgreementIn(Schema):
    household_no = fields.String(required=True)
    year = fields.Integer(validate=year_range(), required=True)
    bank = fields.String(required=True)
    account_no = fields.String(required=True)
    account_name = fields.String(required=True)
    signed_on = fields.Date(required=True)


class AgreementOut(Schema):
    agreement_no = fields.String()
    household_no = fields.String()
    bank = fields.String()
    account_no = fields.String(metadata={"description": "masked"})
    account_name = fields.String(metadata={"description": "masked"})
    signed_on = fields.String()
    status = fields.String()
    invalid_reason = fields.String(allow_none=True)
    township = fields.String()
    village = fields.String()
    head_id = fields.String(metadata={"description": "masked"})


class BatchIn(Schema):
    bank = fields.String(required=True)
    year = fields.Integer(validate=year_range(), required=True)
    retry_of = fields.String(load_default=None, allow_none=True)


class BatchOut(Schema):
    batch_no = fields.String()
    bank = fields.String()
    year = fields.Integer()
    retry_of = fields.String(allow_none=True)
    status = fields.String()
    count = fields.Integer()
    total_fen = fields.Integer()
    skipped = fields.List(fields.Dict())
    summary = fields.Dict(allow_none=True)
    lines = fields.List(fields.Dict(), metadata={"description": "account numbers masked"})


class BatchResultOut(Schema):
    batch_no = fields.String()
    count = fields.Integer()
    paid = fields.Integer()
    paid_fen = fields.Integer()
    failed = fields.Integer()
    failed_by_reason = fields.Dict()
    retryable = fields.Integer()


class ReturnsOut(Schema):
    batch_no = fields.String()
    lines = fields.List(fields.Dict(), metadata={"description": "failed lines; account numbers masked"})


class StatementLineIn(Schema):
    order_no = fields.String(required=True)
    transaction_id = fields.String(required=True)
    amount_fen = fields.Integer(required=True, strict=True, validate=fen_amount())
    paid_at = fields.AwareDateTime(load_default=None)


class StatementIn(Schema):
    date = fields.Date(required=True, metadata={"description": "the statement's Asia/Shanghai day"})
    lines = fields.List(fields.Nested(StatementLineIn), required=True)


class ReconciliationOut(Schema):
    gateway = fields.String()
    date = fields.String()
    balanced = fields.Boolean()
    matched = fields.List(fields.String())
    missing_on_platform = fields.List(fields.Dict())
    missing_on_statement = fields.List(fields.Dict())
    amount_mismatch = fields.List(fields.Dict())
    transaction_mismatch = fields.List(fields.Dict())
    duplicates_on_statement = fields.List(fields.String())
    statement_total_fen = fields.Integer()
    platform_total_fen = fields.Integer()
    difference_fen = fields.Integer()
    audited = fields.Integer()


class RemittanceOut(Schema):
    period_start = fields.String()
    period_end = fields.String()
    remit_by = fields.String()
    households = fields.Integer()
    amount_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    by_channel = fields.Dict()
    by_gateway = fields.Dict()


class RemittancesOut(Schema):
    year = fields.Integer()
    interval_days = fields.Integer()
    periods = fields.List(fields.Nested(RemittanceOut))


class OverdueAuditOut(Schema):
    household_no = fields.String()
    order_no = fields.String()
    township = fields.String()
    village = fields.String()
    amount_fen = fields.Integer()
    paid_day = fields.String(metadata={"description": "缴费日期"})
    audit_due = fields.String(metadata={"description": "审核截止日（3个工作日，且不晚于12月25日）"})
    due_estimated = fields.Boolean(metadata={"description": "截止日按估算的节假日计算（该年度国务院节假日安排尚未导入），导入后可能变化"})


class OverdueOut(Schema):
    year = fields.Integer()
    overdue = fields.List(fields.Nested(OverdueAuditOut))


class MoneyLogOut(Schema):
    entries = fields.List(fields.Dict())
    page = fields.Integer(metadata={"description": "按日期查询：页码"})
    page_size = fields.Integer(metadata={"description": "按日期查询：每页条数"})
    total = fields.Integer(metadata={"description": "按日期查询：当日记录数"})

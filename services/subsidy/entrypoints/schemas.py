"""Request and response bodies of the subsidy API (also the source of its OpenAPI document)."""
from marshmallow import Schema, fields, validate


class IdentityBatchIn(Schema):
    updates = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1, max=1000),
                          metadata={"description": "见 docs/identity-feed.md 的消息格式，每批最多1000条"})


class BatchItemOut(Schema):
    index = fields.Integer()
    source_system = fields.String(allow_none=True)
    source_ref = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "queued | applied | unchanged | duplicate | rejected"})
    code = fields.String(allow_none=True)
    message = fields.String(allow_none=True)


class BatchOut(Schema):
    batch_id = fields.String()
    received = fields.Integer()
    queued = fields.Integer()
    rejected = fields.Integer()
    items = fields.List(fields.Nested(BatchItemOut))


class HistoryOut(Schema):
    category = fields.String()
    category_name = fields.String()
    action = fields.String()
    effective_date = fields.String()
    source_system = fields.String()
    source_ref = fields.String()
    recorded_at = fields.String()


class IdentitiesOut(Schema):
    id_number = fields.String(metadata={"description": "masked"})
    current = fields.List(fields.Dict(), metadata={"description": "身份类别、名称、生效日期"})
    history = fields.List(fields.Nested(HistoryOut))


class EntitlementOut(Schema):
    id_number = fields.String(metadata={"description": "masked"})
    year = fields.Integer()
    at = fields.String()
    category = fields.String(allow_none=True)
    category_name = fields.String(allow_none=True)
    standard_fen = fields.Integer()
    subsidy_fen = fields.Integer(metadata={"description": "缴费时直接减免（相关部门直接代缴）"})
    payable_fen = fields.Integer()
    full_coverage = fields.Boolean()
    department = fields.String(allow_none=True)
    department_name = fields.String(allow_none=True)
    reimbursable_fen = fields.Integer(metadata={"description": "先缴后补：全额缴费后可报销的金额"})
    configured = fields.Boolean(metadata={"description": "false: 文件未给出该身份的资助金额"})
    frozen = fields.Boolean(metadata={"description": "true: 已缴费，缴费后身份变化不再补退"})
    effective_from = fields.String(allow_none=True)
    categories = fields.List(fields.String())
    reason = fields.String()


class EntitlementQueryIn(Schema):
    id_numbers = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=500))
    at = fields.String(load_default=None, metadata={"description": "ISO 8601；无时区按北京时间"})


class PersonIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "18位居民身份证号码（放在请求体，不放网址）"})


class EntitlementLookupIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "18位居民身份证号码"})
    at = fields.String(load_default=None, metadata={"description": "ISO 8601；无时区按北京时间；默认现在"})


class EntitlementListOut(Schema):
    year = fields.Integer()
    at = fields.String()
    results = fields.List(fields.Nested(EntitlementOut), metadata={"description": "与请求顺序一致"})


class ClaimOut(Schema):
    claim_id = fields.String()
    id_number = fields.String(metadata={"description": "masked"})
    name = fields.String()
    year = fields.Integer()
    category = fields.String()
    amount_fen = fields.Integer()
    department = fields.String()
    effective_date = fields.String()
    household_no = fields.String(allow_none=True)
    township = fields.String(allow_none=True)
    village = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "pending | paid | cancelled (its payment was reversed, 冲正)"})
    payment_ref = fields.String(allow_none=True)
    paid_on = fields.String(allow_none=True)


class ClaimListOut(Schema):
    claims = fields.List(fields.Nested(ClaimOut))
    total_fen = fields.Integer(metadata={"description": "全部符合条件的申请（不限本页，已撤销的除外）的金额合计"})
    total = fields.Integer(metadata={"description": "符合条件的申请条数（全部页）"})
    page = fields.Integer()
    page_size = fields.Integer()


class ClaimPaidIn(Schema):
    id_number = fields.String(required=True, metadata={"description": "报销人员的身份证号码"})
    payment_ref = fields.String(required=True, validate=validate.Regexp(r"^[0-9A-Za-z._:/-]{1,60}$"))
    paid_on = fields.Date(required=True)


class LedgerRow(Schema):
    department = fields.String()
    department_name = fields.String()
    persons = fields.Integer()
    owed_fen = fields.Integer()
    claims_pending_fen = fields.Integer()
    claims_paid_fen = fields.Integer()


class LedgerOut(Schema):
    county = fields.String()
    year = fields.Integer()
    rows = fields.List(fields.Nested(LedgerRow))
    total_owed_fen = fields.Integer()


class CoverageRowOut(Schema):
    township = fields.String(metadata={"description": "空字符串：尚未登记到任何户"})
    township_name = fields.String()
    category = fields.String()
    category_name = fields.String()
    hardship_persons = fields.Integer()
    enrolled_persons = fields.Integer()
    not_enrolled_persons = fields.Integer()
    rate_bp = fields.Integer(metadata={"description": "参保率，万分比（向下取整；目标10000）"})


class CoverageOut(Schema):
    county = fields.String()
    year = fields.Integer()
    target_bp = fields.Integer()
    hardship_persons = fields.Integer()
    enrolled_persons = fields.Integer()
    rows = fields.List(fields.Nested(CoverageRowOut))


class UpdateReportOut(Schema):
    updates = fields.List(fields.Dict())

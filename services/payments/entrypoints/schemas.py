from marshmallow import Schema, fields, validate

from ..domain.model import CHANNELS


class QuoteIn(Schema):
    household_no = fields.String(required=True)
    year = fields.Integer(required=True)


class QuoteLineOut(Schema):
    id_number = fields.String(metadata={"description": "masked"})
    name = fields.String()
    standard_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    payable_fen = fields.Integer()


class QuoteOut(Schema):
    household_no = fields.String()
    year = fields.Integer()
    total_fen = fields.Integer()
    lines = fields.List(fields.Nested(QuoteLineOut))


class OrderIn(Schema):
    household_no = fields.String(required=True)
    year = fields.Integer(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))


class OrderOut(Schema):
    order_no = fields.String()
    household_no = fields.String()
    year = fields.Integer()
    amount_fen = fields.Integer()
    channel = fields.String()
    status = fields.String()
    expires_at = fields.String()
    receipt_no = fields.String(allow_none=True)


class NotificationIn(Schema):
    order_no = fields.String(required=True)
    transaction_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount_fen = fields.Integer(required=True, strict=True)
    paid_at = fields.AwareDateTime(required=True)


class AckOut(Schema):
    code = fields.String(metadata={"description": "SUCCESS: stop retrying"})
    message = fields.String()
    order_no = fields.String()
    status = fields.String()
    receipt_no = fields.String()
    duplicate = fields.Boolean()

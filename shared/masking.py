"""Masking of ID numbers (居民身份证号码) and phone numbers in logs and responses."""
from __future__ import annotations

import re
from typing import Any

_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_id(number: str | None) -> str | None:
    """Keep region (6) and the last 4: 431122********123X."""
    if not number:
        return number
    if len(number) == 18:
        return number[:6] + "*" * 8 + number[-4:]
    return number[:2] + "*" * max(len(number) - 4, 0) + number[-2:]


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return phone
    if len(phone) >= 11:
        return phone[:3] + "****" + phone[-4:]
    return "*" * len(phone)


def mask_text(text: str) -> str:
    """Mask any ID or mobile number found inside free text (log lines, error details)."""
    text = _ID_RE.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
    return _PHONE_RE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


# Keys whose values are our own or a gateway's identifiers (order, receipt, transaction numbers):
# passed as they are, since an 18-digit transaction id would look like an ID number to mask_text.
UNMASKED_KEYS = frozenset({"order_no", "receipt_no", "transaction_id", "batch_no", "batch_id", "check_code",
                           "payment_ref", "source_ref", "reversal_id", "import_id", "notice_id", "claim_id",
                           "correction_id", "message_id", "event_id", "retry_of", "problems_url", "id", "key"})


def mask_json(value: Any, key: str | None = None) -> Any:
    """Every string in a response body or error, masked unless its key is in UNMASKED_KEYS: the one
    pass every JSON response of the web adapter goes through (shared/web.py)."""
    if isinstance(value, str):
        return value if key in UNMASKED_KEYS else mask_text(value)
    if isinstance(value, dict):  # a key can be a person too (a map by ID number)
        return {(mask_text(k) if isinstance(k, str) and k not in UNMASKED_KEYS else k): mask_json(v, k)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_json(v, key) for v in value]
    return value


def mask_email(value: str | None) -> str | None:
    """w***@example.cn: enough to recognise one's own address, not to collect it."""
    if not value or "@" not in value:
        return value
    user, _, domain = value.partition("@")
    return f"{user[:1]}***@{domain}"

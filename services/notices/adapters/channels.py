"""The channels a notice goes out by, behind one interface: `Channel.send(delivery) -> SendResult`.

- SmsChannel: an SMS provider shaped like Aliyun SendSms (signed form POST; docs/notice-delivery.md
  "SMS provider"); OutId is our delivery id, so receipts find the notice by our id, not the BizId.
- WebhookChannel: a signed JSON POST to the county's own system (docs/notice-webhooks.md).
- EmailChannel: SMTP (STARTTLS or implicit TLS when configured), one message per notice, our
  delivery id in its Message-ID so a bounce or reply finds the notice.
- InternalChannel: a township's or the bureau's work list, which the notice already is.

Settings come from the environment (SMS_PROVIDER_URL, SMS_ACCESS_KEY_ID, SMS_ACCESS_KEY_SECRET,
SMS_SIGN_NAME, NOTICE_WEBHOOK_URL, NOTICE_WEBHOOK_SECRET, SMTP_HOST, SMTP_PORT, SMTP_FROM,
SMTP_USER, SMTP_PASSWORD, SMTP_TLS); secrets are never in the repository.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import quote

import requests

from shared.clock import iso
from shared.config import env


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a notice: what a channel needs, nothing of the store."""
    notice_id: str
    delivery_id: str  # OutId at the SMS provider, X-Notice-Delivery at a webhook receiver
    attempt_id: str
    channel: str
    kind: str
    county: str
    township: str
    household_no: str | None
    year: int
    recipient_name: str | None
    phone: str | None
    text: str
    template_code: str
    template_params: dict[str, Any] = field(default_factory=dict)
    urgent: bool = False
    at: datetime | None = None  # the suite's clock at the attempt
    sign_name: str | None = None  # the signature the text was rendered with (adapters/templates.py)
    email: str | None = None  # the recipient's address (email channel)


@dataclass(frozen=True)
class SendResult:
    accepted: bool
    provider_id: str | None = None
    retryable: bool = False
    error: str | None = None


class Channel(Protocol):
    name: str

    def send(self, delivery: Delivery) -> SendResult: ...


class InternalChannel:
    """Internal notices are on the township's (or bureau's) work list the moment they are stored:
    delivered at once."""
    name = "internal"

    def send(self, delivery: Delivery) -> SendResult:
        return SendResult(True, "worklist")


def percent(s: str) -> str:
    """RFC 3986 percent-encoding (unreserved characters kept), as the signature's canonical form needs."""
    return quote(s, safe="-_.~")


def sms_signature(secret: str, params: dict[str, str], method: str = "POST") -> str:
    """Aliyun-RPC-style signature (docs/notice-delivery.md): base64(HMAC-SHA256(secret + "&",
    METHOD & %2F & percent(sorted canonical query))), over every parameter but Signature."""
    canonical = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = f"{method}&{percent('/')}&{percent(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha256).digest()).decode()


# The provider's codes worth another attempt later: its own failure and its flow control.
RETRYABLE_CODES = frozenset({"isp.SYSTEM_ERROR", "isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User",
                             "ServiceUnavailable", "InternalError"})


class SmsChannel:
    name = "sms"

    def __init__(self, url: str | None, key_id: str | None, secret: str | None, sign_name: str | None,
                 timeout_s: float = 5.0):
        self.url, self.key_id, self.secret, self.sign_name = url, key_id, secret, sign_name
        self.timeout_s = timeout_s
        self.http = requests.Session()

    @classmethod
    def from_env(cls) -> "SmsChannel":
        return cls(env("SMS_PROVIDER_URL"), env("SMS_ACCESS_KEY_ID"), env("SMS_ACCESS_KEY_SECRET"),
                   env("SMS_SIGN_NAME", "医保通知"), float(env("SMS_TIMEOUT_S", "5")))

    def params(self, d: Delivery) -> dict[str, str]:
        # the signature's Timestamp is the request's real time (the provider checks it against its
        # own clock), not the suite's business clock
        p = {"Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "AccessKeyId": self.key_id or "",
             "SignatureMethod": "HMAC-SHA256", "SignatureVersion": "1.0", "SignatureNonce": uuid.uuid4().hex,
             "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "PhoneNumbers": d.phone or "", "SignName": d.sign_name or self.sign_name or "", "TemplateCode": d.template_code,
             "TemplateParam": json.dumps(d.template_params, ensure_ascii=False, separators=(",", ":"), default=str),
             "OutId": d.delivery_id}
        p["Signature"] = sms_signature(self.secret or "", p)
        return p

    def send(self, d: Delivery) -> SendResult:
        if not (self.url and self.key_id and self.secret):
            return SendResult(False, retryable=True, error="SMS_NOT_CONFIGURED: SMS_PROVIDER_URL / SMS_ACCESS_KEY_* unset")
        if not d.phone:
            return SendResult(False, error="NO_PHONE")
        try:
            r = self.http.post(self.url, data=self.params(d), timeout=self.timeout_s)
        except requests.RequestException as e:  # timeout, refused: the send may or may not have happened
            return SendResult(False, retryable=True, error=f"NETWORK: {type(e).__name__}")
        try:
            body = r.json()
        except ValueError:
            body = {}
        code = str(body.get("Code") or f"HTTP_{r.status_code}")
        if r.status_code == 200 and code == "OK":
            return SendResult(True, str(body.get("BizId") or ""))
        retryable = r.status_code >= 500 or r.status_code == 429 or code in RETRYABLE_CODES
        return SendResult(False, retryable=retryable, error=f"{code}: {str(body.get('Message') or '')[:200]}")


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """docs/notice-webhooks.md: hex(HMAC-SHA256(secret, timestamp + "." + body bytes))."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str | None, secret: str | None, timeout_s: float = 5.0):
        self.url, self.secret, self.timeout_s = url, secret, timeout_s
        self.http = requests.Session()

    @classmethod
    def from_env(cls) -> "WebhookChannel":
        return cls(env("NOTICE_WEBHOOK_URL"), env("NOTICE_WEBHOOK_SECRET"), float(env("NOTICE_WEBHOOK_TIMEOUT_S", "5")))

    @staticmethod
    def body(d: Delivery) -> bytes:
        return json.dumps({"notice_id": d.notice_id, "delivery_id": d.delivery_id, "kind": d.kind, "county": d.county,
                           "township": d.township, "household_no": d.household_no, "year": d.year,
                           "recipient_name": d.recipient_name, "text": d.text,
                           "template": {"code": d.template_code, "params": d.template_params},
                           "urgent": d.urgent, "sent_at": iso(d.at)},
                          ensure_ascii=False, separators=(",", ":"), default=str).encode()

    def send(self, d: Delivery) -> SendResult:
        if not (self.url and self.secret):
            return SendResult(False, retryable=True, error="WEBHOOK_NOT_CONFIGURED: NOTICE_WEBHOOK_URL / _SECRET unset")
        body = self.body(d)
        ts = str(int((d.at or datetime.now(timezone.utc)).timestamp()))
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Notice-Timestamp": ts,
                   "X-Notice-Signature": webhook_signature(self.secret, ts, body), "X-Notice-Delivery": d.delivery_id}
        try:
            r = self.http.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as e:
            return SendResult(False, retryable=True, error=f"NETWORK: {type(e).__name__}")
        if 200 <= r.status_code < 300:
            return SendResult(True, r.headers.get("X-Receipt-Id") or d.delivery_id)
        retryable = r.status_code >= 500 or r.status_code in (408, 429)
        return SendResult(False, retryable=retryable, error=f"HTTP_{r.status_code}: {r.text[:200]}")


KIND_SUBJECTS = {"ranking": "参保进度排名", "stage_result": "阶段考核结果", "forecast": "阶段目标预警",
                 "coverage_alert": "困难群众参保情况", "withholding_failure": "代扣失败名单",
                 "correction_overdue": "信息更正逾期", "audit_overdue": "缴款审核逾期", "reminder": "缴费提醒"}


class EmailChannel:
    """SMTP, as every mail system speaks it: SMTP_TLS "starttls" (port 587), "ssl" (465) or "none"
    (a relay on the local network, and the tests' server). A refused recipient is final; a refused
    connection or a temporary (4xx) answer is retried."""
    name = "email"

    def __init__(self, host: str | None, port: int, sender: str | None, user: str | None = None,
                 password: str | None = None, tls: str = "none", timeout_s: float = 10.0):
        self.host, self.port, self.sender, self.user, self.password = host, port, sender, user, password
        self.tls, self.timeout_s = tls, timeout_s

    @classmethod
    def from_env(cls) -> "EmailChannel":
        return cls(env("SMTP_HOST"), int(env("SMTP_PORT", "25")), env("SMTP_FROM"), env("SMTP_USER"),
                   env("SMTP_PASSWORD"), env("SMTP_TLS", "none"), float(env("SMTP_TIMEOUT_S", "10")))

    def message(self, d: Delivery):
        from email.message import EmailMessage
        from email.utils import format_datetime, make_msgid
        m = EmailMessage()
        m["From"], m["To"] = self.sender, d.email
        m["Subject"] = f"{KIND_SUBJECTS.get(d.kind, '通知')}：{d.township or d.county}"
        m["Message-ID"] = make_msgid(idstring=d.delivery_id.replace("|", "."), domain="notices.local")
        m["X-Notice-Delivery"] = d.delivery_id
        m["Date"] = format_datetime(d.at or datetime.now(timezone.utc))
        m.set_content(d.text, charset="utf-8")
        return m

    def send(self, d: Delivery) -> SendResult:
        import smtplib
        import ssl
        if not (self.host and self.sender):
            return SendResult(False, retryable=True, error="EMAIL_NOT_CONFIGURED: SMTP_HOST / SMTP_FROM unset")
        if not d.email:
            return SendResult(False, error="NO_EMAIL")
        try:
            smtp_cls = smtplib.SMTP_SSL if self.tls == "ssl" else smtplib.SMTP
            with smtp_cls(self.host, self.port, timeout=self.timeout_s) as s:
                if self.tls == "starttls":
                    s.starttls(context=ssl.create_default_context())
                if self.user:
                    s.login(self.user, self.password or "")
                s.send_message(self.message(d))
        except smtplib.SMTPRecipientsRefused as e:
            return SendResult(False, error=f"SMTP_RECIPIENT_REFUSED: {list(e.recipients.values())[:1]}")
        except smtplib.SMTPResponseException as e:
            return SendResult(False, retryable=400 <= e.smtp_code < 500, error=f"SMTP_{e.smtp_code}: {e.smtp_error[:200]!r}")
        except (OSError, smtplib.SMTPException) as e:
            return SendResult(False, retryable=True, error=f"NETWORK: {type(e).__name__}")
        return SendResult(True, d.delivery_id)


def channels_from_env() -> dict[str, Channel]:
    return {"sms": SmsChannel.from_env(), "webhook": WebhookChannel.from_env(), "email": EmailChannel.from_env(),
            "internal": InternalChannel()}

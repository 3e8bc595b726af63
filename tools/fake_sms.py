"""A fake SMS provider that is a real HTTP server, shaped like Aliyun's SendSms (短信服务), for the
tests and the local suite (tests/conftest.py: fake what lies outside the suite with real servers).

    python -m tools.fake_sms --port 18190 [--callback-url http://127.0.0.1:8105/v1/sms/receipts]

The API (docs/notice-delivery.md "SMS provider"):
- `POST /` — SendSms: form-encoded (or a JSON object) with Action=SendSms, AccessKeyId, Timestamp
  (UTC, ISO 8601, within 15 min), SignatureNonce (never reused), SignatureMethod=HMAC-SHA256,
  PhoneNumbers, SignName, TemplateCode, TemplateParam (a JSON string), OutId and Signature
  (base64 HMAC-SHA256 with key secret + "&" over "POST&%2F&" + percent(sorted canonical query)).
  Replies {"Code": "OK", "Message": "OK", "BizId", "RequestId"} or an error Code:
  SignatureDoesNotMatch / InvalidAccessKeyId.NotFound / SignatureNonceUsed / InvalidTimeStamp.Expired (HTTP 400),
  isv.MOBILE_NUMBER_ILLEGAL, isv.INVALID_JSON_PARAM, isv.BUSINESS_LIMIT_CONTROL, isp.SYSTEM_ERROR (HTTP 200).
- after an accepted send it pushes a receipt (状态报告) to the callback URL: POST JSON
  [{"phone_number", "send_time", "report_time", "success", "err_code", "biz_id", "out_id"}] with the
  header X-Sms-Receipt-Token (the shared token); a push answered other than 2xx is retried 3 times.
- `GET /sent` — every send received, accepted or not: {"sent": [...]}; `GET /pushes` — receipt pushes.
- `POST /faults` {"fail_next": 2, "throttle": true, "receipt_delay_s": 1.5, "duplicate_receipts": true,
  "receipt_before_reply": true, "receipt_fail": "UNDELIV", "no_receipts": true}; `GET /faults`.
- `POST /config` {"callback_url", "callback_token"}; `POST /reset` forgets sends, pushes and faults.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote

import requests

SHANGHAI = timezone(timedelta(hours=8))
FAULT_KEYS = {"fail_next": int, "throttle": bool, "receipt_delay_s": float, "duplicate_receipts": bool,
              "receipt_before_reply": bool, "receipt_fail": str, "no_receipts": bool}
REQUIRED = ("AccessKeyId", "Timestamp", "SignatureNonce", "Signature", "PhoneNumbers", "SignName", "TemplateCode")


def _pe(s: str) -> str:
    return quote(s, safe="-_.~")


def expected_signature(secret: str, params: dict[str, str]) -> str:
    canonical = "&".join(f"{_pe(k)}={_pe(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = "POST&" + _pe("/") + "&" + _pe(canonical)
    return base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha256).digest()).decode()


def _wall(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class FakeSms:
    """The provider's state and its HTTP server; `start()` serves it in a thread (port 0: a free one)."""

    def __init__(self, access_key_id: str, access_key_secret: str, callback_url: str | None = None,
                 callback_token: str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.keys = {access_key_id: access_key_secret}
        self.callback_url, self.callback_token = callback_url, callback_token
        self.lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.faults: dict[str, Any] = {}
        self.nonces: set[str] = set()
        self._n = 0
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "FakeSms":
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-sms", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- SendSms ----------------------------------------------------------------------------------

    def send_sms(self, p: dict[str, str]) -> tuple[int, dict[str, Any], list[dict] | None]:
        """(HTTP status, reply, receipts to push)."""
        rid = uuid.uuid4().hex.upper()
        missing = [k for k in REQUIRED if not p.get(k)]
        if missing:
            return 400, {"Code": "MissingParameter", "Message": f"missing {', '.join(missing)}", "RequestId": rid}, None
        secret = self.keys.get(p["AccessKeyId"])
        if secret is None:
            return 400, {"Code": "InvalidAccessKeyId.NotFound", "Message": "unknown AccessKeyId", "RequestId": rid}, None
        if not hmac.compare_digest(expected_signature(secret, p), p["Signature"]):
            return 400, {"Code": "SignatureDoesNotMatch", "Message": "signature mismatch", "RequestId": rid}, None
        try:
            ts = datetime.strptime(p["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return 400, {"Code": "InvalidTimeStamp.Format", "Message": "Timestamp", "RequestId": rid}, None
        if abs((datetime.now(timezone.utc) - ts).total_seconds()) > 900:
            return 400, {"Code": "InvalidTimeStamp.Expired", "Message": "Timestamp", "RequestId": rid}, None
        with self.lock:
            if p["SignatureNonce"] in self.nonces:
                return 400, {"Code": "SignatureNonceUsed", "Message": "nonce used", "RequestId": rid}, None
            self.nonces.add(p["SignatureNonce"])
            record = {"phone_numbers": p["PhoneNumbers"], "sign_name": p["SignName"], "template_code": p["TemplateCode"],
                      "template_param_raw": p.get("TemplateParam"), "out_id": p.get("OutId"),
                      "received_at": _wall(datetime.now(timezone.utc)), "accepted": False}
            self.sent.append(record)
            code = None
            if self.faults.get("throttle"):
                code = "isv.BUSINESS_LIMIT_CONTROL"
            elif self.faults.get("fail_next", 0) > 0:
                self.faults["fail_next"] -= 1
                code = "isp.SYSTEM_ERROR"
            faults = dict(self.faults)
        phones = p["PhoneNumbers"].split(",")
        if code is None and not all(len(x) == 11 and x.isdigit() and x[0] == "1" for x in phones):
            code = "isv.MOBILE_NUMBER_ILLEGAL"
        try:
            record["template_param"] = json.loads(p.get("TemplateParam") or "{}")
        except ValueError:
            code = code or "isv.INVALID_JSON_PARAM"
        if code is not None:
            record["code"] = code
            return 200, {"Code": code, "Message": code, "RequestId": rid}, None
        with self.lock:
            self._n += 1
            biz = f"{int(time.time() * 1000) % 10 ** 12:012d}^{self._n}"
        record.update(code="OK", accepted=True, biz_id=biz)
        now = datetime.now(timezone.utc)
        receipts = None if faults.get("no_receipts") else [
            {"phone_number": x, "send_time": _wall(now), "report_time": _wall(now + timedelta(seconds=1)),
             "success": not faults.get("receipt_fail"), "err_code": faults.get("receipt_fail") or "DELIVERED",
             "biz_id": biz, "out_id": p.get("OutId")} for x in phones]
        return 200, {"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": rid}, receipts

    def push(self, receipts: list[dict]) -> None:
        """POST receipts to the callback, as often as the faults say (duplicates), retrying non-2xx."""
        with self.lock:
            url, token = self.callback_url, self.callback_token
            times = 2 if self.faults.get("duplicate_receipts") else 1
        if not url:
            return
        for _ in range(times):
            status: Any = None
            for _try in range(4):
                try:
                    r = requests.post(url, json=receipts, headers={"X-Sms-Receipt-Token": token or ""}, timeout=5)
                    status = r.status_code
                    if 200 <= status < 300:
                        break
                except requests.RequestException as e:
                    status = type(e).__name__
                time.sleep(0.3)
            with self.lock:
                self.pushes.append({"at": _wall(datetime.now(timezone.utc)), "status": status,
                                    "out_ids": [r.get("out_id") for r in receipts]})

    # ---- HTTP -------------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: Any) -> None:
                raw = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                with fake.lock:
                    if self.path == "/sent":
                        return self._reply(200, {"sent": list(fake.sent)})
                    if self.path == "/pushes":
                        return self._reply(200, {"pushes": list(fake.pushes)})
                    if self.path == "/faults":
                        return self._reply(200, dict(fake.faults))
                    if self.path == "/healthz":
                        return self._reply(200, {"status": "ok"})
                return self._reply(404, {"Code": "NotFound"})

            def do_POST(self):
                raw = self._body()
                path = self.path.split("?")[0]
                if path in ("/faults", "/config", "/reset"):
                    try:
                        data = json.loads(raw or b"{}")
                    except ValueError:
                        return self._reply(400, {"Code": "InvalidJSON"})
                    with fake.lock:
                        if path == "/faults":
                            for k, v in data.items():
                                if k in FAULT_KEYS:
                                    fake.faults[k] = FAULT_KEYS[k](v) if v is not None else None
                            return self._reply(200, dict(fake.faults))
                        if path == "/config":
                            fake.callback_url = data.get("callback_url", fake.callback_url)
                            fake.callback_token = data.get("callback_token", fake.callback_token)
                            return self._reply(200, {"callback_url": fake.callback_url})
                        fake.sent.clear()
                        fake.pushes.clear()
                        fake.faults.clear()
                        return self._reply(200, {"reset": True})
                if path != "/":
                    return self._reply(404, {"Code": "NotFound"})
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    try:
                        params = {k: str(v) for k, v in json.loads(raw).items()}
                    except (ValueError, AttributeError):
                        return self._reply(400, {"Code": "InvalidJSON"})
                else:
                    params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
                if params.get("Action", "SendSms") != "SendSms":
                    return self._reply(400, {"Code": "InvalidAction.NotFound"})
                status, reply, receipts = fake.send_sms(params)
                if receipts:
                    with fake.lock:
                        before, delay = fake.faults.get("receipt_before_reply"), fake.faults.get("receipt_delay_s") or 0.1
                    if before:  # the 状态报告 reaches the callback before our reply reaches the sender
                        fake.push(receipts)
                    else:
                        threading.Timer(delay, fake.push, args=(receipts,)).start()
                return self._reply(status, reply)

        return Handler


def main(argv: list[str] | None = None) -> int:
    from shared.config import env
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18190)
    ap.add_argument("--access-key-id", default=env("SMS_ACCESS_KEY_ID", "fake-key"))
    ap.add_argument("--access-key-secret", default=env("SMS_ACCESS_KEY_SECRET"))
    ap.add_argument("--callback-url", default=env("SMS_RECEIPT_CALLBACK_URL"))
    ap.add_argument("--callback-token", default=env("SMS_RECEIPT_TOKEN"))
    a = ap.parse_args(argv)
    if not a.access_key_secret:
        raise SystemExit("set SMS_ACCESS_KEY_SECRET (or --access-key-secret): the fake checks signatures")
    fake = FakeSms(a.access_key_id, a.access_key_secret, a.callback_url, a.callback_token, a.host, a.port)
    print(f"fake SMS provider on {fake.url}", flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

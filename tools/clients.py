"""HTTP clients for the demo and the tests: a signing test gateway and a staff client."""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from typing import Any, Callable

import requests

from shared import signing


class GatewayClient:
    """Plays a bank / mobile-payment gateway: signs every request as docs/gateway-signing.md says."""

    def __init__(self, base_url: str, gateway_id: str, secret: str, now: Callable[[], datetime] | None = None,
                 county: str = "431122"):
        """`county`: the county whose notify and quote URLs it calls (its merchant account there)."""
        self.base_url = base_url.rstrip("/")
        self.county = county
        self.gateway_id = gateway_id
        self.secret = secret
        self.now = now or (lambda: datetime.now().astimezone())
        self.http = requests.Session()

    def headers(self, method: str, path: str, body: bytes, *, timestamp: str | None = None,
                nonce: str | None = None, secret: str | None = None) -> dict[str, str]:
        ts = timestamp or str(int(self.now().timestamp()))
        nonce = nonce or secrets.token_hex(16)
        sig = signing.sign(secret or self.secret, method, path, ts, nonce, body)
        return {"X-Gateway-Id": self.gateway_id, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": sig,
                "Content-Type": "application/json"}

    def post(self, path: str, payload: dict[str, Any], extra: dict[str, str] | None = None, timeout: float = 10,
             **sign_kw) -> requests.Response:
        body = json.dumps(payload, ensure_ascii=False).encode()
        h = self.headers("POST", path, body, **sign_kw)
        h.update(extra or {})
        return self.http.post(self.base_url + path, data=body, headers=h, timeout=timeout)

    def quote(self, household_no: str, year: int, consistency_token: str | None = None,
              wait: float = 10) -> requests.Response:
        """With the `consistency_token` of a mid-year approval's reply: while payments answers
        SYNC_PENDING, ask again after its Retry-After (up to `wait` seconds), then return the answer."""
        body = {"household_no": household_no, "year": year,
                **({"consistency_token": consistency_token} if consistency_token else {})}
        deadline = time.monotonic() + wait
        while True:
            r = self.post(f"/v1/counties/{self.county}/quotes", body)
            if r.status_code != 409 or r.json().get("code") != "SYNC_PENDING" or time.monotonic() >= deadline:
                return r
            time.sleep(min(float(r.headers.get("Retry-After") or 1), max(deadline - time.monotonic(), 0)))

    def order(self, household_no: str, year: int, channel: str = "mobile_app", key: str | None = None) -> requests.Response:
        return self.post(f"/v1/counties/{self.county}/orders", {"household_no": household_no, "year": year, "channel": channel},
                         {"Idempotency-Key": key or secrets.token_hex(12)})

    def notify(self, order_no: str, amount_fen: int, transaction_id: str | None = None,
               paid_at: datetime | None = None, **sign_kw) -> requests.Response:
        return self.post(f"/v1/counties/{self.county}/notifications", {
            "order_no": order_no, "amount_fen": amount_fen, "transaction_id": transaction_id or secrets.token_hex(10),
            "paid_at": (paid_at or self.now()).isoformat()}, **sign_kw)

    def notify_with_proof(self, order_no: str, amount_fen: int, proof: dict[str, str],
                          transaction_id: str | None = None, paid_at: datetime | None = None) -> requests.Response:
        """A notification carrying the channel's proof of payment (docs/gateway-signing.md)."""
        return self.post(f"/v1/counties/{self.county}/notifications", {
            "order_no": order_no, "amount_fen": amount_fen, "transaction_id": transaction_id or secrets.token_hex(10),
            "paid_at": (paid_at or self.now()).isoformat(), "proof": proof})

    def reverse(self, order_no: str, transaction_id: str, amount_fen: int, reason: str = "gateway_reversal",
                reversal_id: str | None = None) -> requests.Response:
        return self.post(f"/v1/counties/{self.county}/reversals", {"reversal_id": reversal_id or secrets.token_hex(8), "order_no": order_no,
                                           "transaction_id": transaction_id, "amount_fen": amount_fen, "reason": reason})

    def statement(self, day: str, lines: list[dict[str, Any]], timeout: float = 10) -> requests.Response:
        return self.post(f"/v1/counties/{self.county}/reconciliation/statements", {"date": day, "lines": lines},
                         timeout=timeout)

    def withholding_results(self, batch_no: str, csv_text: str) -> requests.Response:
        """The bank's result file (docs/withholding.md), signed over its raw bytes."""
        path = f"/v1/counties/{self.county}/withholding/batches/{batch_no}/results"
        body = csv_text.encode("utf-8")
        h = self.headers("POST", path, body)
        h["Content-Type"] = "text/csv"
        return self.http.post(self.base_url + path, data=body, headers=h, timeout=30)


class StaffClient:
    def __init__(self, base_url: str, token: str, timeout: float = 10):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base_url + path, timeout=self.timeout, **kw)

    def post(self, path: str, payload: dict[str, Any]) -> requests.Response:
        return self.http.post(self.base_url + path, json=payload, timeout=self.timeout)

    def put(self, path: str, payload: dict[str, Any]) -> requests.Response:
        return self.http.put(self.base_url + path, json=payload, timeout=self.timeout)


def wait_for(fn: Callable[[], Any], timeout: float = 30, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll until fn() returns something truthy (events are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class IdentityFeedClient:
    """A civil-affairs-type system publishing hardship identities over RabbitMQ as docs/identity-feed.md
    tells it to: its own broker user (password from `var/secrets/<user>_amqp_password`, made by
    deploy/local.sh), `user_id` set to that user, persistent messages, publisher confirms."""

    def __init__(self, amqp_url: str, user: str, namespace: str, secrets_dir):
        from pathlib import Path
        from urllib.parse import quote, urlsplit
        u = urlsplit(amqp_url)
        password = (Path(secrets_dir) / f"{user}_amqp_password").read_text().strip()
        self.url = f"amqp://{user}:{quote(password, safe='')}@{u.hostname}:{u.port or 5672}/%2F"
        self.user, self.exchange = user, f"{namespace}.identity.in"

    def publish(self, updates: list[dict]) -> None:
        """Each update (docs/identity-feed.md's message) with its `source_ref` as message id; raises
        when the broker does not confirm (republishing is safe: a duplicate changes nothing)."""
        import pika
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            for u in updates:
                ch.basic_publish(self.exchange, f"identity.{u['source_system']}", json.dumps(u, ensure_ascii=False).encode(),
                                 pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                      message_id=f"{u['source_system']}:{u['source_ref']}", user_id=self.user))
        finally:
            conn.close()

"""Signatures for gateway requests and payment notifications (HMAC-SHA256).

A bank or mobile-payment gateway signs every request with its own secret:

    canonical = METHOD + "\n" + PATH + "\n" + TIMESTAMP + "\n" + NONCE + "\n" + hex(sha256(BODY))
    signature = hex(hmac_sha256(secret, canonical))

and sends headers X-Gateway-Id, X-Timestamp (Unix seconds), X-Nonce (16-64 chars, unique per
request) and X-Signature. The service refuses a bad signature, a timestamp more than
SKEW_SECONDS away from its clock, and a nonce it has seen before. See docs/gateway-signing.md.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

SKEW_SECONDS = 300


def canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()]).encode()


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret.encode(), canonical(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()


def verify(secret: str, signature: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bool:
    return hmac.compare_digest(sign(secret, method, path, timestamp, nonce, body), signature or "")


@dataclass(frozen=True)
class Gateway:
    id: str
    secret: str
    kind: str  # bank | mobile | village
    channels: tuple[str, ...]


def load_gateways(path: Path | None) -> dict[str, Gateway]:
    """GATEWAY_KEYS_FILE: {"gateways": [{"id": "icbc-dongan", "secret": "...", "kind": "bank",
    "channels": ["bank_counter", "pos"]}]} — kept outside the repo."""
    if path is None or not Path(path).is_file():
        return {}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {g["id"]: Gateway(g["id"], g["secret"], g.get("kind", "bank"), tuple(g.get("channels", [])))
            for g in raw.get("gateways", [])}

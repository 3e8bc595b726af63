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


COLLECTOR_KINDS = frozenset({"village_collector", "village"})


@dataclass(frozen=True)
class Gateway:
    """A gateway and its reach. Banks and mobile payments serve the whole county; a village
    collector (村级代收员) only the households of the townships / villages it is bound to, and sees
    them as a collector needs: what to collect, per member, with names masked and no hardship
    category (the money and the receipt, not the household's circumstances)."""
    id: str
    secret: str
    kind: str  # bank | mobile | village_collector
    channels: tuple[str, ...]
    townships: tuple[str, ...] = ()
    villages: tuple[str, ...] = ()  # "<township>/<village>"
    counties: tuple[str, ...] = ()  # GB/T 2260 codes of the counties it serves (a bank may serve several)

    @property
    def collector(self) -> bool:
        return self.kind in COLLECTOR_KINDS

    def covers(self, township: str | None, village: str | None) -> bool:
        if not self.collector:
            return True
        return township in self.townships or f"{township}/{village}" in self.villages


def load_gateways(path: Path | None) -> dict[str, Gateway]:
    """GATEWAY_KEYS_FILE: {"gateways": [{"id": "icbc-dongan", "secret": "...", "kind": "bank",
    "channels": ["bank_counter", "pos"], "counties": ["431122"]}, {"id": "hq-collector-1", "secret": "...",
    "kind": "village_collector", "channels": ["village_collector"], "villages": ["花桥镇/花桥村"],
    "townships": [], "counties": ["431122"]}]} — kept outside the repo."""
    if path is None or not Path(path).is_file():
        return {}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for g in raw.get("gateways", []):
        counties = tuple(g.get("counties") or ())
        if not counties:
            raise ValueError(f"gateway {g.get('id')!r}: a gateway key names the counties it serves (counties)")
        out[g["id"]] = Gateway(g["id"], g["secret"], g.get("kind", "bank"), tuple(g.get("channels", [])),
                               tuple(g.get("townships", [])), tuple(g.get("villages", [])), counties)
    return out

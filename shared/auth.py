"""Bearer-token authentication and scope for staff and systems.

Tokens are kept hashed (SHA-256) in a JSON file named by AUTH_TOKENS_FILE, outside the repo:
{"tokens": [{"sha256": "...", "subject": "county-ops", "role": "county", "county": "东安县"},
            {"sha256": "...", "subject": "baiyashi-staff", "role": "township", "county": "东安县",
             "township": "白牙市镇"}]}
Roles: `county` (county staff, whole county), `township` (one township), `system` (other systems).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    county: str | None = None
    township: str | None = None

    def check_township(self, township: str) -> None:
        """Township staff act only within their township (乡镇); county staff across the county."""
        if self.role == "township" and self.township != township:
            raise Forbidden("SCOPE_TOWNSHIP", "无权操作其他乡镇的数据", {"township": township})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    def __init__(self, entries: list[dict]):
        self._by_hash = {e["sha256"]: Principal(e["subject"], e["role"], e.get("county"), e.get("township"))
                         for e in entries}

    @classmethod
    def load(cls, path: Path | None) -> "TokenBook":
        if path is None or not Path(path).is_file():
            return cls([])
        return cls(json.loads(Path(path).read_text(encoding="utf-8")).get("tokens", []))

    def authenticate(self, header: str | None, roles: tuple[str, ...]) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("AUTH_REQUIRED", "缺少身份凭证（Authorization: Bearer <token>）")
        digest = token_hash(header[7:].strip())
        principal = None
        for h, p in self._by_hash.items():
            if hmac.compare_digest(h, digest):
                principal = p
        if principal is None:
            raise Unauthorized("AUTH_INVALID", "身份凭证无效")
        if principal.role not in roles:
            raise Forbidden("ROLE_FORBIDDEN", "当前身份无权执行此操作", {"role": principal.role})
        return principal

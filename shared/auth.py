"""Bearer-token authentication and every role's reach, in one table.

Tokens are kept hashed (SHA-256) in a JSON file named by AUTH_TOKENS_FILE, outside the repo:
{"tokens": [{"sha256": "...", "subject": "county-ops", "role": "county", "county": "431122"},
            {"sha256": "...", "subject": "baiyashi-staff", "role": "township", "county": "431122",
             "township": "白牙市镇"},
            {"sha256": "...", "subject": "tax-bureau", "role": "system", "county": "431122",
             "permissions": ["payments:audit"], "services": ["payments"]}]}

A token carries its subject, its role and so its permissions (ROLE_PERMISSIONS below, the one
place that says who may do what; README "Who may do what" renders it). A `system` token holds
nothing by default: it names the permissions it is granted (only from SYSTEM_GRANTABLE). Any
token may narrow itself with `permissions` and with `services` (the services that accept it), so
one file can still give every system only the service it talks to. Township staff act only within
their township (`Principal.check_township`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden, Unauthorized

# permission → (what it allows, zh-CN for the README table)
PERMISSIONS: dict[str, str] = {
    "households:read": "查询户、人员、准确率，导出村名册",
    "households:write": "登记户、异动、分户合户、上传花名册",
    "mid_year:decide": "中途参保判定与撤销",
    "corrections:file": "提交与查看信息更正申请",
    "corrections:decide": "审批信息更正申请",
    "duplicates:manage": "重复参保处理、职工医保排除名单",
    "accuracy:publish": "发布信息录入准确率",
    "payments:read": "查询缴费、收据、代扣协议、解款、待审核",
    "payments:audit": "缴款审核",
    "payments:manage": "订单、代扣批次、对账、资金日志",
    "withholding:agree": "登记三方代扣协议",
    "identities:submit": "提交困难群众身份变更批次",
    "identities:read": "查询困难身份、资助待遇、困难群众参保情况",
    "identities:report": "身份变更处理报告",
    "claims:read": "查看先缴后补申请",
    "claims:pay": "登记先缴后补已支付",
    "ledger:read": "资助部门代缴台账与对账单",
    "notices:read": "查看通知记录与乡镇工作清单",
    "ops:dead-letters": "死信查看与重投",
    "scores:read": "查看考核结果、计分、排名与预测（县门户可获只读凭证）",
    "scores:manage": "发布与更正考核结果，录入考核项与上年参合数",
    "funds:credit": "登记乡镇汇划县基金专户的到账款项",
}

_STAFF = frozenset({"households:read", "households:write", "mid_year:decide", "corrections:file",
                    "payments:read", "withholding:agree", "identities:read", "claims:read", "notices:read",
                    "scores:read"})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "county": frozenset(PERMISSIONS),  # county staff: everything, across the county
    "township": _STAFF,                # township staff: day-to-day work, their township only
    "system": frozenset(),             # other systems: only what their token is granted
}
SYSTEM_GRANTABLE = frozenset({"payments:audit", "identities:submit", "identities:read", "scores:read", "funds:credit"})
TOWNSHIP_SCOPED = frozenset({"township"})
# the services a token may name in `services` (each checks its own name against the list)
SERVICES = ("registry", "payments", "subsidy", "scoring", "notices")


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    county: str | None = None
    township: str | None = None
    permissions: frozenset[str] = frozenset()
    services: frozenset[str] | None = None  # None: every service accepts the token

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def check_township(self, township: str | None) -> None:
        """Township staff act only within their township (乡镇); county staff across the county."""
        if self.role in TOWNSHIP_SCOPED and self.township != township:
            raise Forbidden("SCOPE_TOWNSHIP", "无权操作其他乡镇的数据", {"township": township})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_of(entry: dict) -> Principal:
    """A token file entry → its principal; a bad entry stops the service at start (fail loudly)."""
    role = entry["role"]
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"token {entry.get('subject')!r}: unknown role {role!r}")
    if not re.fullmatch(r"[1-9][0-9]{5}", str(entry.get("county") or "")):
        raise ValueError(f"token {entry.get('subject')!r}: a token names its county by its six-digit code (431122)")
    if role == "township" and not entry.get("township"):
        raise ValueError(f"token {entry.get('subject')!r}: a township token names its township")
    listed = entry.get("permissions")
    unknown = set(listed or ()) - set(PERMISSIONS)
    if unknown:
        raise ValueError(f"token {entry.get('subject')!r}: unknown permissions {sorted(unknown)}")
    if role == "system":
        beyond = set(listed or ()) - SYSTEM_GRANTABLE
        if beyond:
            raise ValueError(f"token {entry.get('subject')!r}: not grantable to a system {sorted(beyond)}")
        perms = frozenset(listed or ())
    else:
        perms = ROLE_PERMISSIONS[role] & frozenset(listed) if listed is not None else ROLE_PERMISSIONS[role]
    services = entry.get("services")
    if services is not None and set(services) - set(SERVICES):
        raise ValueError(f"token {entry.get('subject')!r}: unknown services {sorted(set(services) - set(SERVICES))}")
    return Principal(entry["subject"], role, entry.get("county"), entry.get("township"), perms,
                     frozenset(services) if services is not None else None)


class TokenBook:
    def __init__(self, entries: list[dict]):
        self._by_hash = {e["sha256"]: principal_of(e) for e in entries}

    @classmethod
    def load(cls, path: Path | None) -> "TokenBook":
        if path is None or not Path(path).is_file():
            return cls([])
        return cls(json.loads(Path(path).read_text(encoding="utf-8")).get("tokens", []))

    def identify(self, header: str | None, service: str | None = None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("AUTH_REQUIRED", "缺少身份凭证（Authorization: Bearer <token>）")
        digest = token_hash(header[7:].strip())
        principal = None
        for h, p in self._by_hash.items():
            if hmac.compare_digest(h, digest):
                principal = p
        if principal is None or (service and principal.services is not None and service not in principal.services):
            raise Unauthorized("AUTH_INVALID", "身份凭证无效")
        return principal

    def authenticate(self, header: str | None, roles: tuple[str, ...] = (), *, permission: str | None = None,
                     service: str | None = None) -> Principal:
        """The caller, if it holds `permission` (or, for routes without one, one of `roles`)."""
        principal = self.identify(header, service)
        if permission is not None:
            if not principal.can(permission):
                raise Forbidden("ROLE_FORBIDDEN", "当前身份无此操作权限",
                                {"role": principal.role, "permission": permission})
        elif principal.role not in roles:
            raise Forbidden("ROLE_FORBIDDEN", "当前身份无权执行此操作", {"role": principal.role})
        return principal


def role_table_markdown() -> str:
    """The README's role table, from ROLE_PERMISSIONS (tests keep the two equal)."""
    lines = ["| permission | meaning | county | township (own township) | system (if granted) |",
             "| --- | --- | --- | --- | --- |"]
    for p, text in PERMISSIONS.items():
        cells = ["✓" if p in ROLE_PERMISSIONS["county"] else "", "✓" if p in ROLE_PERMISSIONS["township"] else "",
                 "grantable" if p in SYSTEM_GRANTABLE else ""]
        lines.append(f"| `{p}` | {text} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Issue, list and revoke the credentials of each actor: staff and system tokens, gateway keys.

    python -m tools.credentials issue-token --role township --township 白牙市镇 --subject baiyashi-staff
    python -m tools.credentials issue-token --role system --subject civil_affairs \\
        --permissions identities:submit,identities:read --services subsidy
    python -m tools.credentials issue-gateway-key --id icbc-dongan --kind bank --channels bank_counter,pos
    python -m tools.credentials issue-gateway-key --id hq-collector-1 --kind village_collector \\
        --villages 花桥镇/花桥村 --channels village_cash
    python -m tools.credentials list
    python -m tools.credentials revoke --subject baiyashi-staff     (or --gateway icbc-dongan)

The token file (AUTH_TOKENS_FILE, or --tokens-file) keeps only each token's SHA-256: the plain
token is printed once, on stdout, and nowhere kept. The gateway keys file (GATEWAY_KEYS_FILE, or
--gateways-file) keeps the secret itself, since the service signs with it. Every entry is checked
against shared/auth.py's role table (and the county's townships in the policy file) before it is
written; both files are written whole to a temporary file (0600) and renamed over the old one, so
a reader never sees half a file. Services read the files at start: restart them to take a change.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from services.payments.domain.model import CHANNELS
from shared.auth import PERMISSIONS, ROLE_PERMISSIONS, SERVICES, SYSTEM_GRANTABLE, principal_of, token_hash
from shared.config import ROOT, env

GATEWAY_KINDS = ("bank", "mobile", "village_collector")
# the channels a gateway may order for: payments' CHANNELS less withholding (its orders come from batches only)
ORDER_CHANNELS = tuple(c for c in CHANNELS if c != "withholding")


class CredentialError(Exception):
    """A refused request: a stable code and a zh-CN message; the CLI exits 2."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


# ---- files: read, and write atomically with mode 0600 ------------------------------------------

def _read(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key, [])
    except (ValueError, AttributeError) as e:
        raise CredentialError("FILE_UNREADABLE", f"无法读取凭证文件 {path}：{e}") from e


def _write(path: Path, key: str, entries: list[dict[str, Any]]) -> None:
    """The whole file to a temporary file beside it (0600 from creation), fsynced, renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({key: entries}, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (two staff issuing at once must not lose an entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


# ---- checks ----------------------------------------------------------------------------------

def _policy(policy_file: str | None, county: str | None = None):
    """The policy naming the county and its townships: `--policy`, else the newest year of `county` in
    the catalogue (POLICY_DIR), else POLICY_FILE."""
    from shared.policy import load_catalogue, load_policy
    path = policy_file or env("POLICY_FILE", str(ROOT / "policies" / "dongan-2020.json"))
    try:
        if county is not None and not policy_file:
            found = sorted((y, p) for (code, y), p in load_catalogue(env("POLICY_DIR") or ROOT / "policies").policies.items()
                           if code == county)
            if not found:
                raise CredentialError("COUNTY_UNKNOWN", f"政策目录中没有区划代码为 {county} 的县（区）")
            return found[-1][1]
        return load_policy(path)
    except (OSError, ValueError, KeyError) as e:
        raise CredentialError("POLICY_UNREADABLE", f"无法读取政策文件 {path}：{e}") from e


def token_entry(role: str, subject: str, county: str, township: str | None, permissions: list[str] | None,
                services: list[str] | None, policy) -> dict[str, Any]:
    """The file entry for a new token (without its hash), checked as the services will check it."""
    if not subject or len(subject) > 80:
        raise CredentialError("SUBJECT_INVALID", "须指定主体名称（--subject，1至80个字符）")
    if role not in ROLE_PERMISSIONS:
        raise CredentialError("ROLE_UNKNOWN", f"未知角色 {role!r}，可选：{', '.join(ROLE_PERMISSIONS)}")
    if county != policy.county_code:
        raise CredentialError("COUNTY_UNKNOWN", f"政策文件中没有该县（区）：{county}（该政策文件为{policy.county} {policy.county_code}）")
    if role == "township":
        if not township:
            raise CredentialError("TOWNSHIP_REQUIRED", "乡镇经办人员的凭证须指定乡镇（--township）")
        if policy.township(township) is None:
            raise CredentialError("TOWNSHIP_UNKNOWN", f"{policy.county}没有该乡镇：{township}")
    elif township:
        raise CredentialError("TOWNSHIP_NOT_ALLOWED", f"角色 {role} 不限于某个乡镇，不能指定 --township")
    unknown = sorted(set(permissions or ()) - set(PERMISSIONS))
    if unknown:
        raise CredentialError("PERMISSION_UNKNOWN", f"未知权限：{', '.join(unknown)}")
    if role == "system":
        if not permissions:
            raise CredentialError("PERMISSIONS_REQUIRED", "其他系统的凭证须列出授予的权限（--permissions），可授予："
                                  + ", ".join(sorted(SYSTEM_GRANTABLE)))
        beyond = sorted(set(permissions) - SYSTEM_GRANTABLE)
        if beyond:
            raise CredentialError("PERMISSION_NOT_GRANTABLE", f"以下权限不能授予其他系统：{', '.join(beyond)}")
    elif permissions is not None:
        beyond = sorted(set(permissions) - ROLE_PERMISSIONS[role])
        if beyond:
            raise CredentialError("PERMISSION_BEYOND_ROLE", f"角色 {role} 没有以下权限：{', '.join(beyond)}")
    bad = sorted(set(services or ()) - set(SERVICES))
    if bad or services == []:
        raise CredentialError("SERVICE_UNKNOWN", f"未知服务：{', '.join(bad) or '（空）'}，可选：{', '.join(SERVICES)}")
    entry = {"subject": subject, "role": role, "county": county,
             **({"township": township} if township else {}),
             **({"permissions": sorted(permissions)} if permissions is not None else {}),
             **({"services": sorted(services)} if services is not None else {})}
    principal_of({**entry, "sha256": ""})  # the services' own check, so the file never stops them at start
    return entry


def gateway_entry(gid: str, kind: str, channels: list[str] | None, townships: list[str] | None,
                  villages: list[str] | None, policy, counties: list[str] | None = None) -> dict[str, Any]:
    """The file entry for a new gateway (without its secret); `counties`: the counties it serves
    (default: the policy's; a village collector serves the policy's county only)."""
    counties = counties or [policy.county_code]
    if not gid or len(gid) > 64 or not all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in gid):
        raise CredentialError("GATEWAY_ID_INVALID", "网关编号须为1至64位字母、数字或 -_.")
    if kind not in GATEWAY_KINDS:
        raise CredentialError("GATEWAY_KIND_UNKNOWN", f"未知网关类型 {kind!r}，可选：{', '.join(GATEWAY_KINDS)}")
    if not channels:
        raise CredentialError("CHANNELS_REQUIRED", f"须列出网关可下单的缴费渠道（--channels），可选：{', '.join(ORDER_CHANNELS)}")
    bad = sorted(set(channels) - set(ORDER_CHANNELS))
    if bad:
        raise CredentialError("CHANNEL_UNKNOWN", f"不可用的缴费渠道：{', '.join(bad)}（代扣订单只由代扣批次生成）"
                              if bad == ["withholding"] else f"未知缴费渠道：{', '.join(bad)}")
    townships, villages = townships or [], villages or []
    if kind == "village_collector":
        if not townships and not villages:
            raise CredentialError("COLLECTOR_SCOPE_REQUIRED", "村级代收员须指定负责的乡镇（--townships）或村（--villages 乡镇/村）")
        for t in townships:
            if policy.township(t) is None:
                raise CredentialError("TOWNSHIP_UNKNOWN", f"{policy.county}没有该乡镇：{t}")
        for v in villages:
            t, _, name = v.partition("/")
            town = policy.township(t)
            if not name or town is None:
                raise CredentialError("VILLAGE_UNKNOWN", f"村的写法应为 乡镇/村，且乡镇须属于{policy.county}：{v}")
            if town.villages and not town.has_village(name):
                raise CredentialError("VILLAGE_UNKNOWN", f"{t}没有该村（社区）：{name}")
        if counties != [policy.county_code]:
            raise CredentialError("COLLECTOR_ONE_COUNTY", f"村级代收员只服务所在县（区）：{policy.county} {policy.county_code}")
    elif townships or villages:
        raise CredentialError("SCOPE_NOT_ALLOWED", "银行和移动支付网关服务全县，不能指定乡镇或村")
    bad = [x for x in counties if not (len(x) == 6 and x.isdigit())]
    if bad:
        raise CredentialError("COUNTY_UNKNOWN", f"区划代码应为6位数字：{', '.join(bad)}")
    return {"id": gid, "kind": kind, "channels": channels, "townships": townships, "villages": villages,
            "counties": counties}


# ---- commands --------------------------------------------------------------------------------

def issue_token(tokens_file: Path, entry: dict[str, Any], replace: bool = False) -> str:
    """Add the entry with a new token's hash; returns the plain token (shown once, kept nowhere)."""
    plain = secrets.token_urlsafe(32)
    with _locked(tokens_file):
        entries = _read(tokens_file, "tokens")
        if any(e.get("subject") == entry["subject"] for e in entries) and not replace:
            raise CredentialError("SUBJECT_EXISTS", f"主体 {entry['subject']} 已有凭证：先吊销（revoke），或用 --replace 换发")
        entries = [e for e in entries if e.get("subject") != entry["subject"]]
        _write(tokens_file, "tokens", [*entries, {"sha256": token_hash(plain), **entry}])
    return plain


def issue_gateway_key(gateways_file: Path, entry: dict[str, Any], replace: bool = False) -> str:
    secret = secrets.token_urlsafe(32)
    with _locked(gateways_file):
        entries = _read(gateways_file, "gateways")
        if any(g.get("id") == entry["id"] for g in entries) and not replace:
            raise CredentialError("GATEWAY_EXISTS", f"网关 {entry['id']} 已有密钥：先吊销（revoke），或用 --replace 换发")
        entries = [g for g in entries if g.get("id") != entry["id"]]
        _write(gateways_file, "gateways", [*entries, {**entry, "secret": secret}])
    return secret


def revoke(path: Path, key: str, field: str, value: str) -> None:
    with _locked(path):
        entries = _read(path, key)
        kept = [e for e in entries if e.get(field) != value]
        if len(kept) == len(entries):
            raise CredentialError("NOT_FOUND", f"{path} 中没有 {value}")
        _write(path, key, kept)


def listing(tokens_file: Path | None, gateways_file: Path | None) -> dict[str, Any]:
    """What each file grants, without hashes or secrets."""
    tokens = _read(tokens_file, "tokens") if tokens_file else []
    gateways = _read(gateways_file, "gateways") if gateways_file else []
    return {"tokens": [{k: v for k, v in e.items() if k != "sha256"} for e in tokens],
            "gateways": [{k: v for k, v in g.items() if k != "secret"} for g in gateways]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.credentials", description="签发、查看、吊销各方凭证")
    p.add_argument("--tokens-file", help="token file (default: AUTH_TOKENS_FILE)")
    p.add_argument("--gateways-file", help="gateway keys file (default: GATEWAY_KEYS_FILE)")
    p.add_argument("--policy", help="policy file naming the county and its townships (default: POLICY_FILE)")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("issue-token", help="a bearer token for county or township staff or another system")
    t.add_argument("--role", required=True, choices=sorted(ROLE_PERMISSIONS))
    t.add_argument("--subject", required=True, help="who holds it (a system: its source_system, e.g. civil_affairs)")
    t.add_argument("--county", help="the county's six-digit code (431122); default: the policy file's county")
    t.add_argument("--township", help="township staff: their township")
    t.add_argument("--permissions", help="comma-separated; system: required (grantable ones); others: a narrowing")
    t.add_argument("--services", help=f"comma-separated services that accept the token ({', '.join(SERVICES)})")
    t.add_argument("--replace", action="store_true", help="replace the subject's token (rotation)")
    g = sub.add_parser("issue-gateway-key", help="a signing secret for a bank, mobile payment or village collector")
    g.add_argument("--id", required=True)
    g.add_argument("--kind", required=True, choices=GATEWAY_KINDS)
    g.add_argument("--channels", required=True, help=f"comma-separated: {', '.join(ORDER_CHANNELS)}")
    g.add_argument("--townships", help="village collector: comma-separated townships")
    g.add_argument("--villages", help="village collector: comma-separated 乡镇/村")
    g.add_argument("--counties", help="comma-separated county codes it serves (default: the policy file's county)")
    g.add_argument("--replace", action="store_true", help="replace the gateway's secret (rotation)")
    sub.add_parser("list", help="subjects and gateways with their reach (no hashes, no secrets)")
    r = sub.add_parser("revoke", help="remove a token (by subject) or a gateway key (by id)")
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--subject")
    who.add_argument("--gateway")
    return p


def _file(given: str | None, setting: str) -> Path:
    value = given or env(setting)
    if not value:
        raise CredentialError("FILE_UNSET", f"未指定凭证文件：设置 {setting} 或使用 --{'tokens' if 'TOKENS' in setting else 'gateways'}-file")
    return Path(value)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "issue-token":
            policy = _policy(args.policy, args.county)
            entry = token_entry(args.role, args.subject, args.county or policy.county_code, args.township,
                                _split(args.permissions), _split(args.services), policy)
            path = _file(args.tokens_file, "AUTH_TOKENS_FILE")
            plain = issue_token(path, entry, args.replace)
            print(plain)
            print(f"已为 {entry['subject']}（{entry['role']}）签发凭证，写入 {path}（只存散列）。"
                  "凭证只显示这一次，请妥善交付；重启服务后生效。", file=sys.stderr)
        elif args.command == "issue-gateway-key":
            counties = _split(args.counties)
            policy = _policy(args.policy, counties[0] if counties else None)
            entry = gateway_entry(args.id, args.kind, _split(args.channels), _split(args.townships),
                                  _split(args.villages), policy, counties)
            path = _file(args.gateways_file, "GATEWAY_KEYS_FILE")
            print(issue_gateway_key(path, entry, args.replace))
            print(f"已为网关 {entry['id']}（{entry['kind']}）签发签名密钥，写入 {path}。请经安全渠道交付；重启缴费服务后生效。",
                  file=sys.stderr)
        elif args.command == "list":
            tokens, gateways = args.tokens_file or env("AUTH_TOKENS_FILE"), args.gateways_file or env("GATEWAY_KEYS_FILE")
            if not tokens and not gateways:
                raise CredentialError("FILE_UNSET", "未指定凭证文件：设置 AUTH_TOKENS_FILE / GATEWAY_KEYS_FILE 或使用 --tokens-file / --gateways-file")
            out = listing(Path(tokens) if tokens else None, Path(gateways) if gateways else None)
            print(json.dumps(out, ensure_ascii=False, indent=1))
        else:
            if args.subject:
                revoke(_file(args.tokens_file, "AUTH_TOKENS_FILE"), "tokens", "subject", args.subject)
            else:
                revoke(_file(args.gateways_file, "GATEWAY_KEYS_FILE"), "gateways", "id", args.gateway)
            print("已吊销；重启服务后生效。", file=sys.stderr)
    except CredentialError as e:
        print(f"错误 {e.code}：{e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

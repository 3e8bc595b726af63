"""Settings from the environment, so pointing at MongoDB 7 or a RabbitMQ cluster is configuration only."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _local_env() -> dict[str, str]:
    """var/local.env is written by deploy/local.sh; real environment variables win over it."""
    path = Path(os.environ.get("ENROL_LOCAL_ENV", ROOT / "var" / "local.env"))
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def env(name: str, default: str | None = None) -> str | None:
    if name in os.environ:
        return os.environ[name]
    return _local_env().get(name, default)


def require(name: str) -> str:
    value = env(name)
    if not value:
        raise SystemExit(f"missing required setting {name} (set it in the environment or run deploy/local.sh start)")
    return value


@dataclass(frozen=True)
class Settings:
    service: str
    mongo_url: str
    mongo_db: str
    amqp_url: str
    namespace: str
    policy_file: Path
    auth_tokens_file: Path | None
    gateway_keys_file: Path | None
    bus_users: dict[str, str] | None = None  # service → its broker user; None: one shared user, unchecked
    policy_dir: Path | None = None  # the catalogue (every county-year file); POLICY_FILE names the current year

    @classmethod
    def load(cls, service: str) -> "Settings":
        ns = env("BUS_NAMESPACE", "enrol")
        tokens = env("AUTH_TOKENS_FILE")
        keys = env("GATEWAY_KEYS_FILE")
        return cls(
            service=service,
            mongo_url=require("MONGO_URL"),
            mongo_db=env("MONGO_DB") or f"{ns}_{service}",
            amqp_url=env(f"AMQP_URL_{service.upper()}") or require("AMQP_URL"),
            namespace=ns,
            policy_file=Path(env("POLICY_FILE", str(ROOT / "policies" / "dongan-2020.json"))),
            auth_tokens_file=Path(tokens) if tokens else None,
            gateway_keys_file=Path(keys) if keys else None,
            bus_users=parse_pairs(env("BUS_USERS")) or None,
            policy_dir=Path(env("POLICY_DIR") or str(ROOT / "policies")),
        )


def parse_pairs(value: str | None) -> dict[str, str]:
    """`a=x,b=y` → {"a": "x", "b": "y"} (settings that map names to names)."""
    out = {}
    for part in (value or "").split(","):
        k, sep, v = part.partition("=")
        if sep and k.strip() and v.strip():
            out[k.strip()] = v.strip()
    return out

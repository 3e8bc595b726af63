"""Notice texts as files (services/notices/templates/): Jinja2, zh-CN, one per kind and channel.

The domain (domain/notice.py) decides who is told what — a template name and its parameters; the
book renders the text, records the template's version and the SMS provider's template code, adds
the SMS signature (【…】, the provider's sign name) and counts the SMS as providers bill it. The
manifest is checked at load: every template has its file, and a file uses only its declared
parameters (a missing parameter is an error when rendering: StrictUndefined).
"""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, meta

from shared.clock import SHANGHAI
from shared.money import yuan

from ..domain.notice import Notice

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SMS_SINGLE, SMS_PART = 70, 67  # characters of one SMS, and of each part of a long one (signature included)


def _instant(value: str | datetime) -> datetime:
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(SHANGHAI)


def zh_date(value: str | date | datetime) -> str:
    """2019年11月5日, as Chinese readers write a date (no leading zeros); an instant in Shanghai time."""
    d = _instant(value).date() if isinstance(value, datetime) or (isinstance(value, str) and "T" in value) else (
        date.fromisoformat(value) if isinstance(value, str) else value)
    return f"{d.year}年{d.month}月{d.day}日"


def zh_minute(value: str | datetime) -> str:
    """2019年11月15日 10:00 (Shanghai time): when a payment was made."""
    at = _instant(value)
    return f"{zh_date(at.date())} {at:%H:%M}"


def zh_deadline(value: str | datetime) -> str:
    """2016年11月15日17时00分 (Shanghai time): how the notices print their deadlines (下午5时)."""
    at = _instant(value)
    return f"{zh_date(at.date())}{at.hour}时{at.minute:02d}分"


def pct(bp: int | None) -> str:
    return "无数据" if bp is None else f"{bp // 100}.{bp % 100:02d}%"


def sms_segments(text: str) -> int:
    """How providers bill an SMS: every character counts one (Chinese, Latin, punctuation alike,
    the signature included); up to 70 is one message, a longer one is sent in parts of 67."""
    n = len(text)
    return 1 if n <= SMS_SINGLE else -(-n // SMS_PART)


class TemplateError(ValueError):
    pass


class TemplateBook:
    def __init__(self, directory: Path = TEMPLATES, sign_name: str = "医保"):
        self.sign_name = sign_name
        self.manifest = {k: v for k, v in json.loads((directory / "manifest.json").read_text(encoding="utf-8")).items()
                         if not k.startswith("_")}
        self.env = Environment(loader=FileSystemLoader(str(directory)), undefined=StrictUndefined,
                               keep_trailing_newline=False, autoescape=False)
        self.env.filters.update(yuan=yuan, zh_date=zh_date, zh_minute=zh_minute, zh_deadline=zh_deadline, pct=pct)
        for name, spec in self.manifest.items():
            path = directory / f"{name}.j2"
            if not path.is_file():
                raise TemplateError(f"manifest names {name}, but {path.name} does not exist")
            used = meta.find_undeclared_variables(self.env.parse(path.read_text(encoding="utf-8")))
            if used - set(spec["params"]):
                raise TemplateError(f"{path.name} uses parameters the manifest does not declare: {sorted(used - set(spec['params']))}")
            if name.endswith(".sms") and not spec.get("code"):
                raise TemplateError(f"{name}: an SMS template needs the provider's template code")

    def render(self, name: str, params: dict[str, Any]) -> str:
        spec = self.manifest.get(name)
        if spec is None:
            raise TemplateError(f"no template {name}")
        missing = set(spec["params"]) - set(params)
        if missing:
            raise TemplateError(f"{name}: parameters missing {sorted(missing)}")
        text = self.env.get_template(f"{name}.j2").render(**params).strip()
        return f"【{self.sign_name}】{text}" if name.endswith(".sms") else text

    def fill(self, n: Notice) -> Notice:
        """The notice with its text, the template's version and code, and (SMS) its billed parts."""
        name, params = n.template["name"], n.template["params"]
        spec = self.manifest[name]
        text = self.render(name, params)
        return replace(n, text=text, urgent=bool(spec.get("urgent")),
                       template={"name": name, "version": spec["version"], "code": spec.get("code"), "params": params,
                                 **({"sign_name": self.sign_name} if name.endswith(".sms") else {})},
                       sms_segments=sms_segments(text) if n.channel == "sms" else None)

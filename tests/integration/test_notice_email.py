"""Email over SMTP for a leader who chose it, read back from a real SMTP server (aiosmtpd).

Rule quoted: 003_0724b4a19d5e14e1.txt — 每周把全县各乡镇筹资进度进行排名,并把排名情况……以短信的方式发给各乡镇
主要领导; a leader may choose email instead (issue 12: a recipient's channel preference).
"""
from __future__ import annotations

import email
import secrets
from datetime import datetime, timezone
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller

from services.notices import bootstrap as boot
from services.notices.adapters.channels import EmailChannel, InternalChannel
from services.notices.domain.delivery import QuietHours
from services.notices.entrypoints.flask_app import create_app
from services.notices.service_layer.delivery import DeliverySettings
from shared.auth import token_hash
from shared.clock import FixedClock
from shared.events import Envelope, Event
from tests.helpers import secret_files

NOW = datetime(2017, 11, 30, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai
TOKEN = secrets.token_hex(8)
WUMING = "450110"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 — aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=default_policy)))
        return "250 OK"


@pytest.fixture()
def smtp():
    import socket
    with socket.socket() as sock:  # a free port of this test's own
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, inbox
    ctl.stop()


def test_a_leader_who_prefers_email_gets_the_ranking_by_smtp_and_the_others_by_sms(namespace, tmp_path, smtp):
    port, inbox = smtp
    with secret_files(tmp_path, tokens=[{"sha256": token_hash(TOKEN), "subject": "ops", "role": "county",
                                         "county": WUMING}]):
        clock = FixedClock(NOW)
        api = create_app(clock).test_client()
        c = boot.bootstrap(clock).county(WUMING)
        town = c.policy.townships[0].name
        r = api.put(f"/v1/counties/{WUMING}/township-leaders/{town}", headers={"Authorization": f"Bearer {TOKEN}"},
                    json={"leaders": [{"name": "韦镇长", "phone": "13977002001", "email": "wei@town.example.cn",
                                       "prefers": "email"},
                                      {"name": "黄副镇长", "phone": "13977002002"}]})
        assert r.status_code == 200, r.json
        assert r.json["leaders"][0]["email"] == "w***@town.example.cn"
        bad = api.put(f"/v1/counties/{WUMING}/township-leaders/{town}", headers={"Authorization": f"Bearer {TOKEN}"},
                      json={"leaders": [{"name": "某", "phone": "13977002003", "prefers": "email"}]})
        assert (bad.status_code, bad.json["code"]) == (400, "VALIDATION_FAILED")

        env = Envelope.new(Event("scoring.ranking.published", {
            "year": 2018, "county": WUMING, "county_name": "武鸣区", "as_of": "2017-11-30T09:00:00+08:00",
            "rule": "七、(四)每周四通报各镇工作进展情况", "target_share_percent": 97, "total_rate_bp": 8000,
            "townships": 13, "rows": [{"township": town, "rank": 2, "rate_bp": 8800, "band": "behind",
                                       "rank_change": -1}]}), "scoring", NOW, county=WUMING)
        handlers = boot.event_handlers(c)
        for _ in range(2):  # delivered twice: one notice per recipient
            handlers[env.type](env)
        docs = {d["recipient_name"]: d for d in c.db.notices.find({"kind": "ranking"}) if d.get("recipient_name") != f"{town}人民政府"}
        assert {n: d["channel"] for n, d in docs.items()} == {"韦镇长": "email", "黄副镇长": "sms"}

        settings = DeliverySettings(quiet=QuietHours.parse("21:00-08:00"), sms_per_second=0, max_attempts=3)
        channels = {"email": EmailChannel("127.0.0.1", port, "notices@county.example.cn"),
                    "internal": InternalChannel()}
        deliverer = boot.deliverer(c, channels=channels, settings=settings)
        deliverer.run_once(NOW)
        deliverer.run_once(NOW)
        [(to, msg)] = inbox.messages  # once, whatever the repeats
        assert to == ["wei@town.example.cn"]
        assert msg["Subject"] == f"参保进度排名：{town}"
        body = msg.get_content()
        assert f"{town}参保率88.00%，全区13个乡镇中第2名，较上期下降1位；目标97%" in body
        assert msg["X-Notice-Delivery"].startswith(f"{WUMING}|ranking:2018:")
        assert c.db.notices.find_one({"_id": docs["韦镇长"]["_id"]})["status"] == "delivered"  # accepted by the mail server; no receipt follows

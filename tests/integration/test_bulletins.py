"""Bulletins (通报) as documents, over the real bus and store: a ranking event becomes one stored
bulletin (HTML page with the table and the chart, PNG chart) that staff list and anyone downloads.

Rules: 002_9137bd928f251374.txt 七(四) — 城区人社局要定期督查……每周四通报各镇工作进展情况，表扬先进，鞭策后进;
001_93f5b63ac6b4a653.txt 七(五) — 一月一通报; 各村(社区)应对征缴进度定期张榜公布 (why the page is public).
"""
from __future__ import annotations

import io
import json
import secrets
from datetime import datetime

import pytest
from prometheus_client import REGISTRY

from services.notices import bootstrap as notices_boot
from services.notices.adapters import bulletin_render
from services.notices.adapters.bulletin_store import BULLETINS, BulletinStore
from services.notices.entrypoints import bulletin_api
from services.notices.service_layer.bulletins import bulletin_sms_text, on_ranking_published_bulletin
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.container import county_handlers
from shared.events import Envelope, Event
from shared.web import county_routes, create_service_app
from tests.helpers import declare, publish, running, secret_files
from tools.clients import wait_for

WUMING = "450110"
TOKEN = secrets.token_hex(8)
NOW = datetime(2017, 11, 30, 9, 5, tzinfo=SHANGHAI)
TYPE = "scoring.ranking.published"


@pytest.fixture(scope="module")
def tokens(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(TOKEN), "subject": "wuming-ops", "role": "county", "county": WUMING}]):
        yield


@pytest.fixture(scope="module")
def container(tokens):
    return notices_boot.bootstrap(FixedClock(NOW))


def ranking(c, as_of: str, rates: list[int]) -> Envelope:
    towns = [t.name for t in c.county(WUMING).policy.townships]
    order = sorted(range(len(towns)), key=lambda i: -rates[i % len(rates)])
    rows = [{"township": towns[i], "rank": k + 1, "rate_bp": rates[i % len(rates)],
             "band": "on_track" if rates[i % len(rates)] >= 3000 else "behind", "rank_change": None}
            for k, i in enumerate(order)]
    return Envelope.new(Event(TYPE, {
        "year": 2018, "county": WUMING, "county_name": "武鸣区", "as_of": as_of, "rule": "每周四通报各镇工作进展情况",
        "target_share_percent": 30, "total_rate_bp": 3412, "townships": len(rows), "rows": rows}), "scoring", NOW,
        county=WUMING)


def handled() -> float:
    return sum(REGISTRY.get_sample_value(f"events_{k}_total", {"service": "notices", "type": TYPE}) or 0
               for k in ("consumed", "duplicate"))


def app_of(c):
    """The notices app with only the bulletin routes, wired as flask_app.create_app wires its own."""
    app, api = create_service_app(c)
    county_routes(api, c, bulletin_api.declare)
    return app.test_client()


def test_a_ranking_event_delivered_twice_becomes_one_bulletin_with_its_page_and_chart(container, infra):
    c = container
    wc = c.county(WUMING)
    store = BulletinStore(wc.db)
    handlers = county_handlers(c, lambda cc: {TYPE: lambda env: on_ranking_published_bulletin(
        BulletinStore(cc.db), cc.clock, env)})
    declare(c, handlers)
    env = ranking(c, "2017-11-30T09:00:00+08:00", [5591, 4200, 3900, 3100, 2800, 1500])
    before = handled()
    with running(c.consumer(handlers)):
        for _ in range(2):  # delivered twice (a redelivery, or scoring's relay publishing again)
            publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
        wait_for(lambda: handled() >= before + 2, what="both deliveries handled")
    # a second delivery under another envelope id (scoring published the same instant again)
    assert on_ranking_published_bulletin(store, wc.clock, ranking(c, "2017-11-30T09:00:00+08:00", [1])) is False

    docs = list(wc.db[BULLETINS].find({"_id": "2018:201711300900"}))
    assert len(docs) == 1
    doc = docs[0]
    title = "武鸣区2018年度城乡居民医保参保进度通报（截至2017年11月30日9时00分）"
    assert doc["content"]["title"] == title and doc["created_at"] is not None
    assert [e["id"] for e in store.entries(2018)] == ["2018:201711300900"]  # the index, kept once
    html = doc["html"]
    assert title in html and "表扬先进" in html and "鞭策后进" in html and "data:image/png;base64," in html
    for r in env.payload["rows"]:
        assert f"{r['township']}</td>" in html
        rate = f"{r['rate_bp'] // 100}.{r['rate_bp'] % 100:02d}%"
        assert rate in html, (r["township"], rate)

    png = bytes(doc["png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    height, width = pixels.shape[:2]
    assert width == round(8.5 * 110) and height == round((1.6 + 0.38 * len(env.payload["rows"])) * 110)

    # drawn with a CJK font (deploy/local.sh install puts fonts-wqy-microhei on this machine)
    from matplotlib.ft2font import FT2Font
    path, family = bulletin_render.cjk_font()
    assert doc["font_missing"] is False and doc["font"] == family
    assert FT2Font(path).get_char_index(ord("镇")) != 0, f"{path} has no glyph for 镇"


def test_the_next_bulletin_measures_its_changes_from_the_one_before(container):
    wc = container.county(WUMING)
    store = BulletinStore(wc.db)
    assert on_ranking_published_bulletin(store, wc.clock, ranking(container, "2017-12-07T09:00:00+08:00",
                                                                  [6091, 4200, 3900, 3100, 2800, 1500]))
    content = store.exists(2018, "201712070900")
    assert content["previous_stamp"] == "201711300900"
    first = next(r for r in content["rows"] if r["rate_bp"] == 6091)
    assert (first["rate_change_bp"], first["rate_change_text"]) == (500, "+5.00")
    assert "较上期：与2017年11月30日9时00分的通报相比" in store.page(2018, "201712070900")["html"]
    text = bulletin_sms_text(content, "https://yb.example.gov.cn")
    assert text.endswith("详见：https://yb.example.gov.cn/v1/counties/450110/bulletins/2018/201712070900")


def test_without_a_cjk_font_the_bulletin_is_stored_anyway_and_says_so(container, monkeypatch):
    import logging
    wc = container.county(WUMING)
    store = BulletinStore(wc.db)
    monkeypatch.setattr(bulletin_render, "cjk_font", lambda: None)
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger(bulletin_render.__name__).addHandler(handler)
    try:
        assert on_ranking_published_bulletin(store, wc.clock, ranking(container, "2017-12-14T09:00:00+08:00",
                                                                      [7000, 100]))
    finally:
        logging.getLogger(bulletin_render.__name__).removeHandler(handler)
    assert any("no CJK font" in m and "2018:201712140900" in m for m in warned), warned
    doc = wc.db[BULLETINS].find_one({"_id": "2018:201712140900"})
    assert doc["font_missing"] is True and doc["font"] is None and bytes(doc["png"])[:4] == b"\x89PNG"
    assert "本机未安装中文字体" in doc["html"]


def test_without_weasyprint_the_bulletin_is_stored_without_a_pdf_and_its_download_says_why(container, monkeypatch):
    import builtins
    wc = container.county(WUMING)
    real_import = builtins.__import__

    def no_weasyprint(name, *args, **kwargs):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0'")  # what a machine without Pango raises
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_weasyprint)
    assert on_ranking_published_bulletin(BulletinStore(wc.db), wc.clock, ranking(container, "2017-12-21T09:00:00+08:00",
                                                                                 [6000, 200]))
    monkeypatch.setattr(builtins, "__import__", real_import)
    r = app_of(container).get(f"/v1/counties/{WUMING}/bulletins/2018/201712210900/bulletin.pdf")
    assert (r.status_code, r.json["code"]) == (404, "BULLETIN_PDF_MISSING") and "HTML" in r.json["message"]
    assert app_of(container).get(f"/v1/counties/{WUMING}/bulletins/2018/201712210900").status_code == 200


def test_staff_list_the_bulletins_and_anyone_downloads_a_page_and_its_chart(container):
    api = app_of(container)
    base = f"/v1/counties/{WUMING}/bulletins"
    assert api.get(f"{base}/2018").status_code == 401  # the list is staff's
    listed = api.get(f"{base}/2018", headers={"Authorization": f"Bearer {TOKEN}"})
    assert listed.status_code == 200, listed.json
    stamps = [b["stamp"] for b in listed.json["bulletins"]]
    assert stamps[:2] == ["201711300900", "201712070900"]
    first = listed.json["bulletins"][0]
    assert first["id"] == "2018:201711300900" and first["title"].startswith("武鸣区2018年度") and first["rows"] == 13

    page = api.get(f"{base}/2018/201711300900")  # public: the SMS link opens without a token
    assert page.status_code == 200 and page.content_type == "text/html; charset=utf-8"
    assert first["title"] in page.get_data(as_text=True)
    assert "img-src data:" in page.headers["Content-Security-Policy"]
    assert "Content-Disposition" not in page.headers
    download = api.get(f"{base}/2018/201711300900?download=true")
    assert download.headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''")
    chart = api.get(f"{base}/2018/201711300900/chart.png")
    assert chart.status_code == 200 and chart.mimetype == "image/png" and chart.data[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = api.get(f"{base}/2018/201711300900/bulletin.pdf")  # to print and post (张榜公布, 001 七(五))
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''")
    from pypdf import PdfReader
    reader = PdfReader(io.BytesIO(pdf.data))
    text = "".join(p.extract_text() for p in reader.pages)
    assert "武鸣区2018年度城乡居民医保参保进度通报" in text and "表扬先进" in text  # Chinese as text, not boxes
    for town in (t.name for t in container.county(WUMING).policy.townships):
        assert town in text, town
    assert any(img for p in reader.pages for img in p.images)  # the chart is in it

    for path in (f"{base}/2018/201801010900", f"{base}/2018/201801010900/chart.png",
                 f"{base}/2018/201801010900/bulletin.pdf", f"{base}/2018/abc",
                 f"{base}/2018/2017113009001"):
        r = api.get(path)
        assert (r.status_code, r.json["code"], r.json["message"]) == (404, "BULLETIN_NOT_FOUND", "没有该期通报"), path
    assert api.get(f"{base}/0/201711300900").json["code"] == "BAD_YEAR"
    assert api.get(f"{base}/2019", headers={"Authorization": f"Bearer {TOKEN}"}).json == {"year": 2019, "bulletins": []}

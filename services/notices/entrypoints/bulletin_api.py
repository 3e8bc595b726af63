"""HTTP API of bulletins (通报, service_layer/bulletins.py): the year's list for staff, and each
bulletin's page, chart and PDF as downloads.

The page, the chart and the PDF are public (no token): they are what the SMS links to, opened on a township
leader's phone with no bearer token, and what they show is already public — the county posts the
townships' progress (001_93f5b63ac6b4a653.txt 七(五): 各村(社区)应对征缴进度定期张榜公布); a bulletin holds
only townships' rates and ranks, never a person. The list is staff's (`notices:read`).
"""
from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response, request
from marshmallow import Schema, fields

from shared.errors import NotFound
from shared.web import path_year, query_flag, query_param

from ..adapters.bulletin_store import BulletinStore

_STAMP = re.compile(r"[0-9]{12}")
# the page is self-contained: its only image is a data: URI, its only style inline
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}


class BulletinEntry(Schema):
    id = fields.String(metadata={"description": "<year>:<YYYYMMDDHHMM>"})
    stamp = fields.String(metadata={"description": "通报时点（上海时间）YYYYMMDDHHMM，页面地址的最后一段"})
    title = fields.String()
    as_of = fields.String()
    rows = fields.Integer(metadata={"description": "表中乡（镇）数"})


class BulletinList(Schema):
    year = fields.Integer()
    bulletins = fields.List(fields.Nested(BulletinEntry))


def declare(api, c) -> None:
    """The bulletin routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    store = BulletinStore(c.db)

    def known(year: str, stamp: str) -> tuple[int, str]:
        y = path_year(year)
        if not _STAMP.fullmatch(stamp or ""):
            raise NotFound("BULLETIN_NOT_FOUND", "没有该期通报", {"year": y, "stamp": stamp[:40]})
        return y, stamp

    @api.route("/v1/bulletins/{year}", "GET", summary="本年度各期参保进度通报（每周四通报、一月一通报）",
               permission="notices:read", response=BulletinList)
    def list_bulletins(principal, year):
        y = path_year(year)
        return {"year": y, "bulletins": store.entries(y)}

    @api.route("/v1/bulletins/{year}/{stamp}", "GET", summary="一期通报（HTML 页面：排名表与进度图；公开，短信链接指向此处）",
               produces="text/html", query=[query_param("download", "boolean", description="true：作为附件下载")])
    def bulletin_page(principal, year, stamp):
        y, stamp = known(year, stamp)
        doc = store.page(y, stamp)
        if doc is None:
            raise NotFound("BULLETIN_NOT_FOUND", "没有该期通报", {"year": y, "stamp": stamp})
        headers = dict(PAGE_HEADERS)
        if query_flag(request.args, "download"):
            name = f"{doc['content']['title']}.html"
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        return Response(doc["html"], mimetype="text/html", headers=headers)

    @api.route("/v1/bulletins/{year}/{stamp}/chart.png", "GET", summary="一期通报的进度图（PNG；公开）",
               produces="image/png")
    def bulletin_chart(principal, year, stamp):
        y, stamp = known(year, stamp)
        png = store.chart(y, stamp)
        if png is None:
            raise NotFound("BULLETIN_NOT_FOUND", "没有该期通报", {"year": y, "stamp": stamp})
        return Response(png, mimetype="image/png", headers={"X-Content-Type-Options": "nosniff",
                                                             "Cache-Control": "public, max-age=300"})

    @api.route("/v1/bulletins/{year}/{stamp}/bulletin.pdf", "GET", summary="一期通报的 PDF（打印张贴、归档；公开）",
               produces="application/pdf")
    def bulletin_pdf(principal, year, stamp):
        y, stamp = known(year, stamp)
        doc = store.pdf(y, stamp)
        if doc is None:
            raise NotFound("BULLETIN_NOT_FOUND", "没有该期通报", {"year": y, "stamp": stamp})
        if doc.get("pdf") is None:
            raise NotFound("BULLETIN_PDF_MISSING", "该期通报未生成 PDF（服务器缺少排版组件），请下载 HTML 页面打印",
                           {"year": y, "stamp": stamp})
        name = f"{doc['content']['title']}.pdf"
        return Response(bytes(doc["pdf"]), mimetype="application/pdf", headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})

"""The thin HTTP adapter every service shares: JSON errors, auth, correlation ids, metrics,
/healthz, /readyz, /metrics and the OpenAPI document at /openapi.json.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import wraps
from typing import Any, Callable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import Schema, ValidationError
from pymongo.errors import ConnectionFailure
import werkzeug.exceptions
from werkzeug.exceptions import HTTPException

from . import dead_letters, metrics
from .auth import Principal, TokenBook
from .clock import SHANGHAI, iso
from .errors import DomainError, Forbidden, NotFound
from .logs import correlation_id
from .masking import mask_json

log = logging.getLogger(__name__)


GATEWAY_HEADERS = [
    {"name": "X-Gateway-Id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "the gateway's id in the gateway keys file"},
    {"name": "X-Timestamp", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
     "description": "Unix seconds; refused more than 300 s from the service's clock"},
    {"name": "X-Nonce", "in": "header", "required": True, "schema": {"type": "string", "minLength": 16, "maxLength": 64},
     "description": "unique per request (16-64 characters); a replay is refused"},
    {"name": "X-Signature", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "hex HMAC-SHA256 over METHOD, PATH, X-Timestamp, X-Nonce and sha256(body); docs/gateway-signing.md"},
]
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                   "schema": {"type": "string", "minLength": 8, "maxLength": 64},
                   "description": "the same key and body return the same result; another body is refused"}


def query_param(name: str, type: str = "string", *, required: bool = False, description: str | None = None,
                **schema) -> dict:
    """A declared query parameter (OpenAPI); Api.route refuses a value that does not fit it."""
    p = {"name": name, "in": "query", "required": required, "schema": {"type": type, **schema}}
    if description:
        p["description"] = description
    return p


def _bad_query(name: str, expected: str, value: str | None = None) -> DomainError:
    return DomainError("BAD_QUERY", f"查询参数 {name} 无效（应为{expected}）",
                       {"param": name, "expected": expected, **({"value": value[:40]} if value is not None else {})},
                       status=400)


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def check_query(params: list[dict], args) -> None:
    """Every declared query parameter checked against its type, enum and bounds (400 BAD_QUERY)."""
    for p in params:
        name, schema = p["name"], p.get("schema", {})
        value = args.get(name)
        if value is None:
            if p.get("required"):
                raise DomainError("QUERY_REQUIRED", f"缺少查询参数 {name}", {"param": name}, status=400)
            continue
        kind = schema.get("type", "string")
        if kind == "integer":
            if not re.fullmatch(r"-?[0-9]{1,12}", value):
                raise _bad_query(name, "整数", value)
            n = int(value)
            if ("minimum" in schema and n < schema["minimum"]) or ("maximum" in schema and n > schema["maximum"]):
                raise _bad_query(name, f"{schema.get('minimum', '')}至{schema.get('maximum', '')}之间的整数", value)
        elif kind == "boolean":
            if value.lower() not in _TRUE + _FALSE:
                raise _bad_query(name, "true 或 false", value)
        elif schema.get("format") == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise _bad_query(name, "日期 YYYY-MM-DD", value) from None
        elif schema.get("format") == "date-time":
            if parse_query_instant(value) is None:
                raise _bad_query(name, "带时区的时间，如 2016-11-15T17:00:00+08:00", value)
        if "enum" in schema and value not in schema["enum"]:
            raise _bad_query(name, "、".join(map(str, schema["enum"])) + " 之一", value)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _bad_query(name, f"不超过{schema['maxLength']}个字符", value)


YEARS = range(2000, 2101)  # policy years a path may name (as the holiday schedule format allows)


def parse_query_instant(value: str) -> datetime | None:
    """An instant from a query value: ISO 8601 with its offset (`2016-11-15T17:00:00+08:00`, `…Z`),
    in 2000-2100; None for anything else. A '+' sent unencoded arrives as a space (form decoding):
    `…17:00:00 08:00` is read as `+08:00`. A time without offset is refused: it would be ambiguous."""
    text = re.sub(r"(?<=[0-9]) ([0-9]{2}(:?[0-9]{2})?)$", r"+\1", value)
    try:
        at = datetime.fromisoformat(text)
        if at.tzinfo is None or at.utcoffset() is None:
            return None
        at.astimezone(SHANGHAI)  # far dates overflow here, never in a view
    except (ValueError, OverflowError):
        return None
    return at if at.year in YEARS else None


def query_instant(args, name: str) -> datetime | None:
    """A declared `date-time` query parameter's value (already checked by check_query); None if absent."""
    value = args.get(name)
    return None if value is None else parse_query_instant(value)


def year_range():
    """The same bounds for a year in a request body (marshmallow validator): a 20-digit year
    overflowed the store's 8-byte integers (500) before any policy lookup could refuse it."""
    from marshmallow import validate
    return validate.Range(min=YEARS.start, max=YEARS.stop - 1, error="年度应在2000至2100之间")


def is_year(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9]{4}", text)) and int(text) in YEARS


def path_year(text: str) -> int:
    """A policy year from a URL path: four ASCII digits, 2000-2100. Anything else (year 0, 30 digits,
    '²') is a clear 400, never a date() or store overflow deep inside (found by schema fuzzing)."""
    if not is_year(text):
        raise DomainError("BAD_YEAR", "年度应为2000至2100之间的4位数字", {"year": text[:40]}, status=400)
    return int(text)


def query_flag(args, name: str) -> bool:
    """A declared boolean query parameter's value (already checked)."""
    return (args.get(name) or "").lower() in _TRUE


def strict_responses() -> bool:
    """RESPONSE_VALIDATION=strict (the test suite sets it): every JSON response is checked against
    its documented schema and a mismatch fails loudly (500 RESPONSE_SCHEMA_VIOLATION)."""
    return os.environ.get("RESPONSE_VALIDATION", "").lower() == "strict"


class ResponseSchemaViolation(Exception):
    pass


class JsonProvider(DefaultJSONProvider):
    """Instants render as shared.clock.iso does (never Flask's RFC 822 default)."""
    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o):
        if isinstance(o, (datetime, date)):
            return iso(o)
        return DefaultJSONProvider.default(o)


@dataclass
class ApiDoc:
    """Operations recorded by @route, rendered into one OpenAPI document."""
    title: str
    operations: list[tuple[str, str, dict]] = field(default_factory=list)

    def spec(self) -> dict:
        spec = APISpec(title=self.title, version="1.0.0", openapi_version="3.0.3", plugins=[MarshmallowPlugin()])
        spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                                   "description": "staff or system token; its permissions: README 'Who may do what'"})
        spec.components.security_scheme("gatewaySignature", {
            "type": "apiKey", "in": "header", "name": "X-Signature",
            "description": "HMAC-SHA256; see docs/gateway-signing.md (X-Gateway-Id, X-Timestamp, X-Nonce)"})
        spec.components.schema("Error", {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string", "description": "zh-CN"},
            "details": {"nullable": True}}})
        paths: dict[str, dict] = {}
        for path, method, op in self.operations:
            paths.setdefault(path, {})[method] = op
        for path, ops in paths.items():
            spec.path(path=path, operations=ops)
        return spec.to_dict()


def _schema_ref(schema: type[Schema] | None) -> dict | None:
    return {"content": {"application/json": {"schema": schema}}} if schema else None


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


COUNTY_PREFIX = "/v1/counties/{county}"
COUNTY_PARAM = {"name": "county", "in": "path", "required": True, "description": "县（区）的区划代码（GB/T 2260，如东安县 431122）",
                "schema": {"type": "string", "pattern": "^[1-9][0-9]{5}$"}}


def county_path(path: str, county: str | None) -> str:
    """`/v1/x` as served for one county: `/v1/counties/<code>/x` (`county` None: the path itself)."""
    if county is None:
        return path
    assert path.startswith("/v1/"), path
    return COUNTY_PREFIX.replace("{county}", county) + path[3:]


def check_county(principal, county: str | None) -> None:
    """A token names the county it acts for (`shared/auth.py`); a guard (a gateway signature) checks
    its own reach."""
    if county is None or not isinstance(principal, Principal):
        return
    if principal.county != county:
        raise Forbidden("SCOPE_COUNTY", "无权操作其他县（区）的数据", {"county": county})


class Api:
    def __init__(self, app: Flask, service: str, tokens: TokenBook):
        self.app = app
        self.service = service
        self.tokens = tokens
        self.doc = ApiDoc(title=f"{service} service")
        self._documented: set[tuple[str, str]] = set()

    def for_county(self, county: str) -> "CountyApi":
        return CountyApi(self, county)

    def route(self, path: str, method: str, *, summary: str, roles: tuple[str, ...] | None = None,
              permission: str | None = None, body: type[Schema] | None = None,
              response: type[Schema] | None = None, status: int = 200, also: tuple[int, ...] = (),
              guard: Callable[[], Any] | None = None, query: list[dict] | None = None,
              headers: list[dict] | None = None, raw_body: dict | None = None,
              produces: str | tuple[str, ...] | None = None, county: str | None = None, etag: bool = False):
        """Register an endpoint: authenticate, check the query, parse the body, mask and (strict)
        check the response, document it all.

        Authentication comes first: a bearer token holding `permission` (shared/auth.py's table),
        or one of `roles`, or `guard` (e.g. a gateway signature check) which returns the principal.
        The view receives `principal` (or None) and, when `body` is given, `data` (the loaded body).
        A view may return a body or (body, status) (`status`, or one of `also`). `raw_body`
        documents a non-JSON request body ({media type: description}); `produces` a non-JSON reply.
        `county`: the route serves that county's data, at `/v1/counties/<county>/...` (CountyApi).
        `etag`: the reply carries an ETag of its body; a GET sending it back in If-None-Match gets
        304 and no body (portals polling a ranking re-read nothing that did not change).
        """
        security = "gatewaySignature" if guard else "bearer"
        flask_path = county_path(path, county).replace("{", "<").replace("}", ">")
        doc_path = county_path(path, None if county is None else "{county}")
        media = (produces,) if isinstance(produces, str) else tuple(produces or ())
        ok = ({"content": {mt: {"schema": {"type": "string", "format": "binary"}} for mt in media}} if media
              else (_schema_ref(response) or {}))
        responses = {str(s): {"description": "OK", **ok} for s in (status, *also)}
        if etag:
            responses["304"] = {"description": "未变化（If-None-Match 与 ETag 相同）"}
        responses["4XX"] = {"description": "调用方错误（code + 中文 message）", **_ERROR}
        op: dict[str, Any] = {"summary": summary, "responses": responses}
        if permission:
            op["description"] = f"权限：`{permission}`（见 README 角色表）"
        params = [COUNTY_PARAM] if county is not None else []
        params += [{"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                   for p in path.split("/") if p.startswith("{")]
        declared_query = list(query or [])
        params += declared_query
        if guard:
            params += GATEWAY_HEADERS
        params += headers or []
        if params:
            op["parameters"] = params
        if body:
            op["requestBody"] = {"required": True, **_schema_ref(body)}
        elif raw_body:
            op["requestBody"] = {"required": True, "content": {
                mt: {"schema": {"type": "string", "format": "binary"}, **({"description": d} if d else {})}
                for mt, d in raw_body.items()}}
        if roles or guard or permission:
            op["security"] = [{security: []}]
        if (doc_path, method.lower()) not in self._documented:  # once for all the counties
            self._documented.add((doc_path, method.lower()))
            self.doc.operations.append((doc_path, method.lower(), op))

        loader = body() if body is not None else None  # one instance per route (load() keeps no state)
        checker = response() if response is not None else None
        codes = {status, *also}

        def decorate(fn: Callable):
            @wraps(fn)
            def view(**kwargs):
                if guard is not None:
                    principal = guard()  # a guard checks its own reach (e.g. a gateway key's counties)
                elif permission or roles:
                    principal = self.tokens.authenticate(request.headers.get("Authorization"), roles or (),
                                                         permission=permission, service=self.service)
                    check_county(principal, county)
                else:
                    principal = None
                check_query(declared_query, request.args)
                if body is not None:
                    payload = request.get_json(silent=True)
                    if payload is None:
                        raise DomainError("BODY_NOT_JSON", "请求体必须是 JSON", status=400)
                    kwargs["data"] = loader.load(payload)
                out = fn(principal=principal, **kwargs)
                if isinstance(out, Response):
                    return out
                data, code = out if isinstance(out, tuple) else (out, status)
                data = mask_json(data)
                if checker is not None and strict_responses():
                    _check_response(self.app, fn.__name__, checker, data, code, codes)
                if etag:
                    return _with_etag(self.app, data, code)
                return jsonify(data), code
            endpoint = fn.__name__ if county is None else f"{county}:{fn.__name__}"
            self.app.add_url_rule(flask_path, endpoint=endpoint, view_func=view, methods=[method.upper()])
            return view
        return decorate

    def moved(self, path: str, method: str, new: str, *, summary: str):
        """An old path that carried an ID number: it answers 410 ID_NUMBER_IN_URL pointing to `new`
        (ID numbers go in request bodies, never in URLs, which access logs and proxies keep)."""
        self.doc.operations.append((path, method.lower(), {
            "summary": summary, "deprecated": True, "description": f"已停用：请改用 `{new}`",
            "parameters": [{"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                           for p in path.split("/") if p.startswith("{")],
            "responses": {"410": {"description": "已停用，改用新地址", **_ERROR}}}))

        def view(**_kwargs):  # answered by the DomainError handler, masked like every error
            raise DomainError("ID_NUMBER_IN_URL", f"身份证号码不得放在网址中，请改用 {new}（号码放在 JSON 请求体中）",
                              {"use": new}, status=410)
        endpoint = "moved:" + method.upper() + ":" + path
        self.app.add_url_rule(path.replace("{", "<").replace("}", ">"), endpoint=endpoint, view_func=view,
                              methods=[method.upper()])


class CountyApi:
    """The routes of one county: a service declares `/v1/...` paths once and registers them per
    county it serves, at `/v1/counties/<code>/...`, each bound to that county's container; a token or
    gateway key of another county is refused (403 SCOPE_COUNTY). Documented once, with `{county}`."""

    def __init__(self, api: Api, county: str):
        self.api = api
        self.county = county

    def route(self, path: str, method: str, **options):
        return self.api.route(path, method, county=self.county, **options)

    def moved(self, path: str, method: str, new: str, *, summary: str):
        """An old ID-in-URL path answers 410 as it was (without a county) and under a county's prefix;
        registered once for all the counties."""
        if (path, method.lower()) not in self.api._documented:
            self.api._documented.add((path, method.lower()))
            new = new.replace("/v1/", COUNTY_PREFIX + "/", 1)  # "POST /v1/…": a method and a path
            self.api.moved(path, method, new, summary=summary)
            self.api.moved(county_path(path, "{county}"), method, new, summary=summary)


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def table_file(headers: list[str], rows: list[list[Any]], filename: str, fmt: str) -> Response:
    """A table as a download: CSV (UTF-8 with a BOM, which Excel opens correctly) or XLSX; the file
    name in RFC 5987 form (Chinese names survive every browser)."""
    import csv
    import io
    from urllib.parse import quote
    disposition = f"attachment; filename*=UTF-8''{quote(filename + '.' + fmt)}"
    if fmt == "xlsx":
        from openpyxl import Workbook
        wb = Workbook(write_only=True)
        ws = wb.create_sheet(filename[:31])
        ws.append(headers)
        for r in rows:
            ws.append(r)
        buf = io.BytesIO()
        wb.save(buf)
        return Response(buf.getvalue(), mimetype=XLSX, headers={"Content-Disposition": disposition})
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out)
    w.writerow(headers)
    w.writerows(rows)
    return Response(out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": disposition})


def _with_etag(app: Flask, data: Any, code: int) -> Response:
    """The reply with a strong ETag of its body; 304 without a body when the caller has it already."""
    import hashlib
    body = app.json.dumps(data)
    tag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    if tag in [t.strip() for t in (request.headers.get("If-None-Match") or "").split(",")]:
        return Response(status=304, headers={"ETag": tag})
    return Response(body, status=code, mimetype="application/json",
                    headers={"ETag": tag, "Cache-Control": "private, no-cache"})


def _check_response(app: Flask, name: str, checker: Schema, data: Any, code: int, codes: set[int]) -> None:
    """The response as the caller will read it (JSON round trip) against its documented schema."""
    if code not in codes:
        raise ResponseSchemaViolation(f"{name}: status {code} is not documented ({sorted(codes)})")
    wire = json.loads(app.json.dumps(data))
    errors = checker.validate(wire)
    if errors:
        raise ResponseSchemaViolation(f"{name}: response breaks its schema {type(checker).__name__}: {errors}")


def create_base_app(service: str, tokens: TokenBook, ready_checks: dict[str, Callable[[], bool]]) -> tuple[Flask, Api]:
    app = Flask(service)
    app.json = JsonProvider(app)
    api = Api(app, service, tokens)

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        cid = request.headers.get("X-Correlation-Id") or uuid.uuid4().hex
        g.cid_token = correlation_id.set(cid)

    @app.after_request
    def _finish(resp):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        if endpoint != "/metrics":
            metrics.HTTP_REQUESTS.labels(service, request.method, endpoint, str(resp.status_code)).inc()
            metrics.HTTP_LATENCY.labels(service, request.method, endpoint).observe(time.perf_counter() - g.get("t0", time.perf_counter()))
        cid = correlation_id.get()
        if cid:
            resp.headers["X-Correlation-Id"] = cid
        return resp

    @app.teardown_request
    def _reset(_exc):
        token = g.pop("cid_token", None)
        if token is not None:
            correlation_id.reset(token)

    @app.errorhandler(DomainError)
    def _domain(e: DomainError):
        return jsonify(mask_json(e.to_json())), e.status

    @app.errorhandler(ValidationError)
    def _invalid(e: ValidationError):
        return jsonify(mask_json({"code": "VALIDATION_FAILED", "message": "请求数据校验失败", "details": e.messages})), 400

    @app.errorhandler(ResponseSchemaViolation)
    def _schema_broken(e: ResponseSchemaViolation):
        """Only under RESPONSE_VALIDATION=strict: our bug, said loudly."""
        log.error("response schema violation: %s", e)
        return jsonify({"code": "RESPONSE_SCHEMA_VIOLATION", "message": "响应不符合接口文档（服务缺陷）",
                        "details": mask_json(str(e))}), 500

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        messages = {404: "资源不存在", 405: "不支持的请求方法", 413: "请求体过大", 415: "不支持的内容类型"}
        return jsonify({"code": f"HTTP_{e.code}", "message": messages.get(e.code, "请求无法处理"),
                        "details": None}), e.code

    @app.errorhandler(ConnectionFailure)
    def _store_down(e: ConnectionFailure):
        """The store is unreachable (restart, network): the caller retries; our writes are idempotent."""
        log.warning("store unavailable: %s", type(e).__name__)
        resp = jsonify({"code": "STORE_UNAVAILABLE", "message": "数据存储暂不可用，请稍后重试", "details": None})
        return resp, 503, {"Retry-After": "5"}

    @app.errorhandler(Exception)
    def _crash(e: Exception):
        log.exception("unhandled error")
        return jsonify({"code": "INTERNAL", "message": "服务内部错误，请稍后重试", "details": None}), 500

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "service": service})

    @app.get("/readyz")
    def readyz():
        results = {}
        for name, check in ready_checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # noqa: BLE001
                results[name] = False
        ok = all(results.values())
        metrics.READY.labels(service).set(1 if ok else 0)
        return jsonify({"status": "ready" if ok else "not_ready", "checks": results}), 200 if ok else 503

    @app.get("/metrics")
    def metrics_view():
        return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    def openapi():
        return jsonify(api.doc.spec())

    return app, api


def create_service_app(c) -> tuple[Flask, Api]:
    """A service's app from its container (shared/container.py): the base app with the store and
    broker readiness checks, the dead-letter routes for the people who run it, and clear answers for
    a path without its county or with a county the suite does not serve."""
    app, api = create_base_app(c.service, c.tokens, {"store": c.store_ok, "broker": c.broker_ok})
    dead_letters.routes(api, c)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]

    @app.route("/v1/counties/<county>/<path:rest>", methods=methods)
    def _county_unknown(county, rest):
        c.county(county)  # 404 COUNTY_UNKNOWN for a county the suite does not serve
        raise werkzeug.exceptions.NotFound()  # answered by the HTTPException handler: HTTP_404

    @app.route("/v1/<path:rest>", methods=methods)
    def _county_missing(rest):
        if rest.split("/")[0] in ("dead-letters", "counties"):
            raise werkzeug.exceptions.MethodNotAllowed()  # a suite-wide path, another method: HTTP_405
        raise NotFound("COUNTY_REQUIRED", "接口地址须含县（区）区划代码：/v1/counties/{区划代码}/…",
                       {"use": f"/v1/counties/{{county}}/{rest}", "counties": list(c.counties())})
    return app, api


def county_routes(api: Api, c, declare: Callable[[CountyApi, Any], None]) -> None:
    """Declare a service's county routes (`declare(county api, county container)`) for every county
    the suite serves."""
    for code, cc in c.counties().items():
        declare(api.for_county(code), cc)

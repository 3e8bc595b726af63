"""The thin HTTP adapter every service shares: JSON errors, auth, correlation ids, metrics,
/healthz, /readyz, /metrics and the OpenAPI document at /openapi.json.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, g, jsonify, request
from marshmallow import Schema, ValidationError
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException

from . import dead_letters, metrics
from .auth import Principal, TokenBook
from .errors import DomainError
from .logs import correlation_id

log = logging.getLogger(__name__)


@dataclass
class ApiDoc:
    """Operations recorded by @route, rendered into one OpenAPI document."""
    title: str
    operations: list[tuple[str, str, dict]] = field(default_factory=list)

    def spec(self) -> dict:
        spec = APISpec(title=self.title, version="1.0.0", openapi_version="3.0.3", plugins=[MarshmallowPlugin()])
        spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
        spec.components.security_scheme("gatewaySignature", {
            "type": "apiKey", "in": "header", "name": "X-Signature",
            "description": "HMAC-SHA256; see docs/gateway-signing.md (X-Gateway-Id, X-Timestamp, X-Nonce)"})
        spec.components.schema("Error", {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string", "description": "zh-CN"},
            "details": {}}})
        paths: dict[str, dict] = {}
        for path, method, op in self.operations:
            paths.setdefault(path, {})[method] = op
        for path, ops in paths.items():
            spec.path(path=path, operations=ops)
        return spec.to_dict()


def _schema_ref(schema: type[Schema] | None) -> dict | None:
    return {"content": {"application/json": {"schema": schema}}} if schema else None


class Api:
    def __init__(self, app: Flask, service: str, tokens: TokenBook):
        self.app = app
        self.service = service
        self.tokens = tokens
        self.doc = ApiDoc(title=f"{service} service")

    def route(self, path: str, method: str, *, summary: str, roles: tuple[str, ...] | None = None,
              body: type[Schema] | None = None, response: type[Schema] | None = None, status: int = 200,
              guard: Callable[[], Any] | None = None, query: list[dict] | None = None):
        """Register an endpoint: authenticate, parse the body with `body`, document it.

        Authentication comes first: bearer tokens for `roles`, or `guard` (e.g. a gateway signature
        check) which returns the principal. The view receives `principal` (or None) and, when `body`
        is given, `data` (the loaded body). A view may return a body or (body, status).
        """
        security = "gatewaySignature" if guard else "bearer"
        flask_path = path.replace("{", "<").replace("}", ">")
        op: dict[str, Any] = {"summary": summary, "responses": {
            str(status): {"description": "OK", **(_schema_ref(response) or {})},
            "4XX": {"description": "调用方错误", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
        params = [{"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in path.split("/") if p.startswith("{")]
        params += query or []
        if params:
            op["parameters"] = params
        if body:
            op["requestBody"] = {"required": True, **_schema_ref(body)}
        if roles or guard:
            op["security"] = [{security: []}]
        self.doc.operations.append((path, method.lower(), op))

        loader = body() if body is not None else None  # one instance per route (load() keeps no state)

        def decorate(fn: Callable):
            @wraps(fn)
            def view(**kwargs):
                if guard is not None:
                    principal = guard()
                elif roles:
                    principal = self.tokens.authenticate(request.headers.get("Authorization"), roles)
                else:
                    principal = None
                if body is not None:
                    payload = request.get_json(silent=True)
                    if payload is None:
                        raise DomainError("BODY_NOT_JSON", "请求体必须是 JSON", status=400)
                    kwargs["data"] = loader.load(payload)
                out = fn(principal=principal, **kwargs)
                if isinstance(out, Response):
                    return out
                if isinstance(out, tuple):
                    return jsonify(out[0]), out[1]
                return jsonify(out), status
            self.app.add_url_rule(flask_path, endpoint=fn.__name__, view_func=view, methods=[method.upper()])
            return view
        return decorate


def create_base_app(service: str, tokens: TokenBook, ready_checks: dict[str, Callable[[], bool]]) -> tuple[Flask, Api]:
    app = Flask(service)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
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
        return jsonify(e.to_json()), e.status

    @app.errorhandler(ValidationError)
    def _invalid(e: ValidationError):
        return jsonify({"code": "VALIDATION_FAILED", "message": "请求数据校验失败", "details": e.messages}), 400

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
    broker readiness checks, and the dead-letter routes for the people who run it."""
    app, api = create_base_app(c.service, c.tokens, {"store": c.store_ok, "broker": c.broker_ok})
    dead_letters.routes(api, c)
    return app, api

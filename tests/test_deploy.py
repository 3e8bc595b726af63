"""Deployment files stay true to the code: alert rules pass promtool's own unit tests, and
docker-compose.yml starts every service's real entry points with settings the code reads."""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess

from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import ROOT, parse_pairs
from tools.suite import SERVICES

PROM = ROOT / "deploy" / "prometheus"


def promtool(*args):
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool missing: deploy/local.sh install puts Debian's prometheus package in place")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=ROOT)


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    for args in (("check", "rules", str(PROM / "alerts.yml")),
                 ("check", "config", str(PROM / "prometheus.yml")),
                 ("test", "rules", str(PROM / "alerts_test.yml"))):
        r = promtool(*args)
        assert r.returncode == 0, r.stdout + r.stderr


def test_ops_hear_about_backlog_dead_letters_heartbeats_errors_and_readiness():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for metric in ("outbox_oldest_age_seconds", "outbox_dead_events", "dead_letter_queue_depth", "consumer_heartbeat_timestamp_seconds",
                   "http_requests_total", "service_ready"):
        assert metric in exprs


def test_compose_runs_every_service_web_and_worker_with_real_entry_points():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for svc in SERVICES:
        web = next(v for k, v in services.items() if k == svc)
        worker = services[f"{svc}-worker"]
        web_cmd = " ".join(web["command"]) if isinstance(web["command"], list) else web["command"]
        worker_cmd = " ".join(worker["command"]) if isinstance(worker["command"], list) else worker["command"]
        assert f"services.{svc}.entrypoints.flask_app:create_app()" in web_cmd
        assert f"services.{svc}.entrypoints.worker" in worker_cmd
        importlib.import_module(f"services.{svc}.entrypoints.flask_app")
        for container in (web, worker):
            env = container["environment"]
            assert env["MONGO_DB"] == f"enrol_{svc}"
            # each service logs in as itself, to its own database and as its own broker user
            mongo, amqp = urlsplit(env["MONGO_URL"]), urlsplit(env["AMQP_URL"])
            assert (mongo.scheme, mongo.username, mongo.path) == ("mongodb", svc, f"/enrol_{svc}")
            assert f"authSource=enrol_{svc}" in mongo.query
            assert (amqp.scheme, amqp.username) == ("amqp", f"enrol_{svc}")
            assert parse_pairs(env["BUS_USERS"])[svc] == f"enrol_{svc}"
            assert "rabbitmq-users" in container["depends_on"]


def test_compose_makes_a_store_user_per_service_database_and_a_broker_user_per_service():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mongo = compose["services"]["mongo"]
    assert "./deploy/mongo/init-users.js:/docker-entrypoint-initdb.d/10-users.js:ro" in mongo["volumes"]
    assert "MONGO_INITDB_ROOT_PASSWORD" in mongo["environment"] and "--keyFile" in mongo["command"]
    script = (ROOT / "deploy" / "mongo" / "init-users.js").read_text()
    assert 'roles: [{role: "readWrite", db: name}]' in script and 'const name = "enrol_" + svc' in script
    users = (ROOT / "deploy" / "rabbitmq" / "users.sh").read_text()
    assert "topic-permissions/%2F/enrol_$svc" in users
    for svc in SERVICES:
        assert svc in script.split("for (const svc of")[1].split(")")[0] and svc in users.split("for svc in")[1]
        assert f"MONGO_PASSWORD_{svc.upper()}" in mongo["environment"]
        assert f"RABBITMQ_PASSWORD_{svc.upper()}" in compose["services"]["rabbitmq-users"]["environment"]


def test_no_secret_value_is_committed():
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    pattern = re.compile(r"(password|secret|token)\s*[:=]\s*['\"][A-Za-z0-9_\-]{12,}['\"]", re.I)
    offenders = [f for f in tracked if f.endswith((".py", ".yml", ".yaml", ".json", ".sh", ".env", ".conf"))
                 and (ROOT / f).is_file() and pattern.search((ROOT / f).read_text(errors="ignore"))]
    assert offenders == []


def test_real_environment_variables_win_over_var_local_env(tmp_path, monkeypatch):
    """Issue 9 item 14 (README, Settings: "real environment variables win"): tools.suite let
    var/local.env override them, so a service started by the suite ignored the caller's store."""
    from tools.suite import Suite
    local = tmp_path / "local.env"
    local.write_text("MONGO_URL=mongodb://from-local-env:1/\nAMQP_URL=amqp://from-local-env\nONLY_IN_FILE=yes\n")
    monkeypatch.setenv("ENROL_LOCAL_ENV", str(local))
    monkeypatch.setenv("MONGO_URL", "mongodb://from-environment:2/")
    monkeypatch.delenv("ONLY_IN_FILE", raising=False)
    env = Suite(namespace="tenv", var=tmp_path, extra_env={"AMQP_URL": "amqp://from-suite"}).env("registry")
    assert env["MONGO_URL"] == "mongodb://from-environment:2/"
    assert env["ONLY_IN_FILE"] == "yes" and env["AMQP_URL"] == "amqp://from-suite"


def test_a_second_checkout_on_this_machine_logs_in_as_the_same_broker_users(tmp_path, infra):
    """The broker node is the machine's: a checkout with a var folder of its own gets the machine's
    passwords for the per-service users (deploy/local.sh broker_secret), so it neither changes a
    password another checkout's suite logs in with nor falls back to one shared user."""
    import pika
    if infra.kind != "local":
        pytest.skip("the broker users are made by deploy/local.sh on the local broker")
    from shared.config import _local_env
    subprocess.run([str(ROOT / "deploy" / "local.sh"), "write-env"], check=True, capture_output=True,
                   env={**__import__("os").environ, "ENROL_VAR_DIR": str(tmp_path)})
    theirs = dict(line.split("=", 1) for line in (tmp_path / "local.env").read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    ours = _local_env()
    for svc in SERVICES:
        key = f"AMQP_URL_{svc.upper()}"
        assert theirs[key] == ours[key]
        pika.BlockingConnection(pika.URLParameters(theirs[key])).close()  # the password opens the user
    assert not (tmp_path / "secrets" / "amqp_password").stat().st_mode & 0o077

"""An interrupted test run leaves nothing behind (issue 9 item 13): a `./run test` ended by a
timeout once left an e2e suite's ten service processes running for two hours. Here a pytest run
that has started a suite is sent SIGTERM; none of the suite's processes may survive it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.config import ROOT
from tools.clients import wait_for

CHILD = '''
import os, time
from pathlib import Path
from tests.e2e.conftest import running_suite

def test_runs_until_interrupted(namespace, infra):
    with running_suite(namespace, infra.mongo_url, infra.amqp_url, wait=False) as s:
        Path(os.environ["CHILD_NAMESPACE_OUT"]).write_text(namespace)
        time.sleep(600)
'''


def processes_of(namespace: str) -> list[int]:
    """Processes whose environment names this bus namespace: the suite's services and their children."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = (d / "environ").read_bytes().split(b"\0")
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if f"BUS_NAMESPACE={namespace}".encode() in env and state != "Z":
                out.append(int(d.name))
    return out


def test_a_run_ended_by_sigterm_stops_the_suite_it_started(tmp_path):
    (tmp_path / "test_child.py").write_text(CHILD)
    ns_file = tmp_path / "namespace"
    child = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                              str(tmp_path / "test_child.py")], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "CHILD_NAMESPACE_OUT": str(ns_file)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ns = None
    try:
        wait_for(lambda: ns_file.exists() and ns_file.read_text(), timeout=60, what="the child's suite started")
        ns = ns_file.read_text()
        wait_for(lambda: len(processes_of(ns)) >= 10, timeout=60, what="ten service processes")
        time.sleep(1)
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=90)
        left = processes_of(ns)
        assert left == [], f"service processes outlived the interrupted run: {left}"
    finally:
        if child.poll() is None:
            child.kill()
        for pid in processes_of(ns) if ns else []:  # what this test's child left behind, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

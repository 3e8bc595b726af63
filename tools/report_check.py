"""Open an HTML report in headless Chromium and check that its charts render (issue 14, item 2).

    .venv/bin/python -m tools.report_check var/sim/<stamp>/report.html

A report marks each chart `<img class="chart">` and, once the page has loaded, writes on its
`<body>` how many charts it has (`data-charts`) and how many the browser decoded with a size
(`data-charts-rendered`). Chromium runs the page (`--dump-dom` after the load event) and takes a
screenshot beside the report (`report.png`, the test's artefact). Debian's `chromium` package,
installed by deploy/local.sh; flags as this machine needs them (no sandbox as root, no background
networking: the network is closed).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RENDER_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img.chart"));
  document.body.setAttribute("data-charts", imgs.length);
  document.body.setAttribute("data-charts-rendered",
    imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length);
});
</script>"""
"""What a report puts at the end of its body so that `check` can count its rendered charts."""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def check(report: Path, timeout: float = 90) -> dict:
    """{"charts": n, "rendered": k, "screenshot": path, "title": …}; raises RuntimeError when no
    browser is installed or it fails."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium on this machine (deploy/local.sh installs Debian's chromium)")
    url = report.resolve().as_uri()
    shot = report.with_name("report.png")
    with tempfile.TemporaryDirectory(prefix="report-check-") as profile:
        common = [browser, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if dom.returncode != 0 or "<body" not in dom.stdout:
            raise RuntimeError(f"chromium could not open {report}: {dom.stderr[-500:]}")
        subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,4000", url],
                       capture_output=True, text=True, timeout=timeout)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))) if body else {}
    title = re.search(r"<title>(.*?)</title>", dom.stdout, re.S)
    return {"charts": int(attrs.get("data-charts", -1)), "rendered": int(attrs.get("data-charts-rendered", -1)),
            "screenshot": str(shot) if shot.exists() else None, "title": title.group(1).strip() if title else ""}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    got = check(Path(argv[0]))
    print(f"{got['rendered']}/{got['charts']} charts rendered; screenshot: {got['screenshot']}")
    return 0 if got["charts"] > 0 and got["rendered"] == got["charts"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

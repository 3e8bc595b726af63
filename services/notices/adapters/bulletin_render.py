"""A bulletin (通报, domain/bulletin.py) as files: a PNG chart (matplotlib, Agg) and one self-contained
HTML page (templates/bulletin.html.j2: the table, the chart as a data: URI, Chinese text) that a
township leader opens from the SMS link on a phone, or a village prints and posts (张榜公布, 001 七(五)).

The chart's Chinese needs a CJK font on the machine (deploy/local.sh install puts Debian's
fonts-wqy-microhei there). Without one the chart is still drawn, its Chinese glyphs as boxes, the
document says `font_missing: true` and a warning is logged: a bulletin is never refused for a font.
The PDF (for printing and posting, and for offices that file documents) is the same page laid out
by WeasyPrint, which uses the machine's Pango and the same CJK font; without them the bulletin is
stored without a PDF (`pdf: null`, a warning logged), never refused.
"""
from __future__ import annotations

import base64
import functools
import io
import logging
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from shared.clock import SHANGHAI

from ..domain.bulletin import Bulletin, points

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# file names of the CJK fonts Debian ships (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk),
# in the order we prefer them; matched against the machine's font files, lower-cased
# (hyphens and underscores ignored)
CJK_FONT_FILES = ("wqymicrohei", "wqyzenhei", "notosanscjk", "notoserifcjk", "sourcehansans", "droidsansfallback")
BAND_COLOURS = {"reached": "#1a7f37", "on_track": "#0b5cad", "behind": "#b42318", "no_data": "#9e9e9e",
                "no_target": "#9e9e9e"}


@dataclass(frozen=True)
class Rendered:
    html: str
    png: bytes
    font: str | None  # the font family the chart's Chinese was drawn with
    font_missing: bool
    pdf: bytes | None = None  # the page as PDF; None where WeasyPrint cannot run here


def render_pdf(html: str) -> bytes | None:
    """The page as an A4 PDF (WeasyPrint, about 1.4 s and 100 KB for 13 townships here); None, with a
    warning, where WeasyPrint or its system libraries are missing."""
    try:
        import weasyprint  # imported here: its Pango bindings load at import
    except (ImportError, OSError) as e:
        log.warning("bulletin PDF not produced: WeasyPrint unavailable (%s)", e)
        return None
    return weasyprint.HTML(string=html).write_pdf(metadata={"title": True})


@functools.lru_cache(maxsize=1)
def cjk_font() -> tuple[str, str] | None:
    """(path, family name) of a CJK font file on this machine, or None. The font files are listed
    afresh (findSystemFonts), not from matplotlib's font cache, which may predate the font's install;
    looked up once per process."""
    from matplotlib import font_manager
    files = sorted(font_manager.findSystemFonts())
    keys = {path: Path(path).name.lower().replace("-", "").replace("_", "") for path in files}
    for wanted in CJK_FONT_FILES:
        for path in files:
            if wanted in keys[path]:
                try:
                    name = font_manager.FontProperties(fname=path).get_name()
                except Exception:  # noqa: BLE001 — an unreadable font file: try the next one
                    continue
                return path, name
    return None


def render_chart(b: Bulletin) -> tuple[bytes, str | None]:
    """Horizontal bars of each township's rate (ranked first at the top), coloured by band, the stage
    line (target share) and the county's rate as vertical lines, each bar labelled with its rate and
    its change since the last bulletin (places, percentage points). Returns (PNG, font family)."""
    from matplotlib.font_manager import FontProperties

    found = cjk_font()
    if found is None:
        log.warning("no CJK font found (install fonts-wqy-microhei): bulletin %s:%s renders without Chinese glyphs",
                    b.year, b.stamp)
    fp = FontProperties(fname=found[0]) if found else FontProperties()
    small = fp.copy()
    small.set_size(8)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph … missing" for every glyph without a CJK font: logged once above
        return _draw(b, fp, small), (found[1] if found else None)


def _draw(b: Bulletin, fp, small) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = list(b.rows)
    fig = Figure(figsize=(8.5, 1.6 + 0.38 * max(len(rows), 1)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    rates = [(r.rate_bp or 0) / 100 for r in rows]
    ax.barh(ys, rates, color=[BAND_COLOURS.get(r.band, "#9e9e9e") for r in rows], height=0.62)
    ax.set_yticks(ys, [f"{r.rank if r.rank is not None else '—'}  {r.township}" for r in rows])
    for label in ax.get_yticklabels():
        label.set_fontproperties(fp)
    for y, rate, r in zip(ys, rates, rows):
        change = r.change_text if r.rate_change_bp is None else f"{r.change_text}，{points(r.rate_change_bp)}"
        ax.text(rate + 1, y, f"{r.rate_text}（{change}）", va="center", fontproperties=small)
    if b.target_share_percent:
        ax.axvline(b.target_share_percent, color="#b42318", linestyle="--", linewidth=1.2)
        ax.text(b.target_share_percent, len(rows) - 0.35, f"{b.target_text}", color="#b42318", ha="center",
                va="bottom", fontproperties=small)
    if b.total_rate_bp is not None:
        ax.axvline(b.total_rate_bp / 100, color="#555555", linestyle=":", linewidth=1)
    names = {r.band: r.band_name for r in rows}  # the bands present, in the order they first appear
    if names:
        ax.legend(handles=[Patch(color=BAND_COLOURS.get(band, "#9e9e9e"), label=name) for band, name in names.items()],
                  loc="lower right", prop=small, frameon=False)
    ax.set_xlim(0, 125)
    ax.set_ylim(-0.6, len(rows) + 0.2)  # room above the first bar for the stage line's label
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.set_xlabel(f"参保率（%）；括号内为较上期名次、参保率（百分点）的变化；虚线为阶段目标，点线为全{b.county_name[-1:]}",
                  fontproperties=small)
    ax.set_title(b.title, fontproperties=fp, fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    """HTML, so autoescaped (a township's name is data), unlike the notice texts' TemplateBook."""
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, autoescape=True)


def _stamp_text(stamp: str) -> str:
    at = datetime.strptime(stamp, "%Y%m%d%H%M")
    return f"{at.year}年{at.month}月{at.day}日{at.hour}时{at.minute:02d}分"


def render(b: Bulletin, created_at: datetime) -> Rendered:
    png, font = render_chart(b)
    at = created_at.astimezone(SHANGHAI)
    html = _environment().get_template("bulletin.html.j2").render(
        b=b, chart_base64=base64.b64encode(png).decode("ascii"), font_missing=font is None,
        previous_text=_stamp_text(b.previous_stamp) if b.previous_stamp else "",
        created_text=f"{at.year}年{at.month}月{at.day}日{at.hour}时{at.minute:02d}分")
    return Rendered(html, png, font, font is None, render_pdf(html))

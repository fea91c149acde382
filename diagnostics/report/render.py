"""Render a ResolutionReport to Markdown, HTML and JSON with jinja2 templates, and write them.

HTML is server-rendered with autoescaping on (readable without JavaScript, inert with hostile
log text); Markdown escapes angle brackets outside code spans with a backslash (never an HTML
entity) and sizes each fence to its content. Fixes are rendered per format by `fixes.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List

from .build import DTYPE_COLOURS, OTHER_COLOUR, ResolutionReport, area_title
from .fixes import fix_html, fix_markdown, inline_html, md_code_span, md_fence, md_inline
from .sections import first_clause
from .write import atomic_write_text

FORMATS = ("md", "html", "json")
BASENAME = "resolution-report"
TEMPLATES = Path(__file__).parent / "templates"

ICONS = {"ok": "✅", "info": "ℹ️", "warn": "⚠️", "fail": "❌", "skip": "⏭️", "error": "💥"}
STATUS_ICONS = {"RESOLVED": "✅", "UNRESOLVED": "❌", "DEGRADED": "⚠️"}


def _fence(text: str, lang: str = "") -> str:
    """A fenced code block longer than any backtick run inside `text`, so content cannot close it."""
    return md_fence(text, lang)


def _md(text) -> str:
    """Inline Markdown prose (see fixes.md_inline): one line, no HTML tags, no HTML entities."""
    return md_inline(text)


def _code(text) -> str:
    """Inline code span that survives backticks in the text."""
    return md_code_span(text)


def _fix_md(fix, indent: str = "") -> list:
    return fix_markdown(fix, indent)


def _json(value) -> str:
    return json.dumps(value, indent=2, default=_plain, ensure_ascii=False)


def _plain(value):
    """Typed facts as the dicts their `to_dict()` gives; anything else JSON cannot write as its str."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else str(value)


def _environment(autoescape: bool):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fence=_fence, md=_md, code=_code, tojson_pretty=_json, area_title=area_title, fix_md=_fix_md,
                       fix_html=fix_html, prose=inline_html, brief=first_clause)
    env.globals.update(icons=ICONS, status_icons=STATUS_ICONS, dtype_colours=DTYPE_COLOURS, other_colour=OTHER_COLOUR)
    return env


def render_markdown(report: ResolutionReport) -> str:
    return report.redact(_environment(False).get_template("report.md.j2").render(r=report))


def render_html(report: ResolutionReport) -> str:
    return report.redact(_environment(True).get_template("report.html.j2").render(r=report))


def render_json(report: ResolutionReport) -> str:
    return report.redact(_json(report.to_dict())) + "\n"


RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json}


def output_paths(out_dir, formats: Iterable[str], incomplete: bool = False) -> Dict[str, Path]:
    """Where each format goes. An incomplete run (Ctrl-C, a crashed check) writes next to, not over,
    the last complete report, so that one stays intact."""
    stem = BASENAME + (".incomplete" if incomplete else "")
    return {fmt: Path(out_dir) / f"{stem}.{fmt}" for fmt in formats}


def write_report(report: ResolutionReport, out_dir, formats: Iterable[str]) -> List[Path]:
    written = []
    for fmt, path in output_paths(out_dir, formats, report.incomplete).items():
        atomic_write_text(path, RENDERERS[fmt](report))
        written.append(path)
    return written

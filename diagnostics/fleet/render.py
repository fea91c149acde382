"""Render a FleetReport to `resolution-fleet.{md,html,json}` with the single report's jinja2
environment (same autoescaping and Markdown filters) and the same redactor on the final text.

At 1,000 nodes the page stays short: groups and drift name nodes as compressed host lists
(`n[1-998]`), the node x area matrix has one row per distinct combination of cells, and only the
first few nodes of a row are linked inline (the rest sit in a closed `<details>`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..redact import Redactor
from ..report.render import _environment
from ..report.write import atomic_write_text
from .hostlist import compress, split_top_level
from .merge import FleetReport

FORMATS = ("md", "html", "json")
BASENAME = "resolution-fleet"
INLINE_LINKS = 8
NAMES_SHOWN = 240  # characters of a compressed node list before "... (+N more)"
MISSING_SHOWN = 100


def node_names(names: Sequence[str], limit: int = NAMES_SHOWN) -> str:
    """`n[1-3,5]` or, when that is still long, its start and how many nodes there are in all."""
    text = compress(names)
    if len(text) <= limit:
        return text
    shown = []
    for piece in split_top_level(text):
        if shown and len(",".join(shown + [piece])) > limit:
            break
        shown.append(piece if len(piece) <= limit else _cut_piece(piece, limit))
    return f"{','.join(shown)}, … ({len(names)} nodes in all)"


def _cut_piece(piece: str, limit: int) -> str:
    """`pod-[0,2,4,...]x` cut inside its brackets, which stay balanced: `pod-[0,2,…]x`."""
    if "[" not in piece or "]" not in piece:
        return piece[:limit] + "…"
    head, _, rest = piece.partition("[")
    ranges, _, suffix = rest.partition("]")
    kept = ranges[: max(limit - len(head), 1)].rsplit(",", 1)[0]
    return f"{head}[{kept},…]{suffix}"


def _drift_rows(drift: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Drift keys that split the nodes the same way share one row (a venv without the ML stack
    differs in every package at once): `package: torch, package: numpy` with their values."""
    rows: List[Dict[str, Any]] = []
    by_split: Dict[Any, Dict[str, Any]] = {}
    for item in drift:
        split = tuple(tuple(value["nodes"]) for value in item["values"])
        row = by_split.get(split)
        if row is None:
            row = {"keys": [], "values": [{"count": v["count"], "names": node_names(v["nodes"]), "value": []}
                                          for v in item["values"]]}
            by_split[split] = row
            rows.append(row)
        row["keys"].append(item["key"])
        for shown, value in zip(row["values"], item["values"]):
            shown["value"].append(value["value"])
    for row in rows:
        row["key"] = ", ".join(row["keys"])
        for value in row["values"]:
            value["value"] = " / ".join(value["value"]) if len(set(value["value"])) > 1 else value["value"][0]
    return rows


def _fixes(causes: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each distinct fix of a group once, with the codes it fixes (two causes often share one)."""
    fixes: List[Dict[str, Any]] = []
    for cause in causes:
        if not cause.get("fix"):
            continue
        same = next((f for f in fixes if f["fix"] == cause["fix"]), None)
        if same:
            same["codes"].append(cause["code"])
        else:
            fixes.append({"fix": cause["fix"], "codes": [cause["code"]]})
    return fixes


def _row_view(row: Dict[str, Any]) -> Dict[str, Any]:
    links = [{"node": node, "page": page} for node, page in zip(row["nodes"], row["pages"])]
    return {"status": row["status"], "cells": row["cells"], "count": len(row["nodes"]),
            "names": node_names(row["nodes"]), "inline": links[:INLINE_LINKS], "more": links[INLINE_LINKS:]}


def fleet_view(report: FleetReport) -> Dict[str, Any]:
    """What the templates show: the report's lists with node names already compressed."""
    groups = [dict(group, names=node_names(group["nodes"]), fixes=_fixes(group["causes"])) for group in report.groups]
    drift = _drift_rows(report.drift)
    return {"r": report, "counts": report.counts(), "groups": groups, "drift": drift,
            "matrix": [_row_view(row) for row in report.matrix], "missing": report.missing[:MISSING_SHOWN],
            "missing_more": max(len(report.missing) - MISSING_SHOWN, 0),
            "expected": node_names(report.expected) if report.expected else ""}


def _table_cell(text) -> str:
    """A Markdown table cell: a `|` would end the cell, inside code spans too (GFM)."""
    return str(text).replace("|", "\\|")


def _templates(autoescape: bool):
    env = _environment(autoescape)  # the single report's environment: same escaping and filters
    env.filters["cell"] = _table_cell
    return env


def _redactor(environ=None) -> Redactor:
    return Redactor(os.environ if environ is None else environ)


def render_markdown(report: FleetReport, environ=None, view=None) -> str:
    view = view or fleet_view(report)
    return _redactor(environ)(_templates(False).get_template("fleet.md.j2").render(**view))


def render_html(report: FleetReport, environ=None, view=None) -> str:
    view = view or fleet_view(report)
    return _redactor(environ)(_templates(True).get_template("fleet.html.j2").render(**view))


def render_json(report: FleetReport, environ=None, view=None) -> str:
    return _redactor(environ)(json.dumps(report.to_dict(), indent=1, default=str, ensure_ascii=False)) + "\n"


RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json}


def write_fleet(report: FleetReport, out_dir, formats: Iterable[str] = FORMATS,
                environ=None) -> List[Path]:
    written, view = [], fleet_view(report)  # node lists compressed once for every format
    for fmt in formats:
        path = Path(out_dir) / f"{BASENAME}.{fmt}"
        atomic_write_text(path, RENDERERS[fmt](report, environ, view))
        written.append(path)
    return written


def terminal_lines(report: FleetReport, written: Sequence[Path], limit: Optional[int] = 12) -> List[str]:
    """The summary printed after a merge: one line per group, drift keys, missing nodes."""
    counts = report.counts()
    lines = [f"Fleet: {counts['nodes']} nodes, {counts['reported']} reported, {counts['blocking']} blocking, "
             f"{counts['missing']} missing."]
    for group in report.groups[:limit]:
        lines.append(f"  {group['summary']}  [{node_names(group['nodes'], 80)}]")
    if report.drift:
        lines.append("Drift: " + ", ".join(item["key"] for item in report.drift))
    for item in report.missing[:limit]:
        lines.append(f"  missing {item['node']}: {item['reason']}")
    lines.append(f"Status: {report.status}. Reports: {', '.join(str(p) for p in written)}")
    redact = _redactor()
    return [redact(line) for line in lines]

"""Merge node reports into one fleet view: groups of nodes by blocking causes, drift, missing nodes.

Only a node's id identifies it (emulated nodes and pods share host names). A node that did not
report is a blocking finding of its own (`fleet.node-missing`, with the engine's words), as is a
report that cannot be read (`fleet.node-unreadable`) or that a crash or Ctrl-C left incomplete
(`fleet.node-incomplete`).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import __version__
from .load import NodeInput

FLEET_SCHEMA = "ldm-diagnostics-fleet/1"
MISSING, UNREADABLE, INCOMPLETE = "MISSING", "UNREADABLE", "INCOMPLETE"
FLEET_CODES = {
    "fleet.node-missing": ("Node report", "The engine ran no report on this node, or its report never arrived."),
    "fleet.node-unreadable": ("Node report unreadable", "The node's report file is cut short or not a report."),
    "fleet.node-incomplete": ("Node report incomplete", "A check crashed or the run was interrupted on this node."),
}
MISSING_FIX = ("Read the engine's message for the node (below), fix the node or the job (node down, "
               "interpreter or file system not shared, time limit), then run the fleet again.")
AREA_ORDER = ("env", "compat", "cuda", "hub", "cache", "tokenizer", "ckpt", "config", "model", "explain")
# Worst first: the cell of the node x area matrix shows the worst status of the area's findings.
SEVERITY = ("fail", "error", "warn", "info", "ok", "skip")
DRIFT_PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "huggingface_hub", "safetensors",
                  "diffusers", "pytorch_lightning", "omegaconf", "open_clip_torch", "xformers", "numpy")


@dataclass
class FleetNode:
    node: str
    status: str
    blocking_codes: List[str]
    report: Optional[str] = None  # the node's JSON report
    page: Optional[str] = None  # the node's HTML report when there is one, else its JSON
    hostname: Optional[str] = None
    source: str = ""
    reason: str = ""  # for missing, unreadable or incomplete nodes: why, in the engine's words
    areas: Dict[str, str] = field(default_factory=dict)
    causes: Dict[str, Dict[str, str]] = field(default_factory=dict)  # code -> title, summary, fix
    drift: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"node": self.node, "status": self.status, "blocking_codes": self.blocking_codes,
                "report": self.report, "page": self.page, "hostname": self.hostname, "source": self.source,
                "reason": self.reason, "areas": self.areas}


@dataclass
class FleetReport:
    date: str
    status: str
    nodes: List[FleetNode]
    groups: List[Dict[str, Any]]
    drift: List[Dict[str, Any]]
    missing: List[Dict[str, Any]]
    areas: List[str]
    matrix: List[Dict[str, Any]]
    expected: List[str]
    duplicates: List[Dict[str, Any]] = field(default_factory=list)
    engine: Optional[Dict[str, Any]] = None

    @property
    def blocking(self) -> List[FleetNode]:
        return [n for n in self.nodes if n.blocking_codes]

    def counts(self) -> Dict[str, int]:
        return {"nodes": len(self.nodes), "reported": sum(1 for n in self.nodes if n.status not in (MISSING, UNREADABLE)),
                "blocking": len(self.blocking), "missing": len(self.missing)}

    def to_dict(self) -> Dict[str, Any]:
        return {"schema": FLEET_SCHEMA, "tool": f"ldm-diagnostics {__version__}", "date": self.date,
                "status": self.status, "counts": self.counts(), "engine": self.engine, "expected": self.expected,
                "nodes": [n.to_dict() for n in self.nodes], "groups": self.groups, "drift": self.drift,
                "missing": self.missing, "duplicates": self.duplicates, "areas": self.areas, "matrix": self.matrix}


def _worst(statuses) -> str:
    ranked = [s for s in statuses if s in SEVERITY]
    return min(ranked, key=SEVERITY.index) if ranked else "-"


def _cache_states(cache: Mapping[str, Any]) -> Dict[str, str]:
    states = {}
    for model in cache.get("models") or []:
        groups = (model.get("resolution") or {}).get("groups") or []
        required = [g for g in groups if g.get("required")]
        absent = [g.get("purpose", "?") for g in required if not g.get("satisfied")]
        states[f"cache: {model.get('ref')}"] = ("complete" if required and not absent
                                               else f"missing {len(absent)} of {len(required)} required")
    location = ((cache.get("locations") or {}).get("transformers") or {}).get("path")
    if location:
        states["cache: location"] = location
    offline = (cache.get("offline") or {}).get("effective")
    if offline is not None:
        states["cache: offline"] = "on" if offline else "off"
    return states


def drift_values(data: Mapping[str, Any]) -> Dict[str, str]:
    """The values that may differ between nodes: packages, torch build, driver, GPUs, cache state."""
    facts = data.get("facts") or {}
    env = facts.get("environment") or {}
    node = data.get("node") or {}
    values: Dict[str, str] = {}
    python = env.get("python") or {}
    if python.get("version"):
        values["python"] = str(python["version"])
    packages = env.get("packages") or {}
    for name in DRIFT_PACKAGES:
        if name in packages:
            values[f"package: {name}"] = packages.get(name) or "not installed"
    torch = env.get("torch")
    if isinstance(torch, dict):
        values["torch CUDA build"] = ("not installed" if not torch.get("installed")
                                      else f"{torch.get('kind') or 'unknown'}" + (f" {torch['cuda']}" if torch.get("cuda") else ""))
    driver = facts.get("gpu_driver") or {}
    values["driver"] = str(node.get("driver_version") or driver.get("driver_version") or "none")
    gpus = node.get("gpus") or driver.get("gpus") or []
    values["GPUs"] = ", ".join(str(g.get("name")) for g in gpus) or "none"
    values.update(_cache_states(facts.get("cache") or {}))
    return values


def _relative(path: Optional[str], out_dir: str) -> Optional[str]:
    if not path:
        return None
    try:
        return os.path.relpath(path, out_dir)
    except ValueError:  # another drive on Windows
        return path


def node_from_input(item: NodeInput, out_dir: str) -> FleetNode:
    if item.data is None:
        return FleetNode(item.node, UNREADABLE, ["fleet.node-unreadable"], report=_relative(item.path, out_dir),
                         source=item.source, reason=item.error)
    data = item.data
    findings = [f for f in data.get("findings") or [] if isinstance(f, dict)]
    blocking = sorted(set(str(code) for code in data.get("blocking") or []))
    causes = {}
    for finding in findings:
        if finding.get("code") in blocking and finding.get("code") not in causes:
            causes[finding["code"]] = {key: str(finding.get(key) or "") for key in ("status", "title", "summary", "fix")}
    status, reason = str(data.get("status") or "?"), ""
    if data.get("incomplete"):
        blocking.append("fleet.node-incomplete")
        status, reason = INCOMPLETE, "the node's run was interrupted or a check crashed"
    by_area: Dict[str, List[str]] = OrderedDict()
    for finding in findings:
        by_area.setdefault(str(finding.get("code", "?")).split(".", 1)[0], []).append(str(finding.get("status")))
    page = item.path
    if item.path and item.path.endswith(".json"):
        html = item.path[:-5] + ".html"
        page = html if os.path.exists(html) else item.path
    return FleetNode(item.node, status, blocking, report=_relative(item.path, out_dir), page=_relative(page, out_dir),
                     hostname=(data.get("node") or {}).get("hostname"), source=item.source, reason=reason,
                     areas={area: _worst(statuses) for area, statuses in by_area.items()}, causes=causes,
                     drift=drift_values(data))


def missing_node(node: str, reason: str) -> FleetNode:
    return FleetNode(node, MISSING, ["fleet.node-missing"], reason=reason)


def _group_label(codes: Sequence[str], causes: Mapping[str, Dict[str, str]]) -> str:
    if not codes:
        return "nothing blocking"
    return ", ".join(f"{code} {causes.get(code, {}).get('status') or 'fail'}" for code in codes)


def _groups(nodes: Sequence[FleetNode]) -> List[Dict[str, Any]]:
    by_codes: Dict[Tuple[str, ...], List[FleetNode]] = OrderedDict()
    for node in nodes:
        by_codes.setdefault(tuple(node.blocking_codes), []).append(node)
    groups = []
    for codes, members in sorted(by_codes.items(), key=lambda item: (-len(item[1]), not item[0], item[0])):
        causes: Dict[str, Dict[str, str]] = {}
        for code in codes:  # the fix once per group: from the first node that explains the code
            explained = next((n.causes[code] for n in members if code in n.causes), None)
            if explained is None and code in FLEET_CODES:
                title, summary = FLEET_CODES[code]
                explained = {"status": "fail", "title": title, "summary": summary, "fix": MISSING_FIX}
            causes[code] = explained or {"status": "fail", "title": code, "summary": "", "fix": ""}
        label = _group_label(codes, causes)
        groups.append({"summary": f"{len(members)} of {len(nodes)} nodes: {label}", "count": len(members),
                       "codes": list(codes), "nodes": [n.node for n in members],
                       "causes": [{"code": code, **cause} for code, cause in causes.items()]})
    return groups


def _drift(nodes: Sequence[FleetNode]) -> List[Dict[str, Any]]:
    keys: Dict[str, Dict[str, List[str]]] = OrderedDict()
    for node in nodes:
        for key, value in node.drift.items():
            keys.setdefault(key, OrderedDict()).setdefault(value, []).append(node.node)
    reporting = [n for n in nodes if n.drift]
    drift = []
    for key, values in keys.items():
        seen = sum(len(v) for v in values.values())
        if seen < len(reporting):  # some nodes do not know this value at all: say so
            known = {name for members in values.values() for name in members}
            values = OrderedDict(values)
            values["(not reported)"] = [n.node for n in reporting if n.node not in known]
        if len(values) > 1:
            drift.append({"key": key, "values": [{"value": value, "count": len(members), "nodes": members}
                                                 for value, members in sorted(values.items(), key=lambda kv: -len(kv[1]))]})
    return drift


def _matrix(nodes: Sequence[FleetNode], areas: Sequence[str]) -> List[Dict[str, Any]]:
    """Rows of the node x area matrix; nodes with identical cells share one row."""
    rows: Dict[Tuple[str, ...], Dict[str, Any]] = OrderedDict()
    for node in nodes:
        cells = tuple([node.status] + [node.areas.get(area, "-") for area in areas])
        row = rows.setdefault(cells, {"status": node.status, "cells": list(cells[1:]), "nodes": [], "pages": []})
        row["nodes"].append(node.node)
        row["pages"].append(node.page)
    return sorted(rows.values(), key=lambda row: -len(row["nodes"]))


def _dedupe(nodes: List[FleetNode]) -> Tuple[List[FleetNode], List[Dict[str, Any]]]:
    """Two reports for one node id: the first given wins, the others are listed."""
    kept: Dict[str, FleetNode] = OrderedDict()
    duplicates = []
    for node in nodes:
        if node.node in kept:
            duplicates.append({"node": node.node, "kept": kept[node.node].source, "ignored": node.source})
        else:
            kept[node.node] = node
    return list(kept.values()), duplicates


def build_fleet(inputs: Sequence[NodeInput], out_dir: str, expected: Sequence[str] = (),
                failures: Optional[Mapping[str, str]] = None, engine: Optional[Dict[str, Any]] = None,
                now: Optional[_dt.datetime] = None) -> FleetReport:
    """`expected`: node ids that should have reported; `failures`: node -> the engine's words."""
    failures = dict(failures or {})
    nodes, duplicates = _dedupe([node_from_input(item, out_dir) for item in inputs])
    for node in nodes:
        if node.status == UNREADABLE and node.node in failures:
            node.reason = f"{node.reason}; {failures[node.node]}"
    seen = {node.node for node in nodes}
    missing = []
    for name in list(expected) + [n for n in failures if n not in expected]:
        if name not in seen:
            reason = failures.get(name) or "no report from this node"
            nodes.append(missing_node(name, reason))
            missing.append({"node": name, "reason": reason})
            seen.add(name)
    used = {area for node in nodes for area in node.areas}
    areas = [a for a in AREA_ORDER if a in used] + sorted(used - set(AREA_ORDER))
    status = "UNRESOLVED" if any(n.blocking_codes for n in nodes) else (
        "DEGRADED" if any(n.status == "DEGRADED" for n in nodes) else "RESOLVED")
    return FleetReport(date=(now or _dt.datetime.now()).strftime("%Y-%m-%d %H:%M"), status=status, nodes=nodes,
                       groups=_groups(nodes), drift=_drift(nodes), missing=missing, areas=areas,
                       matrix=_matrix(nodes, areas), expected=list(expected), duplicates=duplicates, engine=engine)


def expected_from_reports(inputs: Sequence[NodeInput]) -> List[str]:
    """The node set Slurm gave the step, as the reports that arrived recorded it."""
    from .hostlist import expand

    names: List[str] = []
    for item in inputs:
        engine = ((item.data or {}).get("node") or {}).get("engine") or {}
        nodelist = engine.get("slurm_step_nodelist")
        for name in expand(nodelist or ""):
            if name not in names:
                names.append(name)
    return names

"""Finding and reading node reports: JSON files, directories of them, and framed log output.

A node report is a `resolution-report.json` (schema `ldm-diagnostics/1`). Engines that collect
stdout rather than files (`kubectl logs`, pdsh, Ansible) get one line per report from
`report --stdout-json`:

    @ldm-diagnostics-report/1 node=<id> {"schema": "ldm-diagnostics/1", ...}

One line, so reports from many pods cannot interleave inside each other, and any prefix before the
marker (`kubectl logs --prefix` writes `[pod/NAME/CONTAINER] `, pdsh writes `host: `) is kept as
where it came from. A line cut short (a pod killed while writing) still names its node.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

REPORT_SCHEMA = "ldm-diagnostics/1"
FRAME_MARKER = "@ldm-diagnostics-report/1"
_FRAME = re.compile(re.escape(FRAME_MARKER) + r" node=(?P<node>\S+) (?P<json>.*)$")
REPORT_NAMES = ("resolution-report.json", "resolution-report.incomplete.json")
FLEET_NAME = "resolution-fleet.json"


class ReportInputError(Exception):
    """An input named by the user that is not readable, or holds no report: a usage error."""


def frame_report(node_id: str, json_text: str) -> str:
    """The framed one-line form of a report for stdout (`report --stdout-json`)."""
    compact = json.dumps(json.loads(json_text), separators=(",", ":"), ensure_ascii=False)
    return f"{FRAME_MARKER} node={node_id.replace(' ', '_')} {compact}"


@dataclass
class NodeInput:
    """One node's report as read, or why it could not be read."""

    node: str
    source: str  # the file, or `file:line` for a framed report
    data: Optional[Dict[str, Any]] = None
    error: str = ""  # why the report is unusable (truncated, not JSON)
    origin: str = ""  # the log prefix before the frame marker (e.g. `[pod/x/report]`)
    path: Optional[str] = None  # a JSON file with this report (written by merge for framed ones)
    extra: Dict[str, Any] = field(default_factory=dict)


def _node_from_data(data: Dict[str, Any], fallback: str) -> str:
    node = data.get("node") if isinstance(data.get("node"), dict) else {}
    return str(node.get("id") or fallback)


def _fallback_name(path: Path) -> str:
    """A report without a node block: `nodes/n3/resolution-report.json` -> n3, `n3.json` -> n3."""
    if path.name in REPORT_NAMES:
        return path.parent.name or path.stem
    return path.name[:-5] if path.name.endswith(".json") else path.name


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise ReportInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse_report(text: str) -> Tuple[Optional[Dict[str, Any]], str]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        return None, f"not an ldm-diagnostics report (schema {schema!r}, expected {REPORT_SCHEMA!r})"
    return data, ""


_KEPT_FINDING = ("code", "status", "title", "summary", "fix", "blocking")


def slim(data: Dict[str, Any]) -> Dict[str, Any]:
    """What the merge reads of a report: a 1,000-node merge need not hold 1,000 full reports."""
    facts = data.get("facts") if isinstance(data.get("facts"), dict) else {}
    env = facts.get("environment") if isinstance(facts.get("environment"), dict) else {}
    cache = facts.get("cache") if isinstance(facts.get("cache"), dict) else {}
    kept = {key: data.get(key) for key in ("schema", "status", "incomplete", "blocking", "node", "date")}
    kept["findings"] = [{key: f.get(key) for key in _KEPT_FINDING} for f in data.get("findings") or []
                        if isinstance(f, dict)]
    kept["facts"] = {
        "environment": {key: env.get(key) for key in ("python", "packages", "torch") if key in env},
        "gpu_driver": facts.get("gpu_driver"),
        "cache": {key: cache.get(key) for key in ("models", "locations", "offline") if key in cache},
    }
    return kept


def framed_reports(text: str, source: str) -> List[NodeInput]:
    """Every framed report line in log text (from `kubectl logs`, pdsh, a CI log)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        at = line.find(FRAME_MARKER)
        if at < 0:
            continue
        match = _FRAME.match(line[at:].rstrip("\r"))
        if not match:
            found.append(NodeInput(f"{source}:{number}", f"{source}:{number}", error="a frame line without a node id"))
            continue
        data, error = _parse_report(match.group("json"))
        if error and "not valid JSON" in error:
            error = "the framed report is cut short or garbled: " + error
        found.append(NodeInput(match.group("node"), f"{source}:{number}", data=data, error=error,
                               origin=line[:at].strip()))
    return found


def _read_file(path: Path, named: bool) -> List[NodeInput]:
    """A report file, or log text with framed reports. `named`: the user gave this file by name."""
    text = _read_text(path)
    if text.lstrip().startswith("{"):
        data, error = _parse_report(text)
        if data is not None:
            return [NodeInput(_node_from_data(data, _fallback_name(path)), str(path), data=slim(data), path=str(path))]
        if named and "schema" in error:
            raise ReportInputError(f"{path}: {error}")
        if named:
            raise ReportInputError(f"{path} is not readable as a report: {error}")
        return [NodeInput(_fallback_name(path), str(path), error=error, path=str(path))]
    framed = framed_reports(text, str(path))
    if not framed and named:
        raise ReportInputError(f"{path} holds no node report: neither report JSON (schema {REPORT_SCHEMA}) "
                               f"nor lines starting with {FRAME_MARKER} (from `report --stdout-json`)")
    return framed


def _walk(directory: Path) -> Iterator[Path]:
    """Report files under a directory, sorted; the fleet's own output is not a node."""
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if name in REPORT_NAMES:
                yield Path(root) / name
            elif name.endswith((".log", ".txt")) and name != FLEET_NAME:
                yield Path(root) / name


def read_inputs(paths: Sequence[str]) -> List[NodeInput]:
    """Node reports from files and directories; ReportInputError for a bad named input or none at all."""
    nodes: List[NodeInput] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ReportInputError(f"{given} does not exist")
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise ReportInputError(f"directory {given} is not readable")
            for found in _walk(path):
                if found.name in REPORT_NAMES and found.with_name("resolution-report.json").exists() \
                        and found.name != "resolution-report.json":
                    continue  # an incomplete run next to a complete one: the complete one counts
                nodes.extend(_read_file(found, named=False))
        else:
            nodes.extend(_read_file(path, named=True))
    if not nodes:
        raise ReportInputError("no node report found in " + ", ".join(paths)
                               + f" (looked for {REPORT_NAMES[0]} files and {FRAME_MARKER} lines)")
    return nodes

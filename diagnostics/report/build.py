"""The ResolutionReport: the sections of a hand-written resolution report, filled from check results.

Such a report (e.g. a "CLIP Loading Issue Resolution Report") has Issue/Status, Original
Problem, Root Cause Analysis, Investigation Process, Solution, Verification, Current Status,
Remaining Issues, Recommendations and Files. Every one of them is derived here from findings and
facts; the templates only present it.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ..context import Context, Options
from ..findings import SCHEMA, Finding, Status
from ..redact import Redactor
from ..registry import AREA_TITLES, CheckResult
from ..util import fmt_bytes
from .actions import Action, build_actions
from .fixes import join_text
from .sections import AreaStatus, area_statuses, files_involved, headline, remaining_issues

RESOLVED, UNRESOLVED, DEGRADED = "RESOLVED", "UNRESOLVED", "DEGRADED"
# Facts that are views of the context (the context itself, its environment), not findings' evidence.
_NOT_FACTS = ("ctx", "context", "environ", "options")
_CONTEXT_TYPES = (Context, Options)

# Investigation sub-sections ("Environment Analysis", "Checkpoint Analysis", plus the model check
# people otherwise run by hand) and the finding areas each one shows.
SECTIONS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("environment", "Environment Analysis", ("env", "compat", "cuda", "hub", "cache", "tokenizer")),
    ("checkpoint", "Checkpoint Analysis", ("ckpt",)),
    ("model", "Model Instantiation", ("config", "model")),
)
_AREA_ORDER = [a for _, _, areas in SECTIONS for a in areas]


def _area(code: str) -> str:
    return code.split(".", 1)[0]


def _order(f: Finding) -> int:
    """Section order by area; within an area the (stable) order in which the checks ran."""
    area = _area(f.code)
    return _AREA_ORDER.index(area) if area in _AREA_ORDER else len(_AREA_ORDER)


@dataclass
class Section:
    key: str
    title: str
    findings: List[Finding]
    note: str = ""  # one line when there is nothing to say


@dataclass
class Step:
    title: str
    code: str  # finding code the step fixes (the lead one when it fixes several)
    text: str
    codes: List[str] = field(default_factory=list)  # every finding the step resolves


@dataclass
class Remedy:
    """An action the harness took to fix findings (e.g. provision CLIP offline), with the re-check.
    `before`/`after` are the same checks' findings before and after; `transcript` is like a
    hand-written report's "Test Script Output"."""

    title: str
    steps: List[str]
    before: List[Finding] = field(default_factory=list)
    after: List[Finding] = field(default_factory=list)
    files: List[Tuple[str, str]] = field(default_factory=list)  # (path, role)
    transcript: str = ""

    def changes(self) -> List[Tuple[str, str, str, str]]:
        """(code, status before, status after, summary after) for each re-checked code."""
        before = {f.code: f for f in self.before}
        rows = []
        for f in self.after:
            prev = before.get(f.code)
            rows.append((f.code, prev.status.value if prev else "-", f.status.value, f.summary))
        return rows

    def to_dict(self) -> Dict[str, Any]:
        return {"title": self.title, "steps": list(self.steps),
                "changes": [{"code": c, "before": b, "after": a, "summary": s} for c, b, a, s in self.changes()],
                "files": [{"path": p, "role": r} for p, r in self.files], "transcript": self.transcript}


@dataclass
class ResolutionReport:
    title: str
    date: str
    status: str
    issue: str
    original_problem: Optional[Dict[str, Any]]
    root_causes: List[Finding]
    investigation: List[Section]
    solution: List[Step]
    verification: List[Finding]
    checklist: List[Tuple[bool, str, str]]  # (done, check title, status)
    remaining: List[Finding]
    recommendations: List[str]
    files: List[Tuple[str, str, str]]  # (path, role, what was found there)
    environment_table: List[Tuple[str, str]]
    checkpoint_table: List[Tuple[str, str]] = field(default_factory=list)
    checkpoint_chart: List[Dict[str, Any]] = field(default_factory=list)
    model_table: List[Tuple[str, str]] = field(default_factory=list)
    results: List[CheckResult] = field(default_factory=list)
    facts: Dict[str, Any] = field(default_factory=dict)
    incomplete: bool = False
    remedies: List[Remedy] = field(default_factory=list)
    node: Optional[Dict[str, Any]] = None  # who this node is in a fleet (diagnostics/fleet/identity.py)
    actions: List[Action] = field(default_factory=list)  # what to do, in order, one per cause
    areas: List[AreaStatus] = field(default_factory=list)  # per-area status (summary table, Current Status)
    # Applied by every renderer to its final text, so no secret reaches a file (see redact.py).
    redact: Callable[[str], str] = field(default=lambda text: text, repr=False)

    @property
    def findings(self) -> List[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def blocking(self) -> List[Finding]:
        return [f for f in self.findings if f.blocking]

    def findings_of(self, action: Action) -> List[Finding]:
        """The findings an action resolves, in the action's order."""
        by_code = {f.code: f for f in self.findings}
        return [by_code[c] for c in action.codes if c in by_code]

    def step_of(self, finding: Finding) -> int:
        """Number of the action that resolves `finding` (1-based), 0 when none does."""
        return next((n for n, a in enumerate(self.actions, 1) if finding.code in a.codes), 0)

    def skipped_lines(self, section: Section) -> List[str]:
        """One line per area of `section` for its skipped checks (instead of one line per skip)."""
        areas = {f.code.split(".", 1)[0] for f in section.findings}
        return [a.skipped_line for a in self.areas if a.area in areas and a.skipped_line and not section.note]

    def counts(self) -> Dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for f in self.findings:
            counts[f.status.value] += 1
        return counts

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": SCHEMA,
            "tool": f"ldm-diagnostics {__version__}",
            "node": self.node,
            "title": self.title,
            "date": self.date,
            "status": self.status,
            "incomplete": self.incomplete,
            "issue": self.issue,
            "counts": self.counts(),
            "blocking": [f.code for f in self.blocking],
            "original_problem": self.original_problem,
            "root_causes": [f.code for f in self.root_causes],
            "investigation": {s.key: {"title": s.title, "findings": [f.code for f in s.findings], "note": s.note}
                              for s in self.investigation},
            "actions": [a.to_dict() for a in self.actions],
            "areas": [a.to_dict() for a in self.areas],
            "solution": [{"title": s.title, "code": s.code, "text": s.text, "codes": list(s.codes)}
                         for s in self.solution],
            "verification": [f.code for f in self.verification],
            "checklist": [{"done": d, "check": t, "status": st} for d, t, st in self.checklist],
            "remaining": [f.code for f in self.remaining],
            "recommendations": self.recommendations,
            "files": [{"path": p, "role": r, "found": w} for p, r, w in self.files],
            "remedies": [m.to_dict() for m in self.remedies],
            "environment": [{"name": k, "value": v} for k, v in self.environment_table],
            "checks": [r.to_dict() for r in self.results],
            "findings": [f.to_dict() for f in self.findings],
            "facts": {name: value for name, value in self.facts.items() if name not in _NOT_FACTS
                      and not isinstance(value, _CONTEXT_TYPES)},
        }


def report_status(findings: Sequence[Finding]) -> str:
    if any(f.blocking for f in findings):
        return UNRESOLVED
    if any(f.status in (Status.WARN, Status.ERROR) for f in findings):
        return DEGRADED
    return RESOLVED


def _environment_table(facts: Dict[str, Any]) -> List[Tuple[str, str]]:
    env = facts.get("environment") or {}
    rows: List[Tuple[str, str]] = []
    py = env.get("python")
    if py:
        where = py["env_kind"] + (f" {py['env_name']}" if py.get("env_name") else "")
        rows.append(("Python", f"{py['implementation']} {py['version']} ({where})"))
        rows.append(("Python environment", py["prefix"]))
    torch = env.get("torch") or {}
    packages = env.get("packages") or {}
    if torch.get("installed"):
        build = torch.get("kind") or "unknown"
        rows.append(("torch", f"{torch['version']} ({build} build" + (f", CUDA {torch['cuda']})" if torch.get("cuda") else ")")))
    else:
        rows.append(("torch", "not installed"))
    for name in ("transformers", "huggingface_hub", "pytorch_lightning", "omegaconf", "safetensors", "xformers", "numpy"):
        rows.append((name, packages.get(name) or "not installed"))
    driver = facts.get("gpu_driver") or {}
    if driver.get("gpus"):
        rows.append(("GPU", ", ".join(g["name"] for g in driver["gpus"]) + f" (driver {driver.get('driver_version')})"))
    elif driver:
        rows.append(("GPU", "none found"))
    mem = env.get("memory") or {}
    if mem:
        rows.append(("RAM", f"{fmt_bytes(mem.get('available'))} available of {fmt_bytes(mem.get('total'))}"))
    return rows


# Colours per dtype in the checkpoint chart (colour-blind-safe palette).
DTYPE_COLOURS = {"float32": "#0072b2", "float16": "#e69f00", "bfloat16": "#009e73", "float64": "#cc79a7",
                 "int64": "#56b4e9", "int32": "#d55e00"}
OTHER_COLOUR = "#999999"


def _checkpoint_table(ckpt: Dict[str, Any]) -> List[Tuple[str, str]]:
    if not ckpt or not ckpt.get("analysed", True) or ckpt.get("format") in (None, "unknown"):
        return []
    te = ckpt.get("text_encoder") or {}
    ema = ckpt.get("ema") or {}
    rows = [
        ("Format", str(ckpt.get("format"))),
        ("Size", fmt_bytes(ckpt.get("size_bytes"))),
        ("Safe to load (no code in the pickle)", "yes" if ckpt.get("safe") else "no"),
        ("Family / variant", f"{ckpt.get('family')} / {ckpt.get('variant')}"),
        ("UNet input channels", str(ckpt.get("unet_in_channels"))),
        ("Text encoder", str(te.get("kind") or ("absent" if not te.get("present", te) else "unknown"))),
        ("EMA weights", "present" if ema.get("present") else "absent"),
        ("Tensors / parameters", f"{ckpt.get('tensors_total')} / {ckpt.get('parameters_total'):,}"
         if isinstance(ckpt.get("parameters_total"), int) else str(ckpt.get("tensors_total"))),
    ]
    return rows


def _checkpoint_chart(ckpt: Dict[str, Any], width: int = 560) -> List[Dict[str, Any]]:
    """Bars of bytes per component, split by dtype, scaled to the largest component (for an inline SVG)."""
    components = (ckpt or {}).get("components") or {}
    bars = [(name, c) for name, c in components.items() if isinstance(c, dict) and c.get("bytes")]
    if not bars:
        return []
    largest = max(c["bytes"] for _, c in bars)
    chart = []
    for name, c in sorted(bars, key=lambda item: -item[1]["bytes"]):
        x = 0.0
        segments = []
        for dtype, nbytes in sorted((c.get("bytes_by_dtype") or {}).items(), key=lambda item: -item[1]):
            w = width * nbytes / largest
            segments.append({"dtype": dtype, "bytes": fmt_bytes(nbytes), "x": round(x, 1), "w": round(max(w, 0.5), 1),
                             "colour": DTYPE_COLOURS.get(dtype, OTHER_COLOUR)})
            x += w
        chart.append({"component": name, "total": fmt_bytes(c["bytes"]), "end": round(x, 1), "segments": segments})
    return chart


def stage_seconds(stages: Dict[str, Any], name: str) -> Optional[float]:
    """Seconds the model child measured for one stage (the smoke stage: the sum of its parts)."""
    stage = stages.get(name) or {}
    if isinstance(stage.get("seconds"), (int, float)):
        return float(stage["seconds"])
    parts = [p.get("seconds") for p in (stage.get("parts") or {}).values() if isinstance(p, dict)]
    parts = [p for p in parts if isinstance(p, (int, float))]
    return float(sum(parts)) if parts else None


def _model_table(model: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The model check people run by hand, as facts: times, memory, parameters, keys, smoke forward."""
    stages = (model or {}).get("stages") or {}
    if not stages:
        return []
    rows: List[Tuple[str, str]] = []
    inst, load, device, smoke = (stages.get(k) or {} for k in ("instantiate", "load", "device", "smoke"))
    if inst.get("class"):
        rows.append(("Model class", str(inst["class"]) + (" (built on the meta device)" if inst.get("meta") else "")))
    timed = [(name, stage_seconds(stages, name)) for name in ("import", "instantiate", "load", "device", "smoke")]
    timed = [(name, secs) for name, secs in timed if secs is not None]
    if timed:
        total = f" (total {sum(secs for _, secs in timed):.2f} s)" if len(timed) > 1 else ""
        rows.append(("Time", ", ".join(f"{name} {secs:.2f} s" for name, secs in timed) + total))
    for name, comp in (inst.get("components") or {}).items():
        count = comp.get("parameters", comp.get("elements"))
        if isinstance(count, int):
            rows.append((f"Parameters: {name}", f"{count / 1e6:.2f} M ({comp.get('tensors')} tensors)"))
    if load:
        def count(key):
            return (load.get(key) or {}).get("count", 0)
        rows.append(("Checkpoint keys", f"{load.get('loaded')} of {load.get('checkpoint_tensors')} loaded; "
                                        f"{count('missing')} missing, {count('unexpected')} unexpected, "
                                        f"{count('mismatched')} size mismatches"))
    if device.get("device"):
        rows.append(("Device", f"{device['device']} ({device.get('dtype')})"))
    if isinstance(device.get("max_memory_allocated"), int):
        rows.append(("GPU memory (max allocated)", fmt_bytes(device["max_memory_allocated"])))
    peaks = [st.get("rss_peak_bytes") for st in (inst, load, device, smoke) if isinstance(st.get("rss_peak_bytes"), int)]
    if peaks:
        rows.append(("Peak RSS of the model process", fmt_bytes(max(peaks))))
    for name, part in ((smoke.get("parts") or {}).items()):
        verdict = "finite" if part.get("finite") else ("NOT finite" if "finite" in part else part.get("error", "?"))
        shape = "x".join(str(d) for d in part.get("shape") or [])
        secs = f", {part['seconds']:.2f} s" if isinstance(part.get("seconds"), (int, float)) else ""
        rows.append((f"Smoke forward: {name}", f"{shape} {verdict}{secs}".strip()))
    return rows


def build_report(results: Sequence[CheckResult], ctx, written: Sequence[str] = (),
                 original_problem: Optional[Dict[str, Any]] = None, incomplete: bool = False,
                 now: Optional[_dt.datetime] = None, remedies: Sequence[Remedy] = (),
                 node: Optional[Dict[str, Any]] = None) -> ResolutionReport:
    """`results` are the checks as they stand now (after any remedy); `remedies` what was done.
    `written` (the report files) is accepted for callers; the report does not list itself."""
    findings = sorted((f for r in results for f in r.findings), key=_order)
    status = report_status(findings)
    facts = ctx.facts
    if original_problem is not None:
        facts = dict(facts, original_problem=original_problem)
    actions = build_actions(findings, ctx.options, facts)
    order = {code: i for i, a in enumerate(actions) for code in a.codes}
    blocking = sorted((f for f in findings if f.blocking), key=lambda f: order.get(f.code, len(order)))

    if original_problem and original_problem.get("error_message"):
        issue = original_problem["error_message"].strip().splitlines()[0]
    else:
        issue = headline(actions, findings)

    sections = []
    for key, title, areas in SECTIONS:
        in_section = [f for f in findings if _area(f.code) in areas]
        note = ""
        if not in_section or all(f.status is Status.SKIP for f in in_section):
            note = "Nothing was checked here."
            if key == "checkpoint" and not ctx.options.checkpoint:
                note = "No checkpoint was checked (pass --checkpoint or set LDM_DIAG_CHECKPOINT)."
            elif key == "model" and not ctx.options.config:
                note = "The model was not instantiated (pass --config, --checkpoint and --code-root)."
        sections.append(Section(key, title, in_section, note))

    solution = [Step(a.title, a.codes[0], join_text(a.steps), list(a.codes)) for a in actions if a.steps]
    checklist = [(r.status in (Status.OK, Status.INFO), r.check.title, r.status.value) for r in results]
    recommendations = [f"{f.title}: {f.fix}" for f in findings if f.status is Status.INFO and f.fix]
    cuda_skipped = [f for f in findings if _area(f.code) == "cuda" and f.status is Status.SKIP]
    if cuda_skipped:
        recommendations.append("CUDA checks did not run here (" + cuda_skipped[0].summary.rstrip(".")
                               + "); run this report again on the GPU host before rollout.")

    return ResolutionReport(
        title="LDM Deployment Resolution Report",
        date=(now or _dt.datetime.now()).strftime("%Y-%m-%d %H:%M"),
        status=status,
        issue=issue,
        original_problem=original_problem,
        root_causes=blocking,
        investigation=sections,
        solution=solution,
        verification=[f for m in remedies for f in m.after if f.status is Status.OK],
        checklist=checklist,
        remaining=remaining_issues(findings),
        recommendations=recommendations,
        files=files_involved(ctx.options, facts, findings, [f for m in remedies for f in m.files]),
        environment_table=([("Node", f"{node['id']} (host {node.get('hostname')})")] if node else [])
        + _environment_table(ctx.facts),
        checkpoint_table=_checkpoint_table(ctx.facts.get("checkpoint") or {}),
        checkpoint_chart=_checkpoint_chart(ctx.facts.get("checkpoint") or {}),
        model_table=_model_table(ctx.facts.get("model") or {}),
        results=list(results),
        facts=ctx.facts,
        incomplete=incomplete,
        remedies=list(remedies),
        node=node,
        actions=actions,
        areas=area_statuses(findings, ctx.options),
        redact=Redactor(ctx.environ),
    )


def area_title(area: str) -> str:
    return AREA_TITLES.get(area, area)

"""The checks both front-ends run, and the one place that runs them.

A `Check` joins a probe (memoised on the `Context`) to a pure rule. Each rules module declares
its checks in a module-level `CHECKS` list; `CHECK_MODULES` names those modules in report order.
`run_check` is the only caller of a check: a check that raises becomes a finding with status
`error` (the traceback goes into its evidence), never a crashed harness.
"""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence

from .context import Context
from .findings import Finding, Status, worst

# Report order. Later areas add their module here.
CHECK_MODULES = (
    "diagnostics.rules.environment",
    "diagnostics.rules.compat",
    "diagnostics.rules.cuda",
    "diagnostics.rules.cache",
    "diagnostics.rules.hub",
    "diagnostics.rules.checkpoint",
    "diagnostics.rules.clip_layout",
    "diagnostics.rules.config",
    "diagnostics.rules.model",
)

# Areas are the prefix of a finding code; they group the terminal summary and pick the pytest marker.
AREA_TITLES = {
    "env": "Environment",
    "compat": "Known incompatibilities",
    "cuda": "GPU / CUDA",
    "hub": "Hugging Face Hub network",
    "cache": "Hugging Face cache",
    "tokenizer": "CLIP tokenizer",
    "ckpt": "Checkpoint file",
    "config": "Config vs checkpoint",
    "model": "Model instantiation",
    "explain": "Error log",
    "remedy": "Remedy",
}

# pytest markers (registered by the plugin) per area.
AREA_MARKERS = {
    "env": "env",
    "compat": "env",
    "cuda": "cuda",
    "hub": "network",
    "cache": "cache",
    "tokenizer": "cache",
    "ckpt": "checkpoint",
    "config": "model",
    "model": "model",
    "explain": "env",
    "remedy": "cache",
}


@dataclass(frozen=True)
class Check:
    id: str  # the code of the check's main finding, e.g. "env.python"
    title: str
    func: Callable[[Context], Iterable[Finding]]

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def marker(self) -> str:
        return AREA_MARKERS.get(self.area, self.area)


@dataclass
class CheckResult:
    check: Check
    findings: List[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> Status:
        return worst(f.status for f in self.findings)

    @property
    def blocking(self) -> bool:
        return any(f.blocking for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "check": self.check.id,
            "title": self.check.title,
            "status": self.status.value,
            "seconds": round(self.seconds, 3),
            "findings": [f.to_dict() for f in self.findings],
        }


def all_checks() -> List[Check]:
    checks: List[Check] = []
    for name in CHECK_MODULES:
        checks.extend(getattr(importlib.import_module(name), "CHECKS", ()))
    return checks


def get_check(check_id: str) -> Check:
    for check in all_checks():
        if check.id == check_id:
            return check
    raise KeyError(f"no check named {check_id!r}")


def checks_in(*areas: str) -> List[Check]:
    return [c for c in all_checks() if c.area in areas]


def run_check(check: Check, ctx: Context) -> CheckResult:
    start = time.perf_counter()
    try:
        findings = list(check.func(ctx))
        if not findings:
            raise RuntimeError(f"check {check.id} returned no finding")
    except Exception as exc:  # a crashed check is a finding, not a crashed harness
        findings = [
            Finding(
                code=check.id,
                status=Status.ERROR,
                title=check.title,
                summary=f"The check itself crashed: {type(exc).__name__}: {exc}",
                evidence={"traceback": traceback.format_exc()},
                cause="A bug in ldm-diagnostics or an environment it did not expect.",
                fix="Re-run with --verbose and report the traceback; the other checks are unaffected.",
                blocking=False,
            )
        ]
    return CheckResult(check, findings, time.perf_counter() - start)


def run_checks(ctx: Context, checks: Optional[Sequence[Check]] = None, on_result=None) -> List[CheckResult]:
    results = []
    for check in all_checks() if checks is None else checks:
        result = run_check(check, ctx)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results

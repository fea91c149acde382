"""The model run's stages and what every `model.*` rule shares: which check owns a failed stage,
component names, number formats, and the findings for a run that did not happen or failed earlier.
The findings carry no code or title: the registry stamps the check's own on them.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ..findings import Finding, Status, verdict

STAGE_CHECK = {"import": "model.import", "instantiate": "model.instantiate", "load": "model.load-keys",
               "device": "model.smoke-forward", "smoke": "model.smoke-forward", "start": "model.import"}
COMPONENT_NAMES = {"model": "UNet (DiffusionWrapper)", "first_stage_model": "VAE", "cond_stage_model": "text encoder",
                   "model_ema": "EMA", "control_model": "ControlNet", "depth_model": "depth model"}


class Diagnosis:
    def __init__(self, summary: str, cause: str, fix: str, related: Sequence[str] = (), docs: Sequence[str] = (),
                 kind: str = "other", status: Status = Status.FAIL) -> None:
        self.summary, self.cause, self.fix = summary, cause, fix
        self.related, self.docs, self.kind, self.status = list(related), list(docs), kind, status


def fmt_params(n: Optional[int]) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} M"


def secs(x: Optional[float]) -> str:
    if x is None:
        return "?"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def first_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def tb_tail(error: Mapping[str, Any], lines: int = 12) -> str:
    return "\n".join((error.get("traceback") or "").strip().splitlines()[-lines:])


def skipped(reason: str) -> Finding:
    """A `skip` with the reason, for the registry to stamp."""
    return verdict(Status.SKIP, reason)


def code_root_missing(model: Mapping[str, Any]) -> Optional[Finding]:
    """model.import's failure when the run could not start because --code-root does not exist."""
    if model.get("ran") or model.get("reason") != "code-root-missing":
        return None
    return verdict(Status.FAIL, f"--code-root {model.get('code_root')} does not exist, so the model code cannot be "
                                "imported.",
                   evidence={"code_root": model.get("code_root")},
                   cause="The path is wrong, or the repository is not on this machine.",
                   fix="Pass --code-root with the directory that contains `ldm/` (the repository root).")


def not_run(model: Mapping[str, Any]) -> Optional[Finding]:
    if model.get("ran"):
        return None
    return skipped(model.get("message") or "The model was not built.")


def failed_before(model: Mapping[str, Any], stages: Sequence[str]) -> Optional[Finding]:
    err = model.get("error")
    if err and err.get("stage") in stages:
        owner = STAGE_CHECK.get(err["stage"], "model.import")
        return skipped(f"Did not run: the {err['stage']} step failed first (see {owner}).")
    return None


def error_finding(error: Mapping[str, Any], diagnosis: Diagnosis, model: Mapping[str, Any],
                  related: Sequence[Mapping[str, Any]] = (), extra: Optional[Dict[str, Any]] = None) -> Finding:
    evidence: Dict[str, Any] = {
        "stage": error.get("stage"), "exception": f"{error.get('type')}: {error.get('message')}"[:2000],
        "where": error.get("where"), "traceback": tb_tail(error, 40), "related_checks": list(diagnosis.related),
        "output": (model.get("output") or [])[-20:],
    }
    if related:
        evidence["related_findings"] = list(related)
    if extra:
        evidence.update(extra)
    return verdict(diagnosis.status, diagnosis.summary, evidence=evidence, cause=diagnosis.cause, fix=diagnosis.fix,
                   docs=diagnosis.docs)

"""What to do, first and once: the report's ordered action list.

Findings are symptoms; several often share one cause (an empty cache with offline mode on fails
`cache.offline-flag`, `cache.model-missing`, `tokenizer.functional` and `model.instantiate`). Each
finding that needs action is assigned to the first row of `CAUSE_ORDER` that claims its code; the
rows are in dependency order, so the list reads top to bottom: fixing a row can change every row
below it, never one above. One action per row, with the fix of the row's lead finding.

The order is data, with the reason for each row's place, so that it can be read and changed in one
place (and tests pin it for the fresh-virtualenv case and the missing-CLIP case).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..context import DEFAULT_CLIP_ID
from ..findings import Finding, FixStep, Status, parse_fix


@dataclass(frozen=True)
class CauseRow:
    key: str
    title: str  # the action's heading; {model} is the needed model's id
    codes: Tuple[str, ...]  # fnmatch patterns of the finding codes this cause explains, lead first
    why: str  # why the row sits where it does (for maintainers and `--json`)
    merge: bool = False  # one action for all its findings (one cause), else one action per finding


NOT_SERVING_ENV = "not-serving-env"
MODEL_FILES = "model-files"
NETWORK = "network"

CAUSE_ORDER: Tuple[CauseRow, ...] = (
    CauseRow(NOT_SERVING_ENV, "Run the checks in the environment that serves the model",
             ("env.torch-missing", "env.transformers-missing", "env.packages"),
             "With none of the serving stack installed, every other verdict describes the wrong environment.",
             merge=True),
    CauseRow("python", "Use a supported Python", ("env.python",),
             "Every package below is installed for one interpreter."),
    CauseRow("torch", "Install torch", ("env.torch-missing",),
             "ldm, the CUDA checks and the model build all need torch; CUDA is judged on torch's build."),
    CauseRow("transformers", "Install transformers", ("env.transformers-missing",),
             "FrozenCLIPEmbedder imports transformers before it reads any file."),
    CauseRow("packages", "Fix the package versions", ("compat.*", "env.packages"),
             "Import-time incompatibilities fail before any model file is read."),
    CauseRow("cuda", "Make the GPU usable by torch", ("cuda.available", "cuda.driver", "cuda.arch"),
             "CUDA support is a property of the installed torch build and the driver: after torch."),
    CauseRow("resources", "Free memory or disk space", ("env.resources", "cache.disk-space"),
             "Downloads and the model load need the space; nothing else depends on the order here."),
    CauseRow("cache-place", "Fix the Hugging Face cache",
             ("cache.location", "cache.not-writable", "cache.shadowing-dir", "cache.incomplete"),
             "Where the loaders look must be right before files are placed there."),
    CauseRow(MODEL_FILES, "Make {model} loadable on this machine",
             ("cache.model-missing", "cache.offline-flag", "tokenizer.*", "cache.needed-models", "remedy.*"),
             "The tokenizer and the text encoder read these files; the network matters only to fetch them "
             "(so a Hub failure joins this step when a needed file is missing).", merge=True),
    CauseRow(NETWORK, "Restore the connection to the Hugging Face Hub", ("hub.*",),
             "With every needed file cached, the Hub is needed only for updates."),
    CauseRow("checkpoint", "Fix the checkpoint file", ("ckpt.*",),
             "The config and model checks read the checkpoint."),
    CauseRow("config", "Match the config to the checkpoint", ("config.*",),
             "The model is built from the config, then loaded from the checkpoint."),
    CauseRow("model", "Fix the model build", ("model.*", "cuda.memory"),
             "The build runs last and fails wherever a row above predicts; re-run after those."),
    CauseRow("other", "Review", ("*",), "Anything no row above claims."),
)

# Words in a model-build failure that show it is the missing text-encoder files again.
_TEXT_ENCODER_WORDS = ("FrozenCLIPEmbedder", "CLIPTokenizer", "CLIPTextModel", "tokenizer", "text encoder")


@dataclass
class Action:
    key: str
    title: str
    summary: str  # what is wrong, in one line (the lead finding's summary)
    steps: List[FixStep]
    codes: List[str]  # the findings this action resolves
    blocking: bool
    why: str
    secondary: List[FixStep] = field(default_factory=list)  # what to do only if step one is not the answer

    def to_dict(self) -> Dict[str, Any]:
        return {"key": self.key, "title": self.title, "summary": self.summary, "blocking": self.blocking,
                "codes": list(self.codes), "why": self.why,
                "steps": [s.to_dict() for s in self.steps], "secondary": [s.to_dict() for s in self.secondary]}


def _row_for(code: str, rows: Sequence[CauseRow]) -> CauseRow:
    for row in rows:
        if any(fnmatch.fnmatchcase(code, pattern) for pattern in row.codes):
            return row
    return rows[-1]


def _needs_action(f: Finding) -> bool:
    return bool(f.blocking) or f.status in (Status.WARN, Status.ERROR, Status.FAIL)


def _missing_model(findings: Sequence[Finding]) -> Optional[str]:
    for f in findings:
        if f.code == "cache.model-missing" and _needs_action(f):
            return str(f.evidence.get("model") or "") or None
    return None


def _about_text_encoder(f: Finding, model: Optional[str]) -> bool:
    text = f"{f.summary} {f.evidence.get('exception', '')}"
    return bool(model) and (model in text or any(word in text for word in _TEXT_ENCODER_WORDS))


def serving_stack_absent(findings: Sequence[Finding], facts: Dict[str, Any]) -> bool:
    """torch and transformers both missing and no ldm package found: not the serving environment."""
    failed = {f.code for f in findings if f.status is Status.FAIL}
    ldm = facts.get("ldm") or {}
    return {"env.torch-missing", "env.transformers-missing"} <= failed and not ldm.get("found")


def known_checkpoint(options, facts: Dict[str, Any]) -> Optional[str]:
    """The SD checkpoint this deployment uses: --checkpoint, else the config's `model.params.ckpt_path`."""
    if getattr(options, "checkpoint", None):
        return str(options.checkpoint)
    data = (facts.get("ldm_config") or {}).get("data")
    params = ((data or {}).get("model") or {}).get("params") if isinstance(data, dict) else None
    path = params.get("ckpt_path") if isinstance(params, dict) else None
    return str(path) if isinstance(path, str) and path else None


def _checkpoint_lacks_clip(facts: Dict[str, Any]) -> bool:
    te = (facts.get("checkpoint") or {}).get("text_encoder") or {}
    return bool(te) and te.get("present") is False


def provision_steps(options, facts: Dict[str, Any], model: Optional[str]) -> List[FixStep]:
    """The no-download step for SD 1.x's CLIP ViT-L/14, placed before any download (the same words
    as cache.model-missing's own first step, which the action then leaves out)."""
    from ..rules.cache.fixes import PROVISION_PLACEHOLDER, PROVISION_TEXT, provision_command

    if model != DEFAULT_CLIP_ID or _checkpoint_lacks_clip(facts):
        return []
    checkpoint = known_checkpoint(options, facts)
    if checkpoint:
        return [FixStep(PROVISION_TEXT, provision_command(checkpoint), "shell")]
    return [FixStep("If you have the SD 1.x checkpoint, no download is needed (it holds this text encoder). Put it, "
                    "with CLIP's tokenizer files, where FrozenCLIPEmbedder loads it offline (then start with "
                    "`HF_HUB_OFFLINE=1`):", provision_command(PROVISION_PLACEHOLDER), "shell")]


def _not_serving_steps(facts: Dict[str, Any]) -> List[FixStep]:
    python = ((facts.get("environment") or {}).get("python") or {})
    where = python.get("prefix") or "this Python"
    return [
        FixStep(f"{where} has none of torch, transformers and ldm, so it is not the environment that serves "
                "the model. Install ldm-diagnostics there and run it there, e.g. (one of):",
                "source /path/to/serving-venv/bin/activate      # a virtualenv\n"
                "conda activate SERVING_ENV                      # a conda environment\n"
                "docker exec -it CONTAINER bash                  # a container\n"
                "python -m pip install ldm-diagnostics && python -m diagnostics report", "shell"),
        FixStep("The steps after this one were judged in this environment: re-run the report in the serving "
                "environment before acting on them."),
    ]


def _pattern_index(row: CauseRow, code: str) -> int:
    return next((i for i, p in enumerate(row.codes) if fnmatch.fnmatchcase(code, p)), len(row.codes))


def _lead(row: CauseRow, members: Sequence[Finding]) -> Finding:
    """The finding whose fix the action shows: blocking first, with a fix, earliest pattern of the row."""
    return min(members, key=lambda f: (0 if f.blocking else 1, 0 if f.fix else 1, _pattern_index(row, f.code)))


OTHERWISE = FixStep("Otherwise:")


def _without_provision_hint(steps: List[FixStep]) -> List[FixStep]:
    """The rule's own provision-clip step (and its "Otherwise:") when ours comes first."""
    out = [s for s in steps if "provision-clip" not in (s.text + (s.code or ""))]
    if out and out[0].text.strip().lower().startswith("otherwise") and not out[0].code:
        out = out[1:]
    return out


def _merged_action(row: CauseRow, members: List[Finding], options, facts: Dict[str, Any],
                   model: Optional[str]) -> Action:
    lead = _lead(row, members)
    steps = parse_fix(lead.fix)
    secondary: List[FixStep] = []
    if row.key == NOT_SERVING_ENV:
        secondary = [FixStep("If this environment is meant to serve the model, install the stack:")]
        for f in members:
            if f.code != "env.packages":
                secondary.extend(parse_fix(f.fix))
        steps = _not_serving_steps(facts)
    elif row.key == MODEL_FILES:
        extra = provision_steps(options, facts, model)
        if extra:
            rest = _without_provision_hint(steps)
            steps = extra + ([OTHERWISE] + rest if rest else [])
    summary = lead.summary
    if row.key == NOT_SERVING_ENV:
        summary = "None of torch, transformers and ldm is installed in this Python."
    return Action(row.key, row.title.format(model=model or "the text encoder"), summary, steps,
                  [f.code for f in members], any(f.blocking for f in members), row.why, secondary)


def build_actions(findings: Sequence[Finding], options, facts: Dict[str, Any],
                  rows: Sequence[CauseRow] = CAUSE_ORDER) -> List[Action]:
    """Blocking causes first (in row order), then causes with warnings only (in row order)."""
    needing = [f for f in findings if _needs_action(f)]
    model = _missing_model(needing)
    not_serving = serving_stack_absent(needing, facts)
    active_rows = [r for r in rows if r.key != NOT_SERVING_ENV or not_serving]
    groups: Dict[str, List[Finding]] = {}
    for f in needing:
        row = _row_for(f.code, active_rows)
        if (row.key == "model" and _about_text_encoder(f, model)) or (row.key == NETWORK and model):
            row = next(r for r in active_rows if r.key == MODEL_FILES)
        groups.setdefault(row.key, []).append(f)

    actions: List[Action] = []
    for row in active_rows:
        members = sorted(groups.get(row.key) or [], key=lambda f: _pattern_index(row, f.code))
        if row.merge and members:
            actions.append(_merged_action(row, members, options, facts, model))
        for f in [] if row.merge else members:
            single = len(row.codes) == 1 and "*" not in row.codes[0]
            actions.append(Action(row.key, row.title if single else f.title, f.summary, parse_fix(f.fix),
                                  [f.code], bool(f.blocking), row.why))
    return [a for a in actions if a.blocking] + [a for a in actions if not a.blocking]

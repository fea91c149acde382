"""The checks both front-ends run, declared as data, and the one place that runs them.

A `Check` is one declaration next to its rule: the finding code, the title (written only here),
the pure rule function, the facts it reads (names from `diagnostics.facts`), its preconditions and
the other checks whose results it needs. The registry does the plumbing every rule used to repeat:

- it resolves the facts (each probe runs once per `Context`), lazily: a precondition's facts are
  gathered only when the preconditions before it hold, the rule's once all of them hold, so a
  precondition can stop an expensive fact from being gathered at all;
- it evaluates the preconditions in order, and the first unmet one is the result (a `skip` with
  the reason), so a rule body starts with its decision;
- a fact the rule needs only on some paths (the Hub network probe, a child process) is declared
  `on_demand`: the rule gets a zero-argument callable that gathers it when called (memoised like
  every fact), so the rule decides whether the probe runs;
- it stamps the check's code and title on what the rule returns (`verdict(...)` leaves them empty);
- it turns an exception into a finding with status `error` (a crashed check, never a crashed
  harness) and memoises each `CheckResult` on the context, so a check that needs another check's
  result, `explain` confirming a cause and the report all share one run.

Each rules module declares its checks in a module-level `CHECKS` list; `CHECK_MODULES` names those
modules in report order. Codes emitted outside any check (`explain.*`, `remedy.*`) are declared in
`OTHER_CODES` of the module that emits them, listed in `CODE_MODULES`; `diagnostics.catalog`
renders all of them into docs/finding-codes.md.
"""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .context import Context
from .findings import Finding, Status, worst

# Report order. A new area adds its rules module here.
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

# Modules that emit codes outside the registered checks, each with an `OTHER_CODES` list.
CODE_MODULES = (
    "diagnostics.knowledge.codes",
    "diagnostics.remedies.codes",
    "diagnostics.fleet.codes",
)

# Areas are the prefix of a finding code; they group the terminal summary, the report and the
# pytest markers.
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
    "fleet": "Fleet",
}

Unmet = Optional[Union[str, Finding]]
RuleOutput = Union[Finding, Iterable[Finding]]


@dataclass(frozen=True)
class Precondition:
    """What must hold before a rule can decide, e.g. "checkpoint readable".

    `unmet(*facts)` gets the facts named in `reads`, in that order, and returns None when the
    precondition holds; otherwise the reason shown to the user (a `skip`), or a finding made with
    `verdict(...)` when the reason needs evidence or another status."""

    name: str
    reads: Tuple[str, ...]
    unmet: Callable[..., Unmet]


@dataclass(frozen=True)
class CodeDoc:
    """A code some module emits outside the checks (or a check's secondary code), for the catalog."""

    code: str
    title: str
    meaning: str = ""


@dataclass(frozen=True)
class Check:
    code: str  # the code of the check's main finding, e.g. "env.python"
    title: str  # what is checked; reads right with any status
    rule: Callable[..., RuleOutput]
    reads: Tuple[str, ...] = ()  # fact names; the rule gets each as a keyword argument of that name
    requires: Tuple[Precondition, ...] = ()
    needs: Tuple[str, ...] = ()  # codes of checks whose results the rule gets as `results`
    emits: Tuple[CodeDoc, ...] = ()  # other codes this check's findings can carry
    # fact names the rule gathers only when it needs them: it gets each as a keyword argument of that
    # name holding a zero-argument callable that returns the fact (gathered once per context)
    on_demand: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        both = set(self.reads) & set(self.on_demand)
        if both:
            raise ValueError(f"check {self.code} reads {sorted(both)} both as facts and on demand")

    @property
    def id(self) -> str:  # the name front-ends and older callers use
        return self.code

    @property
    def area(self) -> str:
        return self.code.split(".", 1)[0]

    def evaluate(self, results: Optional[Mapping[str, "CheckResult"]] = None, **facts: Any) -> List[Finding]:
        """Preconditions, rule and stamping over facts given by hand: what tests call.

        An on-demand fact may be given as its value or as a zero-argument callable that returns it
        (called at most once); one not given fails only if the rule asks for it."""

        def fact(name: str) -> Any:
            try:
                return facts[name]
            except KeyError:
                raise KeyError(f"check {self.code} reads the fact {name!r}, which was not given") from None

        def gatherer(name: str) -> Callable[[], Any]:
            if name not in facts:
                return lambda: fact(name)
            given = facts[name]
            return _once(given if callable(given) else lambda: given)

        return self._decide(fact, gatherer, results)

    def _decide(self, fact: Callable[[str], Any], gatherer: Callable[[str], Callable[[], Any]],
                results: Optional[Mapping[str, "CheckResult"]] = None) -> List[Finding]:
        """Preconditions in order, then the rule, with facts fetched as they are needed: `fact(name)`
        gives a fact, `gatherer(name)` the callable an on-demand fact is handed over as."""
        for precondition in self.requires:
            reason = precondition.unmet(*(fact(name) for name in precondition.reads))
            if reason is not None:
                return [self._stamp(_as_finding(reason))]
        kwargs = {name: fact(name) for name in self.reads}
        kwargs.update((name, gatherer(name)) for name in self.on_demand)
        if self.needs:
            kwargs["results"] = dict(results or {})
        output = self.rule(**kwargs)
        findings = [output] if isinstance(output, Finding) else list(output)
        if not findings:
            raise RuntimeError(f"check {self.code} returned no finding")
        return [self._stamp(f) for f in findings]

    def fact_names(self) -> Tuple[str, ...]:
        """Every fact the check may look at: its preconditions', its rule's and those it gathers on
        demand, without repeats."""
        names: List[str] = []
        for name in [n for p in self.requires for n in p.reads] + list(self.reads) + list(self.on_demand):
            if name not in names:
                names.append(name)
        return tuple(names)

    def _stamp(self, finding: Finding) -> Finding:
        if finding.code and finding.title:
            return finding
        code = finding.code or self.code
        title = finding.title or (self.title if code == self.code else _emitted_title(self, code))
        return replace(finding, code=code, title=title)


def _once(gather: Callable[[], Any]) -> Callable[[], Any]:
    """`gather`, called at most once: later calls return the first answer."""
    answer: List[Any] = []

    def fact() -> Any:
        if not answer:
            answer.append(gather())
        return answer[0]

    return fact


def _as_finding(reason: Union[str, Finding]) -> Finding:
    if isinstance(reason, Finding):
        return reason
    return Finding("", Status.SKIP, "", reason)


def _emitted_title(check: Check, code: str) -> str:
    for doc in check.emits:
        if doc.code == code:
            return doc.title
    return check.title


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


_MODULE_ERRORS: Dict[str, str] = {}


def _checks_of(module_name: str) -> List[Check]:
    """A module's CHECKS; one broken area is recorded (see `module_errors`), never hides the others."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        _MODULE_ERRORS[module_name] = f"{type(exc).__name__}: {exc}"
        return []
    return list(getattr(module, "CHECKS", ()))


def all_checks() -> List[Check]:
    checks: List[Check] = []
    for name in CHECK_MODULES:
        checks.extend(_checks_of(name))
    return checks


def module_errors() -> Dict[str, str]:
    """Rules modules that failed to import in this process, with the error."""
    return dict(_MODULE_ERRORS)


def get_check(code: str) -> Check:
    for check in all_checks():
        if check.code == code:
            return check
    raise KeyError(f"no check named {code!r}")


def find_check(code: str) -> Optional[Check]:
    """The check whose main finding is `code`, or None."""
    try:
        return get_check(code)
    except KeyError:
        return None


def checks_in(*areas: str) -> List[Check]:
    return [c for c in all_checks() if c.area in areas]


def other_codes() -> List[CodeDoc]:
    """Codes emitted outside the checks' main codes: checks' `emits`, then `OTHER_CODES` of `CODE_MODULES`."""
    docs = [doc for check in all_checks() for doc in check.emits]
    for name in CODE_MODULES:
        docs.extend(getattr(importlib.import_module(name), "OTHER_CODES", ()))
    return docs


def registered_codes() -> Dict[str, str]:
    """Every code a finding can carry → its title."""
    codes = {c.code: c.title for c in all_checks()}
    for doc in other_codes():
        codes.setdefault(doc.code, doc.title)
    return codes


def _crashed(check: Check, exc: BaseException) -> Finding:
    return Finding(
        code=check.code,
        status=Status.ERROR,
        title=check.title,
        summary=f"The check itself crashed: {type(exc).__name__}: {exc}",
        evidence={"traceback": traceback.format_exc()},
        cause="A bug in ldm-diagnostics or an environment it did not expect.",
        fix="Re-run with --verbose and report the traceback; the other checks are unaffected.",
        blocking=False,
    )


def _evaluate_in(check: Check, ctx: Context, active: Tuple[str, ...]) -> List[Finding]:
    from .facts import get_fact

    results = {}
    for code in check.needs:
        needed = find_check(code)
        if needed is not None and code not in active:
            results[code] = _run(needed, ctx, active + (check.code,))
    return check._decide(lambda name: get_fact(ctx, name), lambda name: lambda: get_fact(ctx, name), results)


def _run(check: Check, ctx: Context, active: Tuple[str, ...]) -> CheckResult:
    memo = ctx.check_results
    if check.code in memo and memo[check.code].check is check:
        return memo[check.code]
    start = time.perf_counter()
    try:
        findings = _evaluate_in(check, ctx, active)
    except Exception as exc:  # a crashed check is a finding, not a crashed harness
        findings = [_crashed(check, exc)]
    result = CheckResult(check, findings, time.perf_counter() - start)
    memo[check.code] = result
    return result


def run_check(check: Check, ctx: Context) -> CheckResult:
    """The result of `check` on `ctx`: run once per context, then the memoised result."""
    return _run(check, ctx, ())


def run_checks(ctx: Context, checks: Optional[Sequence[Check]] = None, on_result=None) -> List[CheckResult]:
    results = []
    for check in all_checks() if checks is None else checks:
        result = run_check(check, ctx)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results

"""Confirm a match on this machine: each cause's questions are answered by the checks behind their
finding codes (looked up in the registry at run time, each run once per Context) or by the
installed versions; the causes are ranked by what the checks found."""

from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..findings import Finding
from .results import STATUS_RANK, CauseResult, Hit, NeedResult, SignatureMatch
from .signatures import Need

# Areas whose checks may be run as a group to find a code no check is named after. Model checks
# instantiate models and are only run when a check carries the code as its id.
_SCANNABLE_AREAS = ("env", "compat", "cuda", "hub", "cache", "tokenizer", "ckpt", "config")

# --- checks: looked up by finding code at run time -----------------------------------------------


class CheckResults:
    """Answers "what does the check behind code X say on this machine?" from the registry's
    per-run memo of check results (`registry.run_check`: each check runs once per Context).

    The check for a code is the one named after it, else the one that declares it in `emits`, else
    (for areas whose checks are cheap) one of its area that emitted it. Checks are found through
    `diagnostics.registry.CHECK_MODULES` when first asked; a module that fails to import is recorded
    rather than raised. `results` (CheckResults the caller already has) are put in the memo; tests
    pass `checks=` (a list of `Check`) to use hand-made checks."""

    def __init__(self, ctx, results: Optional[Sequence[Any]] = None, checks: Optional[Sequence[Any]] = None,
                 run: bool = True) -> None:
        self.ctx = ctx
        self.run = run
        self._given = list(checks) if checks is not None else None
        self._checks: Optional[List[Any]] = None
        self.module_errors: List[str] = []
        self.memo: Dict[str, Any] = getattr(ctx, "check_results", None)
        if self.memo is None:
            self.memo = {}
        for result in results or ():
            self.memo.setdefault(result.check.code, result)

    @property
    def checks(self) -> List[Any]:
        if self._checks is None:
            self._checks = list(self._given) if self._given is not None else self._load()
        return self._checks

    def _load(self) -> List[Any]:
        from .. import registry

        checks: List[Any] = []
        for name in registry.CHECK_MODULES:
            try:
                checks.extend(getattr(importlib.import_module(name), "CHECKS", ()))
            except Exception as exc:  # one broken area must not hide the others
                self.module_errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return checks

    def _run(self, check) -> List[Finding]:
        from ..registry import run_check

        return list(run_check(check, self.ctx).findings)

    def lookup(self, code: str) -> Tuple[str, List[Finding], str]:
        """(state, findings, check code): state is `found`, `not-run` (running disabled) or `unavailable`."""
        for check_code, result in list(self.memo.items()):
            hits = [f for f in result.findings if f.code == code]
            if hits:
                return "found", hits, check_code
        if not self.run:
            return "not-run", [], ""
        by_code = {c.code: c for c in self.checks}
        owner = by_code.get(code) or next(
            (c for c in self.checks if code in [doc.code for doc in getattr(c, "emits", ())]), None)
        if owner is not None:
            findings = self._run(owner)
            return "found", [f for f in findings if f.code == code] or findings, owner.code
        if code.split(".", 1)[0] in _SCANNABLE_AREAS:
            for check in self.checks:
                if check.area == code.split(".", 1)[0]:
                    hits = [f for f in self._run(check) if f.code == code]
                    if hits:
                        return "found", hits, check.code
        return "unavailable", [], ""


# --- versions ---------------------------------------------------------------------------------------


def installed_versions_or_none(ctx) -> Optional[Dict[str, Optional[str]]]:
    """The installed versions (package label -> version), or None when they cannot be read."""
    try:
        return _installed_versions(ctx)
    except Exception:  # a broken environment probe must not stop the explanation
        return None


def _installed_versions(ctx) -> Dict[str, Optional[str]]:
    from ..probes.environment import probe_environment

    env = ctx.fact("environment", probe_environment)
    versions = dict(env.packages)
    versions["python"] = env.python.version
    return versions


def _spec_ok(version: Optional[str], spec: str) -> Optional[bool]:
    if spec == "absent":
        return version is None
    if spec == "present":
        return version is not None
    if version is None:
        return False
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        release = Version(version).base_version  # 2.6.0+cu124 -> 2.6.0
        return SpecifierSet(spec).contains(Version(release), prereleases=True)
    except Exception:  # unparsable version or spec, or no usable `packaging`: undecided
        return None


def _describe_spec(pkg: str, spec: str) -> str:
    if spec == "present":
        return f"{pkg} installed"
    if spec == "absent":
        return f"{pkg} not installed"
    return f"{pkg} {spec}"


def _describe(alternative: Mapping[str, str]) -> str:
    return ", ".join(_describe_spec(pkg, spec) for pkg, spec in alternative.items())


def _have(packages: Iterable[str], installed: Mapping[str, Optional[str]]) -> str:
    return ", ".join(f"{p} {installed[p]}" if installed.get(p) else f"{p} not installed" for p in packages)


def evaluate_versions(alternatives: Sequence[Mapping[str, str]], installed: Mapping[str, Optional[str]]
                      ) -> Tuple[Optional[bool], str]:
    """Whether the installed versions fall in any alternative; and a sentence that says so."""
    unknown = False
    for alt in alternatives:
        results = [_spec_ok(installed.get(pkg), spec) for pkg, spec in alt.items()]
        if all(r is True for r in results):
            return True, f"here: {_have(alt, installed)} (affected: {_describe(alt)})"
        if any(r is None for r in results):
            unknown = True
    packages: List[str] = []
    for alt in alternatives:
        for pkg in alt:
            if pkg not in packages:
                packages.append(pkg)
    wanted = " or ".join(_describe(a) for a in alternatives)
    if unknown:
        return None, f"here: {_have(packages, installed)}; could not compare with {wanted}"
    return False, f"here: {_have(packages, installed)} (affected only: {wanted})"


# --- confirmation -----------------------------------------------------------------------------------


def evaluate_need(need: Need, source: CheckResults, installed: Optional[Mapping[str, Optional[str]]]) -> NeedResult:
    """Answer one question from the checks behind its codes, then from installed versions."""
    answered: List[NeedResult] = []
    notes: List[str] = []
    for code in need.codes:
        state, findings, _check_id = source.lookup(code)
        if state == "unavailable":
            notes.append(f"no check for {code} on this installation yet")
            continue
        if state == "not-run":
            notes.append(f"{code} was not run (confirmation disabled)")
            continue
        for f in findings:
            status = f.status.value
            value = f.evidence.get(need.evidence_key) if need.evidence_key else None
            if need.evidence_key and value is not None and value in need.evidence_confirms:
                outcome = "confirmed"
            elif need.evidence_key and value is not None and value in need.evidence_refutes:
                outcome = "refuted"
            elif not need.confirms and not need.refutes:
                outcome = "noted"
            elif status in need.confirms:
                outcome = "confirmed"
            elif status in need.refutes:
                outcome = "refuted"
            else:
                outcome = "open"
            answered.append(NeedResult(need, outcome, f.code, status, f.summary, dict(f.evidence)))
    result: Optional[NeedResult] = None
    for outcome in ("confirmed", "refuted", "open", "noted"):
        picked = [r for r in answered if r.outcome == outcome]
        if outcome == "refuted" and picked and len(answered) < len(need.codes) and not need.versions:
            # Some codes refute, others have no check: e.g. DNS works, but connecting was not tried.
            result = NeedResult(need, "open", picked[0].by, picked[0].status,
                                picked[0].summary + " (the other checks for this are not available)",
                                picked[0].evidence)
            break
        if picked:
            result = picked[0]
            break
    if (result is None or result.outcome == "open") and need.versions and installed is not None:
        verdict, sentence = evaluate_versions(need.versions, installed)
        if verdict is not None:
            result = NeedResult(need, "confirmed" if verdict else "refuted", "installed versions",
                                "", sentence, {"versions": {p: installed.get(p) for a in need.versions for p in a}})
    if result is None:
        result = NeedResult(need, "unavailable")
    result.notes = notes
    return result


def _cause_status(needs: Sequence[NeedResult]) -> str:
    required = [n for n in needs if n.need.required]
    if any(n.outcome == "refuted" for n in required):
        return "refuted"
    if required and all(n.outcome == "confirmed" for n in required):
        return "confirmed"
    if any(n.outcome == "confirmed" for n in required):
        return "likely"
    return "unverified"


def confirm(match: SignatureMatch, source: CheckResults, installed: Optional[Mapping[str, Optional[str]]]) -> None:
    """Fill `match` with what the checks say: reproduce, causes (ranked), status."""
    cache: Dict[int, NeedResult] = {}

    def answer(need: Need) -> NeedResult:
        key = id(need)
        if key not in cache:
            cache[key] = evaluate_need(need, source, installed)
        return cache[key]

    sig = match.signature
    match.reproduce = [answer(n) for n in sig.reproduce]
    match.context = [answer(Need(f"background: {code}", (code,), confirms=(), refutes=())) for code in sig.context]
    causes = []
    for order, cause in enumerate(sig.causes):
        needs = [answer(n) for n in cause.needs]
        causes.append(CauseResult(cause, _cause_status(needs), needs, order))
    causes.sort(key=lambda c: (-STATUS_RANK[c.status], -c.confirmed_count, c.order))
    match.causes = causes
    repro_yes = any(n.outcome == "confirmed" for n in match.reproduce)
    repro_no = any(n.outcome == "refuted" for n in match.reproduce)
    statuses = [c.status for c in causes]
    if repro_no and not repro_yes:
        match.status = "refuted"
    elif repro_yes or "confirmed" in statuses:
        match.status = "confirmed"
    elif "likely" in statuses:
        match.status = "likely"
    elif statuses and all(s == "refuted" for s in statuses):
        match.status = "refuted"
    else:
        match.status = "unverified"


def wording_note(hit: Hit, installed: Optional[Mapping[str, Optional[str]]]) -> str:
    if not hit.pattern.versions or installed is None:
        return ""
    verdict, sentence = evaluate_versions(hit.pattern.versions, installed)
    if verdict is False:
        packages: List[str] = []
        for alt in hit.pattern.versions:
            packages += [p for p in alt if p not in packages]
        return (f"This wording is printed with {' or '.join(_describe(a) for a in hit.pattern.versions)}; "
                f"installed here: {_have(packages, installed)}. The log may come from another environment, "
                "or the packages changed since.")
    return ""



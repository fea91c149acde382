"""What a run of checks is about, and the facts gathered so far.

Everything that touches the world (environment variables, working directory, subprocesses) comes
in through the `Context`, so rules and checks can be run against hand-made worlds in tests.
Probes are memoised per context: the GPU subprocess or a checkpoint scan runs once even when
several checks read its facts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

DEFAULT_CLIP_ID = "openai/clip-vit-large-patch14"

# Options can also come from the environment, so a deploy script can set them once.
ENV_FALLBACKS = {
    "checkpoint": "LDM_DIAG_CHECKPOINT",
    "config": "LDM_DIAG_CONFIG",
    "code_root": "LDM_DIAG_CODE_ROOT",
    "error_log": "LDM_DIAG_ERROR_LOG",
}


@dataclass
class Options:
    checkpoint: Optional[str] = None
    config: Optional[str] = None
    code_root: Optional[str] = None
    model_ids: List[str] = field(default_factory=list)
    error_log: Optional[str] = None
    device: str = "auto"  # auto | cpu | cuda
    deep: bool = False
    hash: bool = False
    timeout: float = 60.0  # seconds for each subprocess probe (CUDA init can hang)

    @classmethod
    def from_values(cls, environ: Mapping[str, str], **values: Any) -> "Options":
        """Build options from front-end values, filling unset paths from LDM_DIAG_* variables."""
        for name, var in ENV_FALLBACKS.items():
            if not values.get(name) and environ.get(var):
                values[name] = environ[var]
        values = {k: v for k, v in values.items() if v is not None}
        return cls(**values)


@dataclass
class CommandResult:
    returncode: Optional[int]  # None when the command could not start or timed out
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str = ""  # why it could not start (not found, permission denied)


Runner = Callable[[Sequence[str], float, Optional[Mapping[str, str]]], CommandResult]


def run_command(argv: Sequence[str], timeout: float, env: Optional[Mapping[str, str]] = None) -> CommandResult:
    """Run a command with a timeout; never raises. The default `Runner`."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return CommandResult(None, out, err, timed_out=True, error=f"timed out after {timeout:g} s")
    except OSError as exc:
        return CommandResult(None, error=f"{type(exc).__name__}: {exc}")
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


class Context:
    """The world a set of checks looks at, plus the memoised facts about it."""

    def __init__(
        self,
        options: Optional[Options] = None,
        environ: Optional[Mapping[str, str]] = None,
        cwd: Optional[Path] = None,
        runner: Optional[Runner] = None,
        python: Optional[str] = None,
    ) -> None:
        self.environ: Dict[str, str] = dict(os.environ if environ is None else environ)
        self.options = options or Options.from_values(self.environ)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.runner: Runner = runner or run_command
        self.python = python or sys.executable
        self._facts: Dict[str, Any] = {}
        # CheckResult per check code, filled by the registry: each check runs once per context.
        self.check_results: Dict[str, Any] = {}

    def fact(self, name: str, probe: Callable[["Context"], Any]) -> Any:
        """Return the memoised result of `probe(self)` under `name`."""
        if name not in self._facts:
            self._facts[name] = probe(self)
        return self._facts[name]

    def set_fact(self, name: str, value: Any) -> None:
        self._facts[name] = value

    @property
    def facts(self) -> Dict[str, Any]:
        return dict(self._facts)

    @property
    def model_ids(self) -> List[str]:
        return list(self.options.model_ids)

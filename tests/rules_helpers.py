"""Run one registered check on hand-made facts, through its declaration (preconditions, stamping),
and build the typed environment facts a hand-made world needs."""

from diagnostics.probes.environment import NO_TORCH, DiskFacts, EnvironmentFacts, MemoryFacts, PythonFacts
from diagnostics.registry import get_check


def evaluate(code, **facts):
    """The single finding check `code` gives for `facts` (fact name -> value)."""
    [finding] = get_check(code).evaluate(**facts)
    return finding


def python_facts(**fields) -> PythonFacts:
    """A system CPython 3.10.12, with `fields` changed."""
    values = dict(version="3.10.12", version_info=(3, 10, 12), implementation="CPython", executable="/usr/bin/python3",
                  platform="Linux-x86_64", machine="x86_64", env_kind="system", env_name="", prefix="/usr")
    values.update(fields)
    return PythonFacts(**values)


def environment_facts(packages=None, python=None, torch=NO_TORCH, memory=None, disk=None,
                      checkpoint_size=None) -> EnvironmentFacts:
    """The environment facts of a hand-made world: these packages and torch build, the rest unknown."""
    return EnvironmentFacts(python=python or python_facts(), packages=dict(packages or {}), torch=torch,
                            memory=memory or MemoryFacts(None, None, "unavailable"),
                            disk=disk or DiskFacts(cwd=".", cwd_free=None), checkpoint_size=checkpoint_size)

"""The run: the stages in order, one event line each as they begin and end, then `done`.

A stage that the request or an earlier stage rules out is a `skip` event with its reason (no
checkpoint; a checkpoint that does not fit the model; no device; no smoke forward asked for). The
first failure ends the run: an `error` event, then `done`. KeyboardInterrupt is reported and re-raised.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .protocol import StageError, emit, error_info, is_oom
from .smoke import stage_smoke
from .stages import resolve_device, stage_device, stage_import, stage_instantiate, stage_load
from .state_dict import layout_main

STAGES = (("import", stage_import), ("instantiate", stage_instantiate), ("load", stage_load),
          ("device", stage_device), ("smoke", stage_smoke))
USAGE = "usage: python -m diagnostics.probes._model_child REQUEST_JSON | layout CKPT\n"


def _skip_rest(reason):
    emit("skip", stage="device", reason=reason)
    emit("skip", stage="smoke", reason=reason)


def _ruled_out(name, request, state):
    """"skip" when the stage is skipped, "stop" when it and every later one are, else None."""
    if name == "load" and not request.get("checkpoint"):
        emit("skip", stage=name, reason="no checkpoint was given")
        return "skip"
    if name == "device" and state.get("mismatched"):
        _skip_rest("the checkpoint does not fit the model (%d size mismatches; ldm's load_state_dict raises on "
                   "them), so it was not run" % state["mismatched"])
        return "stop"
    if name == "device":
        device, reason = resolve_device(request, state["torch"])
        state["device"] = device
        if device is None:
            _skip_rest(reason)
            return "stop"
    if name == "smoke" and not request.get("smoke", True):
        emit("skip", stage=name, reason="the smoke forward was not asked for")
        return "skip"
    return None


def _run_stage(name, stage, request, state):
    """Run one stage between its `begin` and `end` events; False when it failed (an `error` event)."""
    emit("begin", stage=name)
    started = time.perf_counter()
    try:
        data = stage(request, state)
    except StageError as exc:
        emit("error", stage=name, seconds=time.perf_counter() - started, error=exc.as_error(type="StageError"))
        return False
    except BaseException as exc:  # noqa: B902 - the user's code may raise anything, even SystemExit
        info = error_info(exc)
        info["kind"] = "oom" if is_oom(exc) else "exception"
        emit("error", stage=name, seconds=time.perf_counter() - started, error=info)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False
    emit("end", stage=name, data=data)
    return True


def model_main(request):
    state = {}
    emit("start", pid=os.getpid(), python=sys.executable)
    for name, stage in STAGES:
        ruled_out = _ruled_out(name, request, state)
        if ruled_out == "stop":
            break
        if ruled_out == "skip":
            continue
        if not _run_stage(name, stage, request, state):
            break
    emit("done")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "layout":
        return layout_main(argv[1])
    if len(argv) != 1:
        sys.stderr.write(USAGE)
        return 2
    return model_main(json.loads(argv[0]))

"""Every pickle in a byte range, replayed, and the safety facts over all the pickles of a file.

A loader reads one pickle and ignores what follows its STOP; a scanner that does the same misses a
second stream (issue 8), so each range is replayed stream after stream. `pickle_facts` folds the
replays of one file into its safety facts: the verdict over every pickle found, the weights_only
prediction over those `torch.load` unpickles.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .pickle_vm import PickleResult, read_pickle, read_pickles
from .safety import assess_globals, built_classes, weights_only_verdict

MAX_PICKLE_BYTES = 256 * 1024 * 1024  # SD 1.x data.pkl is ~200 KB; anything this big is not a weights file
MAX_STREAMS = 64  # pickles replayed back to back from one member or file
MAX_PICKLE_MEMBERS = 64  # pickle members replayed per zip or tar; more leaves the verdict unverified


def pickle_facts(results: List[PickleResult], members: List[str], torchscript: bool = False,
                 torch_reads: Optional[List[PickleResult]] = None,
                 unverified: Optional[List[str]] = None) -> Dict[str, Any]:
    """Safety facts over every pickle in the file.

    The safety verdict covers every pickle found (`results`, labelled by `members`); the weights_only
    prediction only those `torch.load` unpickles (`torch_reads`, default all). `unverified` says why a
    part that should have been read could not be (the verdict then cannot be "safe").
    """
    names: List[str] = []
    called: List[str] = []
    opcodes = set()
    anomalies: List[Dict[str, Any]] = []
    protocols = []
    built: List[str] = []
    torch_reads = results if torch_reads is None else torch_reads
    read_ids = {id(r) for r in torch_reads}
    wo_names: List[str] = []
    for res, member in zip(results, members):
        names.extend(res.global_names())
        called.extend(res.called)
        for a in res.anomalies:
            anomalies.append(dict(a, member=member))
        if id(res) in read_ids:
            built.extend(built_classes(res.build_targets))
            wo_names.extend(res.global_names())
            opcodes |= res.opcode_names
            protocols.append(res.protocol)
    verdict = assess_globals(names, called)
    where = {}
    for res, member in zip(results, members):
        for g in res.globals:
            where.setdefault(g["name"], {"member": member, "pos": g["pos"], "opcode": g["opcode"]})
    protocol = max((p for p in protocols if p is not None), default=None)
    persistent_ok = not any(res.odd_persistent_ids for res in torch_reads)
    return {
        "protocol": protocol,
        "opcodes": sum(r.opcodes for r in results),
        "members": members,
        "globals": verdict["globals"],
        "unsafe_globals": verdict["unsafe_globals"],
        "dangerous_globals": verdict["dangerous_globals"],
        "unsafe_called": verdict["unsafe_called"],
        "where": {n: where[n] for n in verdict["unsafe_globals"] if n in where},
        "anomalies": anomalies[:50],
        "global_count": sum(r.global_count for r in results),
        "unverified": list(unverified or [])[:20],
        "weights_only": weights_only_verdict(list(dict.fromkeys(wo_names)), opcodes, protocol, persistent_ok,
                                             torchscript, built=built),
    }


def replay_streams(data, label: str, results: List[PickleResult], members: List[str],
                   anomalies: Optional[List[Dict[str, Any]]] = None) -> Tuple[Optional[PickleResult], bool]:
    """Replay the pickle at the start of `data` and every pickle after its STOP.

    A loader reads one pickle and ignores what follows; a scanner that does the same misses a second
    stream (issue 8). Returns (the first stream, whether streams were left unread past the limit).
    """
    streams = read_pickles(data, 0, limit=MAX_STREAMS) or [read_pickle(data, 0)]  # empty: an error, not nothing
    for i, res in enumerate(streams):
        results.append(res)
        members.append(label if i == 0 else f"{label} (pickle {i + 1}, after the first STOP)")
    first = streams[0] if streams else None
    if first is not None and first.complete and first.end < len(data) and anomalies is not None:
        anomalies.append({"kind": "data-after-stop", "member": label, "bytes": len(data) - first.end,
                          "pickles": len(streams) - 1})
    last = streams[-1] if streams else None
    left = last is not None and last.complete and last.end < len(data) and len(streams) >= MAX_STREAMS
    return first, left


def keep_if_it_names_globals(data: bytes, label: str, results: List[PickleResult], labels: List[str],
                             notes: List[Dict[str, Any]]) -> bool:
    """Replay `data` stream by stream; keep its replays (appended to the lists) only when one names a global."""
    kept_results: List[PickleResult] = []
    kept_labels: List[str] = []
    kept_notes: List[Dict[str, Any]] = []
    replay_streams(data, label, kept_results, kept_labels, kept_notes)
    if not any(r.globals for r in kept_results):
        return False
    results.extend(kept_results)
    labels.extend(kept_labels)
    notes.extend(kept_notes)
    return True

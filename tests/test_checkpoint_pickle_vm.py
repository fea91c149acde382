"""The non-executing pickle reader: every protocol, the memo, persistent ids, and damaged streams.

Pickles are produced by the standard library's pickler from plain data (which runs nothing) or
written as opcode bytes; none of these tests needs torch.
"""

import io
import pickle
import sys
from collections import OrderedDict

import pytest

from diagnostics.probes.checkpoint.pickle_vm import Global, Node, PersId, read_pickle, read_pickles
from diagnostics.probes.checkpoint.safety import assess_globals, weights_only_verdict
from tests import ckpt_factory as f


def replay(data: bytes):
    return read_pickle(io.BytesIO(data))


def to_python(x):
    """Turn a replayed plain-data value back into Python, to compare with what was pickled."""
    if isinstance(x, Node):
        if x.kind == "dict" or (x.kind == "call" and isinstance(x.func, Global) and x.func.full == "collections.OrderedDict"):
            return {to_python(k): to_python(v) for k, v in x.items}
        if x.kind == "list":
            return [to_python(v) for v in x.elems]
        if x.kind in ("set", "frozenset"):
            return {to_python(v) for v in x.elems}
        if x.kind == "call" and isinstance(x.func, Global) and x.func.full in ("builtins.set", "builtins.frozenset"):
            return set(to_python(x.args[0])) if x.args else set()
        if x.kind == "call" and isinstance(x.func, Global) and x.func.full == "_codecs.encode":
            return x.args[0].encode(x.args[1])
        if x.kind == "call" and isinstance(x.func, Global) and x.func.full == "builtins.bytearray":
            return bytes(x.args[0]) if x.args else b""
        raise AssertionError(f"unexpected node {x!r}")
    if isinstance(x, tuple):
        return tuple(to_python(v) for v in x)
    return x


DATA = {"name": "unet", "shape": (320, 4, 3, 3), "scale": 0.18215, "big": 2**80, "neg": -7, "flag": True,
        "none": None, "list": [1, "two", 3.0], "nested": {"a": {"b": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)]}},
        "bytes": b"\x00\xff", "text": "ünïcode", "set": {1, 2}}


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_replays_plain_data_of_every_protocol(protocol):
    res = replay(pickle.dumps(DATA, protocol=protocol))
    assert res.complete and res.error is None
    value = to_python(res.root)
    expected = dict(DATA)
    assert value == expected
    if protocol >= 2:
        assert res.protocol == protocol
    # Only harmless builtins appear (for set/bytes encodings in old protocols).
    assert set(res.global_names()) <= {"builtins.set", "_codecs.encode", "__builtin__.set", "builtins.bytearray"}


def test_memo_shares_objects_like_the_real_unpickler():
    shared = [1, 2]
    res = replay(pickle.dumps({"a": shared, "b": shared}, protocol=2))
    items = dict(res.root.items)
    assert items["a"] is items["b"]  # BINGET returns the memoised node, not a copy


def test_ordered_dict_and_persistent_ids_are_symbolic():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, bytes) and obj.startswith(b"storage"):
                return ("storage", "FloatStorage", obj[7:].decode(), "cpu", 4)
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(OrderedDict([("w", b"storage0"), ("b", b"storage1")]))
    res = replay(buf.getvalue())
    assert res.complete
    assert res.root.func == Global("collections", "OrderedDict")
    (k0, v0), (k1, v1) = res.root.items
    assert (k0, k1) == ("w", "b")
    assert isinstance(v0, PersId) and v0.pid == ("storage", "FloatStorage", "0", "cpu", 4)
    assert "BINPERSID" in res.opcode_names


def test_protocol0_persistent_id_text():
    res = replay(b"(dp0\nVw\np1\nPstorage0\np2\ns.")
    assert res.complete and isinstance(dict(res.root.items)["w"], PersId)


def test_stack_global_resolved_through_the_memo():
    res = replay(f.pickle_stack_global("builtins", "exec", "print(1)", via_memo=True))
    assert res.complete
    assert res.global_names() == ["builtins.exec"]
    assert "builtins.exec" in res.called


def test_unresolvable_stack_global_is_reported_not_guessed():
    # STACK_GLOBAL whose operands are a call result, not strings.
    data = b"\x80\x04cbuiltins\ngetattr\n(\x8c\x02os\x8c\x04nametR\x8c\x01x\x93)R."
    res = replay(data)
    names = res.global_names()
    assert "builtins.getattr" in names and "<unresolved STACK_GLOBAL>" in names
    verdict = assess_globals(names, res.called)
    assert "<unresolved STACK_GLOBAL>" in verdict["unsafe_globals"]
    assert any(a["kind"] == "unresolved-global" for a in res.anomalies)


def test_python2_names_are_mapped_for_old_protocols():
    res = replay(b"c__builtin__\nset\n(]tR.")
    assert res.global_names() == ["builtins.set"]


def test_build_on_a_class_is_an_anomaly():
    # BUILD on a global sets attributes on the imported object itself (modelscan issue 85).
    data = b"\x80\x02ccollections\nOrderedDict\n}(X\x03\x00\x00\x00fooK\x01ub."
    res = replay(data)
    assert any(a["kind"] == "build-on-global" for a in res.anomalies)
    assert "collections.OrderedDict" in res.called


@pytest.mark.parametrize("data, fragment", [
    (b"", "truncated"),
    (b"\x80\x02}q\x00(X\x01\x00\x00\x00a", "truncated"),  # ends inside the dict
    (b"\x80\x02\xff.", "unreadable"),  # unknown opcode
    (b"\x80\x020.", "underflow"),  # POP on an empty stack
    (b"\x80\x02h\x05.", "memo"),  # GET before PUT
    (b"\x80\x02t.", "MARK"),  # TUPLE without MARK
    (b"\x80\x02X\xff\xff\xff\x7fabc", "truncated"),  # absurd string length: never allocated
    (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "unreadable"),  # not UTF-8
])
def test_damaged_streams_stop_with_an_error_never_raise(data, fragment):
    res = replay(data)
    assert not res.complete
    assert fragment in res.error


def test_globals_before_the_damage_are_still_reported():
    res = replay(f.pickle_p2("os", "system", "true")[:-3])  # cut before REDUCE/STOP
    assert not res.complete
    assert res.global_names() == ["os.system"]


def test_opcode_budget_bounds_the_work():
    data = b"\x80\x02]" + b"K\x01a" * 5000 + b"."
    res = read_pickle(io.BytesIO(data), max_ops=1000)
    assert not res.complete and "opcodes" in res.error


def test_nested_lists_do_not_exhaust_the_stack():
    depth = 100_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    res = replay(data)
    assert res.complete


def test_consecutive_pickles_are_read_one_after_another():
    data = pickle.dumps(1, protocol=2) + pickle.dumps("two", protocol=2) + pickle.dumps([3], protocol=2)
    results = read_pickles(io.BytesIO(data))
    assert [to_python(r.root) for r in results] == [1, "two", [3]]


def test_weights_only_model_refuses_what_torch_refuses():
    ok = weights_only_verdict(["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.HalfStorage"],
                              {"PROTO", "GLOBAL", "BINPUT", "REDUCE", "STOP", "BINPERSID"}, 2)
    assert not ok["refused"]
    lightning = weights_only_verdict(["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"], {"GLOBAL"}, 2)
    assert lightning["refused"] and lightning["add_safe_globals_enough"]
    blocked = weights_only_verdict(["os.system"], {"GLOBAL"}, 2)
    assert blocked["refused"] and not blocked["add_safe_globals_enough"] and "blocked" in blocked["reasons"][0]
    proto4 = weights_only_verdict(["collections.OrderedDict"], {"STACK_GLOBAL", "MEMOIZE", "FRAME"}, 4)
    assert proto4["refused"] and proto4["opcodes"] == ["FRAME", "MEMOIZE", "STACK_GLOBAL"]


def test_reader_imports_nothing_it_reads():
    before = set(sys.modules)
    res = replay(f.pickle_p2("antigravity", "fly", "now"))
    assert res.complete and res.global_names() == ["antigravity.fly"]
    assert "antigravity" not in sys.modules
    assert set(sys.modules) == before


def test_persistent_ids_that_are_not_storages_are_noted():
    from diagnostics.probes.checkpoint.torchfile import pickle_facts

    storage = b"\x80\x02(X\x07\x00\x00\x00storageK\x00tQ."  # BINPERSID ('storage', 0)
    other = b"\x80\x02(X\x04\x00\x00\x00fileK\x00tQ."  # BINPERSID ('file', 0)
    text = b"Pfile0\n."  # protocol 0 PERSID
    assert not pickle_facts([replay(storage)], ["a"])["weights_only"]["refused"]
    for data in (other, text):
        facts = pickle_facts([replay(data)], ["a"])
        assert facts["weights_only"]["refused"]
        assert any("persistent id" in r for r in facts["weights_only"]["reasons"])

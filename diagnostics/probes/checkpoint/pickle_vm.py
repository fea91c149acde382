"""A pickle reader that runs no code: it decodes the opcodes itself and replays them on a symbolic stack.

`torch.load` (and `pickle.load`) import whatever module a checkpoint names and call it; that is how a
`.ckpt` runs code on the machine that opens it. This reader decodes the opcode stream (every protocol,
0 to 5, from the opcode table in the standard library's `pickle.py`) straight from a buffer and replays
it on a stack of inert placeholders: `Global("os", "system")` is a name, `Node(func=..., args=...)`
records that the pickle *would* call something, `PersId(...)` is a torch storage reference. Nothing is
imported, called or constructed beyond plain containers. From the replay the torch layer reads tensor
names, dtypes, shapes and storage offsets, and the safety layer reads every global the stream names,
including those assembled with `STACK_GLOBAL` through the memo.

The decoder is written for speed (a checkpoint's data.pkl has ~60,000 opcodes) and for bounds: every
length is checked against the buffer before anything is sliced, so a claimed 8 EB string costs nothing,
and `max_ops` caps the work (each opcode creates at most one placeholder). Malformed streams stop with
an error, keeping what was read up to that point (so the globals named before the damage are reported).
"""

from __future__ import annotations

import codecs
import io
import mmap
import struct
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

try:  # stdlib mapping of Python 2 names (`__builtin__`, `copy_reg`) that pickle applies for protocol < 3
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
except ImportError:  # pragma: no cover - always present in CPython
    IMPORT_MAPPING, NAME_MAPPING = {}, {}

DEFAULT_MAX_OPS = 8_000_000  # ~130 x an SD 1.x data.pkl with EMA; the replay holds < ~150 bytes per opcode
MAX_DISTINCT_GLOBALS = 10_000  # a weights pickle names about ten
_U4 = struct.Struct("<I").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U2 = struct.Struct("<H").unpack_from
_U8 = struct.Struct("<Q").unpack_from
_F8 = struct.Struct(">d").unpack_from

# opcode byte -> (name, protocol that introduced it); from the standard library's pickle.py
OPCODES: Dict[int, Tuple[str, int]] = {
    ord(k): v for k, v in {
        "(": ("MARK", 0), ".": ("STOP", 0), "0": ("POP", 0), "1": ("POP_MARK", 1), "2": ("DUP", 0),
        "F": ("FLOAT", 0), "I": ("INT", 0), "J": ("BININT", 1), "K": ("BININT1", 1), "L": ("LONG", 0),
        "M": ("BININT2", 1), "N": ("NONE", 0), "P": ("PERSID", 0), "Q": ("BINPERSID", 1), "R": ("REDUCE", 0),
        "S": ("STRING", 0), "T": ("BINSTRING", 1), "U": ("SHORT_BINSTRING", 1), "V": ("UNICODE", 0),
        "X": ("BINUNICODE", 1), "a": ("APPEND", 0), "b": ("BUILD", 0), "c": ("GLOBAL", 0), "d": ("DICT", 0),
        "}": ("EMPTY_DICT", 1), "e": ("APPENDS", 1), "g": ("GET", 0), "h": ("BINGET", 1), "i": ("INST", 0),
        "j": ("LONG_BINGET", 1), "l": ("LIST", 0), "]": ("EMPTY_LIST", 1), "o": ("OBJ", 1), "p": ("PUT", 0),
        "q": ("BINPUT", 1), "r": ("LONG_BINPUT", 1), "s": ("SETITEM", 0), "t": ("TUPLE", 0),
        ")": ("EMPTY_TUPLE", 1), "u": ("SETITEMS", 1), "G": ("BINFLOAT", 1),
        "\x80": ("PROTO", 2), "\x81": ("NEWOBJ", 2), "\x82": ("EXT1", 2), "\x83": ("EXT2", 2), "\x84": ("EXT4", 2),
        "\x85": ("TUPLE1", 2), "\x86": ("TUPLE2", 2), "\x87": ("TUPLE3", 2), "\x88": ("NEWTRUE", 2),
        "\x89": ("NEWFALSE", 2), "\x8a": ("LONG1", 2), "\x8b": ("LONG4", 2),
        "B": ("BINBYTES", 3), "C": ("SHORT_BINBYTES", 3),
        "\x8c": ("SHORT_BINUNICODE", 4), "\x8d": ("BINUNICODE8", 4), "\x8e": ("BINBYTES8", 4),
        "\x8f": ("EMPTY_SET", 4), "\x90": ("ADDITEMS", 4), "\x91": ("FROZENSET", 4), "\x92": ("NEWOBJ_EX", 4),
        "\x93": ("STACK_GLOBAL", 4), "\x94": ("MEMOIZE", 4), "\x95": ("FRAME", 4),
        "\x96": ("BYTEARRAY8", 5), "\x97": ("NEXT_BUFFER", 5), "\x98": ("READONLY_BUFFER", 5),
    }.items()
}


def shown(text: str) -> str:
    """A name as reported: NUL, control characters, spaces' look-alikes and non-ASCII letters escaped, so
    that `os\\x00` or a Cyrillic `о` cannot pass for `os` in a report (issue 8)."""
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


class PickleParseError(Exception):
    """The stream is not a well-formed pickle (truncated, unknown opcode, stack underflow)."""

    def __init__(self, message: str, pos: Optional[int] = None) -> None:
        super().__init__(message)
        self.pos = pos


class PickleLimitError(PickleParseError):
    """The stream is larger than we are willing to replay."""


class Global:
    """A `module.name` the pickle refers to; never imported."""

    __slots__ = ("module", "name", "resolved", "full")

    def __init__(self, module: str, name: str, resolved: bool = True) -> None:
        self.module, self.name, self.resolved = module, name, resolved
        if not resolved:
            self.full = "<unresolved STACK_GLOBAL>"
        elif "." in name:
            # Protocol 4 resolves a dotted name attribute by attribute (`os.path.join` from module `os`):
            # spelt `module:path`, which no allowlisted `module.name` can equal (issue 8).
            self.full = f"{shown(module)}:{shown(name)}"
        else:
            self.full = f"{shown(module)}.{shown(name)}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Global) and (self.module, self.name, self.resolved) == (
            other.module, other.name, other.resolved)

    def __hash__(self) -> int:
        return hash((self.module, self.name, self.resolved))

    def __repr__(self) -> str:
        return f"Global({self.full})"


class PersId:
    """A persistent id (torch: `('storage', StorageType, key, location, numel)`)."""

    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid


_EMPTY: Tuple[Any, ...] = ()


class Node:
    """A container or a call the pickle would build. `kind` is dict, list, set, frozenset or call."""

    __slots__ = ("kind", "func", "args", "kwargs", "items", "elems", "state", "pos")

    def __init__(self, kind: str, func: Any = None, args: Any = None, pos: int = -1) -> None:
        self.kind = kind
        self.func = func
        self.args = args
        self.kwargs = None
        # SETITEM(S) pairs (dicts, OrderedDict() calls) and APPEND(S)/ADDITEMS elements; a shared empty
        # tuple until the first one arrives, which halves the memory of a stream of empty containers.
        self.items: Sequence[Tuple[Any, Any]] = _EMPTY
        self.elems: Sequence[Any] = _EMPTY
        self.state: Any = None  # BUILD argument
        self.pos = pos

    def __repr__(self) -> str:
        return f"Node({self.kind}, {self.func!r})"


class PickleResult:
    """The replayed object and what the stream contained."""

    def __init__(self) -> None:
        self.root: Any = None
        self.complete = False
        self.protocol: Optional[int] = None
        self.max_proto = 0  # highest protocol among the opcodes used
        self.opcodes = 0
        self.opcode_names: Set[str] = set()
        self.globals: List[Dict[str, Any]] = []  # {"name", "pos", "opcode"}, first occurrence of each, in order
        self.global_count = 0  # every occurrence
        self.called: Set[str] = set()  # globals the stream calls (REDUCE/NEWOBJ/INST/OBJ)
        self.build_targets: List[Tuple[str, Optional[str]]] = []  # (callable, first str arg) of objects BUILD updates
        self.odd_persistent_ids = 0  # persistent ids that are not torch ('storage', ...) records
        self.anomalies: List[Dict[str, Any]] = []
        self.error: Optional[str] = None
        self.error_pos: Optional[int] = None
        self.start = 0
        self.end = 0

    def global_names(self) -> List[str]:
        return list(dict.fromkeys(g["name"] for g in self.globals))


def _map_py2(module: str, name: str) -> Tuple[str, str]:
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


def _as_buffer(source) -> Tuple[Any, int, Optional[Any]]:
    """(buffer, start, stream to reposition afterwards) for bytes, mmap or an in-memory stream."""
    if isinstance(source, (bytes, bytearray, mmap.mmap)):
        return source, 0, None
    if isinstance(source, memoryview):
        return source.tobytes(), 0, None
    if isinstance(source, io.BytesIO):
        return source.getvalue(), source.tell(), source
    raise TypeError("read_pickle needs bytes, an mmap or a BytesIO")


def read_pickle(source, start: Optional[int] = None, max_ops: int = DEFAULT_MAX_OPS) -> PickleResult:
    """Replay one pickle (up to its STOP) from `source`, beginning at `start`.

    Never raises for bad input: a malformed stream sets `error`, and `complete` stays False.
    """
    buf, begin, stream = _as_buffer(source)
    result = PickleResult()
    result.start = begin if start is None else start
    try:
        result.end = _replay(buf, result, max_ops)
    except PickleParseError as exc:
        result.error, result.error_pos = str(exc), exc.pos
        result.end = exc.pos if exc.pos is not None else result.start
    if stream is not None:
        stream.seek(result.end)
    return result


def read_pickles(source, start: Optional[int] = None, limit: int = 8,
                 max_ops: int = DEFAULT_MAX_OPS) -> List[PickleResult]:
    """Replay consecutive pickles (legacy torch files hold five); stops at the first damaged one or at the end."""
    buf, begin, stream = _as_buffer(source)
    pos = begin if start is None else start
    results: List[PickleResult] = []
    for _ in range(limit):
        if pos >= len(buf):
            break
        res = read_pickle(buf, pos, max_ops=max_ops)
        results.append(res)
        pos = res.end
        if not res.complete:
            break
    if stream is not None:
        stream.seek(pos)
    return results


def pickle_evidence(head: bytes, need: int = 16) -> str:
    """Would an unpickler act on these bytes? `torch.load` unpickles any file that is not a zip.

    "pickle": they replay to a STOP, call a global, or give `need` opcodes without an error;
    "prefix": every opcode up to the end of `head` is valid (only the rest of the file can tell);
    "": an invalid opcode or a stack error comes first.
    """
    res = read_pickle(bytes(head), max_ops=max(need, 1) * 64)
    valid_ops = res.opcodes - (1 if res.error is not None else 0)
    if res.complete or res.called or valid_ops >= need:
        return "pickle"
    if res.error is not None and "truncated" in res.error:
        return "prefix"
    return ""


def _replay(buf, result: PickleResult, max_ops: int) -> int:
    """Decode and replay from result.start; returns the position after STOP."""
    end = len(buf)
    pos = result.start
    stack: List[Any] = []
    metastack: List[List[Any]] = []
    memo: Dict[int, Any] = {}
    append = stack.append
    names = result.opcode_names
    globals_ = result.globals
    distinct: Set[str] = set()
    called = result.called
    ops = 0
    at = pos

    def fail(message: str) -> PickleParseError:
        return PickleParseError(message, at)

    def note(kind: str, detail: str) -> None:
        if len(result.anomalies) < 100:
            result.anomalies.append({"kind": kind, "detail": detail, "pos": at})

    def need(n: int) -> None:
        if n < 0 or pos + n > end:
            raise fail(f"pickle ends early (truncated): {n} bytes needed at byte {pos}, {end - pos} left")

    def length_prefix(width: int, signed: bool = False) -> int:
        """A little-endian length of 1, 4 or 8 bytes at `pos`; the position moves past it."""
        nonlocal pos
        need(width)
        if width == 1:
            n = buf[pos]
        elif width == 4:
            n = (_I4 if signed else _U4)(buf, pos)[0]
        else:
            n = _U8(buf, pos)[0]
        pos += width
        return n

    def line() -> bytes:
        nonlocal pos
        nl = buf.find(b"\n", pos, end)
        if nl < 0:
            raise fail("pickle ends early (truncated): a text line has no end")
        data = buf[pos:nl]
        pos = nl + 1
        return bytes(data)

    def take(n: int) -> bytes:
        nonlocal pos
        need(n)
        data = buf[pos:pos + n]
        pos += n
        return bytes(data)

    def pop_mark() -> List[Any]:
        nonlocal stack, append
        if not metastack:
            raise fail("MARK missing")
        items = stack
        stack = metastack.pop()
        append = stack.append
        return items

    def pop() -> Any:
        if not stack:
            raise fail("stack underflow")
        return stack.pop()

    def add_global(module: str, name: str, opname: str, resolved: bool = True) -> Global:
        if resolved and (result.protocol is None or result.protocol < 3):
            module, name = _map_py2(module, name)
        g = Global(module, name, resolved)
        record(g.full, opname)
        return g

    def record(label: str, opname: str) -> None:
        # One entry per distinct name keeps memory bounded by the names, not by the opcodes; past
        # MAX_DISTINCT_GLOBALS a placeholder stands for the rest (and is itself never allowlisted).
        result.global_count += 1
        if label in distinct:
            return
        if len(distinct) >= MAX_DISTINCT_GLOBALS:
            label = f"<more than {MAX_DISTINCT_GLOBALS} distinct globals>"
            if label in distinct:
                return
        distinct.add(label)
        globals_.append({"name": label, "pos": at, "opcode": opname})

    def construct(label: str, opname: str) -> None:
        # Not a global, but a construct no weights file needs: reported (and judged) like one.
        record(label[:300], opname)

    def text(data: bytes, encoding: str = "utf-8") -> str:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise fail(f"unreadable pickle data: {exc}")

    seen = set()
    try:
        while True:
            if pos >= end:
                raise fail("pickle ends early (truncated): no STOP")
            at = pos
            code = buf[pos]
            pos += 1
            ops += 1
            if ops > max_ops:
                raise PickleLimitError(f"more than {max_ops} pickle opcodes", at)
            seen.add(code)
            # The most frequent opcodes of a torch data.pkl, decoded first: BINPUT, BINGET, BININT1, MARK.
            if code == 0x71:
                if pos >= end:
                    raise fail("pickle ends early (truncated)")
                if not stack:
                    raise fail("stack underflow")
                memo[buf[pos]] = stack[-1]
                pos += 1
                continue
            if code == 0x68:
                if pos >= end:
                    raise fail("pickle ends early (truncated)")
                key = buf[pos]
                pos += 1
                if key not in memo:
                    raise fail(f"memo key {key} read before it was written")
                append(memo[key])
                continue
            if code == 0x4B:
                if pos >= end:
                    raise fail("pickle ends early (truncated)")
                append(buf[pos])
                pos += 1
                continue
            if code == 0x28:
                metastack.append(stack)
                stack = []
                append = stack.append
                continue
            if code == 0x72 or code == 0x6A:  # LONG_BINPUT / LONG_BINGET (memo past 255 entries)
                if pos + 4 > end:
                    raise fail("pickle ends early (truncated)")
                key = _U4(buf, pos)[0]
                pos += 4
                if code == 0x72:
                    memo[key] = stack[-1]
                elif key in memo:
                    append(memo[key])
                else:
                    raise fail(f"memo key {key} read before it was written")
                continue
            if code == 0x58:  # BINUNICODE
                if pos + 4 > end:
                    raise fail("pickle ends early (truncated)")
                n = _U4(buf, pos)[0]
                pos += 4
                if pos + n > end:
                    raise fail(f"pickle ends early (truncated): {n} bytes needed at byte {pos}, {end - pos} left")
                try:
                    append(bytes(buf[pos:pos + n]).decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError as exc:
                    raise fail(f"unreadable pickle data: {exc}")
                pos += n
                continue
            if code == 0x74:  # TUPLE
                items = tuple(pop_mark())
                append(items)
                continue
            if 0x85 <= code <= 0x87:  # TUPLE1..3
                n = code - 0x84
                if len(stack) < n:
                    raise fail("stack underflow")
                items = tuple(stack[-n:])
                del stack[-n:]
                append(items)
                continue
            if code == 0x52:  # REDUCE
                args = stack.pop()
                func = stack.pop()
                if type(func) is Global:
                    called.add(func.full)
                append(Node("call", func, args, at))
                continue
            if code == 0x89:
                append(False)
                continue
            if code == 0x51:  # BINPERSID
                pid = stack.pop()
                if not (type(pid) is tuple and pid and pid[0] in ("storage", b"storage")):
                    result.odd_persistent_ids += 1
                append(PersId(pid))
                continue
            if code == 0x29:
                append(())
                continue
            info = OPCODES.get(code)
            if info is None:
                raise fail(f"unreadable pickle data: unknown opcode 0x{code:02x} at byte {at}")
            name = info[0]
            # Opcodes not decoded above (BINUNICODE itself is).
            if name == "SHORT_BINUNICODE" or name == "BINUNICODE8":
                n = length_prefix(1 if name == "SHORT_BINUNICODE" else 8)
                try:
                    append(take(n).decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError as exc:
                    raise fail(f"unreadable pickle data: {exc}")
            elif name == "GLOBAL" or name == "INST":
                module = text(line())
                attr = text(line())
                g = add_global(module, attr, name)
                if name == "GLOBAL":
                    append(g)
                else:
                    args = tuple(pop_mark())
                    called.add(g.full)
                    append(Node("call", g, args, at))
            elif name == "NEWTRUE":
                append(True)
            elif name == "SETITEMS":
                items = pop_mark()
                _extend(stack, "items", list(zip(items[0::2], items[1::2])), note, fail, "dict", "SETITEM")
            elif name == "SETITEM":
                value = pop()
                key = pop()
                _extend(stack, "items", [(key, value)], note, fail, "dict", "SETITEM")
            elif name == "BININT2":
                need(2)
                append(_U2(buf, pos)[0])
                pos += 2
            elif name == "BININT":
                need(4)
                append(_I4(buf, pos)[0])
                pos += 4
            elif name == "EMPTY_DICT":
                append(Node("dict", pos=at))
            elif name == "EMPTY_LIST":
                append(Node("list", pos=at))
            elif name == "APPEND":
                value = pop()
                _extend(stack, "elems", [value], note, fail, "list", "APPEND")
            elif name == "APPENDS":
                values = pop_mark()
                _extend(stack, "elems", values, note, fail, "list", "APPEND")
            elif name == "NONE":
                append(None)
            elif name == "BINFLOAT":
                need(8)
                append(_F8(buf, pos)[0])
                pos += 8
            elif name == "PROTO":
                need(1)
                if result.protocol is not None:
                    note("repeated-proto", "PROTO appears more than once")
                elif ops != 1:
                    note("late-proto", "PROTO is not the first opcode")
                result.protocol = buf[pos]
                pos += 1
            elif name == "STOP":
                result.root = pop()
                result.complete = True
                if stack or metastack:
                    note("leftover-stack", "values left on the stack at STOP")
                return pos
            elif name == "FRAME":
                need(8)
                pos += 8
            elif name == "MEMOIZE":
                if not stack:
                    raise fail("stack underflow")
                memo[len(memo)] = stack[-1]
            elif name == "STACK_GLOBAL":
                attr = pop()
                module = pop()
                if isinstance(module, str) and isinstance(attr, str):
                    append(add_global(module, attr, name))
                else:
                    note("unresolved-global", "STACK_GLOBAL operands are not plain strings")
                    append(add_global(repr(module)[:80], repr(attr)[:80], name, resolved=False))
            elif name == "NEWOBJ":
                args = pop()
                cls = pop()
                if isinstance(cls, Global):
                    called.add(cls.full)
                append(Node("call", cls, args, at))
            elif name == "NEWOBJ_EX":
                kwargs = pop()
                args = pop()
                cls = pop()
                if isinstance(cls, Global):
                    called.add(cls.full)
                node = Node("call", cls, args, at)
                node.kwargs = kwargs
                append(node)
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise fail("OBJ without a class")
                if isinstance(items[0], Global):
                    called.add(items[0].full)
                append(Node("call", items[0], tuple(items[1:]), at))
            elif name == "BUILD":
                state = pop()
                if not stack:
                    raise fail("stack underflow")
                target = stack[-1]
                if isinstance(target, Global):
                    # BUILD on a class or function sets attributes on the imported object itself:
                    # a known way to tamper with an allowed global (modelscan issue 85).
                    note("build-on-global", f"BUILD sets attributes on {target.full}")
                    called.add(target.full)
                    construct(f"<BUILD on {target.full}>", "BUILD")
                elif isinstance(target, Node):
                    target.state = state
                    what = _suspicious_state(state)
                    if what:
                        # `__setstate__` (or a callable) put into an object's __dict__ by BUILD is called by
                        # the next BUILD on it: code run through an allowlisted class (issue 8).
                        owner = target.func.full if isinstance(target.func, Global) else target.kind
                        note("build-sets-callable", f"BUILD sets {what} on {owner}")
                        construct(f"<BUILD sets {what} on {owner}>", "BUILD")
                    if isinstance(target.func, Global) and len(result.build_targets) < 1000:
                        first = target.args[0] if isinstance(target.args, tuple) and target.args else None
                        result.build_targets.append((target.func.full, first if isinstance(first, str) else None))
                else:
                    note("build-on-value", f"BUILD on a {type(target).__name__}")
            elif name == "POP":
                pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                if not stack:
                    raise fail("stack underflow")
                append(stack[-1])
            elif name == "LIST" or name == "FROZENSET":
                node = Node("list" if name == "LIST" else "frozenset", pos=at)
                node.elems = pop_mark()
                append(node)
            elif name == "DICT":
                items = pop_mark()
                node = Node("dict", pos=at)
                node.items = list(zip(items[0::2], items[1::2]))
                append(node)
            elif name == "EMPTY_SET":
                append(Node("set", pos=at))
            elif name == "ADDITEMS":
                values = pop_mark()
                _extend(stack, "elems", values, note, fail, "set", "APPEND")
            elif name == "LONG1" or name == "LONG4":
                n = length_prefix(1 if name == "LONG1" else 4, signed=True)
                if n < 0:
                    raise fail("negative LONG4 length")
                append(int.from_bytes(take(n), "little", signed=True))
            elif name == "BINBYTES" or name == "SHORT_BINBYTES" or name == "BINBYTES8" or name == "BYTEARRAY8":
                data = take(length_prefix({"BINBYTES": 4, "SHORT_BINBYTES": 1}.get(name, 8)))
                append(data if name != "BYTEARRAY8" else Node("call", Global("builtins", "bytearray"), (data,), at))
            elif name == "BINSTRING" or name == "SHORT_BINSTRING":
                n = length_prefix(4 if name == "BINSTRING" else 1, signed=True)
                if n < 0:
                    raise fail("negative BINSTRING length")
                append(take(n).decode("latin-1"))
            elif name == "INT":
                raw = line()
                if raw == b"00":
                    append(False)
                elif raw == b"01":
                    append(True)
                else:
                    append(_parse_int(raw, fail))
            elif name == "LONG":
                raw = line()
                append(_parse_int(raw[:-1] if raw.endswith(b"L") else raw, fail))
            elif name == "FLOAT":
                try:
                    append(float(line()))
                except ValueError:
                    raise fail("unreadable pickle data: bad FLOAT")
            elif name == "STRING":
                raw = line().rstrip(b"\r")
                if len(raw) < 2 or raw[:1] != raw[-1:] or raw[:1] not in (b"'", b'"'):
                    raise fail("unreadable pickle data: STRING not quoted")
                try:
                    append(codecs.escape_decode(raw[1:-1])[0].decode("latin-1"))
                except ValueError as exc:
                    raise fail(f"unreadable pickle data: {exc}")
            elif name == "UNICODE":
                try:
                    append(line().decode("raw-unicode-escape"))
                except UnicodeDecodeError as exc:
                    raise fail(f"unreadable pickle data: {exc}")
            elif name == "PERSID":
                result.odd_persistent_ids += 1  # a text id: torch writes ('storage', ...) tuples with BINPERSID
                append(PersId(text(line(), "ascii")))
            elif name == "GET" or name == "PUT":
                key = _parse_int(line(), fail)
                if name == "GET":
                    if key not in memo:
                        raise fail(f"memo key {key} read before it was written")
                    append(memo[key])
                else:
                    if not stack:
                        raise fail("stack underflow")
                    memo[key] = stack[-1]
            elif name in ("EXT1", "EXT2", "EXT4"):
                width = {"EXT1": 1, "EXT2": 2, "EXT4": 4}[name]
                need(width)
                n = buf[pos] if width == 1 else (_U2(buf, pos)[0] if width == 2 else _I4(buf, pos)[0])
                pos += width
                note("extension-code", f"{name} {n} names a global through the copyreg extension registry")
                append(add_global("copyreg", f"extension[{n}]", name, resolved=True))
            elif name == "NEXT_BUFFER":
                note("out-of-band-buffer", "protocol 5 out-of-band buffer (not used by torch)")
                append(Node("call", Global("pickle", "PickleBuffer"), (), at))
            elif name == "READONLY_BUFFER":
                pass
            else:  # pragma: no cover - every opcode of OPCODES is handled above
                raise fail(f"opcode {name} not handled")
    except IndexError:  # a pop on an empty stack in the inlined opcodes
        raise fail("stack underflow")
    finally:
        result.opcodes = ops
        for c in seen:
            info = OPCODES.get(c)
            if info is not None:
                names.add(info[0])
                result.max_proto = max(result.max_proto, info[1])
        if result.protocol is None:  # protocols 0 and 1 have no PROTO opcode
            result.protocol = result.max_proto


def _suspicious_state(state: Any) -> str:
    """What a BUILD state sets that no weights file does: a dunder attribute, or a global as a value."""
    dicts = [state] + (list(state) if isinstance(state, tuple) else [])
    for d in dicts:
        if not isinstance(d, Node) or d.kind != "dict":
            continue
        for key, value in d.items[:1000]:
            if isinstance(key, str) and key.startswith("__") and key.endswith("__"):
                return shown(key)[:60]
            if isinstance(value, Global):
                return f"{shown(str(key))[:60]} = {value.full}"
    return ""


def _parse_int(raw: bytes, fail) -> int:
    if len(raw) > 4000:  # Python refuses longer decimal strings anyway
        raise fail("unreadable pickle data: integer text too long")
    for base in (0, 10):  # pickle reads INT and LONG with base 0 (0x10 is 16), GET/PUT in base 10 ("010")
        try:
            return int(raw, base)
        except ValueError:
            pass
    raise fail(f"unreadable pickle data: {raw[:40]!r} is not an integer")


def _extend(stack: List[Any], field: str, values: List[Any], note, fail, want: str, opcode: str) -> None:
    """APPEND(S)/ADDITEMS (`field` "elems") and SETITEM(S) (`field` "items") on the node at the top of the stack."""
    if not stack:
        raise fail("stack underflow")
    target = stack[-1]
    kind = f"{opcode.lower()}-target"
    if not isinstance(target, Node):
        note(kind, f"{opcode} on a {type(target).__name__}")
        return
    if target.kind not in (want, "call"):
        note(kind, f"{opcode} on a {target.kind}")
    current = getattr(target, field)
    if type(current) is tuple:
        setattr(target, field, list(values))
    else:
        current.extend(values)

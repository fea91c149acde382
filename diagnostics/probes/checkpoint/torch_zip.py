"""torch's zip checkpoints (torch >= 1.6), read without `torch.load`.

`<root>/data.pkl` + one `<root>/data/<key>` member per storage, stored uncompressed. The root folder is
usually `archive` but older writers used the file stem, so it is read from the member names, never
assumed. Every member is located through its own local header (that is where torch's 64-byte alignment
padding lives) and read the way torch reads it (`zip_members.py`); every data.pkl and .pkl is replayed
with the pickles after its STOP, and any other member, hidden byte range or tensor record that holds a
pickle is replayed too (issue 8).

The steps, in the order `read_torch_zip` runs them: open the central directory, survey the members,
locate each through its local header, replay the pickles a loader reads, sort the members under the
root (storages, known records, extras), interpret data.pkl, check each storage it names against its
member, and replay the pickles hidden where torch expects none.
"""

from __future__ import annotations

import zipfile
import zlib
from typing import Any, Dict, List, Optional, Tuple

from .pickle_streams import (MAX_PICKLE_BYTES, MAX_PICKLE_MEMBERS, MAX_STREAMS, keep_if_it_names_globals,
                             pickle_facts, replay_streams)
from .pickle_vm import PickleResult, pickle_evidence
from .records import ReadResult, itemsize, problem
from .torch_objects import interpret
from .zip_members import Member, compare, hidden_payloads, locate, read_member

MAX_ZIP_MEMBERS = 1_000_000
STORAGE_SCAN_BYTES = 1 << 20  # of a storage record that starts like a binary pickle
_KNOWN_ZIP_RECORDS = ("version", "byteorder", ".format_version", ".storage_alignment", ".data/serialization_id",
                      ".data/version")


def read_torch_zip(fh, size: int) -> ReadResult:
    result = ReadResult()
    directory = _open_directory(fh, size, result)
    if directory is None:
        return result
    zf, infos = directory
    reading = _ZipReading(fh, size, result, [Member(i) for i in infos])
    reading.locate_members(getattr(zf, "start_dir", None))
    reading.replay_loader_pickles()
    if reading.main is None:
        reading.not_torch()
        return result
    storage_members = reading.sort_members()
    storages = reading.interpret_main(storage_members)
    reading.check_storages(storages, storage_members)
    reading.scan_for_hidden_pickles(storage_members, storages)
    return result


def _open_directory(fh, size: int, result: ReadResult) -> Optional[Tuple[zipfile.ZipFile, List[zipfile.ZipInfo]]]:
    """The zip file and its central directory entries; None (a problem added) when it cannot be read."""
    try:
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        kind = "truncated-zip" if "not a zip file" in str(exc).lower() else "zip-error"
        result.problems.append(problem(kind,
            "the zip central directory at the end of the file is missing: the file is cut short"
            if kind == "truncated-zip" else f"the zip structure is damaged: {exc}", detail=str(exc), size=size))
        return None
    except Exception as exc:  # zipfile's parser raises many kinds on hostile input (NotImplementedError for a
        # "version needed" above 6.3, UnicodeDecodeError, struct.error, ...): all of them mean a damaged directory
        result.problems.append(problem("zip-error", f"the zip structure is damaged: {exc}",
                                       detail=f"{type(exc).__name__}: {exc}", size=size))
        return None
    if len(infos) > MAX_ZIP_MEMBERS:
        result.problems.append(problem("zip-too-many-members",
                                       f"{len(infos)} zip members; a torch checkpoint has one per tensor storage",
                                       members=len(infos)))
        return None
    return zf, infos


def _is_pickle_member(member: Member) -> bool:
    return member.lower.endswith(".pkl")


def _is_stored(member: Member) -> bool:
    return member.info.compress_type == zipfile.ZIP_STORED


class _ZipReading:
    """One zip being read: its members, the container facts and every pickle replayed so far."""

    def __init__(self, fh, size: int, result: ReadResult, members: List[Member]) -> None:
        self.fh, self.size, self.result, self.members = fh, size, result, members
        self.names = [m.name for m in members]
        counts: Dict[str, int] = {}
        for m in members:  # torch looks names up case-insensitively: DATA.PKL and data.pkl are the same member
            counts[m.lower] = counts.get(m.lower, 0) + 1
        self.duplicates = sorted(m.name for m in members if counts[m.lower] > 1)
        self.pickles = [m for m in members if m.lower == "data.pkl" or m.lower.endswith("/data.pkl")]
        self.torchscript = any(m.lower.endswith("/constants.pkl") or "/code/" in m.lower for m in members)
        roots = sorted({n.split("/", 1)[0] for n in self.names if "/" in n})
        self.container: Dict[str, Any] = {"kind": "zip", "members": len(members), "roots": roots[:10],
                                          "torchscript": self.torchscript}
        result.container = self.container
        self.anomalies: List[Dict[str, Any]] = self.container.setdefault("anomalies", [])
        self.hidden: List[Any] = []
        self.results: List[PickleResult] = []
        self.labels: List[str] = []
        self.torch_reads: List[PickleResult] = []
        self.unverified: List[str] = []
        self.pickle_notes: List[Dict[str, Any]] = []
        self.replayed = set()
        self.main: Optional[Member] = self._main_pickle()
        self.main_result: Optional[PickleResult] = None

    def _main_pickle(self) -> Optional[Member]:
        """torch reads <root>/data.pkl, root being the folder of the central directory's first entry."""
        names = self.names
        first_root = names[0].split("/", 1)[0] if names and "/" in names[0] else None
        return next((m for m in self.pickles if first_root is not None and m.lower == f"{first_root}/data.pkl".lower()),
                    self.pickles[0] if self.pickles else None)

    def locate_members(self, start_dir: Optional[int]) -> None:
        """Every member is located through its own local header, as torch does (issue 8)."""
        locate(self.fh, self.members, self.size)
        structural, self.hidden = compare(self.members, self.size, start_dir)
        self.anomalies.extend(structural)
        unlocated = [m for m in self.members if m.error]
        if unlocated:
            self.result.problems.append(problem("zip-local-header",
                                                f"zip member {unlocated[0].name} has no valid local header"
                                                + (f" (+{len(unlocated) - 1} more)" if len(unlocated) > 1 else ""),
                                                member=unlocated[0].name, members=[m.name for m in unlocated[:20]]))

    def replay_loader_pickles(self) -> None:
        """Pickles a loader reads: every data.pkl and every .pkl member, the one torch loads first."""
        main = self.main
        must = ([main] if main is not None else []) + [m for m in self.members if m is not main and (
            m in self.pickles or _is_pickle_member(m))]
        if len(must) > MAX_PICKLE_MEMBERS:
            self.unverified.append(f"{len(must)} pickle members; only the first {MAX_PICKLE_MEMBERS} were read")
        for member in must[:MAX_PICKLE_MEMBERS]:
            self.replayed.add(id(member))
            replayed = self._replay_loader_pickle(member)
            if replayed is not None and member is main:
                self.main_result = replayed

    def _replay_loader_pickle(self, member: Member) -> Optional[PickleResult]:
        problems = self.result.problems
        if member.info.file_size > MAX_PICKLE_BYTES:
            problems.append(problem("pickle-too-large",
                f"{member.name} is {member.info.file_size} bytes; a weights pickle is a few MB at most",
                member=member.name, bytes=member.info.file_size))
            return None
        data, why = read_member(self.fh, member, self.size, MAX_PICKLE_BYTES)
        if data is None:
            problems.append(problem("zip-member-unreadable", f"cannot read {member.name}: {why}", member=member.name))
            self.unverified.append(f"{member.name} could not be read: {why}")
            return None
        if _is_stored(member) and zlib.crc32(data[:member.info.file_size]) & 0xFFFFFFFF != member.info.CRC:
            self.anomalies.append({"kind": "crc-mismatch", "member": member.name})
        first, left = replay_streams(data, member.name, self.results, self.labels, self.pickle_notes)
        if left:
            self.unverified.append(f"{member.name} holds more than {MAX_STREAMS} pickles")
        if first is None:
            return None
        self.torch_reads.append(first)
        if not first.complete:
            problems.append(problem("pickle-error", f"{member.name} is not a readable pickle: {first.error}",
                                    member=member.name, pos=first.error_pos))
        return first

    def not_torch(self) -> None:
        """A zip without data.pkl: say so, and still replay what holds a pickle."""
        self.result.problems.append(problem("zip-not-torch",
            "a zip archive without data.pkl: not a torch checkpoint", members=self.names[:20]))
        self._scan_other_members(set())
        self._scan_hidden()
        if self.results:
            self._set_pickle_facts()

    def sort_members(self) -> Dict[str, Member]:
        """Storage records by lower-case key; compressed, encrypted, duplicate and extra members as anomalies."""
        root = self.main.name[: -len("data.pkl")].rstrip("/")
        self.container["root"] = root
        prefix = root.lower() + "/" if root else ""
        extra, compressed, encrypted = [], [], []
        storage_members: Dict[str, Member] = {}
        for m in self.members:
            rel = m.lower[len(prefix):] if m.lower.startswith(prefix) else None
            if not _is_stored(m):
                compressed.append(m.name)
            if m.info.flag_bits & 0x1:
                encrypted.append(m.name)
            if rel is None:
                extra.append(m.name)
            elif rel.startswith("data/") and rel[5:] and "/" not in rel[5:]:
                storage_members.setdefault(rel[5:], m)  # lower case: torch finds data/A under the name data/a
            elif rel not in ("data.pkl",) + _KNOWN_ZIP_RECORDS and not m.name.endswith("/"):
                extra.append(m.name)
        if self.duplicates:
            self.anomalies.append({"kind": "duplicate-members", "members": self.duplicates[:20]})
        if len(self.pickles) > 1:
            self.anomalies.append({"kind": "multiple-data-pkl", "members": [p.name for p in self.pickles][:20]})
        if compressed:
            self.anomalies.append({"kind": "compressed-members", "members": compressed[:20], "count": len(compressed)})
        if encrypted:
            self.anomalies.append({"kind": "encrypted-members", "members": encrypted[:20]})
        if extra:
            self.anomalies.append({"kind": "extra-members", "members": extra[:20], "count": len(extra)})
        self.container["storages"] = len(storage_members)
        self._read_byteorder(prefix)
        return storage_members

    def _read_byteorder(self, prefix: str) -> None:
        order = next((m for m in self.members if m.lower == prefix + "byteorder"), None)
        if order is not None and order.info.file_size <= 16:
            data, _ = read_member(self.fh, order, self.size, 16)
            if data:
                self.container["byteorder"] = data.decode("ascii", "replace").strip()  # torch >= 2.1 writes it

    def interpret_main(self, storage_members: Dict[str, Member]) -> Dict[str, Dict[str, Any]]:
        """Tensor records from data.pkl; returns every storage it names (key -> dtype/numel/class)."""
        storages: Dict[str, Dict[str, Any]] = {}
        main_result = self.main_result
        if main_result is not None and (main_result.complete or main_result.root is not None):
            def locate_storage(key: str) -> Optional[int]:
                m = storage_members.get(key.lower())
                return m.data_offset if m is not None and _is_stored(m) else None

            interpret(main_result.root, self.result, storages, locate_storage, limit=self.size)
        return storages

    def check_storages(self, storages: Dict[str, Dict[str, Any]], storage_members: Dict[str, Member]) -> None:
        """Each storage data.pkl names has a member, big enough, that ends inside the file."""
        missing, short, cut = [], [], []
        for key, st in storages.items():
            m = storage_members.get(key.lower())
            if m is None:
                missing.append(key)
            elif m.info.file_size < st["numel"] * itemsize(st["dtype"]):
                short.append(key)
            elif m.end is not None and m.end > self.size:
                cut.append(key)
        problems = self.result.problems
        if cut:
            problems.append(problem("zip-member-truncated",
                                    f"{len(cut)} storage records end past the end of the file",
                                    storages=sorted(cut)[:20], count=len(cut), size=self.size))
        if missing:
            problems.append(problem("missing-storage",
                                    f"{len(missing)} tensor storages referenced by data.pkl are not in the zip",
                                    storages=sorted(missing)[:20], count=len(missing)))
        if short:
            problems.append(problem("storage-too-small",
                                    f"{len(short)} storage records are smaller than data.pkl says",
                                    storages=sorted(short)[:20], count=len(short)))

    def scan_for_hidden_pickles(self, storage_members: Dict[str, Member], storages: Dict[str, Dict[str, Any]]) -> None:
        """Pickles where torch expects none: tensor bytes, text records, extra members, hidden bytes (issue 8)."""
        located = [storage_members[k.lower()] for k in storages if k.lower() in storage_members]
        self.container["storage_bytes"] = sum(m.info.file_size for m in located)
        self._scan_other_members({id(m) for m in located})
        self._scan_hidden()
        self._set_pickle_facts()

    def _set_pickle_facts(self) -> None:
        facts = pickle_facts(self.results, self.labels, self.torchscript, self.torch_reads, self.unverified)
        facts["anomalies"] = (facts["anomalies"] + self.pickle_notes)[:50]
        self.result.pickle = facts

    def _scan_other_members(self, referenced) -> None:
        """Replay members that are not pickles by name but hold one; keep those that name globals.

        Storage records a data.pkl refers to hold tensor bytes: only a binary pickle signature (`\\x80` and a
        protocol) counts there, so that weights are never mistaken for a pickle. Any other member counts
        when its first bytes replay as pickle opcodes.
        """
        found: List[str] = []
        for m in self.members:
            if id(m) in self.replayed or m.data_offset is None or m.name.endswith("/"):
                continue
            limit = self._scan_limit(m, id(m) in referenced)
            if limit is None:
                continue
            data, _ = read_member(self.fh, m, self.size, limit)
            if data and keep_if_it_names_globals(data, m.name, self.results, self.labels, self.pickle_notes):
                found.append(m.name)
                if len(found) >= MAX_PICKLE_MEMBERS:
                    break
        if found:
            self.anomalies.append({"kind": "pickle-in-member", "members": found[:20], "count": len(found),
                                   "detail": "members torch reads as raw bytes or text hold pickles that name globals"})

    def _scan_limit(self, member: Member, referenced: bool) -> Optional[int]:
        """How many bytes of `member` to replay, None when it shows no sign of a pickle."""
        stored = _is_stored(member)
        if referenced:
            if not stored or not (len(member.peek) >= 2 and member.peek[0] == 0x80 and member.peek[1] <= 5):
                return None
            return STORAGE_SCAN_BYTES
        if member.info.file_size > MAX_PICKLE_BYTES or stored and not pickle_evidence(member.peek, need=4):
            return None
        head = read_member(self.fh, member, self.size, 4096)[0] or b""
        if not pickle_evidence(head, need=4):
            return None
        return MAX_PICKLE_BYTES

    def _scan_hidden(self) -> None:
        for label, data in hidden_payloads(self.fh, self.hidden):
            if pickle_evidence(data[:4096], need=4):
                keep_if_it_names_globals(data, label, self.results, self.labels, self.pickle_notes)

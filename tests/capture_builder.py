"""Hand-built capture files for the reader tests: a small encoder of the format
in src/memray/_core/format.h (docs/format.rst), record by record, with the
same delta rules as the writer. Ids of CODE/FRAME/NODE/NATIVE_NODE records
are handed out in order from 1, as the format defines them."""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from pathlib import Path

MAGIC = b"MRYCAP\x00\x02"
FORMAT_VERSION = 1
HEADER_SIZE = 48

FLAG_NATIVE = 0x1
FLAG_PYALLOC = 0x2
FLAG_AGGREGATED = 0x4

REC_ZERO, REC_ALLOC, REC_FREE, REC_THREAD, REC_CODE, REC_FRAME, REC_NODE = range(7)
REC_THREAD_NAME, REC_MEMORY, REC_NATIVE_NODE, REC_MAPPINGS, REC_AGG, REC_TRAILER = range(7, 13)

# AllocatorType values
PYMALLOC_FREE, PYMALLOC_MALLOC, PYMALLOC_CALLOC, PYMALLOC_REALLOC = 1, 2, 3, 4
FREE, MALLOC, REALLOC, CALLOC, POSIX_MEMALIGN = 5, 6, 7, 8, 9
ALIGNED_ALLOC, MEMALIGN, VALLOC, PVALLOC, MMAP, MUNMAP = 10, 11, 12, 13, 14, 15

START_MS = 1_700_000_000_000


def uvarint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def svarint(v: int) -> bytes:
    # zigzag over 64 bits: deltas wrap like the C writer's uint64 arithmetic
    v = ((v + (1 << 63)) % (1 << 64)) - (1 << 63)
    return uvarint(((v << 1) ^ (v >> 63)) & ((1 << 64) - 1))


def string(s: bytes | str) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return uvarint(len(data)) + data


def tag(rec_type: int, arg: int = 0) -> bytes:
    return bytes([(arg << 4) | rec_type])


class CaptureBuilder:
    """Collects records; ``data()`` is the header plus the records."""

    def __init__(
        self,
        *,
        flags: int = 0,
        python_allocator: int = 0,
        pid: int = 4321,
        main_tid: int = 100,
        start_ms: int = START_MS,
        py_hexversion: int = 0x030B07F0,
        interval_ms: int = 10,
        command_line: str = "python prog.py",
        version: int = FORMAT_VERSION,
    ) -> None:
        self.flags = flags
        cmd = command_line.encode()
        self.header = (
            MAGIC
            + struct.pack(
                "<HHB3xIIQIII",
                version,
                flags,
                python_allocator,
                pid,
                main_tid,
                start_ms,
                py_hexversion,
                interval_ms,
                len(cmd),
            )
            + struct.pack("<I", 0)
            + cmd
        )
        assert len(self.header) == HEADER_SIZE + len(cmd)
        self.records = bytearray()
        self.n_codes = self.n_frames = self.n_nodes = self.n_natives = 0
        self.tid = 0
        self.addr = self.stack_id = self.native_id = 0
        self._codes: dict[tuple[str, str], int] = {}
        self._frames: dict[tuple[int, int], int] = {}
        self._nodes: dict[tuple[int, int, bool], int] = {}

    # -- definitions

    def code(self, name: str, file: str, first_line: int = 1) -> int:
        self.records += tag(REC_CODE) + string(name) + string(file) + uvarint(first_line)
        self.n_codes += 1
        return self.n_codes

    def frame(self, code: int, line: int) -> int:
        self.records += tag(REC_FRAME) + uvarint(code) + uvarint(line)
        self.n_frames += 1
        return self.n_frames

    def node(self, parent: int, frame: int, entry: bool = False) -> int:
        self.records += tag(REC_NODE, 1 if entry else 0) + uvarint(parent) + uvarint(frame)
        self.n_nodes += 1
        return self.n_nodes

    def stack(self, *frames: tuple[str, str, int]) -> int:
        """The NODE id of a Python stack given outermost first, defining
        (once) the code objects, frames and nodes it needs."""
        parent = 0
        for i, (function, file, line) in enumerate(frames):
            code = self._codes.get((function, file))
            if code is None:
                code = self._codes[(function, file)] = self.code(function, file, 1)
            frame = self._frames.get((code, line))
            if frame is None:
                frame = self._frames[(code, line)] = self.frame(code, line)
            key = (parent, frame, i == 0)
            node = self._nodes.get(key)
            if node is None:
                node = self._nodes[key] = self.node(parent, frame, entry=i == 0)
            parent = node
        return parent

    def native_node(self, parent: int, ip: int) -> int:
        self.records += tag(REC_NATIVE_NODE) + uvarint(parent) + uvarint(ip)
        self.n_natives += 1
        return self.n_natives

    def thread_name(self, tid: int, name: str | bytes) -> None:
        self.records += tag(REC_THREAD_NAME) + uvarint(tid) + string(name)

    def mappings(self, generation: int, objects: list[tuple[str, int, int, int, bytes]]) -> None:
        rec = bytearray(tag(REC_MAPPINGS) + uvarint(generation) + uvarint(len(objects)))
        for path, bias, lo, hi, build_id in objects:
            rec += string(path) + uvarint(bias) + uvarint(lo) + uvarint(hi) + string(build_id)
        self.records += rec

    # -- events

    def _thread(self, tid: int) -> None:
        if tid != self.tid:
            self.records += tag(REC_THREAD) + uvarint(tid)
            self.tid = tid

    def alloc(
        self, tid: int, allocator: int, addr: int, size: int, stack: int = 0, native: int = 0
    ) -> None:
        self._thread(tid)
        rec = tag(REC_ALLOC, allocator) + svarint(addr - self.addr) + uvarint(size)
        rec += svarint(stack - self.stack_id)
        if self.flags & FLAG_NATIVE:
            rec += svarint(native - self.native_id)
            self.native_id = native
        self.records += rec
        self.addr = addr
        self.stack_id = stack

    def free(self, tid: int, allocator: int, addr: int, length: int = 0) -> None:
        self._thread(tid)
        rec = tag(REC_FREE, allocator) + svarint(addr - self.addr)
        if allocator == MUNMAP:
            rec += uvarint(length)
        self.records += rec
        self.addr = addr

    def memory(
        self,
        ms: int,
        rss: int,
        heap: int | None = None,
        split: tuple[int, int, int, int] | None = None,
    ) -> None:
        """split: (anon, file, shmem, mapped heap), MR_MEMORY_HAS_SPLIT."""
        arg = (0 if heap is None else 1) | (0 if split is None else 2)
        rec = tag(REC_MEMORY, arg) + uvarint(ms) + uvarint(rss)
        if heap is not None:
            rec += uvarint(heap)
        for value in split or ():
            rec += uvarint(value)
        self.records += rec

    def agg(
        self,
        tid: int,
        allocator: int,
        stack: int,
        native: int,
        peak_n: int,
        peak_bytes: int,
        leak_n: int,
        leak_bytes: int,
    ) -> None:
        self.records += tag(REC_AGG) + b"".join(
            uvarint(v)
            for v in (tid, allocator, stack, native, peak_n, peak_bytes, leak_n, leak_bytes)
        )

    def trailer(self, ms: int, total_allocations: int, peak: int, flags: int = 0) -> None:
        self.records += (
            tag(REC_TRAILER)
            + uvarint(ms)
            + uvarint(total_allocations)
            + uvarint(peak)
            + uvarint(flags)
        )

    def raw(self, data: bytes) -> None:
        self.records += data

    # -- output

    def data(self) -> bytes:
        return self.header + bytes(self.records)

    def write(self, path: Path, *, compress: bool = False) -> Path:
        data = self.data()
        path.write_bytes(zstd_compress(data) if compress else data)
        return path


def zstd_compress(data: bytes) -> bytes:
    """One zstd frame holding data, through libzstd (what the sink uses)."""
    name = ctypes.util.find_library("zstd")
    if name is None:
        raise RuntimeError("libzstd not found")
    lib = ctypes.CDLL(name)
    lib.ZSTD_compressBound.restype = ctypes.c_size_t
    lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    lib.ZSTD_compress.restype = ctypes.c_size_t
    lib.ZSTD_compress.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
    ]
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    bound = lib.ZSTD_compressBound(len(data))
    out = ctypes.create_string_buffer(bound)
    n = lib.ZSTD_compress(out, bound, data, len(data), 3)
    if lib.ZSTD_isError(n):
        raise RuntimeError("zstd compression failed")
    return out.raw[:n]

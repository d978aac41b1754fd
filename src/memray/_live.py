"""SocketReader: follows a program tracked with
``Tracker(destination=SocketDestination(port))`` while it runs.

The connection is read on a background thread in C (``memray._memray.LiveReader``:
live.c decodes the stream and keeps the set of allocations alive now); this
module shapes what it holds into records like FileReader's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from memray import _memray
from memray._enums import AllocatorType

PythonStackElement = tuple[str, str, int]
NativeStackElement = tuple[str, str, int]


class LiveAllocationRecord:
    """Allocations alive now at one location (thread, allocator, stacks), as
    ``SocketReader.get_current_snapshot`` returns them: the attributes and
    methods of ``memray.AllocationRecord``, stacks resolved on demand from the
    live reader's tables."""

    __slots__ = (
        "_reader",
        "tid",
        "address",
        "size",
        "n_allocations",
        "stack_id",
        "native_stack_id",
        "native_segment_generation",
        "_allocator",
    )

    def __init__(self, reader: Any, row: tuple[int, int, int, int, int, int, int]) -> None:
        tid, allocator, size, n, stack, native, generation = row
        self._reader = reader
        self.tid = tid
        self.address = 0
        self.size = size
        self.n_allocations = n
        self.stack_id = stack
        self.native_stack_id = native
        self.native_segment_generation = generation
        self._allocator = allocator

    @property
    def allocator(self) -> AllocatorType | int:
        try:
            return AllocatorType(self._allocator)
        except ValueError:
            return self._allocator

    @property
    def thread_name(self) -> str:
        if self.tid < 0:
            return "merged thread"
        return self._reader.thread_name(self.tid) or ""

    def stack_trace(self, max_stacks: int | None = None) -> list[PythonStackElement]:
        """The Python stack, innermost frame first."""
        return self._reader.stack_trace(self.stack_id, max_stacks)

    def native_stack_trace(self, max_stacks: int | None = None) -> list[NativeStackElement]:
        """The native stack (captures made with native traces), innermost first."""
        return self._reader.native_stack_trace(
            self.stack_id, self.native_stack_id, self.native_segment_generation, max_stacks
        )

    def hybrid_stack_trace(
        self, max_stacks: int | None = None
    ) -> list[PythonStackElement | NativeStackElement]:
        """Native frames with each interpreter frame replaced by the Python
        frames it ran; the Python stack without native traces."""
        return self._reader.hybrid_stack_trace(
            self.stack_id, self.native_stack_id, self.native_segment_generation, max_stacks
        )

    def _key(self) -> tuple[int, ...]:
        return (
            self.tid,
            self.address,
            self.size,
            self._allocator,
            self.stack_id,
            self.n_allocations,
            self.native_stack_id,
            self.native_segment_generation,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LiveAllocationRecord):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        tid = "merged" if self.tid < 0 else str(self.tid)
        allocator = self.allocator
        name = allocator.name if isinstance(allocator, AllocatorType) else str(allocator)
        return (
            f"AllocationRecord<tid={tid}, address=0x{self.address:x}, size={self.size}, "
            f"allocator={name}, allocations={self.n_allocations}>"
        )


# How long a reader waits between tries while nothing listens on the port.
_CONNECT_RETRY_S = 0.05


class SocketReader:
    """Follows the allocations of a program tracked with a
    ``SocketDestination(port)``, while it runs.

    Entering the context manager connects to ``address:port`` (default
    127.0.0.1) and reads the stream's header, waiting at most ``timeout``
    seconds for both (**new**: ``address`` and ``timeout``). While nothing
    listens yet it keeps trying, so a reader may start before the program
    (as in memray 1.x). The stream is then read on a background thread until
    the program stops tracking. Errors (nothing listening by the timeout, a
    peer that is not a tracked program) raise OSError.
    """

    def __init__(self, port: int, *, address: str = "127.0.0.1", timeout: float = 10.0) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an integer between 1 and 65535, not {port!r}")
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._port = port
        self._address = address
        self._timeout_ms = max(1, int(timeout * 1000))
        self._impl: Any = None
        self._header: dict[str, Any] | None = None
        self._used = False

    def __enter__(self) -> SocketReader:
        if self._used:
            raise ValueError("a SocketReader can be entered only once")
        self._used = True
        deadline = time.monotonic() + self._timeout_ms / 1000
        while True:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                self._impl = _memray.LiveReader(self._address, self._port, left_ms)
                break
            except ConnectionRefusedError:
                if time.monotonic() + _CONNECT_RETRY_S >= deadline:
                    raise
                time.sleep(_CONNECT_RETRY_S)
        self._header = self._impl.header
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stops reading and disconnects (the tracked program then stops
        tracking and runs on). What was read stays available."""
        if self._impl is not None:
            self._impl.close()

    @property
    def pid(self) -> int | None:
        return None if self._header is None else self._header["pid"]

    @property
    def command_line(self) -> str | None:
        return None if self._header is None else self._header["command_line"]

    @property
    def has_native_traces(self) -> bool:
        return False if self._header is None else bool(self._header["native"])

    @property
    def is_active(self) -> bool:
        """True while the program is tracking and its records arrive."""
        return self._impl is not None and bool(self._impl.status()["active"])

    def get_current_snapshot(self, *, merge_threads: bool) -> Iterator[LiveAllocationRecord]:
        """The allocations alive now, grouped by thread (unless merged),
        allocator and stacks. After the program stopped tracking: those alive
        then. Raises OSError if the stream broke (cut mid-record, corrupt)."""
        if self._impl is None:
            return iter(())
        error = self._impl.status()["error"]
        if error is not None:
            raise OSError(error)
        impl = self._impl
        return iter([LiveAllocationRecord(impl, row) for row in impl.snapshot(bool(merge_threads))])

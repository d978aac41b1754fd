"""memray: a memory profiler for Python.

``with memray.Tracker("out.bin"): ...`` records every allocation the process
makes while the body runs; ``memray.FileReader("out.bin")`` reads it back.
In IPython and Jupyter, ``%load_ext memray`` adds the ``%%memray_flamegraph``
cell magic.
"""

from ._destination import Destination, FileDestination, SocketDestination
from ._enums import AllocatorType, FileFormat, PythonAllocatorType
from ._live import SocketReader
from ._memray import AllocationRecord
from ._reader import (
    FileReader,
    Interval,
    MemorySnapshot,
    Metadata,
    ProcessInfo,
    Stats,
    TemporalAllocationRecord,
    compute_statistics,
    dump_all_records,
)
from ._tracker import Tracker


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext memray``: registers the ``%%memray_flamegraph`` cell magic."""
    from ._ipython import load_ipython_extension as load

    load(ipython)


# The release, as pyproject.toml says (tests/test_cli.py checks they agree).
# Not read through importlib.metadata: that import alone took 83 ms and 10 MB
# of RSS in every tracked process (memray run, every followed child).
__version__ = "2.0.0"

__all__ = [
    "AllocationRecord",
    "AllocatorType",
    "Destination",
    "FileDestination",
    "FileFormat",
    "FileReader",
    "Interval",
    "MemorySnapshot",
    "Metadata",
    "ProcessInfo",
    "PythonAllocatorType",
    "SocketDestination",
    "SocketReader",
    "Stats",
    "TemporalAllocationRecord",
    "Tracker",
    "__version__",
    "compute_statistics",
    "dump_all_records",
]

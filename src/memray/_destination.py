"""Where a Tracker sends its records."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class FileDestination:
    """Write the capture to a file.

    ``overwrite`` replaces an existing file (otherwise it is an error),
    ``compress_on_exit`` compresses the capture when tracking stops, and
    ``buffered`` writes through a buffer with plain writes instead of a shared
    mapping (a capture written that way loses its last records if the process
    is killed).
    """

    path: pathlib.Path | str
    overwrite: bool = False
    compress_on_exit: bool = True
    buffered: bool = False


@dataclass(frozen=True)
class SocketDestination:
    """Stream the records to one reader connecting to ``address:server_port``."""

    server_port: int
    address: str = "127.0.0.1"


Destination = Union[FileDestination, SocketDestination]

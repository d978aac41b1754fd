"""A long-running program, for the live view and `memray attach`.

It handles a "request" every 10 ms for SECONDS seconds (default 30), then
prints how many it handled. Each response goes into a cache that is never
evicted, so its memory only grows; each request also uses a scratch buffer
that is freed at once.

Run it as `python service.py [SECONDS]`.
"""

from __future__ import annotations

import sys
import time

RESPONSES: dict[int, bytes] = {}


def render(request: int) -> bytes:
    scratch = bytearray(64 * 1024)
    return bytes(scratch[: 16 * 1024])


def handle(request: int) -> None:
    RESPONSES[request] = render(request)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    deadline = time.monotonic() + seconds
    request = 0
    while time.monotonic() < deadline:
        handle(request)
        request += 1
        time.sleep(0.01)
    print(f"handled {request} requests")


if __name__ == "__main__":
    main()

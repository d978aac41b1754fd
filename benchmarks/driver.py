"""Run one benchmark workload, optionally under ``memray.Tracker``, and time it.

Usage: ``python benchmarks/driver.py WORKLOAD OUTFILE MODE``

``MODE`` is a key of :data:`MODES` (``none`` runs the workload untracked).
The workload is ``workloads/WORKLOAD.py``: its ``main()`` is timed; its
optional ``setup()`` runs first, untimed and untracked.
Whichever interpreter runs this file supplies ``memray`` (our package or the
reference one). The wall time of the tracked region -- ``time.perf_counter``
around the ``with`` statement, so tracker start and stop are included -- is
printed as one JSON object on the last line of stdout, together with the
process's peak RSS (``VmHWM``), read as late as possible: in an atexit handler
registered before memray is imported, so it runs after memray's own exit
handlers. (``ru_maxrss`` from ``wait4`` is not used for this: on Linux it also
counts the RSS of the parent process at fork time.)
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import resource
import sys
import time
from typing import Any

# Keyword arguments passed to memray.Tracker for each mode; None = untracked.
MODES: dict[str, dict[str, Any] | None] = {
    "none": None,
    "default": {"trace_python_allocators": False, "native_traces": False},
    "pyalloc": {"trace_python_allocators": True, "native_traces": False},
    "native": {"trace_python_allocators": False, "native_traces": True},
    # Ours only (memray 1.x cannot sample): the production setting.
    "sampled": {"sample_every": 512 * 1024},
}


def peak_rss_kib() -> int | None:
    """This process's peak resident set size since exec (VmHWM), in KiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run(workload: str, outfile: str, mode: str) -> dict[str, Any]:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    module = importlib.import_module(f"workloads.{workload}")
    kwargs = MODES[mode]
    version = None
    setup = getattr(module, "setup", None)
    if setup is not None:
        setup()  # untimed and untracked
    gc.collect()
    if kwargs is None:
        start = time.perf_counter()
        module.main()
        wall = time.perf_counter() - start
    else:
        import memray  # imported before timing: import cost is not measured

        version = getattr(memray, "__version__", None)
        start = time.perf_counter()
        with memray.Tracker(outfile, **kwargs):
            module.main()
        wall = time.perf_counter() - start
    return {
        "workload": workload,
        "mode": mode,
        "wall_s": wall,
        "memray_version": version,
        "python": sys.version.split()[0],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    result: dict[str, Any] = {}

    def report() -> None:
        if result:
            result["peak_rss_kib"] = peak_rss_kib()
            result["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            sys.stdout.flush()
            print(json.dumps(result), flush=True)

    atexit.register(report)  # first registered, so it runs last
    result.update(run(argv[1], argv[2], argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Does nothing: measures the tracker's fixed start and stop cost."""

from __future__ import annotations


def main() -> None:
    return None

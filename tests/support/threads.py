"""What a run leaves behind, seen from /proc: threads by name, open file
descriptors, and archives of many copies of one file to run over."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

#: the process-wide threads every run shares (rust/pool.rs, prefetch.rs):
#: started once, kept; a run's own threads are all the others
SHARED = ("fastindex-read", "fastindex-pre")


def names() -> list[str]:
    """The names of this process's threads."""
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            out.append(Path(f"/proc/self/task/{t}/comm").read_text().strip())
        except OSError:
            pass
    return out


def own_threads() -> int:
    """Threads of this process but the shared parse and prefetch threads."""
    return sum(not n.startswith(SHARED) for n in names())


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(measure: Callable[[], int], expected: int, timeout: float = 10.0) -> int:
    """`measure()`, once it is back to `expected` or below (or the
    timeout): threads that were told to end take a moment to be gone from
    /proc, and idle threads of earlier tests (anyio's workers) may end too."""
    deadline = time.monotonic() + timeout
    while (n := measure()) > expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return n


def copies(root: Path, data: bytes, folders: int, per_folder: int) -> Path:
    """`root/dF/I.dcm`, each file `data`: an archive a run takes a while over."""
    for d in range(folders):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            (folder / f"{i}.dcm").write_bytes(data)
    return root

"""Object-store URLs under `--state`: what changed in a bucket since the
last run, from its listing alone (no object is read to find out).

An object's change key is its (ETag, size, last-modified), as the listing
gives it (`_native.Stores.list`). It is stored in the state's stat-key
columns so that the rows, `pending` and `scan_keys` take objects as they
take files:

    (dev, ino, size, mtime_ns, ctime_ns) = (0, etag_hash, size, last_modified_ns, 0)

with `etag_hash` the first 63 bits of BLAKE2b of the ETag (0 without one).
An object is unchanged when it is listed with the key the state holds,
whatever `--moved` says (an object has no device or inode to lose).

The native scan knows local files only: every stored URL is left to this
module. A stored object is changed when listed with another key, removed
when its URL was listed and no longer has it (a URL now naming nothing
counts as listed: empty). A URL whose listing fails (the server's error,
or a listing cut short) removes nothing: the stored objects under it are
kept as they are, and the URL is listed as `unreadable` with the server's
message, as a run without a state lists it; the next run that can list
it brings them up to date.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import _native
from .state import Key

#: what rust/sources/objects/mod.rs says of a URL that names no object:
#: listed, and empty (its stored objects are gone), not a failure
EMPTY = ("no object at or under this URL", "the bucket holds no objects")

#: (url, size, etag, last_modified), as `Stores.list` gives it
Listed = tuple[str, int, "str | None", str]

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", re.IGNORECASE)


def etag_hash(etag: str | None) -> int:
    if not etag:
        return 0
    return int.from_bytes(hashlib.blake2b(etag.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big") >> 1


def modified_ns(text: str) -> int:
    """RFC 3339 time as ns since the epoch (to the ns, whatever its
    digits); a time that does not parse: a 63-bit hash of it, still a key
    that changes when it does."""
    m = _RFC3339.match(text.strip())
    if m is None:
        return etag_hash(text)
    zone = m[3] or "Z"
    when = datetime.datetime.fromisoformat(m[1] + ("+00:00" if zone.upper() == "Z" else zone))
    return int(when.timestamp()) * 1_000_000_000 + int((m[2] or "0")[:9].ljust(9, "0"))


def key(listed: Listed) -> Key:
    _, size, etag, modified = listed
    return (0, etag_hash(etag), size, modified_ns(modified), 0)


def _covers(url: str, path: str) -> bool:
    prefix = url.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@dataclass
class Listings:
    """Every object listed under the URLs of a run (each once), and the
    URLs that could not be listed."""

    objects: dict[str, Listed] = field(default_factory=dict)
    #: (display, message) of each URL whose listing failed or named nothing
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: URLs whose stored objects stay as they are (the listing failed)
    kept: list[str] = field(default_factory=list)


def list_urls(urls: Iterable[str], stores: _native.Stores) -> Listings:
    """List each URL (blocking: run it in a thread)."""
    out = Listings()
    urls = list(urls)
    # A URL inside another one given is listed once, as part of it (the
    # first given among equals), as a run without a state does.
    urls = [u for i, u in enumerate(urls) if not any(j != i and _covers(o, u) and (o.rstrip("/") != u.rstrip("/") or j < i) for j, o in enumerate(urls))]
    for url in urls:
        try:
            for listed in stores.list(url):
                out.objects.setdefault(listed[0], listed)  # a URL inside another: once
        except OSError as e:
            display, _, message = str(e).partition(": ")
            if not message:
                display, message = url, str(e)
            out.failed.append((display, message))
            if message not in EMPTY:
                out.kept.append(url)
    return out


@dataclass
class Changes:
    """What the listings say against the state."""

    #: (url, listed, previously known): to read
    changed: list[tuple[str, Listed, bool]]
    vanished: list[str]
    unchanged: int


def compare(listings: Listings, stored: dict[str, Key]) -> Changes:
    """`stored`: the key of each object URL the state holds."""
    changed = []
    unchanged = 0
    for url, listed in listings.objects.items():
        old = stored.get(url)
        if old is not None and tuple(old) == key(listed):
            unchanged += 1
        else:
            changed.append((url, listed, old is not None))
    # A URL naming one stored object that could not be listed: its row
    # becomes the URL's unreadable one (as in a run from scratch), so the
    # object leaves.
    failed = {display for display, _ in listings.failed}
    vanished = [u for u in stored if u not in listings.objects and (u in failed or not any(_covers(k, u) for k in listings.kept))]
    return Changes(changed, vanished, unchanged)

"""`fastindex watch DIR... --state FILE`: the watcher as a command. NDJSON
events on stdout, one line each, flushed as they come; talk on stderr.

Exit codes: 0 stopped by SIGINT or SIGTERM (the way a watcher ends), 1
fatal (a DIR missing, the state refused), 2 usage.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from .write import dumps

EXIT_OK, EXIT_FATAL, EXIT_USAGE = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    from .watch import SETTLE

    p = argparse.ArgumentParser(
        prog="fastindex watch",
        description="Index files as they arrive in DIRs, keeping --state up to date; NDJSON events on stdout.",
        epilog="Events: instance, not_indexed, removed, series_stable (see the README). Exit codes: 0 stopped by SIGINT/SIGTERM, 1 fatal, 2 usage.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders to watch")
    p.add_argument("--state", metavar="FILE", required=True, help="the state database (as fastindex --state)")
    p.add_argument("--quiet-period", type=float, default=60.0, metavar="S", help="a subseries is stable after S seconds without a new instance (default: 60)")
    p.add_argument("--settle", type=float, default=SETTLE, metavar="S", help=f"read a file once it has not changed for S seconds (default: {SETTLE:g})")
    p.add_argument("--broken-wait", type=float, default=30.0, metavar="S", help="a file that gives no record is read again while it changes, and reported once unchanged for S seconds (default: 30)")
    p.add_argument("--poll", action=argparse.BooleanOptionalAction, default=None, help="poll instead of inotify (default: poll on NFS, SMB, FUSE and the like)")
    p.add_argument("--poll-interval", type=float, default=1.0, metavar="S", help="seconds between polls (default: 1)")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="parse threads (default: cores)")
    p.add_argument("--relative-to", metavar="DIR", help="write file_path and folder relative to DIR")
    p.add_argument("--exclude", metavar="GLOB", action="append", default=[], help="leave out entries matching GLOB (as fastindex --exclude)")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symbolic links inside the DIRs")
    p.add_argument("--tags", metavar="KEYWORD,...", help="extra top-level tags, by keyword or (gggg,eeee)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on stderr but fatal errors")
    return p


def command(argv: list[str], early: list[int]) -> int:
    from . import _native
    from .pipeline import check_path
    from .state import StateError
    from .tags import resolve
    from .tags import split as split_tags
    from .watch import watch

    args = parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        print("fastindex watch: -j must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        _native.check_exclude(args.exclude)
    except ValueError as e:
        print(f"fastindex watch: --exclude: {e}", file=sys.stderr)
        return EXIT_USAGE
    for p in args.paths:
        try:
            check_path(p)
        except OSError as e:
            print(f"fastindex watch: {e.strerror}", file=sys.stderr)
            return EXIT_FATAL
    tags = split_tags(args.tags)
    try:
        resolve(tags)
    except ValueError as e:
        print(f"fastindex watch: --tags: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout.buffer

    async def main() -> None:
        stop = anyio.Event()

        async def signals() -> None:
            while not early:
                await anyio.sleep(0.05)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(signals)
            events = watch(
                args.paths, state=args.state, quiet=args.quiet_period, settle=args.settle, broken_wait=args.broken_wait,
                poll=args.poll, poll_interval=args.poll_interval, jobs=args.jobs, relative_to=args.relative_to,
                tags=tags, exclude=args.exclude, follow_symlinks=args.follow_symlinks, stop=stop,
            )
            try:
                async for event in events:
                    out.write(dumps(event))
                    out.flush()
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except BaseException as e:
        from .cli import _behind

        refused = _behind(e, StateError)
        if refused is not None:
            print(f"fastindex watch: {refused}", file=sys.stderr)
            return EXIT_FATAL
        if isinstance(_behind(e, BrokenPipeError), BrokenPipeError):
            return EXIT_OK
        raise
    if not args.quiet:
        print("fastindex watch: stopped", file=sys.stderr)
    return EXIT_OK

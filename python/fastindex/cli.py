"""`fastindex PATH... > index.ndjson`: stdout is data, stderr is talk.

Exit codes: 0 done (files that gave no record are counted, and listed with
--errors); 1 fatal (a PATH missing, output not writable); 2 usage; 3 done,
but --strict and some files were errors; 130 interrupted (SIGINT), 143
terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import signal
import sys

import anyio

from . import __version__
from .outcomes import Summary
from .pipeline import Options, run
from .tags import resolve
from .write import FORMATS, NdjsonWriter, Output, columns

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_STRICT = 0, 1, 2, 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastindex",
        description="Index DICOM files into NDJSON: one line per subseries (default) or per file.",
        epilog="Exit codes: 0 done, 1 fatal, 2 usage, 3 errors with --strict, 130 interrupted.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", default=["."], help="files or directories (default: .)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (complete or not at all) instead of stdout")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="parse threads (default: cores)")
    p.add_argument("--concurrency", type=int, metavar="N", default=16, help="header reads in flight ahead of the parsers on a slow (cold, network) disk; 0 turns it off (default: 16)")
    p.add_argument("--level", choices=("subseries", "instance"), default="subseries", help="one line per subseries (sorted) or per file (as read)")
    p.add_argument("--format", choices=tuple(FORMATS), default="ndjson", help="ndjson (default), csv, or parquet (needs pyarrow)")
    p.add_argument("--relative-to", metavar="DIR", help="base of file_path and folder (default: current directory)")
    p.add_argument("--errors", metavar="FILE", help="NDJSON list of every file not indexed, with its reason")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symbolic links (loops are detected)")
    p.add_argument("--tags", metavar="KEYWORD,...", help="extra top-level tags, by keyword or (gggg,eeee)")
    p.add_argument("--strict", action="store_true", help="exit 3 when any file is an error")
    p.add_argument("--version", action="version", version=f"fastindex {__version__}")
    return p


def _progress(summary: Summary) -> None:
    rate = summary.seen / summary.seconds if summary.seconds else 0
    sys.stderr.write(f"\r\x1b[Kseen {summary.seen}, indexed {summary.indexed}, {rate:.0f} files/s")
    sys.stderr.flush()


async def _main(args: argparse.Namespace, options: Options, out, errors: NdjsonWriter | None, early: list[int]):
    """Run, unless a signal comes first; returns (summary, signal number).
    `early` holds signals that came before the receiver was listening."""
    result: list = [None, None]

    def on_problem(display: str, reason: str, message: str) -> None:
        if errors is not None:
            errors.write([{"file_path": display, "reason": reason, "message": message}])

    async def watch(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            if early:
                result[1] = early[0]
                scope.cancel()
                return
            async for signum in signals:
                result[1] = signum
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        instance = args.level == "instance"
        summary, aggregator = await run(args.paths, options, on_records=out.write if instance else None, on_problem=on_problem)
        if not instance:
            # A chunk at a time: the records of a large archive need not all
            # be Python objects at once.
            for start in range(0, len(aggregator), 1024):
                out.write(aggregator.dicts(start, start + 1024))
        result[0] = summary
        tg.cancel_scope.cancel()
    return result


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind an error, also when a task group wrapped it."""
    if isinstance(e, OSError):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = _os_error(inner)
        if found is not None:
            return found
    return None


def _silence_stdout() -> None:
    """After stdout failed (closed pipe, full disk), send what is left in
    its buffer nowhere, so that the exit does not fail once more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    # The run makes few Python objects and no cycles worth collecting; the
    # collector's passes over the import-time heap are pure cost.
    gc.disable()
    # A signal before the run listens for them is kept and acted on, not
    # raised as KeyboardInterrupt half-way through opening the outputs.
    early: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda n, _frame: early.append(n))
    args = parser().parse_args(argv)
    try:
        # Split on commas, but not inside "(gggg,eeee)".
        extras = resolve(re.findall(r"\([^)]*\)|[^,]+", args.tags or ""))
    except ValueError as e:
        print(f"fastindex: --tags: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs is not None and args.jobs < 1:
        print("fastindex: -j must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.concurrency < 0:
        print("fastindex: --concurrency must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    for p in args.paths:
        if not os.path.lexists(p):
            print(f"fastindex: {p}: no such file or directory", file=sys.stderr)
            return EXIT_FATAL
    options = Options(
        jobs=args.jobs,
        relative_to=args.relative_to,
        follow_symlinks=args.follow_symlinks,
        extras=extras,
        concurrency=args.concurrency,
        progress=_progress if sys.stderr.isatty() else None,
    )
    outputs: list[Output] = []
    try:
        outputs.append(Output(args.output))
        out = FORMATS[args.format](outputs[-1], columns(args.level, extras))
        errors = None
        if args.errors:
            outputs.append(Output(args.errors))
            errors = NdjsonWriter(outputs[-1])
        summary, signum = anyio.run(_main, args, options, out, errors, early)
        signum = signum or (early[0] if early else None)
        if signum is not None:
            for o in outputs:
                o.abort()
            print("\nfastindex: interrupted; no partial output file was left", file=sys.stderr)
            return 128 + signum
        out.finish()
        if errors:
            errors.finish()
    except BaseException as caught:
        e = _os_error(caught)
        if e is None:
            raise
        for o in outputs:
            o.abort()
        _silence_stdout()
        if isinstance(e, BrokenPipeError):
            print("fastindex: output closed by the reader", file=sys.stderr)
        else:
            print(f"fastindex: {e.filename or 'output'}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FATAL
    if options.progress:
        sys.stderr.write("\r\x1b[K")
    print(summary.line(), file=sys.stderr)
    if args.strict and summary.errors:
        return EXIT_STRICT
    return EXIT_OK

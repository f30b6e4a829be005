"""`fastindex PATH... > index.ndjson`: stdout is data, stderr is talk.

Exit codes: 0 done (files that gave no record are counted, and listed with
--errors; also when the reader of stdout closed it early, as `| head`
does); 1 fatal (a PATH missing, output not writable, a thread of the run
failed; with --dask, the scheduler unreachable, a PATH a worker cannot
see, the cluster failing the run; a --state that cannot be used: another
program's file, damaged, in use by another run); 2 usage; 3 done, but
--strict and some files were errors; 130 interrupted (SIGINT), 143
terminated (SIGTERM).

`fastindex watch DIR... --state FILE` is the watcher (see watch_cli.py).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import warnings

import anyio
import orjson

from . import __version__, fallback_pool
from .objects import is_url
from .outcomes import Summary
from .pipeline import Options, check_path, run
from .tags import resolve
from .tags import split as split_tags
from .write import FORMATS, Interrupted, NdjsonWriter, Output, columns, identity

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_STRICT = 0, 1, 2, 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastindex",
        description="Index DICOM files into NDJSON: one line per subseries (default) or per file.",
        epilog="Exit codes: 0 done, 1 fatal, 2 usage, 3 errors with --strict, 130/143 interrupted.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", default=["."], help="files or directories, or object-store URLs s3://bucket/prefix, gs://..., az://... (default: .)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (complete or not at all) instead of stdout; - is stdout")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="parse threads (default: cores)")
    p.add_argument("--concurrency", type=int, metavar="N", help="header reads in flight ahead of the parsers on a slow (cold, network) disk, and ranged GETs in flight for objects; 0 turns it off (default: 16, 64 when a PATH is an object-store URL)")
    p.add_argument("--level", choices=("subseries", "instance"), default="subseries", help="one line per subseries (sorted) or per file (as read)")
    p.add_argument("--format", choices=tuple(FORMATS), default="ndjson", help="ndjson (default), csv, or parquet (needs pyarrow)")
    p.add_argument("--relative-to", metavar="DIR", help="write file_path and folder relative to DIR (default: as the PATHs were given)")
    p.add_argument("--exclude", metavar="GLOB", action="append", default=[], help="leave out entries matching GLOB below each PATH (repeatable): a name (.snapshot, *.tmp) or a path with / (scratch/**)")
    p.add_argument("--errors", metavar="FILE", help="NDJSON list of every file not indexed (with its reason) and of files with warnings")
    p.add_argument("--summary", metavar="FILE", help="write the end-of-run summary here as one JSON object")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symbolic links inside the PATHs (loops are detected); links named as PATHs are always followed")
    p.add_argument("--tags", metavar="KEYWORD,...", help="extra top-level tags, by keyword or (gggg,eeee)")
    p.add_argument("--strict", action="store_true", help="exit 3 when any file is an error")
    p.add_argument("--state", metavar="FILE", help="keep what was read in this SQLite database; later runs read only new and changed files (output as from scratch; --level instance ordered by file_path)")
    p.add_argument("--moved", action="store_true", help="with --state: the archive was moved or restored; a file of the same size and mtime is unchanged, whatever its device, inode and ctime")
    p.add_argument("--fallback-jobs", type=int, metavar="N", default=fallback_pool.PROCESSES, help=f"pydicom fallback processes at most, whatever -j (default: {fallback_pool.PROCESSES})")
    p.add_argument("--fallback-memory", type=int, metavar="MIB", default=fallback_pool.MEMORY_MIB, help=f"memory a fallback process may take for one file, in MiB; more is error too_large; 0: no limit (default: {fallback_pool.MEMORY_MIB})")
    p.add_argument("--fallback-timeout", type=float, metavar="S", default=fallback_pool.TIMEOUT_S, help=f"seconds the fallback may take for one file; more is error timeout; 0: no limit (default: {fallback_pool.TIMEOUT_S:g})")
    p.add_argument("--dask", metavar="ADDRESS", help="index on a Dask cluster, given its scheduler's address (tcp://host:8786); local PATHs must be on a file system every worker sees at the same path; object-store URLs work from any worker that has the store's credentials in its environment (needs fastindex-dicom[dask])")
    p.add_argument("--shard-files", type=int, metavar="N", help="with --dask: entries of the listing per task (default: 2048)")
    p.add_argument("--no-sign-request", action="store_true", help="object stores: send requests unsigned (public buckets), as the AWS CLI's flag")
    p.add_argument("--first-bytes", type=int, metavar="N", default=64 * 1024, help="object stores: bytes of each object's first ranged GET; more only when the header goes on (default: 65536)")
    p.add_argument("--retries", type=int, metavar="N", default=10, help="object stores: retries (with backoff) of a request that failed with 5xx, 429 or a broken connection (default: 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on stderr but fatal errors")
    p.add_argument("--version", action="version", version=f"fastindex {__version__}")
    return p


def _progress(summary: Summary) -> None:
    rate = summary.seen / summary.seconds if summary.seconds else 0
    sys.stderr.write(
        f"\r\x1b[Kseen {summary.seen}, indexed {summary.indexed}, errors {summary.errors}, "
        f"{summary.seconds:.1f} s, {rate:.0f} files/s"
    )
    sys.stderr.flush()


async def _main(args: argparse.Namespace, options: Options, out, errors: NdjsonWriter | None, early: list[int], runner=run, state=None):
    """Run, unless a signal comes first; returns (summary, signal number).
    `early` holds signals that came before the receiver was listening.
    `runner` makes the (Summary, Aggregator): `pipeline.run` on this
    machine, or the same over a Dask cluster (`dask.run`)."""
    result: list = [None, None]

    def on_problem(display: str, reason: str, message: str) -> None:
        if errors is not None:
            errors.write([{"file_path": display, "reason": reason, "message": message}])

    async def watch(scope: anyio.CancelScope) -> None:
        # The handlers stay the command's own (see _start): a receiver of
        # the event loop's would hand the signals back to the defaults when
        # it closes, before the outputs are committed.
        while not early:
            await anyio.sleep(0.05)
        result[1] = early[0]
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        instance = args.level == "instance"
        if state is not None:
            summary, aggregator = await _from_state(args, options, out, errors, state, runner)
        else:
            summary, aggregator = await runner(args.paths, options, on_records=out.write if instance else None, on_problem=on_problem)
        if not instance:
            # A chunk at a time: the records of a large archive need not all
            # be Python objects at once.
            for start in range(0, len(aggregator), 1024):
                out.write(aggregator.dicts(start, start + 1024))
        result[0] = summary
        tg.cancel_scope.cancel()
    return result


async def _from_state(args: argparse.Namespace, options: Options, out, errors: NdjsonWriter | None, state, runner):
    """With --state: the state brought up to date (the new and changed
    files read by `runner`: here, or on a cluster); per-file records and
    --errors written from it, ordered by file_path, so that they are the
    same whatever was read this time."""
    from . import incremental

    summary, aggregator = await incremental.run(args.paths, options, state, moved=args.moved, reader=runner)
    if args.level == "instance":
        for chunk in state.records():
            out.write(chunk)
    if errors is not None:
        errors.write(state.problems())
    return summary, aggregator


def _behind(e: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The error of `kind` behind an error, also when a task group wrapped it."""
    if isinstance(e, kind):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = _behind(inner, kind)
        if found is not None:
            return found
    return None


def _innermost(e: BaseException) -> BaseException:
    """The one error inside task groups' wrapping, if it is one."""
    while len(getattr(e, "exceptions", ())) == 1:
        e = e.exceptions[0]  # type: ignore[attr-defined]
    return e


def _os_error(e: BaseException) -> OSError | None:
    return _behind(e, OSError)  # type: ignore[return-value]


def _silence_stdout() -> None:
    """After stdout failed (closed pipe, full disk), send what is left in
    its buffer nowhere, so that the exit does not fail once more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def _usage(message: str) -> int:
    print(f"fastindex: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, if anything (a usage error)."""
    if args.jobs is not None and args.jobs < 1:
        return "-j must be at least 1"
    if args.concurrency is not None and args.concurrency < 0:
        return "--concurrency must be 0 or more"
    if args.first_bytes < 1 or args.retries < 0:
        return "--first-bytes must be at least 1, --retries 0 or more"
    if args.fallback_jobs < 1:
        return "--fallback-jobs must be at least 1"
    if args.fallback_memory < 0 or args.fallback_timeout < 0:
        return "--fallback-memory and --fallback-timeout must be 0 or more"
    if args.shard_files is not None and (args.shard_files < 1 or not args.dask):
        return "--shard-files must be at least 1, and goes with --dask"
    if any(is_url(p) for p in args.paths) and args.dask and args.state is not None:
        return "object-store URLs do not go with --dask and --state together yet (either one works)"
    if args.relative_to is not None and not os.path.isdir(args.relative_to):
        return f"--relative-to {args.relative_to}: not a directory"
    named = [("-o", args.output), ("--errors", args.errors), ("--summary", args.summary)]
    named = [(flag, path) for flag, path in named if path is not None or flag == "-o"]
    for i, (flag_a, a) in enumerate(named):
        for flag_b, b in named[i + 1 :]:
            if identity(a) == identity(b):
                return f"{flag_a} and {flag_b} name the same output ({a or 'stdout'}): one would replace the other"
    if args.state is not None:
        for flag, path in named:
            if identity(path) == identity(args.state):
                return f"--state and {flag} name the same file ({args.state})"
    elif args.moved:
        return "--moved needs --state"
    try:
        from . import _native

        _native.check_exclude(args.exclude)
    except ValueError as e:
        return f"--exclude: {e}"
    return None


def _own_files(*paths: str | None) -> list[tuple[int, int]]:
    """(device, inode) of the output files that already exist: a run inside
    the archive must not index its own outputs."""
    out = []
    for p in paths:
        kind, *ids = identity(p)
        if kind == "file":
            out.append(tuple(ids))
    return out


def main(argv: list[str] | None = None) -> int:
    from ._start import main as start

    return start(argv)


def command(argv: list[str] | None, early: list[int]) -> int:
    """The command, once `_start` has its signal handlers in place: the
    signals that came are in `early`."""
    # The run makes few Python objects and no cycles worth collecting; the
    # collector's passes over the import-time heap are pure cost.
    gc.disable()
    # Libraries' warnings never reach stderr: pydicom's are caught per file
    # (fallback.read_noted), counted and listed with --errors.
    warnings.simplefilter("ignore")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch"]:
        from . import watch_cli

        return watch_cli.command(argv[1:], early)
    args = parser().parse_args(argv)
    try:
        extras = resolve(split_tags(args.tags))
    except ValueError as e:
        return _usage(f"--tags: {e}")
    problem = _check(args)
    if problem:
        return _usage(problem)
    for p in args.paths:
        try:
            check_path(p)
        except OSError as e:
            print(f"fastindex: {e.strerror}", file=sys.stderr)
            return EXIT_FATAL
    talk = not args.quiet
    # One run in this process: the shared threads are its own.
    from . import _native

    _native.configure(args.jobs, args.concurrency or None)
    options = Options(
        jobs=args.jobs,
        relative_to=args.relative_to,
        follow_symlinks=args.follow_symlinks,
        extras=extras,
        concurrency=args.concurrency,
        no_sign_request=args.no_sign_request,
        first_bytes=args.first_bytes,
        retries=args.retries,
        exclude=args.exclude,
        own=_own_files(args.output, args.errors, args.summary),
        fallback=fallback_pool.Limits(args.fallback_jobs, args.fallback_memory, args.fallback_timeout),
        progress=_progress if talk and sys.stderr.isatty() else None,
    )
    state = None
    if args.state is not None:
        from .state import State, StateError

        try:
            state = State(args.state, extras)
        except StateError as e:
            print(f"fastindex: {e}", file=sys.stderr)
            return EXIT_FATAL
    try:
        if not args.dask:
            return _index(args, options, extras, early, run, state, talk)
        try:
            from . import dask as on_dask

            client = on_dask.connect(args.dask)
        except (ImportError, OSError, ValueError) as e:
            print(f"fastindex: --dask {args.dask}: {e}", file=sys.stderr)
            return EXIT_FATAL
        try:
            runner = functools.partial(on_dask.run, client=client, shard_files=args.shard_files or on_dask.SHARD_FILES)
            return _index(args, options, extras, early, runner, state, talk)
        finally:
            client.close()
    finally:
        if state is not None:
            state.close()


def _index(args: argparse.Namespace, options: Options, extras, early: list[int], runner, state, talk: bool) -> int:
    """Run `runner` (or the state's run) and write its outputs; the exit code."""
    outputs: list[Output] = []
    summary = None
    try:
        writer = FORMATS[args.format]
        if hasattr(writer, "check"):
            try:
                writer.check()  # a missing dependency, before any file is made
            except ImportError as e:
                print(f"fastindex: {e}", file=sys.stderr)
                return EXIT_FATAL
        outputs.append(Output(args.output, lambda: bool(early)))
        out = writer(outputs[-1], columns(args.level, extras))
        errors = None
        if args.errors:
            outputs.append(Output(args.errors, lambda: bool(early)))
            errors = NdjsonWriter(outputs[-1])
        summary, signum = anyio.run(_main, args, options, out, errors, early, runner, state)
        if signum is None:
            out.finish()
            if errors:
                errors.finish()
        # The last moment a signal can still cancel the run: after it, both
        # outputs are committed together (a signal then only waits).
        signum = signum or (early[0] if early else None)
        if signum is not None:
            raise Interrupted(signum)
        for o in outputs:
            o.commit()
    except Interrupted as stop:
        for o in outputs:
            o.abort()
        signum = stop.args[0] if stop.args else early[0]
        if talk:
            print("\nfastindex: interrupted; no partial output file was left", file=sys.stderr)
        return _finish(args, summary, 128 + signum)
    except BaseException as caught:
        for o in outputs:
            o.abort()
        from ._native import RunFailed
        from .state import StateError

        refused = _behind(caught, StateError)
        if refused is None and state is not None:
            import sqlite3

            damaged = _behind(caught, sqlite3.DatabaseError)
            if damaged is not None:
                refused = StateError(f"{args.state}: damaged fastindex state ({damaged}); remove it to start again")
        if refused is not None:
            print(f"fastindex: {refused}; no output was committed", file=sys.stderr)
            return _finish(args, summary, EXIT_FATAL)

        failed = _behind(caught, RunFailed)
        if failed is not None:
            # A thread of the run died: the index would miss files.
            print(f"fastindex: {failed}; no output was committed", file=sys.stderr)
            return _finish(args, summary, EXIT_FATAL)
        error = _os_error(caught)
        if error is None and args.dask and isinstance(caught, Exception):
            # The cluster's word: a PATH a worker cannot see (NotShared), a
            # task that killed its workers, a lost scheduler.
            print(f"fastindex: --dask: {_innermost(caught)}; no output was committed", file=sys.stderr)
            return _finish(args, summary, EXIT_FATAL)
        if error is None:
            raise
        if isinstance(error, BrokenPipeError):
            # The reader has what it wanted (`| head`): done, quietly, as
            # ripgrep does; output files are left as they were.
            _silence_stdout()
            return EXIT_OK
        _silence_stdout()
        print(f"fastindex: {error.filename or 'output'}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FATAL
    if options.progress:
        sys.stderr.write("\r\x1b[K")
    if talk:
        print(summary.line(), file=sys.stderr)
    return _finish(args, summary, EXIT_STRICT if args.strict and summary.errors else EXIT_OK)


def _finish(args: argparse.Namespace, summary: Summary | None, code: int) -> int:
    """Write --summary (when there is one to write) and give the exit code."""
    if args.summary is None or summary is None:
        return code
    data = summary.as_dict()
    data["exit_code"] = code
    try:
        out = Output(args.summary)
        out.file.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
        out.commit()
    except OSError as e:
        print(f"fastindex: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FATAL
    return code

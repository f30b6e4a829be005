"""The command's first lines: its signal handlers are in place before
anything heavy is imported (a signal in the first milliseconds must not
interrupt a C extension's initialisation, or kill the run with no exit code
of its own). Signals that come before the run listens are kept in `early`
and acted on once it does."""

from __future__ import annotations

import signal


def main(argv: list[str] | None = None) -> int:
    early: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A signal ignored by whoever started us (a background job in a
        # script: SIGINT is SIG_IGN) stays ignored.
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda n, _frame: early.append(n))
    from .cli import command

    try:
        return command(argv, early)
    finally:
        # Done (outputs committed or not): a signal now only waits for the
        # exit. Python hands the signals it handles back to the default
        # action while it shuts down, which would end a finished run with
        # -SIGTERM; ignored signals it leaves ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)

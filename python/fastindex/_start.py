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

    return command(argv, early)

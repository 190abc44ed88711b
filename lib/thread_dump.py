"""``kill -USR1 <dashboard pid>`` writes every Python thread's stack to the dashboard's stderr.

For an operator asking "what is this process doing?" of a dashboard that looks stuck or keeps threads it should
not, without stopping it or attaching a debugger; the soak test reads the same dump to tell a leaked thread from
an idle worker of a bounded pool. The dump is written by the interpreter's C-level signal handler
(``faulthandler``), so it answers even when every Python thread is blocked.
"""

from __future__ import annotations

import faulthandler
import signal

DUMP_SIGNAL = signal.SIGUSR1


def install() -> bool:
    """Dump all threads on ``DUMP_SIGNAL``; False where the platform has no such signal handling."""
    try:
        faulthandler.register(DUMP_SIGNAL, all_threads=True, chain=False)
    except (AttributeError, ValueError, RuntimeError, OSError):  # no fileno on stderr, or not a POSIX platform
        return False
    return True

"""``python -m lib.cli``: see ``lib/cli/__init__.py`` for commands and exit codes."""

from __future__ import annotations

import os
import sys

from lib.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # `... | head` closed our stdout early: not an error; keep Python from complaining at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 0
raise SystemExit(code)

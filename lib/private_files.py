"""Files that hold who ran what (the usage log, the engine's history) are created private to their user.

Only what this code creates is made private: a folder or file that already exists keeps the mode its owner
gave it (``USAGE_DB_PATH=/srv/shared/usage.db`` must not change ``/srv/shared``).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 (owner only); existing folders are left as they are."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; say exactly what we mean
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if it does not exist (SQLite gives its -wal and -shm files the same mode)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    return path

"""Saved scripts, kept in the usage database.

They live in the ``settings`` table, keys ``script:<hash of the name>``, value ``{"name", "text", "saved_at"}``:
one file that survives restarts and is backed up with the usage log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass

from lib.scripts.parse import parse_script
from lib.usage.store import UsageLog

MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class SavedScript:
    name: str
    text: str
    saved_at: float


class ScriptStore:
    """Named scripts kept in the usage database, so they survive restarts and travel with the log.

    Keys are ``script:`` + a hash of the name (trimmed, case-insensitive): any name is allowed, even one
    the settings table would refuse as a key (e.g. "password reset"). Deleting leaves a ``null`` value.
    """

    PREFIX = "script:"

    def __init__(self, usage: UsageLog) -> None:
        self.usage = usage

    @staticmethod
    def _clean(name: str) -> str:
        name = " ".join(name.split())
        if not name:
            raise ValueError("Give the script a name.")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"The script name is too long (at most {MAX_NAME_CHARS} characters).")
        return name

    def _key(self, name: str) -> str:
        return self.PREFIX + hashlib.sha256(self._clean(name).casefold().encode()).hexdigest()[:32]

    def save(self, name: str, text: str) -> SavedScript:
        """Save (or overwrite) a script; refuses one with nothing to say (ValueError from ``parse_script``)."""
        name = self._clean(name)
        parse_script(text)
        saved = SavedScript(name, text, time.time())
        self.usage.set_setting(self._key(name), {"name": name, "text": text, "saved_at": saved.saved_at})
        return saved

    def get(self, name: str) -> SavedScript | None:
        value = self.usage.get_setting(self._key(name))
        if not isinstance(value, dict):
            return None
        return SavedScript(str(value["name"]), str(value["text"]), float(value.get("saved_at", 0.0)))

    def load(self, name: str) -> str:
        saved = self.get(name)
        if saved is None:
            raise KeyError(f"No saved script is called {name!r}.")
        return saved.text

    def names(self) -> list[str]:
        with self.usage.read() as conn:
            rows = conn.execute("SELECT value FROM settings WHERE key LIKE ?", (self.PREFIX + "%",)).fetchall()
        names = []
        for (raw,) in rows:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                value = json.loads(raw)
                if isinstance(value, dict):
                    names.append(str(value["name"]))
        return sorted(names, key=str.casefold)

    def delete(self, name: str) -> bool:
        """Forget a saved script; False when there was none by that name."""
        if self.get(name) is None:
            return False
        self.usage.set_setting(self._key(name), None)
        return True

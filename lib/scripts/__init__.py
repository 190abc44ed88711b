"""Training scripts: parse a pasted script into segments (``parse``), deliver them in order on a live avatar
(``runner``), and keep them for reuse (``store``)."""

from lib.scripts.parse import MAX_PAUSE_S, MAX_SEGMENT_CHARS, Segment, decode_script, estimate_seconds, parse_script
from lib.scripts.runner import TERMINAL_STATES, RunnerState, RunnerStatus, ScriptRunner, ScriptSession, SegmentRun
from lib.scripts.store import MAX_NAME_CHARS, SavedScript, ScriptStore

__all__ = [
    "MAX_NAME_CHARS",
    "MAX_PAUSE_S",
    "MAX_SEGMENT_CHARS",
    "TERMINAL_STATES",
    "RunnerState",
    "RunnerStatus",
    "SavedScript",
    "ScriptRunner",
    "ScriptSession",
    "ScriptStore",
    "Segment",
    "SegmentRun",
    "decode_script",
    "estimate_seconds",
    "parse_script",
]

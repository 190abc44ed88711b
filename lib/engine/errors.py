"""HeyGen-shaped API errors: every failure leaves the engine as ``{"code": N, "message": "..."}``."""

from __future__ import annotations

from dataclasses import dataclass

UNAUTHORIZED = 400112
TOKEN_EXPIRED = 401056
TOKEN_INVALID = 401057
MISSING_PARAMETER = 40001
INVALID_PARAMETER = 400175
TTS_ERROR = 400009
STATE_CODES = {"new": 10001, "connecting": 10002, "connected": 10003, "closing": 10004, "closed": 10005}
SESSION_NOT_FOUND = 10006
CONCURRENT_LIMIT = 10007
AVATAR_NOT_FOUND = 10012


@dataclass
class ApiError(Exception):
    code: int
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(UNAUTHORIZED, message, 401)


def missing(field: str) -> ApiError:
    return ApiError(MISSING_PARAMETER, f"Missing parameter: {field}")


def invalid(message: str) -> ApiError:
    return ApiError(INVALID_PARAMETER, message)


def session_not_found(session_id: str) -> ApiError:
    return ApiError(SESSION_NOT_FOUND, f"Session not found: {session_id}")


def wrong_state(state: str, action: str) -> ApiError:
    return ApiError(STATE_CODES[state], f"Session state wrong: {state} (cannot {action})")

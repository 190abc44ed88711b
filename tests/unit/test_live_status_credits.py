"""The Live chat status panel's credits: at the session's own rate (LiveAvatar FULL, LITE, sandbox)."""

from __future__ import annotations

import pytest

from lib.heygen.models import NewSessionRequest
from lib.live.liveavatar import LiveAvatarChoice, LiveAvatarRequest
from lib.live.status import credits_so_far
from lib.liveavatar.models import SANDBOX_AVATAR_ID, SessionMode
from lib.usage.credits import Pricing, get_model

LIVEAVATAR = Pricing(get_model("liveavatar"), price_per_credit=0.1)
AVATAR_ID = "0f9a1a8e-5a5e-4d0a-9c1b-2b8f5e0c7d11"


def request(mode: SessionMode, sandbox: bool = False) -> LiveAvatarRequest:
    choice = LiveAvatarChoice(SANDBOX_AVATAR_ID if sandbox else AVATAR_ID, mode=mode, sandbox=sandbox)
    return LiveAvatarRequest(choice.config(None), choice)


@pytest.mark.parametrize(
    ("mode", "sandbox", "shown"),
    [
        (SessionMode.FULL, False, "4.00 · $0.40"),  # 2 credits a minute
        (SessionMode.LITE, False, "2.00 · $0.20"),  # half of FULL's (it used to show FULL's rate)
        (SessionMode.FULL, True, "0.00 · $0.00"),  # sandbox sessions are free
    ],
)
def test_a_liveavatar_session_is_priced_at_its_own_rate(mode: SessionMode, sandbox: bool, shown: str) -> None:
    assert credits_so_far(request(mode, sandbox), LIVEAVATAR, 120.0) == shown


def test_the_minute_held_at_start_is_said_while_it_is_all_there_is() -> None:
    assert credits_so_far(request(SessionMode.FULL), LIVEAVATAR, 10.0) == "2.00 · $0.20 (1 min held at start)"
    assert credits_so_far(request(SessionMode.FULL, sandbox=True), LIVEAVATAR, 10.0) == "0.00 · $0.00"
    assert credits_so_far(NewSessionRequest(quality="low"), Pricing(), 0.0) == "0.00 · $0.00"
    # The local engine's HeyGen-equivalent price bills a 30 s minimum: nothing is "held" there.
    assert credits_so_far(NewSessionRequest(quality="low"), Pricing(), 5.0).endswith("(billed minimum 0.5 min)")

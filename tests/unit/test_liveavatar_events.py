"""FULL mode's data-channel protocol: commands in the contract's JSON, server events parsed into types."""

from __future__ import annotations

import json
import uuid

import pytest

from lib.liveavatar import events as ev
from lib.liveavatar.events import (
    AGENT_CONTROL_TOPIC,
    CommandType,
    GenericEvent,
    MalformedEvent,
    PushToTalkAck,
    SessionStopped,
    SpeakEnded,
    Speaker,
    SpeakStarted,
    Transcription,
    parse_event,
)
from lib.liveavatar.models import SessionEndReason

SESSION = "0b6c1f9e-7d7e-4a39-9a3a-3c1f0e3f6d11"


def _sent(command: ev.Command) -> dict:
    return json.loads(command.encode().decode("utf-8"))


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: ev.speak_text(SESSION, "Hello there."), "avatar.speak_text"),
        (lambda: ev.speak_response(SESSION, "What are your opening hours?"), "avatar.speak_response"),
    ],
)
def test_text_commands_carry_a_fresh_uuid4_the_session_and_the_text_flat(build, kind):
    first, second = build(), build()
    body = _sent(first)
    assert body["event_type"] == kind
    assert body["session_id"] == SESSION
    assert uuid.UUID(body["event_id"]).version == 4
    assert body["text"] == first.payload["text"]
    assert set(body) == {"event_id", "event_type", "session_id", "text"}
    assert first.event_id != second.event_id
    assert first.topic == AGENT_CONTROL_TOPIC == "agent-control"


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (ev.interrupt, "avatar.interrupt"),
        (ev.start_listening, "avatar.start_listening"),
        (ev.stop_listening, "avatar.stop_listening"),
        (ev.start_push_to_talk, "user.start_push_to_talk"),
        (ev.stop_push_to_talk, "user.stop_push_to_talk"),
    ],
)
def test_commands_without_payload_are_only_the_envelope(build, kind):
    body = _sent(build(SESSION))
    assert body == {"event_id": body["event_id"], "event_type": kind, "session_id": SESSION}
    assert uuid.UUID(body["event_id"]).version == 4


def test_speaking_nothing_is_refused_before_it_is_sent():
    with pytest.raises(ValueError, match="needs some text"):
        ev.speak_text(SESSION, "   ")


def test_text_is_sent_as_utf8_not_escaped():
    raw = ev.speak_text(SESSION, "Grüße, 你好").encode()
    assert "Grüße, 你好".encode() in raw


def test_payload_cannot_overwrite_the_envelope():
    command = ev.Command(CommandType.SPEAK_TEXT, SESSION, {"text": "hi", "event_type": "session.stop"})
    assert _sent(command)["event_type"] == "avatar.speak_text"


@pytest.mark.parametrize(
    ("kind", "cls", "speaker"),
    [
        ("user.speak_started", SpeakStarted, Speaker.USER),
        ("user.speak_ended", SpeakEnded, Speaker.USER),
        ("avatar.speak_started", SpeakStarted, Speaker.AVATAR),
        ("avatar.speak_ended", SpeakEnded, Speaker.AVATAR),
    ],
)
def test_speaking_events_say_who_and_which_command(kind, cls, speaker):
    packet = {"event_id": "e1", "event_type": kind, "session_id": SESSION, "source_event_id": "cmd-7"}
    event = parse_event(json.dumps(packet).encode())
    assert type(event) is cls
    assert event.speaker is speaker
    assert (event.event_id, event.session_id, event.source_event_id) == ("e1", SESSION, "cmd-7")


@pytest.mark.parametrize(
    ("kind", "speaker", "partial"),
    [
        ("user.transcription", Speaker.USER, False),
        ("avatar.transcription", Speaker.AVATAR, False),
        ("user.transcription.chunk", Speaker.USER, True),
        ("avatar.transcription.chunk", Speaker.AVATAR, True),
    ],
)
def test_transcriptions_and_their_partials(kind, speaker, partial):
    event = parse_event(json.dumps({"event_type": kind, "text": "Hello"}))
    assert isinstance(event, Transcription)
    assert (event.speaker, event.text, event.partial) == (speaker, "Hello", partial)
    assert event.event_id is None and event.source_event_id is None


def test_a_transcription_without_text_is_empty_and_with_a_non_text_is_malformed():
    assert parse_event({"event_type": "user.transcription"}).text == ""  # type: ignore[attr-defined]
    with pytest.raises(MalformedEvent, match="non-text"):
        parse_event({"event_type": "user.transcription", "text": 42})


@pytest.mark.parametrize(
    ("kind", "started", "ok"),
    [
        ("user.push_to_talk_started", True, True),
        ("user.push_to_talk_start_failed", True, False),
        ("user.push_to_talk_stopped", False, True),
        ("user.push_to_talk_stop_failed", False, False),
    ],
)
def test_push_to_talk_acks(kind, started, ok):
    event = parse_event({"event_type": kind})
    assert isinstance(event, PushToTalkAck)
    assert (event.started, event.ok) == (started, ok)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("MAX_DURATION_REACHED", SessionEndReason.MAX_DURATION_REACHED),
        ("idle_timeout", SessionEndReason.IDLE_TIMEOUT),
        ("SOMETHING_NEW", SessionEndReason.UNKNOWN),
        (None, SessionEndReason.UNKNOWN),
    ],
)
def test_session_stopped_carries_its_end_reason(value, reason):
    packet = {"event_type": "session.stopped", "session_id": SESSION}
    if value is not None:
        packet["end_reason"] = value
    event = parse_event(packet)
    assert isinstance(event, SessionStopped)
    assert event.end_reason is reason


def test_unknown_event_types_are_kept_with_their_fields():
    event = parse_event(b'{"event_type": "session.updated", "event_id": "x", "foo": {"bar": 1}}')
    assert type(event) is GenericEvent
    assert event.event_type == "session.updated"
    assert event.raw["foo"] == {"bar": 1}


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "JSON list, not an object"),
        ('"avatar.speak_started"', "JSON str, not an object"),
        ("{}", "no event_type"),
        ('{"event_type": 5}', "no event_type"),
    ],
)
def test_malformed_packets_are_rejected_with_a_clear_error(packet, message):
    with pytest.raises(MalformedEvent, match=message):
        parse_event(packet)

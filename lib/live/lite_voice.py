"""LITE mode's voice: the dashboard answers, speaks with our offline Piper voice, and sends the speech over ``ws_url``.

LiveAvatar (or the engine's twin) only renders the lips in LITE; what the avatar says is ours. A message goes
through one worker thread: *repeat* speaks the text as is, *talk* asks our :class:`~lib.engine.responder.Responder`
(the context's prompt as knowledge base, or the configured LLM). Each sentence is synthesized by the
:class:`~lib.engine.tts.VoiceBank` on this machine, converted to LITE's PCM (s16le, 24 kHz, mono) and streamed with
:class:`~lib.liveavatar.lite.LiteSessionThread` as one utterance per message. Interrupt drops both our queue (the
sentences not yet synthesized and the chunks not yet sent) and the avatar's. The socket's speaking events drive
the session's status; ``session.stopped`` ends it with the provider's reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from lib.engine.responder import Responder
from lib.engine.synthesis_stop import SynthesisCancelled, SynthesisStop
from lib.engine.tts import TARGET_RATE, VoiceBank
from lib.liveavatar.lite import LiteEvent, LiteEventType, LiteSessionThread, to_lite_pcm

log = logging.getLogger("avatar_ops.live")

EventSink = Callable[[dict[str, Any]], None]
AHEAD_SECONDS = 1.0  # speech synthesized ahead of the socket's sending (it sends ~2 s ahead of real time itself)

_voice_bank: VoiceBank | None = None
_voice_lock = threading.Lock()


def shared_voice_bank() -> VoiceBank:
    """One Piper voice per process (its model takes a few seconds and some memory to load)."""
    global _voice_bank
    with _voice_lock:
        if _voice_bank is None:
            _voice_bank = VoiceBank()
        return _voice_bank


class LiteVoice:
    """One LITE session's speech: thread-safe; ``on_event`` gets the session's events (HeyGen's names)."""

    def __init__(
        self,
        ws_url: str,
        *,
        voices: VoiceBank,
        responder: Responder,
        on_event: EventSink,
        voice_id: str | None = None,
        link_factory: Callable[..., LiteSessionThread] = LiteSessionThread,
    ) -> None:
        self._voices = voices
        self._voice_id = voice_id
        self._responder = responder
        self._on_event = on_event
        self._jobs: queue.Queue[tuple[str, str, str, int] | None] = queue.Queue()
        self._generation = 0  # bumped by interrupt: a job of an older generation stops where it is
        # The running job's: an interrupt also ends the piece Piper is synthesizing, so the next message's first
        # words do not wait behind up to 100 characters nobody will hear (the voice is one per process).
        self._stop = SynthesisStop()
        self._lock = threading.Lock()
        self.link = link_factory(ws_url, on_event=self._socket_event)
        self._worker = threading.Thread(target=self._work, name="lite-voice", daemon=True)
        self._worker.start()

    def connect(self, timeout: float = 15.0) -> None:
        self.link.connect(timeout)

    def say(self, text: str, task_type: str) -> str:
        """Queue a message; its task id is the utterance's ``event_id`` on the socket."""
        task_id = str(uuid.uuid4())
        with self._lock:
            self._jobs.put((task_id, text, task_type, self._generation))
        return task_id

    def interrupt(self) -> None:
        self._end_current()
        while True:  # messages not started yet are dropped too
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self.link.interrupt()

    def listening(self, on: bool) -> None:
        """The user speaks (or stopped): the avatar's listening pose, on the socket."""
        self.link.listening(on)

    def close(self) -> None:
        self._end_current()
        self._jobs.put(None)
        self.link.close()

    # --- inside ----------------------------------------------------------------------------------
    def _end_current(self) -> None:
        with self._lock:
            self._generation += 1
            stop = self._stop
        stop.set()

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            task_id, text, task_type, generation = job
            with self._lock:
                if generation != self._generation:
                    continue  # queued before an interrupt that came while the worker was taking it
                stop = self._stop = SynthesisStop()
            try:
                self._speak(task_id, text, task_type, generation, stop)
            except SynthesisCancelled:
                pass  # interrupted mid-piece: the interrupt already silenced the avatar
            except Exception:  # one failed answer must not silence the next ones
                log.exception("LITE speech failed")
                self._on_event({"type": "avatar_stop_talking", "task_id": task_id})

    def _sentences(self, text: str, task_type: str) -> Iterable[str]:
        return [text] if task_type == "repeat" else self._responder.answer(text)

    def _queued(self) -> float:
        try:
            return self.link.session.queued_seconds
        except RuntimeError:  # read from this thread while the socket's loop changes its outbox: ask again soon
            return AHEAD_SECONDS + 1

    def _paced(self, generation: int) -> bool:
        """Wait while more than ``AHEAD_SECONDS`` of speech is still unsent: a sentence is synthesized (and shown)
        only shortly before it is heard, so an interrupt finds the rest of the answer still unspoken here."""
        while self._current(generation) and self._queued() > AHEAD_SECONDS:
            time.sleep(0.05)
        return self._current(generation)

    def _speak(self, task_id: str, text: str, task_type: str, generation: int, stop: SynthesisStop) -> None:
        self.link.begin(task_id)
        try:
            for index, sentence in enumerate(self._sentences(text, task_type)):
                for chunk in self._voices.synthesize(sentence, self._voice_id, quick_start=index == 0, stop=stop):
                    if not self._paced(generation):
                        return
                    self.link.add(task_id, to_lite_pcm(chunk.audio, TARGET_RATE))
                    self._on_event({"type": "avatar_talking_message", "task_id": task_id, "message": chunk.text})
        finally:
            self.link.end(task_id)

    def _socket_event(self, event: LiteEvent) -> None:
        if event.type == LiteEventType.SPEAK_STARTED:
            self._on_event({"type": "avatar_start_talking", "task_id": event.event_id})
        elif event.type in (LiteEventType.SPEAK_ENDED, LiteEventType.SPEAK_INTERRUPTED):
            self._on_event({"type": "avatar_stop_talking", "task_id": event.event_id})
        elif event.type == LiteEventType.SESSION_STOPPED:
            reason = str(event.end_reason) if event.end_reason else "UNKNOWN"
            self._on_event({"type": "provider_stopped", "end_reason": reason})

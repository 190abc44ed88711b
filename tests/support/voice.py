"""Voice input in the browser: spoken WAVs made offline by the engine's own TTS, a Chromium whose microphone
plays such a file, the page steps that turn the microphone on, and an in-page probe that times the user's
speech (what the microphone sends) against the avatar's voice (what the page plays).

Used by tests/test_browser_voice.py and benchmarks/bench_voice.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Browser, Frame, Page, sync_playwright

from lib.engine.tts import PIPER_VOICE_ID, TARGET_RATE, VoiceBank, to_wav
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, WEBRTC_IFRAME, install_probe

# Speech is where the TTS audio is above -40 dBFS; Piper's word gaps are shorter than the VAD's 500 ms.
_SPEECH_LEVEL = 0.01 * 32768


@dataclass(frozen=True)
class Said:
    """One spoken phrase in a WAV: where its sound starts and ends, in seconds from the file's start."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SpokenWav:
    path: Path
    duration: float
    said: tuple[Said, ...]


def spoken_wav(
    path: Path, parts: Sequence[str | float], voices: VoiceBank | None = None, voice_id: str = PIPER_VOICE_ID
) -> SpokenWav:
    """Write a 48 kHz mono WAV from `parts`: a number is that many seconds of silence, a string is spoken."""
    voices = voices or VoiceBank(varied=False)
    pieces: list[np.ndarray] = []
    said: list[Said] = []
    position = 0
    for part in parts:
        if isinstance(part, str):
            audio = np.concatenate([c.audio for c in voices.synthesize(part, voice_id)]).astype(np.int16)
            loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > _SPEECH_LEVEL)
            if len(loud) == 0:
                raise ValueError(f"the TTS produced no audible speech for {part!r}")
            said.append(Said(part, (position + loud[0]) / TARGET_RATE, (position + loud[-1] + 1) / TARGET_RATE))
        else:
            audio = np.zeros(round(part * TARGET_RATE), np.int16)
        pieces.append(audio)
        position += len(audio)
    path.write_bytes(to_wav(np.concatenate(pieces)))
    return SpokenWav(path, position / TARGET_RATE, tuple(said))


@contextmanager
def launch_chromium_with_mic(wav: Path, *, loop: bool = True) -> Iterator[Browser]:
    """Chromium whose (fake) microphone plays `wav` from the moment a page opens it; looped unless `loop=False`."""
    capture = f"--use-file-for-fake-audio-capture={wav}{'' if loop else '%noloop'}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, capture])
        try:
            yield browser
        finally:
            browser.close()


def set_knowledge_base(page: Page, text: str) -> None:
    """Type the knowledge base on Live chat (before START) and wait until the app has it."""
    area = page.get_by_role("textbox", name="Knowledge base", exact=True)
    area.wait_for(timeout=30_000)
    area.fill(text)
    area.press("Tab")  # Streamlit commits a text area when it loses focus
    page.wait_for_function(
        "(want) => { const a = [...document.querySelectorAll('textarea')]"
        ".find(t => t.getAttribute('aria-label') === 'Knowledge base');"
        " return a && a.value === want; }",
        arg=text,
        timeout=10_000,
    )
    wait_app_idle(page)


def enable_voice(page: Page, *, barge_in: bool = True, timeout: float = 90.0) -> None:
    """Expander "Voice input" → the microphone toggle (hands-free); wait until the mic-enabled component shows
    START. The first time, the server loads the speech-to-text model during this page run."""
    page.get_by_text("Voice input", exact=True).click()
    page.get_by_text("Talk to the avatar with the microphone").click()
    wait_app_idle(page, timeout)
    box = page.get_by_role("checkbox", name="Speaking interrupts the avatar (barge-in)")
    if box.is_checked() != barge_in:
        page.get_by_text("Speaking interrupts the avatar (barge-in)").click()
        wait_app_idle(page)
    # Only the microphone-enabled (SENDRECV) component offers a device choice next to START.
    component = page.frame_locator(WEBRTC_IFRAME)
    component.get_by_role("button", name="SELECT DEVICE").wait_for(timeout=timeout * 1000)
    component.get_by_role("button", name="START").wait_for(timeout=timeout * 1000)


def wait_app_idle(page: Page, timeout: float = 30.0) -> None:
    """Until Streamlit's "Running…" indicator has been gone for a moment (the script run is over)."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    page.wait_for_timeout(300)
    while time.monotonic() < deadline:
        running = page.locator("[data-testid='stStatusWidget']").filter(has_text="Running").count() > 0
        spinning = page.get_by_text("Loading offline speech recognition").count() > 0
        if running or spinning:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.8:
            return
        page.wait_for_timeout(100)
    raise TimeoutError(f"the app was still running its script after {timeout:.0f} s")


# Runs inside the component's iframe once the peer connection exists: one AudioContext taps both the
# microphone track the page sends and the avatar audio the page plays. Every ~10.7 ms block's RMS is kept
# with its time on the context's clock, so both sides are timed on one clock, and with the wall-clock time
# its callback ran (epoch seconds), to place it against the server's event times.
AUDIO_TIMELINE_PROBE = """
() => {
  if (window.__voice) return 'ok';
  const pcs = (window.__pcs || []).filter(pc => pc.connectionState !== 'closed');
  const pc = pcs[pcs.length - 1];
  const v = document.querySelector('video');
  if (!pc || !v || !v.srcObject || v.srcObject.getAudioTracks().length === 0) return 'no avatar audio yet';
  const sender = pc.getSenders().find(s => s.track && s.track.kind === 'audio');
  if (!sender) return 'no microphone track';
  const ctx = new AudioContext();
  const st = window.__voice = {mic: [], avatar: [], ctx, began: [ctx.currentTime, performance.now()]};
  const tap = (stream, out) => {
    const node = ctx.createScriptProcessor(512, 1, 1);
    node.onaudioprocess = (e) => {
      const x = e.inputBuffer.getChannelData(0);
      let s = 0;
      for (let i = 0; i < x.length; i++) s += x[i] * x[i];
      out.push([e.playbackTime, Math.sqrt(s / x.length), (performance.timeOrigin + performance.now()) / 1000]);
    };
    ctx.createMediaStreamSource(stream).connect(node);
    node.connect(ctx.destination);  // a script processor only runs while connected
  };
  tap(new MediaStream([sender.track]), st.mic);
  tap(v.srcObject, st.avatar);
  return 'ok';
}
"""


def start_audio_timeline(frame: Frame, timeout: float = 20.0) -> None:
    install_probe(frame, AUDIO_TIMELINE_PROBE, timeout)


@dataclass(frozen=True)
class AudioTimeline:
    """(audio clock s, RMS with full scale 1, wall clock of its callback as epoch s) per ~10.7 ms block."""

    mic: list[tuple[float, float, float]]
    avatar: list[tuple[float, float, float]]
    clock_rate: float  # audio clock seconds per wall-clock second since the probe began: 1.0 unless it stalled

    def to_epoch(self, t: float, window: float = 3.0) -> float:
        """An audio-clock time as time.time(). A loaded machine runs the audio clock slow, so the offset is
        taken near `t`: the smallest (callback time - audio time) there, as callbacks are late, never early."""
        near = [w - a for a, _, w in self.mic + self.avatar if abs(a - t) <= window]
        if not near:
            raise ValueError(f"no audio blocks within {window} s of {t}")
        return t + min(near)


def audio_timeline(frame: Frame) -> AudioTimeline:
    raw: dict[str, Any] = frame.evaluate("""() => {
        const st = window.__voice;
        const wall = (performance.now() - st.began[1]) / 1000;
        return {mic: st.mic, avatar: st.avatar, rate: wall > 0 ? (st.ctx.currentTime - st.began[0]) / wall : 1};
    }""")
    return AudioTimeline([tuple(b) for b in raw["mic"]], [tuple(b) for b in raw["avatar"]], raw["rate"])


@dataclass(frozen=True)
class Span:
    start: float
    end: float


def sound_spans(blocks: list[tuple[float, float, float]], level: float, min_gap: float) -> list[Span]:
    """Stretches of blocks above `level` (audio clock), joining those less than `min_gap` s apart (pauses
    between words)."""
    spans: list[Span] = []
    block = blocks[1][0] - blocks[0][0] if len(blocks) > 1 else 0.0
    for t, rms, _ in blocks:
        if rms <= level:
            continue
        if spans and t - spans[-1].end <= min_gap:
            spans[-1] = Span(spans[-1].start, t + block)
        else:
            spans.append(Span(t, t + block))
    return spans


@dataclass(frozen=True)
class JitterBuffer:
    """The browser's receive-side buffering of one kind of inbound media, cumulative since it began."""

    delay_s: float  # sum over emitted samples/frames of the time each spent in the jitter buffer
    emitted: int

    def mean_ms_since(self, earlier: JitterBuffer) -> float | None:
        count = self.emitted - earlier.emitted
        return (self.delay_s - earlier.delay_s) * 1000 / count if count > 0 else None


def jitter_buffers(frame: Frame) -> dict[str, JitterBuffer]:
    """Inbound jitter-buffer totals per kind ("audio", "video"), from the recorded peer connections."""
    raw = frame.evaluate("""async () => {
        const out = {};
        for (const pc of (window.__pcs || [])) {
          if (pc.connectionState === 'closed') continue;
          for (const s of (await pc.getStats()).values())
            if (s.type === 'inbound-rtp') out[s.kind] = [s.jitterBufferDelay || 0, s.jitterBufferEmittedCount || 0];
        }
        return out;
    }""")
    return {kind: JitterBuffer(float(v[0]), int(v[1])) for kind, v in raw.items()}

"""The built-in avatars: their specs, preview images and the YUV kits the render loop builds frames from.

A kit is one avatar at one output size, drawn once: the whole picture as I420 planes (with a margin of
extra picture on every side, so swaying is just a shifted copy) plus small I420 sprites for every mouth
shape × openness level and every eyelid level × listening pose.  `compose` copies the base planes straight
into a new frame's planes and pastes one mouth and one eye sprite: no colour conversion per frame.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from functools import lru_cache

import av
import cv2
import numpy as np
from PIL import Image

from lib.engine import avatar_art as art
from lib.engine.mouth import CLOSED_SHAPES, MouthShape


@dataclass(frozen=True)
class AvatarSpec:
    avatar_id: str
    name: str
    pose_name: str
    gender: str
    default_voice: str


# Only one neural voice ships with the engine, so every avatar speaks with it for now.
DEFAULT_VOICE = "en_US-joe"

AVATARS: tuple[AvatarSpec, ...] = (
    AvatarSpec("anna_office", "Anna", "Anna in the office", "female", DEFAULT_VOICE),
    AvatarSpec("ben_studio", "Ben", "Ben in the studio", "male", DEFAULT_VOICE),
    AvatarSpec("chen_lobby", "Chen", "Chen in the lobby", "male", DEFAULT_VOICE),
    AvatarSpec("dara_green", "Dara", "Dara in the garden room", "female", DEFAULT_VOICE),
)

_BY_ID = {a.avatar_id: a for a in AVATARS}

# Picture kept beyond each frame edge (luma pixels): room for sway plus the breathing lift.
PAD = 8
MAX_SWAY = 4

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def get_spec(avatar_id: str) -> AvatarSpec:
    """The avatar with this id; KeyError when there is none."""
    try:
        return _BY_ID[avatar_id]
    except KeyError:
        raise KeyError(f"Unknown avatar {avatar_id!r}. Known avatars: {', '.join(_BY_ID)}") from None


def find_by_name(name: str) -> AvatarSpec | None:
    """The avatar whose id or display name matches `name`, ignoring case and surrounding spaces."""
    wanted = name.strip().casefold()
    for a in AVATARS:
        if wanted in (a.avatar_id.casefold(), a.name.casefold()):
            return a
    return None


@lru_cache(maxsize=32)
def preview_png(avatar_id: str, width: int = 320) -> bytes:
    """A 16:9 still of the avatar (mouth at rest, eyes open) as PNG bytes."""
    spec = get_spec(avatar_id)
    if not 32 <= width <= 1920:
        raise ValueError(f"Preview width must be between 32 and 1920 pixels, got {width}")
    height = max(18, round(width * 9 / 16))
    img = art.Scene(spec.avatar_id, width, height).frame()
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


# BT.601 limited range (what browsers assume for WebRTC video), as affine maps on 0..255 RGB.
_TO_Y = np.array([[65.481, 128.553, 24.966, 16 * 255]], dtype=np.float64) / 255
_TO_UV = np.array([[-37.797, -74.203, 112.0, 128 * 255], [112.0, -93.786, -18.214, 128 * 255]], dtype=np.float64) / 255


def rgb_to_i420(img: Image.Image) -> Planes:
    """Y, U, V planes of an even-sized RGB image; chroma is the mean of each 2×2 block."""
    a = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    h, w = a.shape[:2]
    y = cv2.transform(a, _TO_Y)
    half = cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    uv = cv2.transform(half, _TO_UV)
    return y, np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])


def _even(v: float) -> int:
    return 2 * round(v / 2)


@dataclass(frozen=True)
class _Sprite:
    x: int  # top-left in frame luma pixels (even)
    y: int
    planes: Planes


class AvatarKit:
    """One avatar at one output size, drawn once and shared read-only by every session."""

    def __init__(
        self,
        spec: AvatarSpec,
        width: int,
        height: int,
        base: Planes,
        seam: int,
        mouths: dict[tuple[MouthShape, int], _Sprite],
        eyes: dict[tuple[int, bool], _Sprite],
    ) -> None:
        self.spec = spec
        self.width, self.height = width, height
        self._base = base
        self._seam = seam
        self._mouths = mouths
        self._eyes = eyes
        self._breath_px = max(2, _even(height / 270))

    @staticmethod
    def mouth_level(openness: float) -> int:
        """Index of the pre-drawn openness level nearest to `openness`."""
        o = min(1.0, max(0.0, float(openness)))
        return min(range(len(art.MOUTH_LEVELS)), key=lambda i: abs(art.MOUTH_LEVELS[i] - o))

    @staticmethod
    def lid_level(eyes_closed: float) -> int:
        c = min(1.0, max(0.0, float(eyes_closed)))
        return round(c * (len(art.LID_LEVELS) - 1))

    def mouth_rect(self) -> tuple[int, int, int, int]:
        """Where mouth sprites go (x0, y0, x1, y1), before sway."""
        s = next(iter(self._mouths.values()))
        return (s.x, s.y, s.x + s.planes[0].shape[1], s.y + s.planes[0].shape[0])

    def eye_rect(self) -> tuple[int, int, int, int]:
        """Where eye sprites go (x0, y0, x1, y1), before sway."""
        s = next(iter(self._eyes.values()))
        return (s.x, s.y, s.x + s.planes[0].shape[1], s.y + s.planes[0].shape[0])

    def compose(
        self,
        mouth: MouthShape,
        openness: float,
        eyes_closed: float,
        listening: bool,
        sway: tuple[int, int] = (0, 0),
        breath: float = 0.0,
    ) -> av.VideoFrame:
        """A new yuv420p frame (its own memory: safe to hand to an encoder while the next is composed).

        `openness` picks the nearest of 4 pre-drawn levels (ignored for REST and MBP); `eyes_closed`
        the nearest of 4 lid levels.  `sway` shifts the whole picture by even pixels (clamped to ±4).
        `breath` 0..1 lifts everything below the neck by 0 or 2 px (0, 2 or 4 px at 1080p)."""
        shape = MouthShape(mouth)
        m = self._mouths[(shape, 0 if shape in CLOSED_SHAPES else self.mouth_level(openness))]
        e = self._eyes[(self.lid_level(eyes_closed), bool(listening))]
        dx = max(-MAX_SWAY, min(MAX_SWAY, _even(sway[0])))
        dy = max(-MAX_SWAY, min(MAX_SWAY, _even(sway[1])))
        lift = min(self._breath_px, _even(max(0.0, min(1.0, float(breath))) * self._breath_px))
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for i, base in enumerate(self._base):
            s = 1 if i == 0 else 2
            plane = frame.planes[i]
            ph, pw = self.height // s, self.width // s
            out = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
            x0, y0 = (PAD - dx) // s, (PAD - dy) // s
            seam = (self._seam + dy) // s
            out[:seam] = base[y0 : y0 + seam, x0 : x0 + pw]
            top = y0 + seam + lift // s
            out[seam:] = base[top : top + ph - seam, x0 : x0 + pw]
            for sp in (m, e):
                p = sp.planes[i]
                sx, sy = (sp.x + dx) // s, (sp.y + dy) // s
                out[sy : sy + p.shape[0], sx : sx + p.shape[1]] = p
        return frame


def _build_kit(spec: AvatarSpec, width: int, height: int) -> AvatarKit:
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"Avatar frames need even sizes of at least 64×64, got {width}×{height}")
    scene = art.Scene(spec.avatar_id, width, height, pad=PAD)
    mouth_rect, eye_rect = scene.rect(art.MOUTH_BOX), scene.rect(art.EYE_BOX)
    # rows above the seam never move with breathing, so the mouth sprite (chin included) must sit above it
    seam = max(scene.seam_y(), mouth_rect[3])

    def sprite(img: Image.Image, rect: tuple[int, int, int, int]) -> _Sprite:
        return _Sprite(rect[0] - PAD, rect[1] - PAD, rgb_to_i420(img))

    mouths: dict[tuple[MouthShape, int], _Sprite] = {}
    mouth_imgs: dict[tuple[MouthShape, int], Image.Image] = {}
    for shape in MouthShape:
        levels = [art.MOUTH_LEVELS[-1]] if shape in CLOSED_SHAPES else art.MOUTH_LEVELS
        for i, level in enumerate(levels):
            mouth_imgs[(shape, i)] = scene.mouth(shape, level, mouth_rect)
            mouths[(shape, i)] = sprite(mouth_imgs[(shape, i)], mouth_rect)
    eyes: dict[tuple[int, bool], _Sprite] = {}
    eye_imgs: dict[tuple[int, bool], Image.Image] = {}
    for listening in (False, True):
        for i, closed in enumerate(art.LID_LEVELS):
            eye_imgs[(i, listening)] = scene.eyes(closed, listening, eye_rect)
            eyes[(i, listening)] = sprite(eye_imgs[(i, listening)], eye_rect)
    base = scene.bare()
    base.paste(mouth_imgs[(MouthShape.REST, 0)], mouth_rect[:2])
    base.paste(eye_imgs[(0, False)], eye_rect[:2])
    return AvatarKit(spec, width, height, rgb_to_i420(base), seam - PAD, mouths, eyes)


_kits: dict[tuple[str, int, int], AvatarKit] = {}
_building: dict[tuple[str, int, int], threading.Lock] = {}
_registry = threading.Lock()


def get_kit(avatar_id: str, width: int, height: int) -> AvatarKit:
    """The kit for this avatar and size, built on first use (once, even when asked from many threads)."""
    spec = get_spec(avatar_id)
    key = (spec.avatar_id, int(width), int(height))
    kit = _kits.get(key)
    if kit is not None:
        return kit
    with _registry:
        lock = _building.setdefault(key, threading.Lock())
    with lock:
        kit = _kits.get(key)
        if kit is None:
            kit = _build_kit(spec, key[1], key[2])
            _kits[key] = kit
    return kit


__all__ = ["AVATARS", "AvatarKit", "AvatarSpec", "find_by_name", "get_kit", "get_spec", "preview_png", "rgb_to_i420"]

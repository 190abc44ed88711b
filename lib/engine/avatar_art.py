"""Drawing of the built-in avatars: a stylised 2-D presenter, supersampled with Pillow.

Everything is laid out in *units* of 1 % of the frame height, with x = 0 on the vertical centre line,
so one description draws the same picture at every output size.  A `Scene` draws the background and
the person once at k× the output size (the "bare" picture: no eyes, brows or lips); the eye and mouth
variants are drawn over crops of it and box-filtered down, so every variant matches the bare picture
pixel for pixel outside what it changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from lib.engine.mouth import CLOSED_SHAPES, MouthShape

RGB = tuple[int, int, int]
Pt = tuple[float, float]
Box = tuple[int, int, int, int]

# Openness levels every open mouth shape is drawn at; `openness` picks the nearest.
MOUTH_LEVELS = (0.25, 0.5, 0.75, 1.0)
# Eyelid levels: 0 open … 1 shut.
LID_LEVELS = (0.0, 1 / 3, 2 / 3, 1.0)

# Regions (units) the sprites may change; everything else is identical in every frame.
MOUTH_BOX = (-11.0, 44.2, 11.0, 61.4)
EYE_BOX = (-11.8, 25.4, 11.8, 40.8)
# Below this line the body may be lifted a few pixels for breathing (the neck hides the seam).
BREATH_SEAM_Y = 61.6

EYE_Y = 35.2
EYE_DX = 5.9
MOUTH_Y = 47.9
NOSE_Y = 41.8
# The person is drawn this much larger than the layout units, anchored at this height.
PERSON_SCALE = 1.1
PERSON_ANCHOR_Y = 30.0


# ---------------------------------------------------------------- colours and geometry helpers


def mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def scale(c: Sequence[float], f: float | Sequence[float]) -> RGB:
    fs = (f, f, f) if isinstance(f, int | float) else f
    return tuple(max(0, min(255, round(c[i] * fs[i]))) for i in range(3))  # type: ignore[return-value]


def hexc(s: str) -> RGB:
    return (int(s[1:3], 16), int(s[3:5], 16), int(s[5:7], 16))


def bezier(p0: Pt, p1: Pt, p2: Pt, p3: Pt, n: int = 18) -> list[Pt]:
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c, d = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    pts = (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d
    return [(float(x), float(y)) for x, y in pts]


def path(start: Pt, *segments: tuple[Pt, Pt, Pt], n: int = 18) -> list[Pt]:
    """Points along a chain of cubic Bézier segments, each given as (control1, control2, end)."""
    pts = [start]
    cur = start
    for c1, c2, end in segments:
        pts.extend(bezier(cur, c1, c2, end, n)[1:])
        cur = end
    return pts


def mirror(pts: Sequence[Pt]) -> list[Pt]:
    return [(-x, y) for x, y in reversed(pts)]


def symmetric(right: Sequence[Pt]) -> list[Pt]:
    """A closed outline from its right half (drawn from the top centre to the bottom centre)."""
    return [*right, *mirror(right)]


def shift(pts: Sequence[Pt], dx: float = 0.0, dy: float = 0.0) -> list[Pt]:
    return [(x + dx, y + dy) for x, y in pts]


def ellipse_pts(cx: float, cy: float, rx: float, ry: float, rot: float = 0.0, n: int = 48) -> list[Pt]:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return [(float(cx + c * a - s * b), float(cy + s * a + c * b)) for a, b in zip(x, y, strict=True)]


def leaf_pts(cx: float, cy: float, length: float, width: float, rot: float, n: int = 24) -> list[Pt]:
    t = np.linspace(0, math.pi, n)
    x = -np.cos(t) * length / 2
    y = np.sin(t) ** 0.9 * width / 2 * (1 + 0.25 * np.cos(t))
    xs = np.concatenate([x, x[::-1]])
    ys = np.concatenate([-y, y[::-1]])
    c, s = math.cos(rot), math.sin(rot)
    return [(float(cx + c * a - s * b), float(cy + s * a + c * b)) for a, b in zip(xs, ys, strict=True)]


@lru_cache(maxsize=256)
def _opacity_lut(opacity: float) -> list[int]:
    return [round(v * opacity) for v in range(256)]


class Pen:
    """Draws unit-coordinate shapes on one Pillow image."""

    def __init__(self, image: Image.Image, unit: float, ox: float, oy: float) -> None:
        self.draw = ImageDraw.Draw(image)
        self.unit, self.ox, self.oy = unit, ox, oy

    def p(self, x: float, y: float) -> tuple[float, float]:
        return (self.ox + x * self.unit, self.oy + y * self.unit)

    def poly(self, pts: Sequence[Pt], fill: int | RGB = 255) -> None:
        self.draw.polygon([self.p(x, y) for x, y in pts], fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: int | RGB = 255) -> None:
        x0, y0 = self.p(cx - rx, cy - ry)
        x1, y1 = self.p(cx + rx, cy + ry)
        self.draw.ellipse((x0, y0, x1, y1), fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: int | RGB = 255) -> None:
        self.draw.rectangle((*self.p(x0, y0), *self.p(x1, y1)), fill=fill)

    def stroke(self, pts: Sequence[Pt], widths: Sequence[float], fill: int | RGB = 255) -> None:
        """A tapered stroke: `widths` are spread evenly along the line and interpolated."""
        p = np.asarray(pts, dtype=float)
        d = np.gradient(p, axis=0)
        n = np.stack([-d[:, 1], d[:, 0]], axis=1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        w = np.interp(np.linspace(0, 1, len(p)), np.linspace(0, 1, len(widths)), widths)[:, None] / 2
        outline = np.concatenate([p + n * w, (p - n * w)[::-1]])
        self.poly([(float(x), float(y)) for x, y in outline], fill)


class Canvas:
    """An RGB image, its unit→pixel mapping and named clip masks; crops keep the same mapping."""

    def __init__(self, img: Image.Image, unit: float, ox: float, oy: float) -> None:
        self.img, self.unit, self.ox, self.oy = img, unit, ox, oy
        self.masks: dict[str, Image.Image] = {}

    def pen(self, image: Image.Image | None = None) -> Pen:
        return Pen(self.img if image is None else image, self.unit, self.ox, self.oy)

    def px(self, x: float, y: float) -> tuple[float, float]:
        return (self.ox + x * self.unit, self.oy + y * self.unit)

    def box(self, bbox: tuple[float, float, float, float]) -> Box | None:
        x0, y0 = self.px(bbox[0], bbox[1])
        x1, y1 = self.px(bbox[2], bbox[3])
        b = (
            max(0, math.floor(x0)),
            max(0, math.floor(y0)),
            min(self.img.width, math.ceil(x1)),
            min(self.img.height, math.ceil(y1)),
        )
        return b if b[2] > b[0] and b[3] > b[1] else None

    def sub(self, box: Box) -> Canvas:
        c = Canvas(self.img.crop(box), self.unit, self.ox - box[0], self.oy - box[1])
        c.masks = {k: m.crop(box) for k, m in self.masks.items()}
        return c

    def fill(self, draw: Callable[[Pen], object]) -> None:
        draw(self.pen())

    def mask(self, name: str, draw: Callable[[Pen], object]) -> Image.Image:
        m = Image.new("L", self.img.size, 0)
        draw(self.pen(m))
        self.masks[name] = m
        return m

    def soft(
        self,
        color: RGB,
        opacity: float,
        blur: float,
        bbox: tuple[float, float, float, float],
        draw: Callable[[Pen], object],
        clip: str | Sequence[str] | None = None,
    ) -> None:
        """Paint `color` through the shapes `draw` makes, blurred by `blur` units (0 = crisp)."""
        m = 2.2 * blur + 0.3
        box = self.box((bbox[0] - m, bbox[1] - m, bbox[2] + m, bbox[3] + m))
        if box is None:
            return
        # Blurred shapes are drawn small and scaled up: a soft edge needs no resolution.
        q = max(1, min(8, int(blur * self.unit / 4)))
        lw, lh = -(-(box[2] - box[0]) // q), -(-(box[3] - box[1]) // q)
        low = Image.new("L", (lw, lh), 0)
        draw(Pen(low, self.unit / q, (self.ox - box[0]) / q, (self.oy - box[1]) / q))
        drawn = low.getbbox()
        if drawn is None:
            return
        # work only on what was drawn plus room for the blur to spread
        sharp = blur * self.unit < 1.5  # the supersampling alone softens edges that much
        e = 0 if sharp else math.ceil(2.5 * blur * self.unit / q) + 1
        lx0, ly0 = max(0, drawn[0] - e), max(0, drawn[1] - e)
        lx1, ly1 = min(lw, drawn[2] + e), min(lh, drawn[3] + e)
        low = low.crop((lx0, ly0, lx1, ly1))
        if not sharp:
            low = low.filter(ImageFilter.GaussianBlur(blur * self.unit / q))
        x0, y0 = box[0] + lx0 * q, box[1] + ly0 * q
        x1, y1 = min(box[2], box[0] + lx1 * q), min(box[3], box[1] + ly1 * q)
        if q > 1:
            low = low.resize(((lx1 - lx0) * q, (ly1 - ly0) * q), Image.Resampling.BILINEAR).crop(
                (0, 0, x1 - x0, y1 - y0)
            )
        if opacity < 1:
            low = low.point(_opacity_lut(opacity))
        for name in [clip] if isinstance(clip, str) else (clip or ()):
            low = ImageChops.multiply(low, self.masks[name].crop((x0, y0, x1, y1)))
        self.img.paste(color, (x0, y0, x1, y1), low)

    def vgradient(self, bbox: tuple[float, float, float, float], stops: Sequence[tuple[float, RGB]], clip: str) -> None:
        """Vertical gradient through a clip mask; stops are (y in units, colour)."""
        box = self.box(bbox)
        if box is None:
            return
        ys = (np.arange(box[1], box[3]) + 0.5 - self.oy) / self.unit
        sy = [s[0] for s in stops]
        col = np.stack([np.interp(ys, sy, [s[1][i] for s in stops]) for i in range(3)], axis=1)
        strip = Image.fromarray(np.round(col).astype(np.uint8)[:, None, :].repeat(8, axis=1), "RGB")
        grad = strip.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.NEAREST)
        self.img.paste(grad, box, self.masks[clip].crop(box))


# ---------------------------------------------------------------- the looks


@dataclass(frozen=True)
class Look:
    """Everything that makes one avatar look different from another."""

    skin: RGB
    hair: RGB
    iris: RGB
    lips: RGB
    hair_style: str  # long | quiff | side_part | afro
    outfit: str  # blazer | sweater | suit | scoop
    cloth: RGB
    cloth2: RGB
    accent: RGB
    background: str  # office | studio | lobby | green
    male: bool
    glasses: bool = False
    beard: bool = False
    earrings: bool = False
    jaw: float = 0.0  # wider (+) or narrower (-) jaw, units
    nose_w: float = 1.0
    lip_full: float = 1.0

    @property
    def shadow(self) -> RGB:
        return scale(self.skin, (0.80, 0.68, 0.66))

    @property
    def highlight(self) -> RGB:
        return mix(self.skin, (255, 246, 236), 0.45)

    @property
    def blush(self) -> RGB:
        return mix(self.skin, (232, 104, 104), 0.45)

    @property
    def hair_dark(self) -> RGB:
        return scale(self.hair, 0.55)

    @property
    def hair_light(self) -> RGB:
        return mix(self.hair, (255, 236, 210), 0.32)

    @property
    def face_hw(self) -> float:
        return 13.6 if self.male else 13.0

    @property
    def jaw_hw(self) -> float:
        return (11.7 if self.male else 10.6) + self.jaw

    @property
    def chin_y(self) -> float:
        return 56.2 if self.male else 55.3

    @property
    def neck_hw(self) -> float:
        return 8.1 if self.male else 6.9

    @property
    def shoulder_x(self) -> float:
        return 33.0 if self.male else 29.0


LOOKS: dict[str, Look] = {
    "anna_office": Look(
        skin=hexc("#f3c8a6"),
        hair=hexc("#6a3b22"),
        iris=hexc("#5d7a3c"),
        lips=hexc("#c96a72"),
        hair_style="long",
        outfit="blazer",
        cloth=hexc("#2b3a63"),
        cloth2=hexc("#f4ede2"),
        accent=hexc("#d9b36a"),
        background="office",
        male=False,
        jaw=-0.7,
    ),
    "ben_studio": Look(
        skin=hexc("#e2ab83"),
        hair=hexc("#8a5a34"),
        iris=hexc("#4a7cb0"),
        lips=hexc("#b9736a"),
        hair_style="quiff",
        outfit="sweater",
        cloth=hexc("#b5542f"),
        cloth2=hexc("#8e3d20"),
        accent=hexc("#efe6da"),
        background="studio",
        male=True,
        beard=True,
        jaw=0.3,
    ),
    "chen_lobby": Look(
        skin=hexc("#efc59c"),
        hair=hexc("#1e1c20"),
        iris=hexc("#3d2a1f"),
        lips=hexc("#c07e72"),
        hair_style="side_part",
        outfit="suit",
        cloth=hexc("#3a404b"),
        cloth2=hexc("#d3e3f4"),
        accent=hexc("#86283a"),
        background="lobby",
        male=True,
        glasses=True,
        jaw=0.2,
        nose_w=1.1,
    ),
    "dara_green": Look(
        skin=hexc("#8e5a3c"),
        hair=hexc("#261812"),
        iris=hexc("#3a2214"),
        lips=hexc("#8a3f3b"),
        hair_style="afro",
        outfit="scoop",
        cloth=hexc("#e3a63a"),
        cloth2=hexc("#c98a22"),
        accent=hexc("#e2b45a"),
        background="green",
        male=False,
        earrings=True,
        jaw=-0.3,
        nose_w=1.3,
        lip_full=1.25,
    ),
}


# ---------------------------------------------------------------- outlines


def face_outline(lk: Look) -> list[Pt]:
    hw, jw, cy = lk.face_hw, lk.jaw_hw, lk.chin_y
    chin = 4.6 if lk.male else 3.6
    right = path(
        (0.0, 15.0),
        ((hw * 0.62, 15.0), (hw, 21.0), (hw, 31.5)),
        ((hw, 39.0), (jw + 1.9, 44.8), (jw, 49.6)),
        ((jw - 2.4, 53.5), (chin + 1.5, cy), (0.0, cy)),
    )
    return symmetric(right)


def jaw_line(lk: Look, y_from: float) -> list[Pt]:
    """The part of the face outline below `y_from`, from the left over the chin to the right."""
    pts = face_outline(lk)
    right = [p for p in pts[: len(pts) // 2] if p[1] >= y_from]
    return [(-x, y) for x, y in right] + right[::-1][1:]


def neck_outline(lk: Look) -> list[Pt]:
    w = lk.neck_hw
    right = path(
        (0.0, 44.0),
        ((w, 44.0), (w, 44.0), (w, 46.0)),
        ((w - 0.5, 56.0), (w - 0.2, 62.0), (w + 3.0, 67.5)),
        ((w + 6.0, 71.0), (w + 6.0, 80.0), (w + 6.0, 84.0)),
    )
    return symmetric([*right, (0.0, 84.0)])


def torso_outline(lk: Look, neck_y: float, neck_w: float, neck_depth: float, sx: float | None = None) -> list[Pt]:
    """Clothing silhouette; the neckline dips from (±neck_w, neck_y) to neck_depth at the centre."""
    sx = lk.shoulder_x if sx is None else sx
    right = path(
        (0.0, neck_depth),
        ((neck_w * 0.55, neck_depth), (neck_w, neck_y + (neck_depth - neck_y) * 0.45), (neck_w, neck_y)),
        ((neck_w + 4.5, neck_y + 2.6), (sx - 11.0, neck_y + 4.6), (sx - 4.0, neck_y + 7.0)),
        ((sx + 1.5, neck_y + 9.0), (sx + 4.4, neck_y + 13.0), (sx + 5.2, neck_y + 20.0)),
        ((sx + 5.9, neck_y + 27.0), (sx + 6.3, neck_y + 33.0), (sx + 6.6, 104.0)),
    )
    return symmetric([*right, (0.0, 104.0)])


# ---------------------------------------------------------------- background


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(sum(ord(c) * (i + 1) for i, c in enumerate(name)))


def draw_background(cv: Canvas, lk: Look, k: int) -> None:
    """Draw the (blurry, depth-of-field) background at 1× and scale it up into the canvas."""
    w, h = cv.img.width // k, cv.img.height // k
    bg = Canvas(Image.new("RGB", (w, h)), cv.unit / k, cv.ox / k, cv.oy / k)
    half = (w / 2) / bg.unit + 2
    full = (-half, -10.0, half, 110.0)
    bg.mask("all", lambda p: p.rect(*full))
    getattr(_Backgrounds, lk.background)(bg, half, _rng(lk.background))
    img = bg.img.filter(ImageFilter.GaussianBlur(0.55 * bg.unit))
    arr = np.asarray(img).astype(np.float32)
    yy, xx = np.ogrid[0:h, 0:w]
    r = np.hypot((xx.astype(np.float32) - w / 2) / (w * 0.62), (yy.astype(np.float32) - h * 0.45) / (h * 0.75))
    arr *= (1.0 - 0.16 * np.clip(r - 0.45, 0, 1) ** 1.4)[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    # nearest is exact here: the finished canvas is box-filtered back down by the same factor
    cv.img.paste(img.resize(cv.img.size, Image.Resampling.NEAREST))


class _Backgrounds:
    @staticmethod
    def office(bg: Canvas, half: float, rng: np.random.Generator) -> None:
        full = (-half, -10.0, half, 110.0)
        bg.vgradient(full, [(0, hexc("#eee9e1")), (70, hexc("#e2d9cc")), (100, hexc("#d3c7b6"))], "all")
        # window on the left with daylight and a hint of trees
        wx0, wx1 = -half + 4, -40.0
        bg.soft(hexc("#fbfaf6"), 0.9, 5.0, (wx0, 4, wx1, 74), lambda p: p.rect(wx0, 4, wx1, 74))
        bg.fill(lambda p: p.rect(wx0, 6, wx1, 72, hexc("#eef3f6")))
        bg.soft(hexc("#dfe9ef"), 1.0, 2.0, (wx0, 6, wx1, 40), lambda p: p.rect(wx0, 6, wx1, 40))
        for i in range(9):
            cx = wx0 + 3 + i * (wx1 - wx0 - 6) / 8
            bg.soft(
                mix(hexc("#a9c49a"), hexc("#cfdcc0"), rng.random()),
                0.85,
                1.2,
                (cx - 7, 46, cx + 7, 74),
                lambda p, cx=cx: p.ellipse(cx, 60 + rng.random() * 4, 6 + rng.random() * 3, 9),
            )
        frame = hexc("#c9c0b3")
        bg.fill(
            lambda p: [
                p.rect(wx0, 5, wx1, 6.6, frame),
                p.rect(wx0, 70.5, wx1, 72.5, frame),
                p.rect(wx0, 5, wx0 + 1.6, 72.5, frame),
                p.rect(wx1 - 1.6, 5, wx1, 72.5, frame),
                p.rect((wx0 + wx1) / 2 - 0.8, 5, (wx0 + wx1) / 2 + 0.8, 72.5, frame),
                p.rect(wx0, 37.2, wx1, 38.6, frame),
            ]
        )
        bg.fill(lambda p: p.rect(wx0 - 2, 72.5, wx1 + 2, 75, hexc("#d8cfc2")))
        # bookshelf on the right
        sx0, sx1 = 42.0, half - 3
        wood, wood_dark = hexc("#9a7456"), hexc("#7a5a42")
        bg.fill(lambda p: p.rect(sx0, 8, sx1, 100, hexc("#d9cfc2")))
        colors = [hexc(c) for c in ("#4f6d8f", "#c58b4c", "#8c4a3f", "#5f7d5a", "#d9c8a6", "#394a66", "#a7646a")]
        for shelf_y in (30.0, 56.0, 82.0):
            x = sx0 + 2.0
            while x < sx1 - 4:
                bw = 1.3 + rng.random() * 1.6
                bh = 12 + rng.random() * 8
                if rng.random() < 0.12:
                    x += 4
                    continue
                col = colors[int(rng.random() * len(colors))]
                bg.fill(lambda p, x=x, bw=bw, bh=bh, col=col, sy=shelf_y: p.rect(x, sy - bh, x + bw, sy, col))
                x += bw + 0.15
            bg.fill(lambda p, sy=shelf_y: p.rect(sx0, sy, sx1, sy + 2.2, wood))
            bg.fill(lambda p, sy=shelf_y: p.rect(sx0, sy + 2.2, sx1, sy + 3.0, wood_dark))
        # a potted plant on the upper shelf
        px, py = sx0 + 14.0, 30.0
        bg.fill(
            lambda p: p.poly([(px - 3.5, py - 7), (px + 3.5, py - 7), (px + 2.6, py), (px - 2.6, py)], hexc("#e8e2d8"))
        )
        for i in range(11):
            ang = -math.pi / 2 + (i - 5) * 0.28
            length = 7 + rng.random() * 4
            cx, cy = px + math.cos(ang) * length * 0.55, py - 7 + math.sin(ang) * length * 0.55
            col = mix(hexc("#4f8a4c"), hexc("#84b66a"), rng.random())
            bg.fill(lambda p, cx=cx, cy=cy, ang=ang, ln=length, col=col: p.poly(leaf_pts(cx, cy, ln, 2.6, ang), col))
        bg.soft(hexc("#fffaf0"), 0.35, 12.0, (-half, 0, -10, 100), lambda p: p.ellipse(-half + 10, 40, 40, 55))

    @staticmethod
    def studio(bg: Canvas, half: float, rng: np.random.Generator) -> None:
        full = (-half, -10.0, half, 110.0)
        bg.vgradient(full, [(0, hexc("#1d2a3d")), (60, hexc("#24344a")), (100, hexc("#151d2b"))], "all")
        bg.soft(hexc("#4d6f8e"), 0.8, 14.0, (-60, -10, 60, 90), lambda p: p.ellipse(0, 36, 42, 40))
        bg.soft(hexc("#8fb3cf"), 0.35, 8.0, (-30, 5, 30, 70), lambda p: p.ellipse(0, 34, 20, 24))
        for _ in range(46):
            x = (rng.random() * 2 - 1) * (half - 2)
            y = rng.random() * 95
            if abs(x) < 34 and y > 8:
                continue
            r = 1.4 + rng.random() ** 2 * 5.5
            col = hexc("#ffc27a") if rng.random() < 0.55 else hexc("#7fd0ee")
            op = 0.18 + rng.random() * 0.35
            bg.soft(col, op, 0.5, (x - r, y - r, x + r, y + r), lambda p, x=x, y=y, r=r: p.ellipse(x, y, r, r))
        # a low light strip, like a set edge
        bg.soft(hexc("#6fa3c8"), 0.35, 2.5, (-half, 78, half, 86), lambda p: p.rect(-half, 80, half, 83))

    @staticmethod
    def lobby(bg: Canvas, half: float, rng: np.random.Generator) -> None:
        full = (-half, -10.0, half, 110.0)
        bg.vgradient(full, [(0, hexc("#e9e0d2")), (65, hexc("#ddd0bd")), (100, hexc("#c3b29b"))], "all")
        # wooden slat wall on the left
        x = -half
        i = 0
        while x < -40:
            col = hexc("#b07a4f") if i % 2 == 0 else hexc("#9a6842")
            bg.fill(lambda p, x=x, col=col: p.rect(x, -5, x + 2.0, 105, col))
            bg.fill(lambda p, x=x: p.rect(x + 2.0, -5, x + 2.6, 105, hexc("#5e3f28")))
            x += 2.6
            i += 1
        bg.soft(hexc("#fff1d6"), 0.35, 6.0, (-half, 0, -40, 60), lambda p: p.rect(-half, 0, -40, 45))
        # reception counter and lit panel on the right
        bg.fill(lambda p: p.rect(38, 18, half, 64, hexc("#f4efe6")))
        bg.soft(hexc("#fff6e2"), 0.9, 2.0, (40, 20, half, 60), lambda p: p.rect(42, 22, half - 4, 58))
        bg.fill(lambda p: p.rect(38, 64, half, 100, hexc("#6b584a")))
        bg.fill(lambda p: p.rect(38, 64, half, 66, hexc("#f7d79a")))
        bg.soft(hexc("#ffd98f"), 0.6, 2.0, (38, 62, half, 70), lambda p: p.rect(38, 64.5, half, 66))
        for gx in (52.0, 66.0, 80.0):
            bg.fill(lambda p, gx=gx: p.rect(gx, 18, gx + 0.7, 64, hexc("#d8d0c2")))
        # pendant lights
        for lx, ly in ((-28.0, 7.0), (26.0, 5.0), (58.0, 9.0), (-62.0, 12.0)):
            bg.soft(
                hexc("#ffe0a8"),
                0.6,
                4.0,
                (lx - 8, ly - 8, lx + 8, ly + 8),
                lambda p, lx=lx, ly=ly: p.ellipse(lx, ly, 5, 5),
            )
            bg.fill(lambda p, lx=lx, ly=ly: p.ellipse(lx, ly, 2.2, 2.2, hexc("#fff4dc")))
            bg.fill(lambda p, lx=lx, ly=ly: p.rect(lx - 0.15, -10, lx + 0.15, ly - 2, hexc("#6b5a4a")))
        # potted tree between the slats and the centre
        for _ in range(26):
            cx, cy = -46 + rng.normal() * 5, 48 + rng.normal() * 9
            col = mix(hexc("#3f6b3c"), hexc("#7fa35e"), rng.random())
            bg.fill(lambda p, cx=cx, cy=cy, col=col: p.poly(leaf_pts(cx, cy, 6.5, 2.4, rng.random() * math.pi), col))

    @staticmethod
    def green(bg: Canvas, half: float, rng: np.random.Generator) -> None:
        full = (-half, -10.0, half, 110.0)
        bg.vgradient(full, [(0, hexc("#d9ead2")), (60, hexc("#bfdcbc")), (100, hexc("#9fc7a2"))], "all")
        bg.soft(hexc("#fbfff2"), 0.55, 10.0, (10, -20, half, 50), lambda p: p.ellipse(half - 10, 0, 40, 30))
        # arched alcove behind the presenter
        arch = [
            *path(
                (-34.0, 110.0),
                ((-34.0, 60.0), (-34.0, 40.0), (-34.0, 30.0)),
                ((-34.0, 6.0), (34.0, 6.0), (34.0, 30.0)),
                ((34.0, 40.0), (34.0, 60.0), (34.0, 110.0)),
            )
        ]
        bg.soft(hexc("#eaf4e2"), 0.75, 1.0, (-36, 0, 36, 110), lambda p: p.poly(arch))
        greens = [hexc(c) for c in ("#2f6b45", "#3f8553", "#5c9e5f", "#2a5a3f", "#78b46e")]
        # two potted plants in the lower corners, a trailing plant from the upper corners
        plants = [
            (-1, (-half + 10, 90.0), -1.0),
            (1, (half - 10, 90.0), -1.0),
            (-1, (-half + 6, -4.0), 1.0),
            (1, (half - 14, -4.0), 1.0),
        ]
        for side, (bx, by), up in plants:
            count = 14 if up < 0 else 9
            for i in range(count):
                # leaves fan out from the pot (or hang down) towards the middle of the frame
                spread = (i / (count - 1) - 0.5) * (2.0 if up < 0 else 1.2)
                ang = up * math.pi / 2 + up * side * (0.35 + spread) + (rng.random() - 0.5) * 0.25
                dist = (28 + rng.random() * 34) if up < 0 else (10 + rng.random() * 30)
                ln = 12 + rng.random() * 9
                dx, dy = math.cos(ang), math.sin(ang)
                cx, cy = bx + dx * dist, by + dy * dist
                col = greens[int(rng.random() * len(greens))]
                stem = [
                    (bx, by),
                    (bx + dx * dist * 0.5, by + dy * dist * 0.5 + 2 * up),
                    (cx - dx * ln * 0.45, cy - dy * ln * 0.45),
                ]
                tilt = ang + (rng.random() - 0.5) * 0.6
                pts = leaf_pts(cx, cy, ln, ln * 0.46, tilt)
                vein = [
                    (cx - math.cos(tilt) * ln * 0.45, cy - math.sin(tilt) * ln * 0.45),
                    (cx + math.cos(tilt) * ln * 0.4, cy + math.sin(tilt) * ln * 0.4),
                ]
                stem_col = scale(col, 0.8)
                bg.fill(lambda p, st=stem, c=stem_col: p.stroke(st, (0.7, 0.45, 0.3), c))
                bg.fill(lambda p, pts=pts, col=col: p.poly(pts, col))
                bg.fill(lambda p, v=vein, col=col: p.stroke(v, (0.5, 0.1), mix(col, (230, 245, 210), 0.4)))
        for side in (-1, 1):
            px = side * (half - 10)
            pot = [(px - 9, 88.0), (px + 9, 88.0), (px + 7, 104.0), (px - 7, 104.0)]
            bg.fill(lambda p, pot=pot: p.poly(pot, hexc("#e9e1d3")))
            bg.fill(lambda p, px=px: p.rect(px - 9.5, 86.5, px + 9.5, 89.0, hexc("#d8cfbf")))


# ---------------------------------------------------------------- the person (bare: no eyes, brows or lips)


def draw_person(cv: Canvas, lk: Look) -> None:
    face = face_outline(lk)
    hair = _HAIR[lk.hair_style](lk)
    cv.mask("face", lambda p: p.poly(face))
    silhouette = torso_outline(lk, 63.0, lk.neck_hw + 1.0, 66.0)
    # soft contact shadow of the whole figure on the background
    cv.soft(
        (0, 0, 0),
        0.22,
        3.0,
        (-50, 5, 55, 104),
        lambda p: [
            p.poly(shift(silhouette, 2.5, 1.5)),
            p.poly(shift(face, 2.0, 1.0)),
            *[p.poly(shift(h, 2.0, 1.0)) for h in hair.back],
        ],
    )
    _draw_hair_layer(cv, lk, hair.back, hair, back=True)
    _draw_neck(cv, lk)
    _OUTFITS[lk.outfit](cv, lk)
    if hair.over_shoulders:
        _draw_hair_layer(cv, lk, hair.shoulder, hair, back=True)
    if lk.hair_style != "long":
        _draw_ears(cv, lk)
    _draw_face(cv, lk, face)
    if lk.beard:
        _draw_beard(cv, lk)
    # shadow the front hair casts on the forehead
    cv.soft(
        lk.shadow, 0.45, 1.2, (-18, 8, 18, 40), lambda p: [p.poly(shift(h, 0.4, 1.3)) for h in hair.front], clip="face"
    )
    _draw_hair_layer(cv, lk, hair.front, hair, back=False)
    _draw_nose(cv, lk)
    if lk.glasses:
        for side in (-1, 1):
            arm = [(side * 10.0, 33.6), (side * 12.5, 33.9), (side * 14.6, 34.6)]
            cv.fill(lambda p, a=arm: p.stroke(a, (0.5, 0.42), hexc("#26262b")))
    if lk.earrings:
        for side in (-1, 1):
            cx = side * (lk.face_hw + 0.9)
            cv.fill(
                lambda p, cx=cx: p.stroke(
                    ellipse_pts(cx, 45.0, 1.5, 2.0, n=40)[10:] + ellipse_pts(cx, 45.0, 1.5, 2.0, n=40)[:11],
                    (0.42,),
                    lk.accent,
                )
            )
            cv.soft(
                (255, 244, 200),
                0.8,
                0.15,
                (cx - 2, 42, cx + 2, 48),
                lambda p, cx=cx: p.ellipse(cx - 1.05, 44.3, 0.22, 0.45),
            )


def _draw_neck(cv: Canvas, lk: Look) -> None:
    neck = neck_outline(lk)
    cv.mask("neck", lambda p: p.poly(neck))
    cv.fill(lambda p: p.poly(neck, scale(lk.skin, 0.95)))
    # shadow under the jaw, and darker sides of the neck
    jaw = jaw_line(lk, 40.0)
    cv.soft(lk.shadow, 0.75, 1.4, (-16, 40, 16, 64), lambda p: p.poly(shift([*jaw, (0, 40)], 0, 2.6)), clip="neck")
    for side in (-1, 1):
        cv.soft(
            lk.shadow,
            0.35,
            1.5,
            (-16, 44, 16, 80),
            lambda p, s=side: p.rect(s * lk.neck_hw - 1.4, 44, s * lk.neck_hw + 1.4, 80),
            clip="neck",
        )


def _draw_ears(cv: Canvas, lk: Look) -> None:
    for side in (-1, 1):
        cx = side * (lk.face_hw - 0.3)
        cv.fill(lambda p, cx=cx, s=side: p.poly(ellipse_pts(cx + s * 0.9, 37.2, 2.3, 5.0, rot=s * 0.12), lk.skin))
        cv.soft(
            lk.shadow,
            0.55,
            0.35,
            (cx - 4, 30, cx + 4, 44),
            lambda p, cx=cx, s=side: p.stroke(
                bezier((cx + s * 0.9, 33.4), (cx + s * 2.4, 34.0), (cx + s * 2.2, 39.0), (cx + s * 0.9, 40.2)),
                (0.5, 0.8, 0.3),
            ),
        )
        cv.soft(lk.shadow, 0.5, 0.8, (cx - 3, 33, cx + 3, 42), lambda p, cx=cx: p.ellipse(cx, 37.0, 1.2, 3.0))


def _draw_face(cv: Canvas, lk: Look, face: list[Pt]) -> None:
    cv.fill(lambda p: p.poly(face, lk.skin))
    inner = [(x * 0.8, 36 + (y - 36) * 0.84) for x, y in face]
    cv.soft(lk.shadow, 0.6, 2.2, (-16, 12, 16, 60), lambda p: [p.poly(face), p.poly(inner, 0)], clip="face")
    # key light from the viewer's left: the right side falls a little into shadow
    cv.soft(lk.shadow, 0.22, 3.5, (0, 12, 20, 62), lambda p: p.ellipse(14, 40, 8, 20), clip="face")
    cv.soft(lk.highlight, 0.38, 2.6, (-12, 18, 6, 32), lambda p: p.ellipse(-3.0, 24.5, 6.5, 3.6), clip="face")
    cv.soft(lk.highlight, 0.25, 1.4, (-12, 36, -2, 44), lambda p: p.ellipse(-7.2, 39.6, 3.0, 1.8), clip="face")
    cv.soft(lk.highlight, 0.22, 1.0, (-4, 52, 4, 57), lambda p: p.ellipse(-0.4, 54.6, 2.2, 1.1), clip="face")
    cv.soft(
        lk.blush,
        0.28 if lk.male else 0.42,
        1.8,
        (-13, 38, 13, 48),
        lambda p: [p.ellipse(-8.2, 42.4, 3.2, 2.0), p.ellipse(8.2, 42.4, 3.2, 2.0)],
        clip="face",
    )
    # eye sockets: a soft shade the eyes sit in
    cv.soft(
        lk.shadow,
        0.25,
        1.0,
        (-11, 31, 11, 39),
        lambda p: [p.ellipse(-5.5, 34.6, 3.8, 2.2), p.ellipse(5.5, 34.6, 3.8, 2.2)],
        clip="face",
    )
    cv.soft(
        lk.shadow,
        0.18,
        0.7,
        (-11, 37, 11, 40),
        lambda p: [p.ellipse(-5.6, 38.0, 2.6, 0.7), p.ellipse(5.6, 38.0, 2.6, 0.7)],
        clip="face",
    )


def _draw_nose(cv: Canvas, lk: Look) -> None:
    y, nw = NOSE_Y, lk.nose_w
    cv.soft(
        lk.shadow,
        0.32,
        0.7,
        (-2, 34, 4, 43),
        lambda p: p.stroke(bezier((1.2, 35.5), (1.5, 37.5), (1.9, 39.5), (2.0, y - 0.4)), (0.5, 0.9, 1.1)),
        clip="face",
    )
    cv.soft(lk.shadow, 0.3, 0.5, (-4, y - 2, 4, y + 2), lambda p: p.ellipse(0.2, y + 0.9, 2.2 * nw, 0.7), clip="face")
    cv.soft(
        lk.highlight, 0.55, 0.45, (-2, y - 2, 2, y + 1), lambda p: p.ellipse(-0.35, y - 0.25, 1.0, 0.75), clip="face"
    )
    cv.soft(lk.highlight, 0.3, 0.45, (-2, 33, 1, 40), lambda p: p.ellipse(-0.5, 37.5, 0.5, 2.4), clip="face")
    dark = scale(lk.shadow, 0.72)
    for side in (-1, 1):
        cv.soft(
            dark,
            0.75,
            0.18,
            (side * 1.3 * nw - 1, y, side * 1.3 * nw + 1, y + 1.6),
            lambda p, s=side: p.poly(ellipse_pts(s * 1.15 * nw, y + 0.75, 0.62, 0.3, rot=-s * 0.3)),
            clip="face",
        )
        cv.soft(
            dark,
            0.45,
            0.15,
            (side * 2.3 * nw - 1.5, y - 1.5, side * 2.3 * nw + 1.5, y + 1.5),
            lambda p, s=side: p.stroke(
                bezier(
                    (s * 1.9 * nw, y - 0.9), (s * 2.8 * nw, y - 0.6), (s * 2.8 * nw, y + 0.7), (s * 1.8 * nw, y + 0.9)
                ),
                (0.1, 0.32, 0.18),
            ),
            clip="face",
        )


def _draw_beard(cv: Canvas, lk: Look) -> None:
    jaw = jaw_line(lk, 38.0)
    top = path((lk.face_hw, 38.0), ((11.5, 42.5), (8.5, 45.0), (5.0, 45.8)), ((3.0, 46.1), (1.2, 45.5), (0.0, 45.6)))
    region = [*jaw, *top, *mirror(top)]
    color = mix(lk.hair, lk.skin, 0.25)
    cv.mask("beard", lambda p: p.poly(region))
    cv.masks["beard"] = ImageChops.multiply(cv.masks["beard"], cv.masks["face"])
    cv.soft(color, 0.82, 0.5, (-16, 36, 16, 60), lambda p: p.poly(region), clip="face")
    cv.soft(lk.skin, 0.5, 0.7, (-6, 49, 6, 55), lambda p: p.ellipse(0, 51.6, 2.6, 1.4), clip="face")
    rng = _rng("beard")
    hairs = [((rng.random() * 2 - 1) * (lk.face_hw - 1), 42 + rng.random() * 15, rng.random()) for _ in range(420)]
    cv.soft(
        lk.hair_dark,
        0.35,
        0.0,
        (-16, 36, 16, 60),
        lambda p: [
            p.stroke([(x, y), (x - 0.12 * x / lk.face_hw, y + 0.45 + 0.2 * a)], (0.1, 0.05)) for x, y, a in hairs
        ],
        clip="beard",
    )
    cv.soft(
        lk.hair_light,
        0.25,
        0.0,
        (-16, 36, 16, 60),
        lambda p: [
            p.stroke([(x + 0.3, y + 0.2), (x + 0.3 - 0.12 * x / lk.face_hw, y + 0.6)], (0.08, 0.04))
            for x, y, a in hairs[::3]
        ],
        clip="beard",
    )


# ---------------------------------------------------------------- hair


@dataclass
class HairShapes:
    back: list[list[Pt]]
    front: list[list[Pt]]
    shoulder: list[list[Pt]]
    strands: list[tuple[list[Pt], float, bool]]  # points, width, light?
    over_shoulders: bool = False
    curls: bool = False


def _hair_long(lk: Look) -> HairShapes:
    back_r = path(
        (0.0, 10.6),
        ((10.5, 10.6), (17.6, 16.5), (17.8, 28.0)),
        ((18.0, 38.0), (17.4, 47.0), (18.6, 57.0)),
        ((19.6, 64.0), (20.4, 69.0), (19.0, 73.0)),
        ((16.5, 74.2), (13.5, 72.0), (11.0, 70.0)),
        ((8.0, 68.0), (4.0, 67.0), (0.0, 67.0)),
    )
    front = path(
        (-15.4, 55.0),
        ((-16.9, 47.0), (-17.6, 37.0), (-17.4, 28.0)),
        ((-17.2, 16.5), (-10.0, 10.2), (-1.0, 10.0)),
        ((9.0, 9.8), (17.6, 15.0), (17.6, 27.0)),
        ((17.8, 37.0), (17.3, 47.0), (16.4, 56.0)),
        ((14.8, 51.0), (13.6, 45.0), (13.3, 37.0)),
        ((13.1, 30.0), (12.6, 26.0), (9.8, 23.8)),
        ((5.8, 21.4), (0.0, 19.2), (-4.6, 15.2)),
        ((-7.8, 19.0), (-12.0, 22.5), (-12.9, 30.0)),
        ((-13.4, 38.0), (-13.3, 47.0), (-15.4, 55.0)),
    )
    strands: list[tuple[list[Pt], float, bool]] = []
    for i in range(7):
        o = i * 0.9
        strands.append(
            (
                bezier(
                    (-4.4, 13.0 + o * 0.2),
                    (4.0, 12.2 + o * 0.8),
                    (12.0 + o * 0.2, 16.0 + o * 0.9),
                    (15.0 + o * 0.1, 34.0 + o * 2.5),
                ),
                0.28,
                i % 2 == 0,
            )
        )
        strands.append(
            (
                bezier(
                    (-4.8, 13.5 + o * 0.2),
                    (-10.0 - o * 0.3, 13.2 + o),
                    (-15.6 + o * 0.2, 20.0 + o),
                    (-15.8 + o * 0.15, 40.0 + o * 2.0),
                ),
                0.26,
                i % 2 == 1,
            )
        )
    return HairShapes(back=[symmetric(back_r)], front=[front], shoulder=[], strands=strands)


def _hair_quiff(lk: Look) -> HairShapes:
    front = path(
        (-14.3, 33.0),
        ((-14.9, 26.0), (-15.1, 20.0), (-13.4, 15.5)),
        ((-11.0, 10.6), (-4.5, 8.6), (2.0, 8.2)),
        ((8.5, 7.9), (13.2, 10.6), (14.6, 15.5)),
        ((15.5, 19.5), (15.2, 26.0), (14.4, 33.0)),
        ((14.0, 33.0), (13.6, 33.0), (13.3, 33.0)),
        ((13.2, 27.0), (12.8, 22.5), (10.6, 20.2)),
        ((7.2, 18.3), (3.0, 19.2), (0.0, 19.0)),
        ((-4.0, 18.6), (-8.0, 18.4), (-10.9, 20.4)),
        ((-12.8, 22.4), (-13.2, 27.0), (-13.3, 33.0)),
    )
    back = symmetric(
        path(
            (0.0, 8.5),
            ((9.0, 8.5), (15.0, 12.0), (15.0, 22.0)),
            ((15.0, 28.0), (14.6, 32.0), (14.0, 36.0)),
            ((10.0, 36.0), (4.0, 36.0), (0.0, 36.0)),
        )
    )
    strands = []
    for i in range(8):
        o = i * 1.1
        strands.append(
            (
                bezier((-11.0 + o, 19.5), (-9.0 + o, 13.0), (-4.0 + o * 1.2, 9.8), (4.0 + o, 9.6 + o * 0.3)),
                0.3,
                i % 2 == 0,
            )
        )
    for s in (-1, 1):
        strands.append((bezier((s * 13.2, 30.0), (s * 13.8, 24.0), (s * 13.6, 19.0), (s * 12.0, 15.5)), 0.25, False))
    return HairShapes(back=[back], front=[front], shoulder=[], strands=strands)


def _hair_side_part(lk: Look) -> HairShapes:
    front = path(
        (-14.1, 31.5),
        ((-14.7, 24.0), (-14.9, 17.5), (-12.4, 13.4)),
        ((-9.3, 9.6), (-2.5, 9.2), (4.0, 9.5)),
        ((10.5, 9.9), (14.8, 13.2), (15.0, 20.0)),
        ((15.1, 25.0), (14.6, 28.5), (14.1, 31.5)),
        ((13.8, 31.5), (13.4, 31.5), (13.1, 31.5)),
        ((13.1, 26.5), (12.6, 22.0), (10.0, 19.8)),
        ((6.0, 18.2), (1.0, 18.5), (-3.5, 18.3)),
        ((-7.5, 18.2), (-10.6, 19.0), (-12.2, 21.5)),
        ((-13.0, 24.0), (-13.1, 28.0), (-13.2, 31.5)),
    )
    back = symmetric(
        path(
            (0.0, 9.3),
            ((9.0, 9.3), (15.0, 12.0), (15.0, 22.0)),
            ((15.0, 28.0), (14.6, 32.0), (14.0, 35.0)),
            ((10.0, 35.0), (4.0, 35.0), (0.0, 35.0)),
        )
    )
    strands = [(bezier((-5.6, 9.8), (-5.9, 12.0), (-6.0, 14.0), (-6.6, 17.2)), 0.35, False)]
    for i in range(7):
        o = i * 1.2
        strands.append(
            (
                bezier((-5.2, 10.4 + o * 0.3), (0.0, 9.8 + o * 0.5), (8.0, 10.6 + o * 0.8), (13.5, 15.0 + o * 1.4)),
                0.28,
                i % 2 == 0,
            )
        )
        strands.append(
            (
                bezier(
                    (-6.3, 10.6 + o * 0.3), (-10.0, 11.2 + o * 0.6), (-13.2, 14.0 + o * 0.8), (-14.0, 19.0 + o * 1.3)
                ),
                0.24,
                i % 2 == 1,
            )
        )
    return HairShapes(back=[back], front=[front], shoulder=[], strands=strands)


def _hair_afro(lk: Look) -> HairShapes:
    rng = _rng("afro")
    blobs: list[list[Pt]] = [ellipse_pts(0.0, 27.0, 21.5, 18.5)]
    for i in range(34):
        a = math.pi * (-1.25 + 1.5 * i / 33)
        r = 2.4 + rng.random() * 1.4
        cx, cy = 21.0 * math.cos(a), 27.0 + 18.0 * math.sin(a)
        if cy > 46:
            continue
        blobs.append(ellipse_pts(cx, cy, r, r, n=24))
    blobs.append(
        symmetric(
            path(
                (0.0, 30.0),
                ((12.0, 30.0), (21.0, 34.0), (21.5, 40.0)),
                ((21.0, 44.0), (18.0, 47.0), (14.0, 48.0)),
                ((9.0, 48.5), (4.0, 47.0), (0.0, 47.0)),
            )
        )
    )
    front = path(
        (-13.6, 31.0),
        ((-15.0, 24.0), (-14.0, 12.0), (0.0, 10.0)),
        ((14.0, 12.0), (15.0, 24.0), (13.6, 31.0)),
        ((13.0, 31.0), (12.8, 31.0), (12.5, 31.0)),
        ((12.4, 24.5), (8.0, 19.2), (0.0, 18.8)),
        ((-8.0, 19.2), (-12.4, 24.5), (-12.5, 31.0)),
    )
    edge = []
    for t in np.linspace(0.05, 0.95, 16):
        x, y = bezier((12.5, 31.0), (12.4, 24.5), (8.0, 19.2), (0.0, 18.8))[int(t * 17)]
        edge.append(ellipse_pts(x, y, 0.9, 0.9, n=16))
        edge.append(ellipse_pts(-x, y, 0.9, 0.9, n=16))
    return HairShapes(back=blobs, front=[front, *edge], shoulder=[], strands=[], curls=True)


_HAIR: dict[str, Callable[[Look], HairShapes]] = {
    "long": _hair_long,
    "quiff": _hair_quiff,
    "side_part": _hair_side_part,
    "afro": _hair_afro,
}


def _draw_hair_layer(cv: Canvas, lk: Look, polys: list[list[Pt]], hair: HairShapes, back: bool) -> None:
    name = "hair_back" if back else "hair_front"
    m = cv.mask(name, lambda p: [p.poly(q) for q in polys])
    box = m.getbbox()
    if box is None:
        return
    ub = (
        (box[0] - cv.ox) / cv.unit,
        (box[1] - cv.oy) / cv.unit,
        (box[2] - cv.ox) / cv.unit,
        (box[3] - cv.oy) / cv.unit,
    )
    base = scale(lk.hair, 0.78) if back or hair.curls else lk.hair
    cv.fill(lambda p: [p.poly(q, base) for q in polys])
    # darker towards the edges and the ends, a sheen across the crown
    if back or not hair.curls:
        cv.soft(
            lk.hair_dark,
            0.6,
            2.0,
            ub,
            lambda p: [p.rect(*ub), *[p.poly(_shrink(q, 0.82), 0) for q in polys]],
            clip=name,
        )
    if not back:
        cv.soft(
            lk.hair_light,
            0.55,
            1.2,
            (-16, 8, 16, 22),
            lambda p: p.stroke(bezier((-12.0, 17.5), (-7.0, 11.5), (3.0, 10.8), (10.0, 14.5)), (0.4, 2.2, 0.4)),
            clip=name,
        )
        for light in (True, False):
            cv.soft(
                lk.hair_light if light else lk.hair_dark,
                0.45,
                0.12,
                ub,
                lambda p, light=light: [
                    p.stroke(pts, (w * 0.3, w, w * 0.2)) for pts, w, lt in hair.strands if lt == light
                ],
                clip=name,
            )
    if hair.curls:
        rng = _rng(name)
        arcs = []
        for _ in range(260 if back else 60):
            x = ub[0] + rng.random() * (ub[2] - ub[0])
            y = ub[1] + rng.random() * (ub[3] - ub[1])
            r = 0.6 + rng.random() * 0.7
            a0 = rng.random() * 2 * math.pi
            arcs.append((x, y, r, a0, rng.random() < 0.5))
        for light in (True, False):
            cv.soft(
                lk.hair_light if light else scale(lk.hair_dark, 0.7),
                0.55 if light else 0.6,
                0.05,
                ub,
                lambda p, light=light: [
                    p.stroke(
                        [(x + r * math.cos(a0 + t), y + r * math.sin(a0 + t)) for t in np.linspace(0, 3.6, 10)],
                        (0.12, 0.3, 0.1),
                    )
                    for x, y, r, a0, lt in arcs
                    if lt == light
                ],
                clip=name,
            )
        cv.soft(lk.hair_light, 0.3, 2.5, (-18, 6, 6, 22), lambda p: p.ellipse(-7.0, 13.0, 9.0, 4.0), clip=name)


def _shrink(pts: Sequence[Pt], f: float) -> list[Pt]:
    cx = sum(x for x, _ in pts) / len(pts)
    cy = sum(y for _, y in pts) / len(pts)
    return [(cx + (x - cx) * f, cy + (y - cy) * f) for x, y in pts]


# ---------------------------------------------------------------- outfits


def _cloth_shading(cv: Canvas, lk: Look, clip: str, neckline_y: float) -> None:
    cv.soft(
        (0, 0, 0),
        0.28,
        2.2,
        (-16, neckline_y - 3, 16, neckline_y + 8),
        lambda p: p.ellipse(0.8, neckline_y + 1.0, 9.0, 3.2),
        clip=clip,
    )
    cv.soft(
        (255, 255, 255), 0.12, 4.0, (-45, 62, -5, 100), lambda p: p.ellipse(-lk.shoulder_x + 4, 76, 10, 8), clip=clip
    )
    cv.soft((0, 0, 0), 0.25, 4.0, (0, 62, 45, 104), lambda p: p.ellipse(lk.shoulder_x + 2, 92, 10, 16), clip=clip)
    for side in (-1, 1):
        x = side * (lk.shoulder_x - 1.0)
        cv.soft(
            (0, 0, 0),
            0.22,
            0.8,
            (x - 3, 82, x + 3, 104),
            lambda p, x=x, s=side: p.stroke(
                bezier((x, 84), (x + s * 0.3, 90), (x + s * 0.5, 96), (x + s * 0.6, 104)), (0.2, 0.8, 1.0)
            ),
            clip=clip,
        )
    cv.soft((0, 0, 0), 0.2, 3.0, (-50, 90, 50, 110), lambda p: p.rect(-50, 100, 50, 110), clip=clip)


def _outfit_blazer(cv: Canvas, lk: Look) -> None:
    blouse = torso_outline(lk, 63.0, lk.neck_hw + 0.8, 70.0)
    cv.mask("blouse", lambda p: p.poly(blouse))
    cv.vgradient((-45, 60, 45, 104), [(64, lk.cloth2), (104, scale(lk.cloth2, 0.86))], "blouse")
    cv.soft((70, 45, 35), 0.12, 1.4, (-10, 63, 10, 76), lambda p: p.ellipse(0.5, 69.5, 6.0, 1.8), clip="blouse")
    sx = lk.shoulder_x
    full = torso_outline(lk, 63.0, lk.neck_hw + 0.8, 66.0)
    right_panel = [
        (1.2, 104.0),
        (2.2, 92.0),
        (lk.neck_hw + 4.2, 68.0),
        (lk.neck_hw + 2.2, 64.5),
        *[q for q in full[: len(full) // 2] if q[0] > lk.neck_hw + 2.6],
        (sx + 8, 104.0),
    ]
    panels = [right_panel, mirror(right_panel)]
    cv.mask("jacket", lambda p: [p.poly(q) for q in panels])
    cv.vgradient(
        (-45, 60, 45, 104), [(64, mix(lk.cloth, (255, 255, 255), 0.08)), (104, scale(lk.cloth, 0.8))], "jacket"
    )
    _cloth_shading(cv, lk, "jacket", 66.0)
    lapel_r = [
        (lk.neck_hw + 2.2, 64.5),
        (lk.neck_hw + 4.2, 68.0),
        (2.2, 92.0),
        (5.8, 84.0),
        (lk.neck_hw + 8.6, 76.5),
        (lk.neck_hw + 6.6, 74.8),
        (lk.neck_hw + 5.2, 65.0),
    ]
    lapel_col = mix(lk.cloth, (255, 255, 255), 0.1)
    for lap in (lapel_r, mirror(lapel_r)):
        cv.fill(lambda p, lap=lap: p.poly(lap, lapel_col))
        cv.soft((0, 0, 0), 0.35, 0.5, (-20, 60, 20, 95), lambda p, lap=lap: p.stroke(lap[2:6], (0.5, 0.3)))
    cv.soft((0, 0, 0), 0.35, 0.4, (-4, 88, 4, 104), lambda p: p.stroke([(2.2, 92.0), (1.2, 104.0)], (0.4, 0.5)))
    cv.fill(lambda p: p.ellipse(0.9, 97.5, 0.75, 0.75, scale(lk.cloth, 0.6)))
    # a thin gold necklace on the blouse
    cv.soft(
        lk.accent,
        0.9,
        0.05,
        (-8, 64, 8, 74),
        lambda p: p.stroke(
            bezier((-lk.neck_hw - 0.3, 65.0), (-3.5, 70.2), (3.5, 70.2), (lk.neck_hw + 0.3, 65.0)), (0.22,)
        ),
    )
    cv.fill(lambda p: p.ellipse(0.0, 69.8, 0.6, 0.6, lk.accent))


def _outfit_sweater(cv: Canvas, lk: Look) -> None:
    body = torso_outline(lk, 63.4, lk.neck_hw + 1.2, 67.0)
    cv.mask("sweater", lambda p: p.poly(body))
    cv.vgradient(
        (-50, 60, 50, 104), [(63, mix(lk.cloth, (255, 255, 255), 0.06)), (104, scale(lk.cloth, 0.78))], "sweater"
    )
    rib = bezier(
        (-lk.neck_hw - 1.2, 63.4), (-lk.neck_hw * 0.6, 68.0), (lk.neck_hw * 0.6, 68.0), (lk.neck_hw + 1.2, 63.4), 30
    )
    cv.fill(lambda p: p.stroke(rib, (1.6, 2.1, 1.6), lk.cloth2))
    cv.soft(
        (0, 0, 0),
        0.25,
        0.05,
        (-12, 60, 12, 72),
        lambda p: [p.stroke([(x, y - 0.8), (x * 1.05, y + 0.8)], (0.14,)) for x, y in rib[1:-1]],
    )
    _cloth_shading(cv, lk, "sweater", 67.0)
    # knit texture: faint vertical ribs
    cv.soft(
        (0, 0, 0),
        0.07,
        0.1,
        (-45, 60, 45, 104),
        lambda p: [p.rect(x, 60, x + 0.35, 104) for x in np.arange(-44, 45, 1.4)],
        clip="sweater",
    )


def _outfit_suit(cv: Canvas, lk: Look) -> None:
    shirt = torso_outline(lk, 63.0, lk.neck_hw + 0.4, 64.8, sx=lk.shoulder_x - 1.5)
    cv.mask("shirt", lambda p: p.poly(shirt))
    cv.vgradient((-45, 58, 45, 104), [(62, lk.cloth2), (104, scale(lk.cloth2, 0.85))], "shirt")
    tie_knot = [(-1.6, 64.4), (1.6, 64.4), (1.05, 68.4), (-1.05, 68.4)]
    tie = [(-1.0, 68.2), (1.0, 68.2), (2.9, 90.0), (0.0, 94.0), (-2.9, 90.0)]
    cv.fill(lambda p: p.poly(tie, lk.accent))
    cv.soft(
        (255, 255, 255),
        0.15,
        0.6,
        (-3, 70, 3, 92),
        lambda p: [
            p.stroke([(-1.2 + i * 0.9, 70 + i * 3), (0.4 + i * 0.9, 70 + i * 3 - 1.2)], (0.3,)) for i in range(-2, 8)
        ],
    )
    for side in (-1, 1):
        collar = [
            (side * (lk.neck_hw + 0.2), 62.2),
            (side * (lk.neck_hw + 1.6), 63.8),
            (side * 4.6, 71.0),
            (side * 1.2, 66.0),
            (side * (lk.neck_hw - 0.8), 63.0),
        ]
        cv.fill(lambda p, c=collar: p.poly(c, mix(lk.cloth2, (255, 255, 255), 0.3)))
        cv.soft((0, 0, 0), 0.3, 0.3, (-10, 60, 10, 72), lambda p, c=collar: p.stroke(c[1:4], (0.25,)))
    cv.fill(lambda p: p.poly(tie_knot, scale(lk.accent, 0.92)))
    cv.soft((0, 0, 0), 0.3, 0.4, (-3, 64, 3, 71), lambda p: p.ellipse(0, 68.9, 1.2, 0.5))
    sx = lk.shoulder_x
    full = torso_outline(lk, 63.2, lk.neck_hw + 1.0, 66.0)
    right_panel = [
        (3.2, 104.0),
        (3.6, 92.0),
        (lk.neck_hw + 2.4, 68.5),
        (lk.neck_hw + 1.8, 63.6),
        *[q for q in full[: len(full) // 2] if q[0] > lk.neck_hw + 2.2],
        (sx + 8, 104.0),
    ]
    panels = [right_panel, mirror(right_panel)]
    cv.mask("jacket", lambda p: [p.poly(q) for q in panels])
    cv.vgradient(
        (-50, 60, 50, 104), [(63, mix(lk.cloth, (255, 255, 255), 0.08)), (104, scale(lk.cloth, 0.75))], "jacket"
    )
    _cloth_shading(cv, lk, "jacket", 65.0)
    lapel_r = [
        (lk.neck_hw + 1.8, 63.6),
        (lk.neck_hw + 2.4, 68.5),
        (3.6, 92.0),
        (7.2, 84.0),
        (lk.neck_hw + 8.8, 75.5),
        (lk.neck_hw + 6.9, 73.6),
        (lk.neck_hw + 4.2, 63.8),
    ]
    for lap in (lapel_r, mirror(lapel_r)):
        cv.fill(lambda p, lap=lap: p.poly(lap, mix(lk.cloth, (255, 255, 255), 0.06)))
        cv.soft((0, 0, 0), 0.45, 0.5, (-20, 60, 20, 95), lambda p, lap=lap: p.stroke(lap[2:6], (0.5, 0.3)))
    pocket = [(-sx + 11, 86.0), (-sx + 18, 85.4)]
    cv.soft((0, 0, 0), 0.35, 0.3, (-sx + 10, 84, -sx + 19, 88), lambda p: p.stroke(pocket, (0.35,)))


def _outfit_scoop(cv: Canvas, lk: Look) -> None:
    body = torso_outline(lk, 63.8, lk.neck_hw + 3.4, 72.0)
    cv.mask("top", lambda p: p.poly(body))
    cv.vgradient((-50, 60, 50, 104), [(65, mix(lk.cloth, (255, 255, 255), 0.08)), (104, scale(lk.cloth, 0.8))], "top")
    edge = bezier((-lk.neck_hw - 3.4, 63.8), (-lk.neck_hw, 72.5), (lk.neck_hw, 72.5), (lk.neck_hw + 3.4, 63.8), 30)
    cv.fill(lambda p: p.stroke(edge, (1.0, 1.3, 1.0), lk.cloth2))
    _cloth_shading(cv, lk, "top", 73.0)
    cv.soft((0, 0, 0), 0.2, 0.8, (-12, 60, 12, 76), lambda p: p.stroke(edge, (0.6,)), clip="neck")
    chain = bezier((-lk.neck_hw + 0.2, 62.4), (-3.0, 67.2), (3.0, 67.2), (lk.neck_hw - 0.2, 62.4), 30)
    cv.soft(scale(lk.accent, 0.8), 0.95, 0.04, (-9, 62, 9, 72), lambda p: p.stroke(chain, (0.25,)))
    cv.fill(lambda p: p.poly([(0, 66.0), (0.9, 67.3), (0, 68.8), (-0.9, 67.3)], lk.accent))
    cv.soft((255, 250, 220), 0.8, 0.1, (-1, 65, 1, 69), lambda p: p.ellipse(-0.3, 67.1, 0.22, 0.38))


_OUTFITS: dict[str, Callable[[Canvas, Look], None]] = {
    "blazer": _outfit_blazer,
    "sweater": _outfit_sweater,
    "suit": _outfit_suit,
    "scoop": _outfit_scoop,
}


# ---------------------------------------------------------------- eyes and brows (sprite overlay)


def draw_eyes(cv: Canvas, lk: Look, closed: float, listening: bool) -> None:
    for side in (-1, 1):
        _draw_eye(cv, lk, side, closed, listening)
    _draw_brows(cv, lk, listening)
    if lk.glasses:
        _draw_glasses(cv, lk)


def _draw_eye(cv: Canvas, lk: Look, side: int, c: float, listening: bool) -> None:
    """One eye, `c` = how far the upper lid is closed."""
    hw = 3.0 if lk.male else 3.2
    hu = (1.65 if lk.male else 1.95) * (1.16 if listening else 1.0)
    hl = 1.0 if lk.male else 1.1
    lash = hexc("#1f1512") if not lk.male else scale(lk.hair_dark, 0.8)
    cx, cy = side * EYE_DX, EYE_Y
    # corner points: inner (towards the nose) slightly lower than outer
    inner, outer = (cx - side * hw, cy + 0.3), (cx + side * hw, cy - 0.1)
    up_c = ((cx - side * hw * 0.5, cy - hu * 1.32), (cx + side * hw * 0.45, cy - hu * 1.28))
    shut_c = ((cx - side * hw * 0.45, cy + hl * 0.75), (cx + side * hw * 0.5, cy + hl * 0.6))
    lo_c = ((cx - side * hw * 0.45, cy + hl * 1.28), (cx + side * hw * 0.55, cy + hl * 1.2))
    lid_c = [(a[0] + (b[0] - a[0]) * c, a[1] + (b[1] - a[1]) * c) for a, b in zip(up_c, shut_c, strict=True)]
    upper = bezier(inner, lid_c[0], lid_c[1], outer, 26)
    lower = bezier(inner, lo_c[0], lo_c[1], outer, 26)
    near = (cx - 4, cy - 4, cx + 4, cy + 3)
    # the lid crease sits above the open lid and flattens as it closes
    crease = bezier(
        (cx - side * hw * 0.7, cy - hu * 0.55),
        (cx - side * hw * 0.3, cy - hu * 1.7 + 0.3 * c),
        (cx + side * hw * 0.5, cy - hu * 1.65 + 0.3 * c),
        (cx + side * hw * 1.05, cy - hu * 0.35),
    )
    cv.soft(lk.shadow, 0.55, 0.18, near, lambda p: p.stroke(crease, (0.05, 0.22, 0.1)))
    if c < 0.95:
        almond = [*upper, *lower[::-1]]
        eye = Image.new("L", cv.img.size, 0)
        cv.pen(eye).poly(almond)
        cv.masks["eye"] = eye
        lid_shadow = [*shift(upper, 0, 0.45), (cx + side * 4, cy - 4), (cx - side * 4, cy - 4)]
        cv.fill(lambda p: p.poly(almond, hexc("#f6f2ee")))
        cv.soft(hexc("#c9b8b4"), 0.5, 0.5, near, lambda p: p.poly(lid_shadow), clip="eye")
        ri = 1.62 if lk.male else 1.78
        iy = cy + 0.05
        cv.soft(scale(lk.iris, 0.55), 1.0, 0.0, near, lambda p: p.ellipse(cx, iy, ri, ri), clip="eye")
        cv.soft(lk.iris, 1.0, 0.15, near, lambda p: p.ellipse(cx, iy, ri * 0.8, ri * 0.8), clip="eye")
        cv.soft(
            mix(lk.iris, (255, 255, 255), 0.35),
            0.7,
            0.35,
            near,
            lambda p: p.ellipse(cx + 0.1, iy + 0.75, ri * 0.55, ri * 0.35),
            clip="eye",
        )
        cv.soft(hexc("#120d0c"), 1.0, 0.05, near, lambda p: p.ellipse(cx, iy, 0.72, 0.72), clip="eye")
        # the upper lid shades the top of the iris
        cv.soft((30, 18, 14), 0.45, 0.35, near, lambda p: p.poly(shift(lid_shadow, 0, 0.1)), clip="eye")
        cv.soft(
            (255, 255, 255),
            0.95,
            0.03,
            near,
            lambda p: [p.ellipse(cx - 0.55, iy - 0.55, 0.42, 0.42), p.ellipse(cx + 0.55, iy + 0.5, 0.17, 0.17)],
            clip="eye",
        )
        low_line = lower[int(len(lower) * 0.25) :]
        cv.soft(scale(lk.shadow, 0.8), 0.55, 0.08, near, lambda p: p.stroke(low_line, (0.06, 0.16, 0.2)))
    widths = (0.22, 0.42, 0.55) if not lk.male else (0.2, 0.34, 0.38)
    cv.fill(lambda p: p.stroke(upper, widths, lash))
    if not lk.male:
        wing = bezier(
            upper[-3],
            (outer[0] + side * 0.4, outer[1] - 0.05),
            (outer[0] + side * 0.8, outer[1] - 0.35 + 0.5 * c),
            (outer[0] + side * 1.05, outer[1] - 0.7 + 0.8 * c),
            10,
        )
        cv.fill(lambda p: p.stroke(wing, (0.4, 0.25, 0.05), lash))


def _draw_brows(cv: Canvas, lk: Look, listening: bool) -> None:
    lift = 1.0 if listening else 0.0
    color = scale(lk.hair, 0.85) if lk.hair[0] > 60 else mix(lk.hair, (90, 70, 60), 0.15)
    widths = (1.15, 1.05, 0.45) if lk.male else (0.95, 0.85, 0.3)
    by = 30.4 if lk.male else 30.0
    for side in (-1, 1):
        pts = bezier(
            (side * 2.5, by + 0.9 - lift * 1.15),
            (side * 4.9, by - 0.5 - lift * 1.15),
            (side * 7.9, by - 1.0 - lift * 1.05),
            (side * 9.9, by + 0.5 - lift * 0.55),
            24,
        )
        cv.soft(
            color,
            1.0,
            0.12,
            (side * 5.8 - 5, by - 3.5, side * 5.8 + 5, by + 2.5),
            lambda p, pts=pts: p.stroke(pts, widths),
        )


def _draw_glasses(cv: Canvas, lk: Look) -> None:
    frame = hexc("#26262b")
    for side in (-1, 1):
        cx, cy = side * EYE_DX, EYE_Y + 0.4
        rim = _rounded_rect(cx - 4.2, cy - 3.0, cx + 4.2, cy + 2.8, 1.8)
        cv.soft(
            (255, 255, 255),
            0.12,
            0.3,
            (cx - 4.5, cy - 3.5, cx + 4.5, cy + 3.5),
            lambda p, cx=cx, cy=cy: p.poly(
                [(cx - 2.6, cy + 2.6), (cx - 0.6, cy + 2.6), (cx + 2.8, cy - 2.8), (cx + 0.8, cy - 2.8)]
            ),
        )
        cv.fill(lambda p, r=rim: p.stroke([*r, r[0], r[1]], (0.5,), frame))
    bridge = bezier((-1.75, 34.8), (-0.8, 33.9), (0.8, 33.9), (1.75, 34.8))
    cv.fill(lambda p: p.stroke(bridge, (0.45,), frame))


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> list[Pt]:
    pts: list[Pt] = []
    for cx, cy, a0 in ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180)):
        for a in np.linspace(a0, a0 + 90, 8):
            pts.append((cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))))
    return pts


# ---------------------------------------------------------------- mouth (sprite overlay)


@dataclass(frozen=True)
class MouthGeo:
    hw: float  # half width of the opening
    hu: float  # how far the upper lip lifts
    hl: float  # how far the lower lip drops
    jaw: float  # how far the chin drops
    pu: float  # opening shape exponents (0.5 = round, larger = flatter)
    pl: float
    lip_u: float
    lip_l: float
    teeth_u: float
    teeth_l: float
    tongue: str  # none | low | up
    smile: float
    corner: float = 0.5


_SHAPES: dict[MouthShape, MouthGeo] = {
    MouthShape.REST: MouthGeo(3.5, 0, 0, 0, 1, 1, 1.1, 1.2, 0, 0, "none", 0.6),
    MouthShape.MBP: MouthGeo(3.6, 0, 0, 0, 1, 1, 0.55, 0.72, 0, 0, "none", 0.05),
    MouthShape.CONSONANT: MouthGeo(3.4, 0.5, 0.6, 0.5, 0.8, 0.8, 0.85, 1.05, 0.55, 0.5, "none", 0.25),
    MouthShape.E: MouthGeo(3.9, 0.6, 1.15, 0.8, 1.1, 0.9, 0.75, 0.95, 0.8, 0.3, "low", 0.4),
    MouthShape.A: MouthGeo(3.5, 1.0, 2.9, 1.6, 0.7, 0.6, 0.8, 1.0, 0.85, 0.0, "low", 0.15),
    MouthShape.O: MouthGeo(2.5, 1.05, 2.0, 1.3, 0.5, 0.5, 0.95, 1.15, 0.45, 0.0, "low", 0.0, 0.7),
    MouthShape.U: MouthGeo(1.6, 0.45, 0.6, 0.6, 0.5, 0.5, 1.15, 1.3, 0.0, 0.0, "none", 0.0, 0.9),
    MouthShape.FV: MouthGeo(3.4, 0.65, 0.0, 0.3, 0.9, 1, 0.75, 0.8, 0.75, 0.0, "none", 0.1),
    MouthShape.L: MouthGeo(3.3, 0.8, 1.9, 1.2, 0.7, 0.6, 0.8, 1.0, 0.65, 0.0, "up", 0.2),
}


def mouth_geo(shape: MouthShape, level: float) -> MouthGeo:
    g = _SHAPES[shape]
    if shape in CLOSED_SHAPES:
        return g
    t = level
    return MouthGeo(
        g.hw * (1 - 0.06 * t if g.hl > 1.5 else 1.0),
        g.hu * t**0.8,
        g.hl * t,
        g.jaw * t,
        g.pu,
        g.pl,
        g.lip_u,
        g.lip_l * (1 - 0.1 * t),
        g.teeth_u,
        g.teeth_l,
        g.tongue,
        g.smile,
        g.corner,
    )


def jaw_warp(cv: Canvas, lk: Look, drop: float) -> None:
    """Move the chin down by `drop` units, fading out towards the sprite's edges."""
    if drop <= 0:
        return
    arr = np.asarray(cv.img)
    h, w = arr.shape[:2]
    xu = (np.arange(w, dtype=np.float32) + 0.5 - cv.ox) / cv.unit
    yu = (np.arange(h, dtype=np.float32) + 0.5 - cv.oy) / cv.unit
    fx = np.clip((10.8 - np.abs(xu)) / 5.0, 0, 1)
    fx = fx * fx * (3 - 2 * fx)
    # the whole chin moves as one piece; only the neck below it is squeezed
    y_top, y_full, y_end = MOUTH_Y - 0.2, MOUTH_Y + 2.2, lk.chin_y + 0.8 * drop
    y_bottom = MOUTH_BOX[3] - 0.3
    fy = np.where(
        yu < y_full, np.clip((yu - y_top) / (y_full - y_top), 0, 1), np.clip((y_bottom - yu) / (y_bottom - y_end), 0, 1)
    )
    fy = fy * fy * (3 - 2 * fy)
    disp = (drop * cv.unit) * fy[:, None] * fx[None, :]
    map_x = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w)).copy()
    map_y = (np.arange(h, dtype=np.float32)[:, None] - disp).astype(np.float32)
    out = cv2.remap(arr, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cv.img.paste(Image.fromarray(out, "RGB"))


def draw_mouth(cv: Canvas, lk: Look, shape: MouthShape, level: float) -> None:
    g = mouth_geo(shape, level)
    lips = (1.0 if lk.male else 1.18) * lk.lip_full
    g = replace(g, hw=g.hw * 1.15, lip_u=g.lip_u * lips, lip_l=g.lip_l * lips)
    jaw_warp(cv, lk, g.jaw)
    my = MOUTH_Y
    wo = g.hw + g.corner  # outer lip corners
    xs = np.linspace(-wo, wo, 61)
    s_in = np.clip(np.abs(xs) / g.hw, 0, 1)
    s_out = np.abs(xs) / wo
    lift = -g.smile * s_out**2
    up_in = my + lift - g.hu * (1 - s_in**2) ** g.pu
    lo_in = my + lift + g.hl * (1 - s_in**2) ** g.pl
    bow = 1 - 0.25 * np.exp(-(((xs / wo) / 0.11) ** 2)) + 0.16 * np.exp(-(((s_out - 0.28) / 0.14) ** 2))
    taper = (1 - s_out**2) ** (0.3 if g.corner > 0.6 else 0.45)
    up_out = up_in - g.lip_u * bow * taper
    lo_out = lo_in + g.lip_l * (1 - s_out**2) ** (0.35 if g.corner > 0.6 else 0.6)
    pts = lambda a: [(float(x), float(y)) for x, y in zip(xs, a, strict=True)]  # noqa: E731
    lip_u_col = scale(lk.lips, 0.82)
    lip_l_col = lk.lips
    box = (-wo - 2, my - 4, wo + 2, my + g.hl + 4)
    # soft shading around the lips: the dip under the lower lip and the philtrum
    cv.soft(lk.shadow, 0.4, 0.6, box, lambda p: p.ellipse(0, float(lo_out.max()) + 1.0, wo * 0.55, 0.6), clip="face")
    cv.soft(lk.shadow, 0.25, 0.35, box, lambda p: p.ellipse(0, float(up_out.min()) - 1.0, 0.7, 0.9), clip="face")
    opening = g.hu + g.hl > 0.05
    if opening:
        hole = [*pts(up_in), *pts(lo_in)[::-1]]
        m = Image.new("L", cv.img.size, 0)
        cv.pen(m).poly(hole)
        cv.masks["mouth"] = m
        cv.fill(lambda p: p.poly(hole, hexc("#4a1b20")))
        cv.soft(
            hexc("#2a0c10"),
            0.9,
            0.5,
            box,
            lambda p: p.ellipse(0, my - g.hu * 0.2, g.hw * 0.75, (g.hu + g.hl) * 0.3),
            clip="mouth",
        )
        if g.tongue != "none" and g.hl > 0.6:
            ty = my + g.hl * (0.75 if g.tongue == "low" else 0.15)
            ry = g.hl * (0.45 if g.tongue == "low" else 0.75)
            tongue = hexc("#c25a62")
            cv.soft(tongue, 1.0, 0.15, box, lambda p: p.ellipse(0, ty, g.hw * 0.62, ry), clip="mouth")
            cv.soft(
                mix(tongue, (255, 220, 220), 0.3),
                0.6,
                0.3,
                box,
                lambda p: p.ellipse(-0.2, ty - ry * 0.35, g.hw * 0.3, ry * 0.3),
                clip="mouth",
            )
        teeth = hexc("#f5f1ea")
        if g.teeth_u > 0:
            th = min(g.teeth_u, (g.hu + g.hl) * (0.5 if g.teeth_l > 0 else 0.9))
            band = [*pts(up_in - 1.0), *pts(up_in + th * (1 - s_in**2) ** 0.3)[::-1]]
            cv.soft(teeth, 1.0, 0.04, box, lambda p: p.poly(band), clip="mouth")
        if g.teeth_l > 0:
            th = min(g.teeth_l, (g.hu + g.hl) * 0.42)
            band = [*pts(lo_in + 1.0), *pts(lo_in - th * (1 - s_in**2) ** 0.3)[::-1]]
            cv.soft(scale(teeth, 0.93), 1.0, 0.04, box, lambda p: p.poly(band), clip="mouth")
        cv.soft(
            (40, 10, 14),
            0.55,
            0.45,
            box,
            lambda p: [p.ellipse(-g.hw, my, g.hw * 0.35, 2.0), p.ellipse(g.hw, my, g.hw * 0.35, 2.0)],
            clip="mouth",
        )
    cv.soft(lip_u_col, 1.0, 0.08, box, lambda p: p.poly([*pts(up_out), *pts(up_in + 0.02)[::-1]]))
    if shape == MouthShape.FV:
        # lower lip tucked up under the upper teeth
        tuck = [*pts(lo_in + 0.05), *pts(lo_in + g.lip_l * 0.85 * (1 - s_out**2) ** 0.6)[::-1]]
        cv.soft(mix(lip_l_col, lk.skin, 0.15), 1.0, 0.08, box, lambda p: p.poly(tuck))
    else:
        cv.soft(lip_l_col, 1.0, 0.08, box, lambda p: p.poly([*pts(lo_in - 0.02), *pts(lo_out)[::-1]]))
    cv.soft(
        mix(lip_l_col, (255, 240, 235), 0.45),
        0.55,
        0.35,
        box,
        lambda p: p.ellipse(-0.4, float(lo_in[30] + lo_out[30]) / 2 - 0.05, wo * 0.32, g.lip_l * 0.22),
    )
    cv.soft(
        mix(lip_u_col, (255, 240, 235), 0.3),
        0.3,
        0.2,
        box,
        lambda p: p.stroke(pts(up_out + 0.12)[15:46], (0.05, 0.18, 0.05)),
    )
    seam_col = scale(lk.lips, 0.42)
    if not opening:
        seam = pts((up_in + lo_in) / 2)
        cv.fill(
            lambda p: p.stroke(
                seam, (0.1, 0.24, 0.32, 0.24, 0.1) if shape == MouthShape.REST else (0.15, 0.38, 0.15), seam_col
            )
        )
    else:
        cv.soft(
            seam_col,
            0.7,
            0.06,
            box,
            lambda p: [
                p.stroke(pts(up_in)[1:], (0.12, 0.05, 0.05, 0.05, 0.12)),
                p.stroke(pts(lo_in)[1:], (0.1, 0.04, 0.04, 0.04, 0.1)),
            ],
        )
    for side in (-1, 1):
        cx, cy = side * wo, my + float(lift[0])
        cv.soft(
            lk.shadow,
            0.5,
            0.25,
            (cx - 1, cy - 1, cx + 1, cy + 1),
            lambda p, cx=cx, cy=cy, s=side: p.stroke(
                [(cx - s * 0.2, cy + 0.05), (cx + s * 0.25, cy - 0.25), (cx + s * 0.4, cy - 0.6)], (0.2, 0.14, 0.05)
            ),
        )
    if shape == MouthShape.MBP:
        cv.soft(
            lk.highlight, 0.2, 0.4, box, lambda p: p.ellipse(0, float(lo_out.max()) + 0.2, wo * 0.6, 0.4), clip="face"
        )


# ---------------------------------------------------------------- a whole avatar at one size


def supersampling(height: int) -> int:
    return max(2, min(4, math.ceil(1400 / height)))


class Scene:
    """One avatar drawn at one output size (plus `pad` pixels on every side)."""

    def __init__(self, avatar_id: str, width: int, height: int, pad: int = 0, k: int | None = None) -> None:
        self.look = LOOKS[avatar_id]
        self.width, self.height, self.pad = width, height, pad
        self.k = k or supersampling(height)
        k = self.k
        unit = height * k / 100.0
        img = Image.new("RGB", ((width + 2 * pad) * k, (height + 2 * pad) * k))
        ox, oy = (pad + width / 2) * k, pad * k
        draw_background(Canvas(img, unit, ox, oy), self.look, k)
        self.canvas = Canvas(img, unit * PERSON_SCALE, ox, oy + PERSON_ANCHOR_Y * unit * (1 - PERSON_SCALE))
        draw_person(self.canvas, self.look)

    def rect(self, box: tuple[float, float, float, float]) -> Box:
        """The even-aligned output-pixel rectangle (padded coordinates) that covers `box` (units)."""
        c, k = self.canvas, self.k
        x0, y0 = c.px(box[0], box[1])
        x1, y1 = c.px(box[2], box[3])
        return (
            math.floor(x0 / k / 2) * 2,
            math.floor(y0 / k / 2) * 2,
            math.ceil(x1 / k / 2) * 2,
            math.ceil(y1 / k / 2) * 2,
        )

    def seam_y(self) -> int:
        """The even output row (padded coordinates) below which breathing may lift the body."""
        return round(self.canvas.px(0, BREATH_SEAM_Y)[1] / self.k / 2) * 2

    def bare(self) -> Image.Image:
        return self.canvas.img.reduce(self.k)

    def _patch(self, rect: Box, draw: Callable[[Canvas], None]) -> Image.Image:
        k = self.k
        sub = self.canvas.sub((rect[0] * k, rect[1] * k, rect[2] * k, rect[3] * k))
        draw(sub)
        return sub.img.reduce(k)

    def mouth(self, shape: MouthShape, level: float, rect: Box) -> Image.Image:
        return self._patch(rect, lambda c: draw_mouth(c, self.look, shape, level))

    def eyes(self, closed: float, listening: bool, rect: Box) -> Image.Image:
        return self._patch(rect, lambda c: draw_eyes(c, self.look, closed, listening))

    def frame(
        self, shape: MouthShape = MouthShape.REST, level: float = 1.0, closed: float = 0.0, listening: bool = False
    ) -> Image.Image:
        img = self.bare()
        m, e = self.rect(MOUTH_BOX), self.rect(EYE_BOX)
        img.paste(self.mouth(shape, level, m), m[:2])
        img.paste(self.eyes(closed, listening, e), e[:2])
        return img

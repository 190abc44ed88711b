"""The built-in avatars: specs, previews and the YUV kits the render loop composes frames from."""

from __future__ import annotations

import io
import itertools
import threading

import numpy as np
import pytest
from PIL import Image

from lib.engine import avatars
from lib.engine.mouth import CLOSED_SHAPES, MouthShape

W, H = 854, 480  # the engine's default size: even, but not a multiple of 16


@pytest.fixture(scope="module")
def kit() -> avatars.AvatarKit:
    return avatars.get_kit("anna_office", W, H)


def luma(kit: avatars.AvatarKit, **kw) -> np.ndarray:
    args = {"mouth": MouthShape.REST, "openness": 1.0, "eyes_closed": 0.0, "listening": False} | kw
    frame = kit.compose(**args)
    return frame.to_ndarray()[: kit.height].astype(np.int16)


def region(a: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = rect
    return a[y0:y1, x0:x1]


def outside(a: np.ndarray, *rects: tuple[int, int, int, int]) -> np.ndarray:
    keep = np.ones(a.shape, dtype=bool)
    for x0, y0, x1, y1 in rects:
        keep[y0:y1, x0:x1] = False
    return a[keep]


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels whose brightness differs clearly (more than 16 of 219 luma steps)."""
    return int((np.abs(a - b) > 16).sum())


def test_catalogue_has_four_distinct_presenters() -> None:
    ids = [a.avatar_id for a in avatars.AVATARS]
    assert len(ids) >= 4 and len(set(ids)) == len(ids)
    assert {a.gender for a in avatars.AVATARS} == {"female", "male"}
    assert all(a.default_voice == "en_US-joe" and a.name and a.pose_name for a in avatars.AVATARS)


def test_lookup_by_id_and_name() -> None:
    assert avatars.get_spec("ben_studio").name == "Ben"
    assert avatars.find_by_name("ANNA").avatar_id == "anna_office"
    assert avatars.find_by_name(" Chen_Lobby ").avatar_id == "chen_lobby"
    assert avatars.find_by_name("nobody") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: avatars.get_spec("nobody"),
        lambda: avatars.get_kit("nobody", W, H),
        lambda: avatars.preview_png("nobody"),
    ],
)
def test_unknown_avatar_raises_key_error(call) -> None:
    with pytest.raises(KeyError):
        call()


def test_kit_frames_are_yuv420p_of_the_requested_size(kit: avatars.AvatarKit) -> None:
    frame = kit.compose(MouthShape.A, 0.8, 0.0, False)
    assert (frame.width, frame.height, frame.format.name) == (W, H, "yuv420p")
    assert frame.to_ndarray().shape == (H * 3 // 2, W)
    assert avatars.get_kit("anna_office", W, H) is kit


def test_frames_are_not_blank_and_look_like_the_preview(kit: avatars.AvatarKit) -> None:
    rgb = np.asarray(kit.compose(MouthShape.REST, 0.0, 0.0, False).to_image(), dtype=np.int16)
    assert rgb.std() > 25
    png = Image.open(io.BytesIO(avatars.preview_png("anna_office", W))).convert("RGB")
    # same picture through two routes (YUV frame vs. straight RGB); only the sway margin and rounding differ
    assert np.abs(rgb - np.asarray(png, dtype=np.int16)).mean() < 6


def test_compose_is_deterministic_and_returns_fresh_frames(kit: avatars.AvatarKit) -> None:
    a = kit.compose(MouthShape.O, 0.6, 0.3, True, (2, -2), 0.5)
    b = kit.compose(MouthShape.O, 0.6, 0.3, True, (2, -2), 0.5)
    assert a is not b
    assert np.array_equal(a.to_ndarray(), b.to_ndarray())
    # the first frame's memory is not reused by the next one (frames are encoded asynchronously)
    before = a.to_ndarray().copy()
    kit.compose(MouthShape.A, 1.0, 1.0, False, (-4, 4), 1.0)
    assert np.array_equal(a.to_ndarray(), before)


def test_every_mouth_shape_looks_different_and_only_the_mouth_changes(kit: avatars.AvatarKit) -> None:
    frames = {s: luma(kit, mouth=s) for s in MouthShape}
    mouth = kit.mouth_rect()
    for a, b in itertools.combinations(MouthShape, 2):
        fa, fb = frames[a], frames[b]
        assert changed_pixels(region(fa, mouth), region(fb, mouth)) > 40, (a.name, b.name)
        assert np.array_equal(outside(fa, mouth), outside(fb, mouth)), (a.name, b.name)


def test_openness_opens_the_jaw_but_closed_shapes_stay_closed(kit: avatars.AvatarKit) -> None:
    mouth = kit.mouth_rect()
    for shape in set(MouthShape) - CLOSED_SHAPES:
        small, wide = luma(kit, mouth=shape, openness=0.25), luma(kit, mouth=shape, openness=1.0)
        assert changed_pixels(region(small, mouth), region(wide, mouth)) > 40, shape.name
    # A wide open shows more dark mouth interior than A barely open
    dark = lambda f: int((region(f, mouth) < 60).sum())  # noqa: E731
    assert dark(luma(kit, mouth=MouthShape.A, openness=1.0)) > 3 * dark(luma(kit, mouth=MouthShape.A, openness=0.25))
    for shape in CLOSED_SHAPES:
        assert np.array_equal(luma(kit, mouth=shape, openness=0.0), luma(kit, mouth=shape, openness=1.0))


def test_blinking_changes_only_the_eyes(kit: avatars.AvatarKit) -> None:
    eyes = kit.eye_rect()
    steps = [luma(kit, eyes_closed=c) for c in (0.0, 0.34, 0.67, 1.0)]
    for a, b in itertools.pairwise(steps):
        assert changed_pixels(region(a, eyes), region(b, eyes)) > 20
        assert np.array_equal(outside(a, eyes), outside(b, eyes))
    # shut eyes hide the dark iris and pupil
    assert int((region(steps[-1], eyes) < 60).sum()) < int((region(steps[0], eyes) < 60).sum()) / 2


def test_listening_raises_the_brows(kit: avatars.AvatarKit) -> None:
    eyes = kit.eye_rect()
    idle, listening = luma(kit), luma(kit, listening=True)
    assert changed_pixels(region(idle, eyes), region(listening, eyes)) > 40
    assert np.array_equal(outside(idle, eyes), outside(listening, eyes))

    def brow_top(f: np.ndarray) -> int:
        r = region(f, eyes)
        w = r.shape[1]
        rows = np.nonzero((r[:, w // 6 : -w // 6] < 110).any(axis=1))[0]  # brows: the topmost dark marks
        return int(rows[0])

    assert brow_top(listening) < brow_top(idle)


def test_sway_shifts_the_whole_picture_by_even_pixels(kit: avatars.AvatarKit) -> None:
    still = luma(kit, mouth=MouthShape.A)
    moved = luma(kit, mouth=MouthShape.A, sway=(4, -2))
    assert np.array_equal(moved[:-2, 4:], still[2:, :-4])
    assert not np.array_equal(moved, still)
    # odd and out-of-range requests are rounded to even pixels and clamped
    assert np.array_equal(luma(kit, sway=(3, 0)), luma(kit, sway=(4, 0)))
    assert np.array_equal(luma(kit, sway=(40, 0)), luma(kit, sway=(4, 0)))


def test_breathing_lifts_the_body_but_not_the_head(kit: avatars.AvatarKit) -> None:
    rest, breath = luma(kit), luma(kit, breath=1.0)
    seam = kit.mouth_rect()[3]
    assert np.array_equal(rest[:seam], breath[:seam])
    assert not np.array_equal(rest[seam:], breath[seam:])


def test_sizes_must_be_even() -> None:
    with pytest.raises(ValueError):
        avatars.get_kit("ben_studio", 855, 480)


def test_concurrent_first_use_builds_one_shared_kit() -> None:
    got: list[avatars.AvatarKit] = []
    threads = [threading.Thread(target=lambda: got.append(avatars.get_kit("dara_green", 320, 180))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(k is got[0] for k in got)
    frame = got[0].compose(MouthShape.E, 0.5, 0.0, False)
    assert (frame.width, frame.height) == (320, 180)


def test_preview_is_a_png_of_the_requested_width() -> None:
    png = avatars.preview_png("chen_lobby", 320)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (320, 180)
    assert avatars.preview_png("chen_lobby", 320) is png  # cached


def test_avatars_are_clearly_distinct() -> None:
    pics = {
        a.avatar_id: np.asarray(
            Image.open(io.BytesIO(avatars.preview_png(a.avatar_id, 160))).convert("RGB"), dtype=np.float32
        )
        for a in avatars.AVATARS
    }
    for a, b in itertools.combinations(pics, 2):
        assert np.abs(pics[a] - pics[b]).mean() > 30, (a, b)
        # a different overall colour scheme, not just a different face
        assert np.abs(pics[a].mean(axis=(0, 1)) - pics[b].mean(axis=(0, 1))).sum() > 20, (a, b)

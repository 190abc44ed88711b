"""Frames the live view shows when there is no avatar picture yet (or any more)."""

from __future__ import annotations

from functools import lru_cache

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 854, 480


@lru_cache(maxsize=16)
def _picture(text: str, width: int, height: int) -> np.ndarray:
    img = Image.new("RGB", (width, height), (30, 33, 48))
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(18, height // 18))
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    box = draw.textbbox((0, 0), text, font=font)
    draw.text(
        ((width - (box[2] - box[0])) / 2, (height - (box[3] - box[1])) / 2), text, fill=(215, 218, 235), font=font
    )
    return np.asarray(img)


def placeholder_frame(text: str, width: int = WIDTH, height: int = HEIGHT) -> av.VideoFrame:
    """A new frame each call: the sender stamps its own timestamps on what it gets."""
    return av.VideoFrame.from_ndarray(_picture(text, width, height), format="rgb24")

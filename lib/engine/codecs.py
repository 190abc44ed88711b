"""Real-time H264 for aiortc: its default x264 preset ("medium") cannot encode 720p at 25 fps on a CPU."""

from __future__ import annotations

import fractions

import av
from aiortc import rtcrtpsender
from aiortc.codecs import get_encoder as _aiortc_get_encoder
from aiortc.codecs import h264

X264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "level": "31"}


class RealtimeH264Encoder(h264.H264Encoder):
    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool):
        bit_rate = self.codec.bit_rate if self.codec is not None else None
        stale = self.codec is not None and (
            frame.width != self.codec.width
            or frame.height != self.codec.height
            or not bit_rate
            or abs(self.target_bitrate - bit_rate) / bit_rate > 0.1
        )
        if self.codec is None or stale:
            # Create the codec ourselves so the parent class finds it current and keeps our preset.
            self.buffer_data = b""
            self.buffer_pts = None
            codec = av.CodecContext.create("libx264", "w")
            codec.width, codec.height = frame.width, frame.height
            codec.bit_rate = self.target_bitrate
            codec.pix_fmt = "yuv420p"
            codec.framerate = fractions.Fraction(h264.MAX_FRAME_RATE, 1)
            codec.time_base = fractions.Fraction(1, h264.MAX_FRAME_RATE)
            codec.options = dict(X264_OPTIONS)
            codec.profile = "Baseline"
            self.codec = codec
        return super()._encode_frame(frame, force_keyframe)


def _get_encoder(codec):
    if codec.mimeType.lower() == "video/h264":
        return RealtimeH264Encoder()
    return _aiortc_get_encoder(codec)


def install_realtime_h264() -> None:
    """Make this process's aiortc senders use the real-time H264 encoder (idempotent)."""
    rtcrtpsender.get_encoder = _get_encoder

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lib.live.media.quality import MediaQuality, QualityMeter


def _stats(received: int, lost: int, sent_bytes: int, jitter: int = 900):
    return [
        SimpleNamespace(type="inbound-rtp", kind="video", packetsReceived=received, packetsLost=lost, jitter=jitter),
        SimpleNamespace(type="inbound-rtp", kind="audio", packetsReceived=10, packetsLost=0, jitter=0),
        SimpleNamespace(type="remote-outbound-rtp", kind="video", bytesSent=sent_bytes),
    ]


def test_rates_over_the_last_interval():
    meter = QualityMeter()
    assert meter.sample(10.0, 0, _stats(100, 0, 10_000), 12.0) is None  # first sample: nothing to compare
    q = meter.sample(12.0, 50, _stats(290, 10, 135_000), 12.0)
    assert q.fps == pytest.approx(25.0)
    assert q.bitrate_kbps == pytest.approx(500.0)  # 125,000 bytes in 2 s
    assert q.loss_pct == pytest.approx(5.0)  # 10 lost of 200
    assert q.jitter_ms == pytest.approx(10.0)
    assert "25 fps" in q.summary() and "RTT 12 ms" in q.summary()


@pytest.mark.parametrize(
    ("quality", "fps", "loss", "advice"),
    [
        ("high", 25, 0.0, None),
        ("high", 12, 0.0, "medium"),
        ("medium", 25, 9.0, "low"),
        ("low", 10, 0.0, "lowest quality"),
    ],
)
def test_suggests_a_lower_quality_when_the_link_struggles(quality, fps, loss, advice):
    text = MediaQuality(fps=fps, loss_pct=loss).suggestion(quality)
    assert (text is None) if advice is None else (advice in text)

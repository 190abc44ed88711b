"""Client side of the direct-WebRTC transport (the local engine, and HeyGen's legacy transport).

The provider sends an SDP offer in ``streaming.new``; we answer, pass the answer to
``streaming.start``, and receive the avatar's video, audio and data-channel events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("avatar_ops.live")

FrameCallback = Callable[[av.frame.Frame], None]
EventCallback = Callable[[dict[str, Any]], None]
StateCallback = Callable[[str], None]

# aiortc's receiver holds audio for 4 packets of prefetch and video for none: decoded audio comes out this much
# later than the picture sent with it (bench_speech: av_offset_decoded_aiortc − av_offset_at_sender, 39–40 ms
# in two runs on 2026-12-04).
AUDIO_LAG_S = 0.04


def rtc_configuration(ice_servers: list[dict[str, Any]] | None) -> RTCConfiguration:
    """Only the provider's own ICE servers: an empty list means host candidates only (loopback/LAN),
    never a public STUN server that may be unreachable."""
    servers = []
    for server in ice_servers or []:
        urls = server.get("urls") or server.get("url")
        if urls:
            servers.append(
                RTCIceServer(urls=urls, username=server.get("username"), credential=server.get("credential"))
            )
    return RTCConfiguration(iceServers=servers)


class DirectConnection:
    """One peer connection to an avatar. Runs on the caller's asyncio loop."""

    def __init__(
        self,
        *,
        on_video: FrameCallback,
        on_audio: FrameCallback,
        on_event: EventCallback,
        on_state: StateCallback | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        upstream_audio: MediaStreamTrack | None = None,
        receive_media: bool = True,
    ) -> None:
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.audio_lag_s = AUDIO_LAG_S if receive_media else 0.0
        self._on_video = on_video
        self._on_audio = on_audio
        self._on_event = on_event
        self._on_state = on_state or (lambda state: None)
        self._upstream_audio = upstream_audio
        self._receive_media = receive_media
        self._readers: list[asyncio.Task] = []
        self.pc.on("track", self._track)
        self.pc.on("datachannel", self._datachannel)
        self.pc.on("connectionstatechange", self._state_changed)

    async def answer(self, offer: dict[str, str]) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer.get("type", "offer")))
        if not self._receive_media:
            # The media comes another way (the engine's encoded channel): decline it here, so the provider
            # sends (and encodes) nothing on this connection and nothing is decoded. Events still flow.
            for transceiver in self.pc.getTransceivers():
                transceiver.direction = "inactive"
        if self._upstream_audio is not None:
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "audio":
                    transceiver.sender.replaceTrack(self._upstream_audio)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def _track(self, track: MediaStreamTrack) -> None:
        if not self._receive_media:
            return  # declined: nothing arrives on it
        sink = self._on_video if track.kind == "video" else self._on_audio
        self._readers.append(asyncio.get_running_loop().create_task(self._read(track, sink)))

    @staticmethod
    async def _read(track: MediaStreamTrack, sink: FrameCallback) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.frame.Frame):  # a receiver decodes: never a Packet here
                    sink(frame)

    def _datachannel(self, channel: Any) -> None:
        @channel.on("message")
        def _message(message: str | bytes) -> None:
            try:
                event = json.loads(message)
            except (TypeError, ValueError):
                log.debug("ignoring a non-JSON data-channel message")
                return
            if isinstance(event, dict):
                self._on_event(event)

    async def _state_changed(self) -> None:
        self._on_state(self.pc.connectionState)

    @property
    def state(self) -> str:
        return self.pc.connectionState

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await self.pc.close()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

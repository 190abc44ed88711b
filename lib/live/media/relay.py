"""The relay between the page's media tracks and the browser's peer connection: nothing queued in between.

streamlit-webrtc wraps every source track in aiortc's ``MediaRelay`` twice (``relay.subscribe`` when the worker
starts, again in ``pc.addTrack``). A relay pumps its source on its own task, as fast as the source gives, into an
unbounded ``asyncio.Queue`` per consumer. When the peer connection's sender reads slower (an encoder on an
overloaded machine) or not at all (the tab is closed; the worker stops only when ICE fails, seconds later),
the queue grows without limit: 854×480 placeholder frames at 25 fps are 30 MB/s per tab (issue 13 §1).

Our tracks have one consumer each and bound themselves (packets: ``PacketQueue``; frames: made on demand, the
latest picture, paced by the source). ``SenderRelay`` hands such a track to the sender as it is, so the sender's
own pace pulls the media, nothing runs when nobody reads, and stopping the "relayed" track stops the track.
Every other track is relayed as aiortc does.
"""

from __future__ import annotations

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack


class SenderRelay(MediaRelay):
    def subscribe(self, track: MediaStreamTrack, buffered: bool = True) -> MediaStreamTrack:
        if getattr(track, "single_consumer", False):
            return track
        return super().subscribe(track, buffered)

"""The media link under a live session: transports (direct WebRTC, LiveKit), its loop, playout and quality."""

"""Live chat's one home: the controller, the live session it runs, the media under it, the status it shows."""

"""The local engine: a HeyGen-compatible streaming avatar server that runs on the CPU, offline."""

"""The tracing core: trace arrays, events, the emission path, ring buffers, output."""

"""The tracefs pseudo-filesystem: an in-process node tree and a thin FUSE adapter."""

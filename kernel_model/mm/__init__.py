"""Simulated memory and the slab allocator."""

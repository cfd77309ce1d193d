"""The RSS steering application: software Toeplitz steering and its eBPF program."""

"""The modelled kernel: memory, types, CPUs, net devices and skbs, tracepoints, kprobes, ring buffers."""

"""The eBPF instruction set and the engines that run it: interpreter, Python JIT, native JIT."""

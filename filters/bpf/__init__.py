"""eBPF: ISA, assembler/disassembler, verifier, interpreter, JIT, maps, helpers, ELF, compiler."""

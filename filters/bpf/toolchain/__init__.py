"""Object files and their tools: ELF and BTF readers, CO-RE, assembler, disassembler."""

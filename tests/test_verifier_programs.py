"""Real programs the verifier must accept within budget: the RSS steering program
(tools/examples/rss.bpf.c, nested loops over IPv6 extension headers and their options whose offsets
grow by unknown amounts, then a Toeplitz loop over the hash input) built by tracesim cc and by
clang.  The processed-instruction bound (deterministic, unlike time) catches pruning that stops
merging such paths: without it the program runs into the 1,000,000-insn limit."""
from __future__ import annotations

import pytest
from tracesim.filters.bpf.runtime.maps import create_map
from tracesim.filters.bpf.toolchain import elf
from tracesim.filters.bpf.verifier import ContextSpec, verify
from tracesim.tools.rss import ebpf_rss

from tests.conftest import need_tool

# Measured: 80,525 (clang -O2) and 107,757 (tracesim cc -O2) processed insns.
PROCESSED_BOUND = 250_000


@pytest.mark.parametrize("compiler", ["tracesim", "clang"])
def test_rss_program_verifies(compiler):
    if compiler == "clang":
        need_tool("clang", "clang")
    data, _ = ebpf_rss.build_object(compiler)
    obj = elf.load_object(data)
    spec = obj.program(ebpf_rss.PROGRAM_NAME)
    maps = [create_map(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags)
            for m in obj.maps]
    res = verify(spec.insns, prog_type="socket_filter", ctx=ContextSpec.sk_buff(), maps=maps)
    assert res.ok, res.error
    assert res.insn_processed < PROCESSED_BOUND

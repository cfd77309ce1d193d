"""The verifier's public API, log format and the ``tracesim check`` command."""
from __future__ import annotations

from types import SimpleNamespace

from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import ContextSpec, verify
from tracesim.tools.cli import main as cli


def test_accepts_and_summarises():
    res = verify(assemble("r0 = 0\nexit\n"))
    assert res.ok and res.error is None and res.insn_processed == 2
    assert res.log == ("processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 "
                       "peak_states 0 mark_read 0\n")


def test_complexity_limit_can_be_lowered():
    loop = assemble("r1 = 0\nloop:\nr1 += 1\nif r1 < 100000 goto loop\nr0 = 0\nexit\n")
    res = verify(loop, complexity_limit=1000)
    assert res.error == "BPF program is too large. Processed 1001 insn"
    assert res.log.splitlines()[-1].startswith("processed 1001 insns (limit 1000) ")
    assert verify(loop[:1] + assemble("r0 = 0\nexit\n"), complexity_limit=1000).ok


def test_rejection_log_names_the_instruction():
    res = verify(assemble("r0 = *(u64 *)(r1 + 0)\nr0 = *(u64 *)(r0 + 0)\nexit\n"))
    assert not res.ok
    lines = res.log.splitlines()
    assert lines[-2] == "R0 invalid mem access 'scalar'"
    assert lines[-3].startswith("1: (79) ")
    assert res.error == "R0 invalid mem access 'scalar'"


def test_level2_prints_states_like_the_kernel():
    res = verify(assemble("r0 = 0\nexit\n"), log_level=2)
    lines = res.log.splitlines()
    assert lines[:2] == ["func#0 @0", "0: R1=ctx() R10=fp0"]
    assert lines[2].startswith("0: (b7) r0 = 0") and lines[2].endswith("; R0=0")
    assert lines[2].index(";") == 38


def test_level2_scalar_ranges():
    res = verify(assemble("r2 = *(u8 *)(r1 + 0)\nr0 = 0\nexit\n"), log_level=2)
    assert "R2=scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))" in res.log


def test_privilege_changes_uninit_stack_rule():
    prog = assemble("r0 = *(u64 *)(r10 - 8)\nexit\n")
    assert verify(prog, prog_type="socket_filter", privileged=True).ok
    res = verify(prog, prog_type="socket_filter", privileged=False)
    assert res.error == "invalid read from stack off -8+0 size 8"


def test_strict_loops_option():
    prog = assemble("r0 = 0\nl:\nr0 += 1\nif r0 < 10 goto l\nexit\n")
    assert verify(prog).ok
    assert verify(prog, strict_loops=True).error == "back-edge from insn 2 to 1"


def test_context_specs():
    assert ContextSpec.pt_regs().size == 168
    tp = ContextSpec.tracepoint([("len", 8, 4)], 16)
    res = verify(assemble("r0 = *(u32 *)(r1 + 8)\nexit\n"), prog_type="tracepoint", ctx=tp)
    assert res.ok
    res = verify(assemble("r0 = *(u32 *)(r1 + 16)\nexit\n"), prog_type="tracepoint", ctx=tp)
    assert res.error == "invalid bpf_context access off=16 size=4"
    mem = ContextSpec.memory(4)
    assert verify(assemble("r0 = *(u32 *)(r1 + 0)\nexit\n"), "conformance", mem).ok


def test_map_objects_need_only_attributes():
    m = SimpleNamespace(map_type=2, key_size=4, value_size=8, max_entries=1, name="cfg")
    prog = assemble("ld_pseudo r1, 2, 0, 0\nr0 = *(u64 *)(r1 + 0)\nexit\n")
    assert verify(prog, maps=[m]).ok


def test_check_command(tmp_path, capsys):
    good = tmp_path / "good.s"
    good.write_text("r0 = 0\nexit\n")
    bad = tmp_path / "bad.s"
    bad.write_text("r0 = r5\nexit\n")
    assert cli(["check", str(good)]) == 0
    assert capsys.readouterr().out == "OK\n"
    assert cli(["check", str(bad), "--type", "socket"]) == 1
    out = capsys.readouterr().out
    assert "R5 !read_ok" in out and out.rstrip().splitlines()[-1].startswith("processed 1 insns")


def test_check_command_tracepoint_event(tmp_path, capsys):
    prog = tmp_path / "tp.s"
    prog.write_text("r0 = *(u64 *)(r1 + 8)\nexit\n")
    assert cli(["check", str(prog), "--type", "tracepoint:skb/kfree_skb"]) == 0
    assert capsys.readouterr().out == "OK\n"

"""The one helper table: the verifier, the program loader, ``bpf/bpf_helpers.h`` and the README
agree on every helper id 1..211, and the ring buffer helpers (131-134) run with the kernel's
semantics through the loader on both engines and through a mounted tree."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.compiler.driver import compile_source
from tracesim.filters.bpf.runtime import helper_table
from tracesim.filters.bpf.runtime.helper_table import TABLE, implementations
from tracesim.filters.bpf.runtime.helpers import register
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_RINGBUF, create_map
from tracesim.filters.bpf.runtime.program import ProgramError, load_program
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier import PROG_TYPES as VERIFIER_PROG_TYPES
from tracesim.filters.bpf.verifier import verify
from tracesim.filters.bpf.vm.isa import HELPER_NAMES

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "filters" / "bpf" / "include" / "bpf" / "bpf_helpers.h"
EXAMPLES = ROOT / "tools" / "examples"
PROG_TYPES = tuple(t for t in VERIFIER_PROG_TYPES if t != "conformance")
NOT_ALLOWED = re.compile(r"^program of this type cannot use helper (\S+)#(\d+)$")


def _call(hid: int) -> list:
    return assemble(f"call {hid}\nr0 = 0\nexit\n")


def _verifier_accepts(hid: int, prog_type: str, privileged: bool = True) -> bool:
    """Whether the verifier knows ``hid`` for ``prog_type``: it may still refuse the (absent)
    arguments, but not the helper itself."""
    res = verify(_call(hid), prog_type=prog_type, privileged=privileged)
    if res.ok:
        return True
    m = NOT_ALLOWED.match(res.error or "")
    if m:
        assert m.groups() == (f"bpf_{HELPER_NAMES[hid]}", str(hid))     # the kernel's name
        return False
    return True


def _loader_accepts(hid: int) -> bool:
    try:
        load_program(_call(hid))
    except ProgramError as e:
        assert str(e).endswith(f"unknown helper {hid}")
        return False
    return True


def _declared() -> dict[int, str]:
    decls = re.findall(r"^static .*\(\*(bpf_\w+)\)\(.*\) = \(void \*\) (\d+);$",
                       HEADER.read_text(), re.M)
    return {int(hid): name for name, hid in decls}


def test_every_helper_id_agrees_across_verifier_loader_and_header():
    declared = _declared()
    for hid in range(1, 212):
        accepted = {t for t in PROG_TYPES if _verifier_accepts(hid, t)}
        implemented = _loader_accepts(hid)
        assert bool(accepted) == implemented == (hid in declared) == (hid in TABLE), hid
        if hid in TABLE:
            spec = TABLE[hid]
            assert accepted == spec.prog_types | spec.privileged_types, hid
            assert declared[hid] == spec.name == f"bpf_{HELPER_NAMES[hid]}"
    assert verify(_call(212)).error == "invalid func unknown#212"


def test_ringbuf_helpers_are_implemented_accepted_and_declared():
    declared = _declared()
    for hid in (130, 131, 132, 133, 134):
        assert hid in TABLE and hid in declared and _loader_accepts(hid)
        assert all(_verifier_accepts(hid, t) for t in PROG_TYPES)


def test_privileged_only_helper_follows_the_table():
    # bpf_base_func_proto: trace_printk for socket filters only with CAP_PERFMON
    assert _verifier_accepts(6, "socket_filter", privileged=True)
    assert not _verifier_accepts(6, "socket_filter", privileged=False)
    assert _verifier_accepts(6, "kprobe", privileged=False)


def test_header_is_generated_from_the_table():
    assert helper_table.render_header() == HEADER.read_text()
    out = subprocess.run([sys.executable, "-m", "tracesim.filters.bpf.runtime.helper_table", "--header"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.encode() == HEADER.read_bytes()


def test_readme_lists_the_helpers_of_the_table():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- helpers -->(.*?)<!-- /helpers -->", text, re.S)
    assert m, "README.md has no <!-- helpers --> list"
    assert " ".join(m.group(1).split()) == helper_table.render_doc_list()


def test_gpl_only_comes_from_the_table():
    gpl = {hid for hid, spec in TABLE.items() if spec.gpl_only}
    assert gpl == {4, 6, 25, 27, 35, 45, 67, 112, 113, 114, 115, 158, 177}
    with pytest.raises(loader.LoadError, match="GPL-restricted") as info:
        loader.check_license(assemble("call 113\nr0 = 0\nexit\n"), "Proprietary")
    assert info.value.log.startswith("0: call bpf_probe_read_kernel#113\n")
    loader.check_license(assemble("call 1\nr0 = 0\nexit\n"), "Proprietary")


def test_a_caller_passes_its_own_helper_table():
    """helpers= replaces implementations for one program; the global table stays as it was."""
    own = implementations()
    register("get_prandom_u32", lambda vm, *a: 4, table=own)
    insns = assemble("call 7\nexit\n")
    for engine in loader.ENGINES:
        mine = loader.load(insns, prog_type="kprobe", helpers=own, engine=engine)
        assert mine.runner.run(bytes(168)).value == 4
        plain = loader.load(insns, prog_type="kprobe", engine=engine)
        assert plain.program.helpers[7] is TABLE[7].impl
    with pytest.raises(TypeError):
        helper_table.TABLE[7] = TABLE[8]                        # read only


# ---------------------------------------------------------------- ring buffer helpers

RINGBUF_C = r"""
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

SEC("kprobe/x")
int produce(struct pt_regs *ctx)
{
	__u64 *slot = bpf_ringbuf_reserve(&rb, 16, 0);

	if (!slot)
		return 1;
	slot[0] = ctx->di;
	slot[1] = bpf_ringbuf_query(&rb, 0);        /* BPF_RB_AVAIL_DATA, this record included */
	if (ctx->di & 1)
		bpf_ringbuf_discard(slot, 0);
	else
		bpf_ringbuf_submit(slot, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def ringbuf_object() -> bytes:
    return compile_source(RINGBUF_C, "rb.c", [EXAMPLES]).elf


def _regs(di: int) -> bytes:
    regs = bytearray(168)
    regs[112:120] = di.to_bytes(8, "little")       # pt_regs.di
    return bytes(regs)


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_reserve_submit_discard_query_run(ringbuf_object, engine):
    obj = loader.open_object(ringbuf_object)
    loaded = loader.load_object_program(obj, obj.program("produce"), engine=engine)
    rb = loaded.maps[0]
    assert rb.map_type == MAP_TYPE_RINGBUF
    for di in (10, 11, 12):
        assert loaded.runner.run(_regs(di)).value == 0
    records = rb.consume()
    values = [(int.from_bytes(r[:8], "little"), int.from_bytes(r[8:], "little")) for r in records]
    assert values == [(10, 24), (12, 72)]              # 11 was discarded; 24-byte records
    assert rb.query(0) == 0 and rb.query(3) == rb.query(2) == 72 and rb.query(1) == 4096


def test_reserve_fails_when_full_and_with_flags():
    rb = create_map("rb", MAP_TYPE_RINGBUF, 0, 0, 4096)
    held = [rb.reserve(1200) for _ in range(4)]
    assert None not in held[:3] and held[3] is None          # 3 x 1208 fit, a 4th does not
    rb.commit(held[1])
    assert rb.consume() == [] and rb.query(0) == 3624       # the first record is still busy
    rb.commit(held[0], discard=True)
    assert rb.consume() == [bytes(1200)]                    # discarded skipped, busy stops
    text = "ld_pseudo r1, 1, 0, 0\nr2 = 8\nr3 = 1\ncall 131\nr0 = 0\nexit\n"
    program = loader.load(assemble(text), prog_type="kprobe", maps=[rb], engine="interp",
                          verify=False)
    assert program.runner.run(bytes(168)).value == 0         # flags != 0: NULL, nothing reserved
    assert len(rb.ring) == 1


def test_verifier_wants_every_reservation_released():
    rb = create_map("rb", MAP_TYPE_RINGBUF, 0, 0, 4096)
    leak = assemble("ld_pseudo r1, 1, 0, 0\nr2 = 8\nr3 = 0\ncall 131\nr0 = 0\nexit\n")
    res = verify(leak, maps=[rb])
    assert res.error == "Unreleased reference id=2 alloc_insn=4"
    one_path = assemble("ld_pseudo r1, 1, 0, 0\nr2 = 8\nr3 = 0\ncall 131\n"
                        "if r0 == 0 goto out\nr6 = *(u64 *)(r10 - 8)\n"
                        "if r6 == 0 goto out\nr1 = r0\nr2 = 0\ncall 132\n"
                        "out:\nr0 = 0\nexit\n")
    assert verify(one_path, maps=[rb]).error.startswith("Unreleased reference id=2")
    size = assemble("ld_pseudo r1, 1, 0, 0\nr2 = *(u64 *)(r10 - 8)\nr3 = 0\ncall 131\n"
                    "r0 = 0\nexit\n")
    assert "is not a known constant" in verify(size, maps=[rb]).error


def test_ringbuf_records_through_a_mounted_tree(ringbuf_object):
    from tracesim.tracefs.system import System
    system = System.boot(cpus=1, seed=1, clock="virtual")
    try:
        tree = system.tree
        tree.echo("/kprobe_events", "p:rbprobe sk_skb_reason_drop")
        handle = tree.open("/events/kprobes/rbprobe/filter", os.O_WRONLY | os.O_TRUNC)
        handle.write(ringbuf_object, 0)
        handle.flush()
        handle.release()
        assert "produce (kprobe/x)" in tree.read_text("/events/kprobes/rbprobe/filter")
        tree.echo("/events/kprobes/rbprobe/enable", "1")
        from tracesim.kernel_model.net import core as net
        kernel = system.kernel
        device = kernel.net.device("eth0")
        with kernel.lock:
            for i in range(3):
                kernel.net.receive(device, net.packet_frame(device, "udp", 60, seq=i, dport=9999))
        status, dump = system.control(["map", "dump", "rb"])
        assert status == 0
        records = re.findall(r"record \d+: (.*)", dump)
        # di is the skb's sk (even, or 0 with no socket): every record submitted
        assert len(records) == 3 and dump.endswith("Found 3 records\n"), dump
    finally:
        system.shutdown()

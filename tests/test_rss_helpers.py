"""bpf_skb_load_bytes (26) and bpf_skb_load_bytes_relative (68) as a program sees them: the bytes
copied on success, and on every failure -EFAULT with the destination zero-filled."""
from __future__ import annotations

import pytest
from tracesim.filters.bpf.runtime import helpers_skb
from tracesim.filters.bpf.runtime.program import load_program
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.vm.interp import Interpreter
from tracesim.kernel_model.net.tun import TunSkb

EFAULT = -14
MARKER = 0x11223344
DATA = bytes(range(60))


def program(helper: int, offset: int, length: int, start: int | None):
    """Load ``length`` (<= 8) bytes into a stack slot pre-set to MARKER; return
    (helper's return value << 32) | the slot's low 32 bits."""
    args = f"r5 = {start}\n" if start is not None else ""
    text = f"""
        r6 = r1
        r1 = {MARKER}
        *(u64 *)(r10 - 8) = r1
        r1 = r6
        r2 = {offset} ll
        r3 = r10
        r3 += -8
        r4 = {length}
        {args}
        call {helper}
        r0 <<= 32
        r1 = *(u32 *)(r10 - 8)
        r0 |= r1
        exit
    """
    return load_program(assemble(text), ctx_size=helpers_skb.SK_BUFF_CTX_SIZE)


def engines():
    yield "interp", lambda p: Interpreter(p)
    try:
        from tracesim.filters.bpf.vm.jit import compile_program
    except ImportError:
        return
    yield "jit", compile_program


def run(helper, offset, length, start=None, mac_header=0):
    skb = TunSkb(DATA, network_header=18, mac_header=mac_header)
    ctx = helpers_skb.sk_buff_context(skb)
    results = set()
    for _, make in engines():
        value = make(program(helper, offset, length, start))(ctx, env=skb)
        ret = (value >> 32) & 0xFFFFFFFF
        results.add((ret - (1 << 32) if ret >> 31 else ret, value & 0xFFFFFFFF))
    assert len(results) == 1, results
    return results.pop()


def le32(b: bytes) -> int:
    return int.from_bytes(b[:4].ljust(4, b"\0"), "little")


@pytest.mark.parametrize("offset,length,start,expect_ok,source", [
    (12, 2, 0, True, 12),          # EtherType from the MAC header
    (0, 4, 1, True, 18),           # NET start = network header
    (38, 4, 1, True, 56),          # ends exactly at the tail
    (39, 4, 1, False, None),       # one byte past the tail
    (0x10000, 1, 1, False, None),  # offset > 0xffff
    (0, 4, 2, False, None),        # unknown start header
    (0xFFFFFFFF, 4, 0, False, None),
])
def test_load_bytes_relative(offset, length, start, expect_ok, source):
    ret, word = run(68, offset, length, start)
    if expect_ok:
        assert ret == 0
        expected = le32(DATA[source:source + length]) | (MARKER & ~((1 << (8 * length)) - 1))
        assert word == expected
    else:
        assert ret == EFAULT
        assert word == MARKER & ~((1 << (8 * length)) - 1)     # the `length` bytes zero-filled


def test_mac_start_needs_the_mac_header():
    assert run(68, 0, 4, 0, mac_header=None) == (EFAULT, 0)
    assert run(68, 0, 4, 1, mac_header=None) == (0, le32(DATA[18:22]))


@pytest.mark.parametrize("offset,length,ok", [(0, 4, True), (56, 4, True), (57, 4, False),
                                              (0x80000000, 4, False), (60, 1, False)])
def test_load_bytes_from_data(offset, length, ok):
    ret, word = run(26, offset, length)
    if ok:
        assert (ret, word) == (0, le32(DATA[offset:offset + length]))
    else:
        assert ret == EFAULT and word == MARKER & ~((1 << (8 * length)) - 1)


def test_sk_buff_context_layout():
    skb = TunSkb(DATA, network_header=14)
    ctx = helpers_skb.sk_buff_context(skb, protocol=0x0800, queue_mapping=3, ifindex=7,
                                      vlan_tci=100, vlan_proto=0x8100)
    assert len(ctx) == 192
    def field(name):
        return int.from_bytes(ctx[helpers_skb.SK_BUFF_FIELDS[name]:][:4], "little")
    assert field("len") == 60 and field("queue_mapping") == 3 and field("ifindex") == 7
    assert field("protocol") == 0x0008                       # __be16 in a u32, as the kernel
    assert (field("vlan_present"), field("vlan_tci"), field("vlan_proto")) == (1, 100, 0x0081)

"""Property: for random packets and configurations the steering program (interpreter and JIT) and
the software fallback return the same value — the fallback is the same algorithm, quirks included."""
from __future__ import annotations

import functools

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tracesim.kernel_model.net import packets as P  # noqa: E402
from tracesim.tools.rss import ebpf_rss  # noqa: E402
from tracesim.tools.rss import rss_software as S  # noqa: E402
from tracesim.tools.rss.rss_software import RssConfig  # noqa: E402

from tests.conftest import FUZZ_LONG, need_tool  # noqa: E402

EXT_PROTOS = (0, 43, 44, 58, 59, 60, 135)


@functools.cache
def loaders() -> tuple:
    """(name, loader): the software path, and the program on each engine available, built by
    clang and (when it can build it) by tracesim cc."""
    objects = {"clang": ebpf_rss.build_object("clang")[0]}
    try:
        objects["tcc"] = ebpf_rss.build_object("tracesim")[0]
    except ebpf_rss.RssLoadError:
        pass
    out = [("software", ebpf_rss.EbpfRss())]
    engines = ["interp"]
    try:
        import tracesim.filters.bpf.vm.jit  # noqa: F401
        engines.append("jit")
    except ImportError:
        pass
    for compiler, data in objects.items():
        for engine in engines:
            rss = ebpf_rss.EbpfRss()
            assert rss.load(data, engine=engine, verify=False), rss.fallback_reason
            out.append((f"{engine}-{compiler}", rss))
    return tuple(out)


addr4 = st.binary(min_size=4, max_size=4)
addr6 = st.binary(min_size=16, max_size=16)
port = st.integers(0, 0xFFFF)


@st.composite
def l4(draw, v6: bool):
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "raw"]))
    payload = draw(st.binary(max_size=24))
    if kind == "raw":
        return draw(st.integers(0, 255)), payload
    return P.l4_segment(kind, draw(port), draw(port), payload, v6)


@st.composite
def ipv6_ext(draw):
    kind = draw(st.sampled_from(["hbh", "rt2", "frag", "hao", "dstopts", "raw"]))
    if kind == "hbh":
        return P.hop_by_hop()
    if kind == "rt2":
        return P.routing_type2(draw(addr6), draw(st.integers(0, 2)))
    if kind == "frag":
        return P.fragment_header(draw(st.integers(0, 100)) * 8, draw(st.booleans()))
    if kind == "hao":
        return P.home_address_option(draw(addr6))
    if kind == "dstopts":
        opts = draw(st.lists(st.tuples(st.sampled_from([0, 1, 5, 201, 7]), st.binary(max_size=18)),
                             max_size=4))
        return P.destination_options(b"".join(P.ipv6_tlv(k, d) for k, d in opts))
    return P.ExtHeader(draw(st.sampled_from(EXT_PROTOS)), draw(st.binary(max_size=30)))


@st.composite
def frames(draw):
    kind = draw(st.sampled_from(["v4", "v4", "v6", "v6", "arp", "other"]))
    tags = draw(st.lists(st.one_of(st.integers(0, 0xFFFF),
                                   st.tuples(st.sampled_from([0x8100, 0x88A8, 0x0800, 0x86DD]),
                                             st.integers(0, 0xFFFF))), max_size=2))
    if kind == "v4":
        proto, seg = draw(l4(False))
        options = draw(st.binary(max_size=40))
        body = P.ipv4(draw(addr4), draw(addr4), proto, seg, df=draw(st.booleans()),
                      mf=draw(st.booleans()), frag_offset=draw(st.sampled_from([0, 0, 8, 1480])),
                      options=options[:len(options) // 4 * 4])
        ethertype = P.ETH_P_IP
    elif kind == "v6":
        proto, seg = draw(l4(True))
        ext = draw(st.lists(ipv6_ext(), max_size=4))
        body = P.ipv6(draw(addr6), draw(addr6), proto, seg, ext=ext)
        ethertype = P.ETH_P_IPV6
    elif kind == "arp":
        body = P.arp(1, P.DEFAULT_SRC_MAC, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2")
        ethertype = P.ETH_P_ARP
    else:
        body, ethertype = draw(st.binary(max_size=60)), draw(st.integers(0, 0xFFFF))
    frame = bytearray(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, ethertype, body, tags))
    for _ in range(draw(st.integers(0, 3))):          # a few corrupted bytes
        if frame:
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        frame = frame[:draw(st.integers(0, len(frame)))]
    return bytes(frame)


@st.composite
def configs(draw):
    config = RssConfig(redirect=draw(st.sampled_from([1, 1, 1, 0, 0x80])),
                       populate_hash=draw(st.integers(0, 1)),
                       hash_types=draw(st.one_of(st.integers(0, 0x1FF), st.just(S.HASH_ALL),
                                                 st.integers(0, 0xFFFFFFFF))),
                       indirections_len=draw(st.sampled_from([0, 1, 2, 4, 8, 64, 100, 128])),
                       default_queue=draw(st.integers(0, 0xFFFF)))
    table = draw(st.lists(st.integers(0, 0xFFFF), min_size=128, max_size=128))
    key = draw(st.one_of(st.just(S.STANDARD_KEY), st.binary(min_size=40, max_size=40)))
    return config, table, key


def check_same_queue(frame: bytes, config, table, key) -> None:
    results = {}
    for name, rss in loaders():
        rss.set_all(config, table, key)
        results[name] = rss.steer(frame)
    assert len(set(results.values())) == 1, (results, frame.hex())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), configs())
def test_program_and_software_fallback_agree(frame, config):
    need_tool("clang", "clang")
    check_same_queue(frame, *config)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: set TRACESIM_FUZZ=long")
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), configs())
def test_program_and_software_fallback_agree_long(frame, config):
    need_tool("clang", "clang")
    check_same_queue(frame, *config)

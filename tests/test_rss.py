"""RSS steering end to end: packet -> program (interpreter, JIT) or software fallback -> queue.

Every published Toeplitz vector goes through each path as ICMP (address hash), TCP and UDP (address
+ port hash) over IPv4 and IPv6, untagged, VLAN and QinQ; then the parsing edge cases of the
program (fragments, DF, Mobile IPv6 _EX addresses, other EtherTypes, truncation, redirect 0).
"""
from __future__ import annotations

import json
import struct

import pytest
from tracesim.kernel_model.net import packets as P
from tracesim.kernel_model.net.tun import TunDevice
from tracesim.tools.rss import ebpf_rss
from tracesim.tools.rss import rss_software as S
from tracesim.tools.rss.rss_software import RssConfig

from tests.conftest import SHARED, need_shared, need_tool

# A permutation, so a wrong index cannot give the right queue by accident.
TABLE = [(i * 37 + 11) % 128 for i in range(128)]
DEFAULT_QUEUE = 0x4242
# The software fallback, and the program on each engine built by clang and by tracesim cc.
PATHS = ("software", "interp", "jit", "interp-tcc", "jit-tcc")


@pytest.fixture(scope="session")
def rss_object() -> bytes:
    need_tool("clang", "clang")
    data, _ = ebpf_rss.build_object("clang")
    return data


@pytest.fixture(scope="session")
def tcc_object() -> bytes:
    return ebpf_rss.build_object("tracesim")[0]


def make_loader(path: str, obj: bytes, tcc: bytes | None = None) -> ebpf_rss.EbpfRss:
    rss = ebpf_rss.EbpfRss()
    if path == "software":
        assert rss.active == "software"
        return rss
    engine, _, compiler = path.partition("-")
    if compiler == "tcc":
        obj = tcc
    assert rss.load(obj, engine=engine, verify=False), rss.fallback_reason
    assert rss.active == "ebpf"
    return rss


@pytest.fixture(params=PATHS)
def rss(request, rss_object, tcc_object) -> ebpf_rss.EbpfRss:
    loader = make_loader(request.param, rss_object, tcc_object)
    loader.set_all(RssConfig(default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
    return loader


def vectors() -> dict:
    shared = need_shared()
    return json.loads((shared / "reference" / "rss" / "toeplitz_vectors.json").read_text())


def vector_cases():
    """(id, src, dst, sport, dport, hash_ip, hash_tcp) for all 8 tuples = 16 published hashes."""
    path = SHARED / "reference" / "rss" / "toeplitz_vectors.json"
    if not path.is_file():
        return []           # ../shared is absent: the test is reported as skipped (empty set)
    data = json.loads(path.read_text())
    out = []
    for fam in ("ipv4", "ipv6"):
        for i, v in enumerate(data[fam], 1):
            out.append(pytest.param(v["src"], v["dst"], v["sport"], v["dport"],
                                    int(v["hash_ip"], 16), int(v["hash_tcp"], 16),
                                    id=f"{fam[-2:]}-{i}"))
    return out


def frame(src, dst, proto="tcp", sport=0, dport=0, **kw) -> bytes:
    return P.flow_frame(P.Flow(src, dst, proto, sport, dport, **kw))


# ---------------------------------------------------------------- the published vectors

def test_toeplitz_matches_all_sixteen_published_hashes():
    data = vectors()
    key = bytes.fromhex(data["key_hex"])
    assert key == S.STANDARD_KEY
    checked = 0
    for fam in ("ipv4", "ipv6"):
        for v in data[fam]:
            addrs = P.addr_bytes(v["src"]) + P.addr_bytes(v["dst"])
            ports = struct.pack("!HH", v["sport"], v["dport"])
            assert S.toeplitz_hash(key, addrs) == int(v["hash_ip"], 16)
            assert S.toeplitz_hash(key, addrs + ports) == int(v["hash_tcp"], 16)
            checked += 2
    assert checked == 16


@pytest.mark.parametrize("src,dst,sport,dport,hash_ip,hash_tcp", vector_cases())
@pytest.mark.parametrize("vlans", [(), (100,), (10, 20)], ids=["untagged", "vlan", "qinq"])
def test_vectors_end_to_end(rss, src, dst, sport, dport, hash_ip, hash_tcp, vlans):
    for proto, expected in (("icmp", hash_ip), ("tcp", hash_tcp), ("udp", hash_tcp)):
        got = rss.steer(frame(src, dst, proto, sport, dport, vlans=vlans))
        assert got == TABLE[expected % 128], (proto, rss.status_line())


# Queue per vector with table[i] = i % 4 on a 4-queue TUN device (the fact sheet's "4q" columns).
FOUR_QUEUES = {"v4-1": (2, 0), "v4-2": (2, 2), "v4-3": (2, 2), "v4-4": (2, 3), "v4-5": (1, 2),
               "v6-1": (1, 1), "v6-2": (0, 3), "v6-3": (1, 3)}


@pytest.mark.parametrize("path", PATHS)
def test_four_queue_tun_delivery(path, rss_object, tcc_object):
    loader = make_loader(path, rss_object, tcc_object)
    loader.set_all(RssConfig(), [i % 4 for i in range(128)], S.STANDARD_KEY)
    tun = TunDevice("tun0", numqueues=4)
    loader.attach(tun)
    data = vectors()
    expected_counts = [0] * 4
    for fam in ("ipv4", "ipv6"):
        for i, v in enumerate(data[fam], 1):
            q_ip, q_l4 = FOUR_QUEUES[f"v{fam[-1]}-{i}"]
            assert loader.deliver(frame(v["src"], v["dst"], "icmp", 1, 1)) == q_ip
            assert loader.deliver(frame(v["src"], v["dst"], "tcp", v["sport"], v["dport"])) == q_l4
            expected_counts[q_ip] += 1
            expected_counts[q_l4] += 1
    assert loader.queue_packets == expected_counts
    if path != "software":
        assert tun.queue_packets == expected_counts      # the program chose the device's queues


# ---------------------------------------------------------------- parsing edge cases

V4 = ("66.9.149.187", "161.142.100.80", 2794, 1766, 0x323E8FC2, 0x51CCC178)
V6 = ("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x2CC18CD5, 0x40207D3D)


def q(h: int) -> int:
    return TABLE[h % 128]


def test_df_only_ipv4_hashes_ports(rss):
    src, dst, sp, dp, h_ip, h_tcp = V4
    assert rss.steer(frame(src, dst, "tcp", sp, dp, df=True)) == q(h_tcp)
    assert rss.steer(frame(src, dst, "udp", sp, dp, df=True)) == q(h_tcp)


def test_real_ipv4_fragments_hash_addresses_only(rss):
    src, dst, sp, dp, h_ip, _ = V4
    packet = P.ipv4(src, dst, P.IPPROTO_TCP, P.tcp(sp, dp, bytes(3000)))
    frags = P.ipv4_fragments(packet, 1500)
    assert len(frags) == 3
    for f in frags:
        assert rss.steer(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IP, f)) == q(h_ip)
    rss.set_all(RssConfig(hash_types=S.HASH_TCPV4 | S.HASH_UDPV4, default_queue=DEFAULT_QUEUE),
                TABLE, S.STANDARD_KEY)
    first = P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IP, frags[0])
    assert rss.steer(first) == DEFAULT_QUEUE          # no IPv4 bit: a fragment gets no hash


def test_ipv6_fragment_header_hashes_addresses_only(rss):
    src, dst, sp, dp, h_ip, _ = V6
    for more in (True, False):
        f = frame(src, dst, "udp", sp, dp, ext=(P.fragment_header(0 if more else 8, more=more),))
        assert rss.steer(f) == q(h_ip)


CARE_OF_SRC = "2001:db8:ffff::1"
CARE_OF_DST = "2001:db8:ffff::2"


def plain_hash(src: str, dst: str, ports: bytes = b"") -> int:
    return S.toeplitz_hash(S.STANDARD_KEY, P.addr_bytes(src) + P.addr_bytes(dst) + ports)


@pytest.mark.parametrize("proto,ex_bit", [("tcp", S.HASH_TCP_EX), ("udp", S.HASH_UDP_EX),
                                          ("icmp", S.HASH_IP_EX)])
def test_ipv6_home_address_option_and_type2_routing(rss, proto, ex_bit):
    """Outer addresses are care-of addresses; the home addresses are a published vector's, so
    with the _EX type on the hash is the published one, and without it the outer one."""
    src, dst, sp, dp, h_ip, h_tcp = V6
    published = h_ip if proto == "icmp" else h_tcp
    ports = b"" if proto == "icmp" else struct.pack("!HH", sp, dp)
    ext = (P.routing_type2(dst), P.home_address_option(src))
    f = frame(CARE_OF_SRC, CARE_OF_DST, proto, sp, dp, ext=ext)
    base = S.HASH_IPV6 | S.HASH_TCPV6 | S.HASH_UDPV6
    for types, expected in ((base, plain_hash(CARE_OF_SRC, CARE_OF_DST, ports)),
                            (base | ex_bit, published)):
        rss.set_all(RssConfig(hash_types=types, default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
        assert rss.steer(f) == q(expected), hex(types)
    # only one of the two: the home address replaces the source, the routing header the destination
    rss.set_all(RssConfig(hash_types=base | ex_bit, default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
    only_hao = frame(CARE_OF_SRC, dst, proto, sp, dp, ext=(P.home_address_option(src),))
    only_rt2 = frame(src, CARE_OF_DST, proto, sp, dp, ext=(P.routing_type2(dst),))
    assert rss.steer(only_hao) == q(published)
    assert rss.steer(only_rt2) == q(published)


def test_ex_bits_alone_enable_nothing(rss):
    src, dst, sp, dp, _, _ = V6
    rss.set_all(RssConfig(hash_types=S.HASH_IP_EX | S.HASH_TCP_EX | S.HASH_UDP_EX,
                          default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
    f = frame(CARE_OF_SRC, dst, "tcp", sp, dp, ext=(P.home_address_option(src),))
    assert rss.steer(f) == DEFAULT_QUEUE


def test_hash_type_precedence(rss):
    src, dst, sp, dp, h_ip, h_tcp = V4
    tcp = frame(src, dst, "tcp", sp, dp)
    for types, expected in ((S.HASH_IPV4, q(h_ip)), (S.HASH_UDPV4, DEFAULT_QUEUE),
                            (S.HASH_TCPV4, q(h_tcp)), (S.HASH_IPV4 | S.HASH_UDPV4, q(h_ip)),
                            (S.HASH_IPV6 | S.HASH_TCPV6, DEFAULT_QUEUE)):
        rss.set_all(RssConfig(hash_types=types, default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
        assert rss.steer(tcp) == expected, hex(types)


@pytest.mark.parametrize("ethertype,payload", [
    (P.ETH_P_ARP, P.arp(1, P.DEFAULT_SRC_MAC, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2")),
    (0x88CC, bytes(46)),            # LLDP
    (0x8847, bytes(46)),            # MPLS
    (0x0000, bytes(46)),
])
def test_other_ethertypes_go_to_the_default_queue(rss, ethertype, payload):
    assert rss.steer(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, ethertype, payload)) == DEFAULT_QUEUE
    tagged = P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, ethertype, payload, vlans=(7,))
    assert rss.steer(tagged) == DEFAULT_QUEUE


@pytest.mark.parametrize("flow", [
    P.Flow(V4[0], V4[1], "tcp", V4[2], V4[3], vlans=(10, 20)),
    P.Flow(V6[0], V6[1], "udp", V6[2], V6[3], ext=(P.hop_by_hop(), P.home_address_option("2001:db8::5"))),
])
def test_truncated_packets_go_to_the_default_queue_without_fault(rss, flow):
    full = P.flow_frame(flow)
    header_end = P.parse(full).l4_offset + (20 if flow.proto == "tcp" else 8)
    for n in range(header_end):
        assert rss.steer(full[:n]) == DEFAULT_QUEUE, n
    assert rss.steer(full) != DEFAULT_QUEUE


def test_redirect_zero_always_gives_the_default_queue(rss):
    rss.set_all(RssConfig(redirect=0, default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
    for f in (frame(*V4[:2], "tcp", 1, 2), frame(*V6[:2], "udp", 3, 4), b""):
        assert rss.steer(f) == DEFAULT_QUEUE


def test_short_tables_and_modulus(rss):
    src, dst, sp, dp, _, h_tcp = V4
    rss.set_all(RssConfig(indirections_len=8, default_queue=DEFAULT_QUEUE), TABLE, S.STANDARD_KEY)
    assert rss.steer(frame(src, dst, "tcp", sp, dp)) == TABLE[h_tcp % 8]
    assert not rss.set_all(RssConfig(indirections_len=129), TABLE + [0], S.STANDARD_KEY)


def test_unconfigured_program_returns_queue_zero(rss_object):
    for path in ("software", "interp"):
        loader = make_loader(path, rss_object)
        assert loader.steer(frame(*V4[:2], "tcp", 1, 2)) == 0


# ---------------------------------------------------------------- the loader and the device

def test_loader_falls_back_to_software_and_says_so(rss_object):
    rss = ebpf_rss.EbpfRss()
    assert not rss.is_loaded() and rss.active == "software"
    assert not rss.load(b"not an ELF object", engine="interp")
    assert rss.active == "software" and "fallback" in rss.status_line()
    rss.set_all(RssConfig(), TABLE, S.STANDARD_KEY)
    src, dst, sp, dp, _, h_tcp = V4
    assert rss.steer(frame(src, dst, "tcp", sp, dp)) == q(h_tcp)
    assert rss.load(rss_object, engine="interp", verify=False)
    assert rss.is_loaded() and rss.active == "ebpf" and "eBPF" in rss.status_line()
    assert rss.steer(frame(src, dst, "tcp", sp, dp)) == q(h_tcp)   # configuration survives
    rss.unload()
    assert not rss.is_loaded() and rss.active == "software"


def test_loader_rejects_objects_without_the_maps(tmp_path):
    need_tool("clang", "clang")
    src = tmp_path / "other.bpf.c"
    src.write_text('#include <uapi/linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'SEC("socket") int tun_rss_steering_prog(struct __sk_buff *skb) { return 1; }\n'
                   'char _license[] SEC("license") = "GPL";\n')
    data, _ = ebpf_rss.build_object("clang", src)
    rss = ebpf_rss.EbpfRss()
    assert not rss.load(data, engine="interp", verify=False)
    assert "tap_rss_map_configurations" in rss.fallback_reason


def test_tun_rejects_non_socket_filters_and_applies_u16_modulo(rss_object):
    class Kprobe:
        prog_type = "kprobe"

        def run(self, ctx, env):
            return 0

    class ReturnsMinusOne:
        prog_type = "socket_filter"

        def run(self, ctx, env):
            return -1 & 0xFFFFFFFFFFFFFFFF

    tun = TunDevice("tun0", numqueues=4)
    assert tun.set_steering_ebpf(Kprobe()) == -22
    assert tun.set_steering_ebpf(ReturnsMinusOne()) == 0
    f = frame(*V4[:2], "udp", 1, 2)
    for n, expected in ((4, 3), (8, 7), (3, 0)):       # 0xffff % numqueues
        tun = TunDevice("tun0", numqueues=n, steering_prog=ReturnsMinusOne())
        assert tun.xmit(f).queue_mapping == expected


def test_automq_default_selection_is_symmetric_and_learns_flows():
    tun = TunDevice("tun0", numqueues=4)
    seen = set()
    for port in range(200):
        there = frame("10.0.0.1", "10.0.0.2", "tcp", 1000 + port, 80)
        back = frame("10.0.0.2", "10.0.0.1", "tcp", 80, 1000 + port)
        q1, q2 = tun.xmit(there).queue_mapping, tun.xmit(back).queue_mapping
        assert q1 == q2
        seen.add(q1)
    assert seen == {0, 1, 2, 3}
    f = frame("10.9.9.9", "10.0.0.2", "udp", 5, 6)
    learned = (tun.xmit(f).queue_mapping + 1) % 4
    tun.write(learned, frame("10.0.0.2", "10.9.9.9", "udp", 6, 5))   # the guest answered on it
    assert tun.xmit(f).queue_mapping == learned
    assert sum(tun.queue_packets) == 402


def test_loader_self_test_refuses_a_wrong_program(tmp_path):
    """An object with the right maps whose program does not steer like the algorithm (as a
    miscompiled one would) is refused: RSS stays in software and says why."""
    need_tool("clang", "clang")
    source = ebpf_rss.SOURCE.read_text()
    body_start = source.index("SEC(\"socket\")")
    wrong = source[:body_start] + ('SEC("socket") int tun_rss_steering_prog(struct __sk_buff *skb)\n'
                                   '{ return 1; }\nchar _license[] SEC("license") = "GPL v2";\n')
    src = tmp_path / "wrong.bpf.c"
    src.write_text(wrong)
    data, _ = ebpf_rss.build_object("clang", src)
    rss = ebpf_rss.EbpfRss()
    assert not rss.load(data, engine="interp", verify=False)
    assert rss.active == "software" and "self-test failed" in rss.status_line()


def test_program_passes_the_verifier(rss_object):
    rss = ebpf_rss.EbpfRss()
    assert rss.load(rss_object, engine="interp", verify=True), rss.fallback_reason

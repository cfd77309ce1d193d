"""kernel_model.net.packets: frames built by the builder parse back to what was asked, checksums hold,
fragments reassemble, and the parser never raises on cut-off frames."""
from __future__ import annotations

import struct

import pytest
from tracesim.kernel_model.net import packets as P


def ones_complement_ok(data: bytes) -> bool:
    return P.internet_checksum(data) == 0


def test_tcp_over_ipv4_round_trip_and_checksums():
    frame = P.flow_frame(P.Flow("10.0.0.1", "10.0.0.2", "tcp", 1234, 80, payload=b"hello"))
    p = P.parse(frame)
    assert (p.l3, p.src, p.dst, p.proto, p.sport, p.dport) == ("ipv4", "10.0.0.1", "10.0.0.2", 6, 1234, 80)
    assert p.net_offset == 14 and p.l4_offset == 34 and not p.fragmented and not p.df
    ip = frame[14:34]
    assert ones_complement_ok(ip)
    segment = frame[34:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(segment))
    assert ones_complement_ok(pseudo + segment)


def test_udp_over_ipv6_checksum_uses_the_pseudo_header():
    frame = P.flow_frame(P.Flow("2001:db8::1", "2001:db8::2", "udp", 5353, 53, payload=b"q"))
    p = P.parse(frame)
    assert (p.l3, p.proto, p.sport, p.dport, p.l4_offset) == ("ipv6", 17, 5353, 53, 54)
    segment = frame[54:]
    pseudo = frame[22:54] + struct.pack("!I3xB", len(segment), 17)
    assert ones_complement_ok(pseudo + segment)


def test_vlan_and_qinq_tags():
    one = P.parse(P.flow_frame(P.Flow("1.1.1.1", "2.2.2.2", "udp", 1, 2, vlans=(100,))))
    assert one.vlans == [(P.ETH_P_8021Q, 100)] and one.net_offset == 18 and one.l3 == "ipv4"
    two = P.parse(P.flow_frame(P.Flow("1.1.1.1", "2.2.2.2", "udp", 1, 2, vlans=(10, 20))))
    assert two.vlans == [(P.ETH_P_8021AD, 10), (P.ETH_P_8021Q, 20)] and two.net_offset == 22
    assert (two.sport, two.dport) == (1, 2)


def test_df_is_not_a_fragment_but_mf_and_offsets_are():
    df = P.parse(P.flow_frame(P.Flow("1.1.1.1", "2.2.2.2", "tcp", 1, 2, df=True)))
    assert df.df and not df.fragmented and df.sport == 1
    packet = P.ipv4("1.1.1.1", "2.2.2.2", P.IPPROTO_UDP, P.udp(7, 9, bytes(range(200)) * 5), ident=42)
    frags = P.ipv4_fragments(packet, 300)
    assert len(frags) == 4
    parsed = [P.parse(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, P.ETH_P_IP, f)) for f in frags]
    assert all(p.fragmented for p in parsed)
    assert all(p.sport == 0 for p in parsed)          # no ports read from fragments


def test_ipv4_fragments_reassemble_and_copy_only_copied_options():
    payload = P.udp(1000, 2000, bytes(i % 251 for i in range(1500)))
    router_alert = P.ipv4_option(148, b"\0\0")        # copy flag set
    timestamp = P.ipv4_option(68, b"\x05" + b"\0" * 5)  # copy flag clear
    packet = P.ipv4("192.0.2.1", "192.0.2.2", P.IPPROTO_UDP, payload, ident=7,
                    options=router_alert + timestamp)
    frags = P.ipv4_fragments(packet, 576)
    data = b""
    for i, f in enumerate(frags):
        ihl = (f[0] & 0xF) * 4
        assert ones_complement_ok(f[:ihl])
        flags = struct.unpack("!H", f[6:8])[0]
        assert (flags & P.IP_OFFMASK) * 8 == len(data)
        assert bool(flags & P.IP_MF) == (i < len(frags) - 1)
        assert struct.unpack("!H", f[4:6])[0] == 7
        if i == 0:
            assert f[20:ihl].startswith(router_alert + timestamp)
        else:
            assert f[20:ihl] == router_alert            # only the copied option, padded to 4
        assert len(f) <= 576
        data += f[ihl:]
    assert data == packet[(packet[0] & 0xF) * 4:]          # the payload, checksum filled in
    assert data[8:] == payload[8:]


def test_df_packets_refuse_fragmentation():
    packet = P.ipv4("1.1.1.1", "2.2.2.2", P.IPPROTO_UDP, P.udp(1, 2, bytes(2000)), df=True)
    with pytest.raises(ValueError):
        P.ipv4_fragments(packet, 1500)


def test_ipv6_extension_headers():
    ext = (P.hop_by_hop(), P.routing_type2("2001:db8::aa"), P.fragment_header(0, more=True),
           P.home_address_option("2001:db8::bb"))
    frame = P.flow_frame(P.Flow("2001:db8::1", "2001:db8::2", "tcp", 10, 20, ext=ext))
    p = P.parse(frame)
    assert p.ext_headers == [P.IPPROTO_HOPOPTS, P.IPPROTO_ROUTING, P.IPPROTO_FRAGMENT, P.IPPROTO_DSTOPTS]
    assert p.routing_home == "2001:db8::aa" and p.home_address == "2001:db8::bb"
    assert p.fragmented and p.proto == P.IPPROTO_TCP
    assert p.l4_offset == 14 + 40 + 8 + 24 + 8 + 24
    # each extension header is a multiple of 8 bytes and its length byte says so
    assert frame[54 + 1] == 0 and frame[62 + 1] == 2


def test_home_address_option_layout():
    e = P.home_address_option("2001:db8::bb")
    body = bytes([P.IPPROTO_TCP, 2]) + e.body
    assert len(body) == 24
    assert body[2:6] == bytes([P.IPV6_TLV_PADN, 2, 0, 0])
    assert body[6] == P.IPV6_TLV_HAO and body[7] == 16 and (6 % 8) == 6   # address 8n+6 aligned


def test_arp_and_other_ethertypes():
    frame = P.ethernet("ff:ff:ff:ff:ff:ff", P.DEFAULT_SRC_MAC, P.ETH_P_ARP,
                       P.arp(1, P.DEFAULT_SRC_MAC, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2"))
    p = P.parse(frame)
    assert p.l3 == "arp" and len(frame) == 42
    lldp = P.parse(P.ethernet(P.DEFAULT_DST_MAC, P.DEFAULT_SRC_MAC, 0x88CC, b"\0" * 30))
    assert lldp.l3 == "" and lldp.ethertype == 0x88CC


def test_icmp_checksums():
    v4 = P.icmp_echo(1, 2, b"ping")
    assert ones_complement_ok(v4)
    frame = P.flow_frame(P.Flow("2001:db8::1", "2001:db8::2", "icmp", 1, 2))
    segment = frame[54:]
    pseudo = frame[22:54] + struct.pack("!I3xB", len(segment), P.IPPROTO_ICMPV6)
    assert segment[0] == 128 and ones_complement_ok(pseudo + segment)


def test_builders_are_deterministic():
    flow = P.Flow("2001:db8::1", "2001:db8::2", "udp", 1, 2, vlans=(5,), ext=(P.hop_by_hop(),))
    assert P.flow_frame(flow) == P.flow_frame(flow)


@pytest.mark.parametrize("flow", [
    P.Flow("10.0.0.1", "10.0.0.2", "tcp", 1, 2, vlans=(3, 4)),
    P.Flow("2001:db8::1", "2001:db8::2", "udp", 1, 2,
           ext=(P.routing_type2("2001:db8::9"), P.home_address_option("2001:db8::8"))),
])
def test_parser_never_raises_on_cut_frames(flow):
    frame = P.flow_frame(flow)
    full = P.parse(frame)
    assert not full.truncated
    for n in range(full.l4_offset + 4):       # every cut before the ports end is reported
        assert P.parse(frame[:n]).truncated, n


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError):
        P.flow_frame(P.Flow("10.0.0.1", "2001:db8::1"))
    with pytest.raises(ValueError):
        P.ipv4("1.1.1.1", "2.2.2.2", 6, b"", frag_offset=3)
    with pytest.raises(ValueError):
        P.mac_bytes("01:02")

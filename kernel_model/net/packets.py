"""Packet builder and parser: Ethernet (+VLAN/QinQ), ARP, IPv4, IPv6 with extension headers, TCP/UDP/ICMP.

Everything is deterministic: no random fields, identification numbers and sequence numbers default
to 0, checksums are computed.  Builders compose from the inside out::

    frame = ethernet(DST_MAC, SRC_MAC, ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1000, 80)))

``ipv4()``/``ipv6()`` fill in the TCP/UDP/ICMPv6 checksum of an unfragmented payload (the
pseudo-header needs the addresses, which only the IP layer knows).  ``flow_frame()`` builds a whole
frame from a flow description in one call.  ``parse()`` walks a frame the way a receiver does and
never raises: what it cannot read is reported as ``truncated``.
"""
from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MH = 135

IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF

IPV6_TLV_PAD1 = 0
IPV6_TLV_PADN = 1
IPV6_TLV_ROUTERALERT = 5
IPV6_TLV_HAO = 201
IPV6_SRCRT_TYPE_2 = 2

TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}

DEFAULT_SRC_MAC = "02:00:00:00:00:01"
DEFAULT_DST_MAC = "02:00:00:00:00:02"


# ---------------------------------------------------------------- small conversions

def mac_bytes(mac: str | bytes) -> bytes:
    """``"02:00:00:00:00:01"`` (or 6 raw bytes) as 6 bytes."""
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
        return mac
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def addr_bytes(addr: str | bytes) -> bytes:
    """An IPv4 or IPv6 address (text or packed) as its 4 or 16 wire bytes."""
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"an IP address is 4 or 16 bytes, got {len(addr)}")
        return addr
    return _packed(addr)


@functools.lru_cache(maxsize=1024)
def _packed(text: str) -> bytes:
    """Text to wire bytes, remembered: receive paths look the same few addresses up per packet."""
    return ipaddress.ip_address(text).packed


def addr_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def is_ipv6(addr: str | bytes) -> bool:
    return len(addr_bytes(addr)) == 16


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum of 16-bit words, complemented."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# ---------------------------------------------------------------- link layer

def ethernet(dst: str | bytes, src: str | bytes, ethertype: int, payload: bytes,
             vlans: Sequence[int | tuple[int, int]] = ()) -> bytes:
    """An Ethernet II frame.  ``vlans`` lists tags outermost first: a VID (with TPID 0x8100, or
    0x88A8 for the outer tag of a two-tag QinQ stack) or an explicit ``(tpid, tci)``."""
    tags = b""
    for i, tag in enumerate(vlans):
        if isinstance(tag, tuple):
            tpid, tci = tag
        else:
            tpid = ETH_P_8021AD if len(vlans) > 1 and i == 0 else ETH_P_8021Q
            tci = tag
        tags += struct.pack("!HH", tpid, tci & 0xFFFF)
    return mac_bytes(dst) + mac_bytes(src) + tags + struct.pack("!H", ethertype) + payload


def arp(op: int, sender_mac: str | bytes, sender_ip: str, target_mac: str | bytes,
        target_ip: str) -> bytes:
    """An Ethernet/IPv4 ARP packet (op 1 request, 2 reply)."""
    return (struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op) + mac_bytes(sender_mac)
            + addr_bytes(sender_ip) + mac_bytes(target_mac) + addr_bytes(target_ip))


# ---------------------------------------------------------------- transport layer

def tcp(sport: int, dport: int, payload: bytes = b"", *, seq: int = 0, ack: int = 0,
        flags: str = "S", window: int = 65535) -> bytes:
    """A TCP segment with a 20-byte header; the checksum is filled in by ``ipv4()``/``ipv6()``."""
    bits = sum(TCP_FLAGS[f] for f in flags)
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, bits, window, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    """A UDP datagram; the checksum is filled in by ``ipv4()``/``ipv6()``."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(ident: int = 0, seq: int = 0, payload: bytes = b"", *, v6: bool = False) -> bytes:
    """An ICMP (or ICMPv6, whose checksum ``ipv6()`` fills in) echo request."""
    kind = 128 if v6 else 8
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    if v6:
        return body
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


_CHECKSUM_AT = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMPV6: 2}


def _with_l4_checksum(proto: int, pseudo: bytes, segment: bytes) -> bytes:
    at = _CHECKSUM_AT.get(proto)
    if at is None or len(segment) < at + 2:
        return segment
    zeroed = segment[:at] + b"\0\0" + segment[at + 2:]
    csum = internet_checksum(pseudo + zeroed)
    if proto == IPPROTO_UDP and csum == 0:
        csum = 0xFFFF          # RFC 768: a computed zero is sent as all ones
    return segment[:at] + struct.pack("!H", csum) + segment[at + 2:]


# ---------------------------------------------------------------- IPv4

def ipv4_option(kind: int, data: bytes = b"") -> bytes:
    """One IPv4 option TLV (NOP=1 and EOL=0 are single bytes)."""
    if kind in (0, 1):
        return bytes([kind])
    return bytes([kind, len(data) + 2]) + data


def ipv4(src: str | bytes, dst: str | bytes, proto: int, payload: bytes, *, ttl: int = 64,
         ident: int = 0, tos: int = 0, df: bool = False, mf: bool = False, frag_offset: int = 0,
         options: bytes = b"") -> bytes:
    """An IPv4 packet.  ``frag_offset`` is in bytes (a multiple of 8); ``options`` are padded with
    EOL to a multiple of 4.  The L4 checksum is filled in unless this is a fragment."""
    if frag_offset % 8:
        raise ValueError("the fragment offset must be a multiple of 8 bytes")
    options += b"\0" * (-len(options) % 4)
    if len(options) > 40:
        raise ValueError("IPv4 options are at most 40 bytes")
    ihl = 5 + len(options) // 4
    s, d = addr_bytes(src), addr_bytes(dst)
    flags = (IP_DF if df else 0) | (IP_MF if mf else 0) | (frag_offset // 8)
    if not mf and frag_offset == 0:
        pseudo = s + d + struct.pack("!BBH", 0, proto, len(payload))
        payload = _with_l4_checksum(proto, pseudo, payload)
    header = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, tos, ihl * 4 + len(payload), ident,
                         flags, ttl, proto, 0, s, d) + options
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + payload


def ipv4_fragments(packet: bytes, mtu: int) -> list[bytes]:
    """Fragment an IPv4 packet as a router does (RFC 791): payload split on 8-byte boundaries,
    MF on all but the last, only options with the copy flag repeated after the first fragment."""
    ihl = (packet[0] & 0x0F) * 4
    header, payload = packet[:ihl], packet[ihl:]
    if (struct.unpack("!H", header[6:8])[0] & IP_DF) and len(packet) > mtu:
        raise ValueError("DF is set: the packet may not be fragmented")
    if len(packet) <= mtu:
        return [packet]
    copied = _copied_options(header[20:])
    fragments = []
    pos = 0
    while pos < len(payload):
        opts = header[20:] if pos == 0 else copied
        room = (mtu - 20 - len(opts)) // 8 * 8
        if room <= 0:
            raise ValueError(f"MTU {mtu} leaves no room for fragment data")
        chunk = payload[pos:pos + room]
        more = pos + len(chunk) < len(payload)
        fragments.append(_ipv4_refragment(header, opts, chunk, pos, more))
        pos += len(chunk)
    return fragments


def _copied_options(options: bytes) -> bytes:
    out = b""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        size = options[i + 1] if i + 1 < len(options) else 0
        if size < 2:
            break
        if kind & 0x80:
            out += options[i:i + size]
        i += size
    return out + b"\0" * (-len(out) % 4)


def _ipv4_refragment(header: bytes, options: bytes, chunk: bytes, offset: int, more: bool) -> bytes:
    flags = struct.unpack("!H", header[6:8])[0]
    frag = (flags & IP_DF) | (IP_MF if (more or flags & IP_MF) else 0) | ((flags & IP_OFFMASK) + offset // 8)
    ihl = 5 + len(options) // 4
    h = bytearray(header[:20] + options)
    h[0] = (4 << 4) | ihl
    struct.pack_into("!HHH", h, 2, ihl * 4 + len(chunk), struct.unpack("!H", header[4:6])[0], frag)
    struct.pack_into("!H", h, 10, 0)
    struct.pack_into("!H", h, 10, internet_checksum(bytes(h)))
    return bytes(h) + chunk


# ---------------------------------------------------------------- IPv6 and its extension headers

@dataclass(frozen=True)
class ExtHeader:
    """One IPv6 extension header: its protocol number and its bytes after the 2-byte
    {next header, length} prefix (padded to a multiple of 8 by ``ipv6()``)."""
    proto: int
    body: bytes
    final_dst: bytes | None = None   # a type-2 routing header's home address (for checksums)


def _pad_options(options: bytes) -> bytes:
    """Pad a TLV option area so that 2 + len is a multiple of 8 (Pad1 or PadN)."""
    need = -(2 + len(options)) % 8
    if need == 1:
        return options + bytes([IPV6_TLV_PAD1])
    if need:
        return options + bytes([IPV6_TLV_PADN, need - 2]) + b"\0" * (need - 2)
    return options


def ipv6_tlv(kind: int, data: bytes = b"") -> bytes:
    """One hop-by-hop/destination option TLV."""
    if kind == IPV6_TLV_PAD1:
        return b"\0"
    return bytes([kind, len(data)]) + data


def hop_by_hop(options: bytes = b"") -> ExtHeader:
    """Hop-by-hop options (default: a router alert)."""
    options = options or ipv6_tlv(IPV6_TLV_ROUTERALERT, b"\0\0")
    return ExtHeader(IPPROTO_HOPOPTS, _pad_options(options))


def destination_options(options: bytes) -> ExtHeader:
    return ExtHeader(IPPROTO_DSTOPTS, _pad_options(options))


def home_address_option(home: str | bytes) -> ExtHeader:
    """Destination options carrying a Mobile IPv6 home address (RFC 6275 §6.3): a PadN of 4 so the
    address is 8n+6 aligned, then option 201 with the 16-byte address."""
    return ExtHeader(IPPROTO_DSTOPTS, ipv6_tlv(IPV6_TLV_PADN, b"\0\0")
                     + ipv6_tlv(IPV6_TLV_HAO, addr_bytes(home)))


def routing_type2(home: str | bytes, segments_left: int = 1) -> ExtHeader:
    """A type-2 routing header (RFC 6275 §6.4): length 2, one segment left, the home address."""
    addr = addr_bytes(home)
    return ExtHeader(IPPROTO_ROUTING, bytes([IPV6_SRCRT_TYPE_2, segments_left]) + b"\0" * 4 + addr,
                     final_dst=addr if segments_left else None)


def fragment_header(offset: int = 0, more: bool = False, ident: int = 0) -> ExtHeader:
    """An IPv6 fragment header; ``offset`` in bytes (a multiple of 8)."""
    if offset % 8:
        raise ValueError("the fragment offset must be a multiple of 8 bytes")
    return ExtHeader(IPPROTO_FRAGMENT, struct.pack("!HI", offset | (1 if more else 0), ident))


def ipv6(src: str | bytes, dst: str | bytes, next_header: int, payload: bytes, *,
         ext: Sequence[ExtHeader] = (), hop_limit: int = 64, traffic_class: int = 0,
         flow_label: int = 0) -> bytes:
    """An IPv6 packet with extension headers in the given order.  The upper-layer checksum uses
    the final destination (a type-2 routing header's address), unless a fragment header is present."""
    s, d = addr_bytes(src), addr_bytes(dst)
    final = d
    for e in ext:
        if e.final_dst is not None:
            final = e.final_dst
    if not any(e.proto == IPPROTO_FRAGMENT for e in ext):
        pseudo = s + final + struct.pack("!I3xB", len(payload), next_header)
        payload = _with_l4_checksum(next_header, pseudo, payload)
    chain = b""
    for i, e in enumerate(ext):
        nxt = ext[i + 1].proto if i + 1 < len(ext) else next_header
        body = e.body + b"\0" * (-(2 + len(e.body)) % 8)
        if e.proto == IPPROTO_FRAGMENT:
            chain += bytes([nxt, 0]) + body          # the second byte is reserved, not a length
        else:
            chain += bytes([nxt, (2 + len(body)) // 8 - 1]) + body
    first = ext[0].proto if ext else next_header
    word = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    header = struct.pack("!IHBB16s16s", word, len(chain) + len(payload), first, hop_limit, s, d)
    return header + chain + payload


# ---------------------------------------------------------------- one-call frames

@dataclass(frozen=True)
class Flow:
    """What ``flow_frame()`` builds: a TCP/UDP/ICMP packet between two addresses."""
    src: str
    dst: str
    proto: str = "tcp"             # "tcp", "udp", "icmp" (ICMPv6 over IPv6)
    sport: int = 0
    dport: int = 0
    vlans: tuple = ()
    payload: bytes = b""
    df: bool = False
    ext: tuple = ()                # IPv6 extension headers
    src_mac: str = DEFAULT_SRC_MAC
    dst_mac: str = DEFAULT_DST_MAC


PROTO_NUMBERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "icmp": IPPROTO_ICMP}


def l4_segment(proto: str, sport: int, dport: int, payload: bytes, v6: bool) -> tuple[int, bytes]:
    """(protocol number, segment) for a protocol name."""
    if proto == "tcp":
        return IPPROTO_TCP, tcp(sport, dport, payload)
    if proto == "udp":
        return IPPROTO_UDP, udp(sport, dport, payload)
    if proto == "icmp":
        return (IPPROTO_ICMPV6 if v6 else IPPROTO_ICMP), icmp_echo(sport, dport, payload, v6=v6)
    raise ValueError(f"unknown protocol {proto!r} (tcp, udp, icmp)")


def flow_frame(flow: Flow) -> bytes:
    """The Ethernet frame of one packet of ``flow``: IPv4 or IPv6 from the address family."""
    v6 = is_ipv6(flow.src)
    if v6 != is_ipv6(flow.dst):
        raise ValueError("source and destination must be of the same address family")
    number, segment = l4_segment(flow.proto, flow.sport, flow.dport, flow.payload, v6)
    if v6:
        packet = ipv6(flow.src, flow.dst, number, segment, ext=flow.ext)
        return ethernet(flow.dst_mac, flow.src_mac, ETH_P_IPV6, packet, flow.vlans)
    if flow.ext:
        raise ValueError("extension headers are IPv6 only")
    packet = ipv4(flow.src, flow.dst, number, segment, df=flow.df)
    return ethernet(flow.dst_mac, flow.src_mac, ETH_P_IP, packet, flow.vlans)


# ---------------------------------------------------------------- parser

@dataclass
class Parsed:
    """What a receiver learns from a frame.  Offsets are from the start of the frame."""
    ethertype: int = 0                       # after any VLAN tags; 0 if the frame is too short
    vlans: list = field(default_factory=list)   # [(tpid, tci)], outermost first
    net_offset: int = ETH_HLEN               # where the L3 header starts
    l3: str = ""                             # "ipv4", "ipv6", "arp" or ""
    src: str = ""
    dst: str = ""
    proto: int = -1                          # upper-layer protocol after extension headers
    l4_offset: int = -1
    sport: int = 0
    dport: int = 0
    df: bool = False
    fragmented: bool = False                 # MF or a non-zero offset, or an IPv6 fragment header
    ext_headers: list = field(default_factory=list)   # IPv6 extension protocol numbers in order
    home_address: str = ""                   # from a destination-options HAO
    routing_home: str = ""                   # from a type-2 routing header
    truncated: bool = False
    l4_csum_ok: bool | None = None           # the L4 checksum verified, once someone asked


def parse(frame: bytes) -> Parsed:
    """Walk Ethernet/VLAN, ARP/IPv4/IPv6 (with extension headers) and TCP/UDP ports.  Never raises."""
    p = Parsed()
    if len(frame) < ETH_HLEN:
        p.truncated = True
        return p
    off = 12
    ethertype = struct.unpack_from("!H", frame, off)[0]
    while ethertype in (ETH_P_8021Q, ETH_P_8021AD):
        if len(frame) < off + 6:
            p.truncated = True
            return p
        p.vlans.append((ethertype, struct.unpack_from("!H", frame, off + 2)[0]))
        off += 4
        ethertype = struct.unpack_from("!H", frame, off)[0]
    p.ethertype = ethertype
    p.net_offset = off + 2
    if ethertype == ETH_P_ARP:
        p.l3 = "arp"
    elif ethertype == ETH_P_IP:
        _parse_ipv4(frame, p)
    elif ethertype == ETH_P_IPV6:
        _parse_ipv6(frame, p)
    if p.l4_offset >= 0 and not p.fragmented and p.proto in (IPPROTO_TCP, IPPROTO_UDP):
        if len(frame) < p.l4_offset + 4:
            p.truncated = True
        else:
            p.sport, p.dport = struct.unpack_from("!HH", frame, p.l4_offset)
    return p


def _parse_ipv4(frame: bytes, p: Parsed) -> None:
    p.l3 = "ipv4"
    n = p.net_offset
    if len(frame) < n + 20:
        p.truncated = True
        return
    ihl = (frame[n] & 0x0F) * 4
    flags = struct.unpack_from("!H", frame, n + 6)[0]
    p.df = bool(flags & IP_DF)
    p.fragmented = bool(flags & (IP_MF | IP_OFFMASK))
    p.proto = frame[n + 9]
    p.src, p.dst = addr_text(frame[n + 12:n + 16]), addr_text(frame[n + 16:n + 20])
    p.l4_offset = n + ihl


_IPV6_EXT = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS, IPPROTO_MH)


def _parse_ipv6(frame: bytes, p: Parsed) -> None:
    p.l3 = "ipv6"
    n = p.net_offset
    if len(frame) < n + 40:
        p.truncated = True
        return
    p.src, p.dst = addr_text(frame[n + 8:n + 24]), addr_text(frame[n + 24:n + 40])
    nxt, off = frame[n + 6], n + 40
    while nxt in _IPV6_EXT:
        if len(frame) < off + 2:
            p.truncated = True
            return
        p.ext_headers.append(nxt)
        size = 8 if nxt == IPPROTO_FRAGMENT else (frame[off + 1] + 1) * 8
        if len(frame) < off + size:
            p.truncated = True
            return
        body = frame[off:off + size]
        if nxt == IPPROTO_FRAGMENT:
            p.fragmented = True
        elif nxt == IPPROTO_ROUTING and body[2] == IPV6_SRCRT_TYPE_2 and size == 24:
            p.routing_home = addr_text(body[8:24])
        elif nxt == IPPROTO_DSTOPTS:
            home = _find_hao(body)
            if home:
                p.home_address = home
        nxt, off = body[0], off + size
    p.proto, p.l4_offset = nxt, off


def _find_hao(header: bytes) -> str:
    i = 2
    while i < len(header):
        kind = header[i]
        if kind == IPV6_TLV_PAD1:
            i += 1
            continue
        if i + 1 >= len(header):
            break
        size = header[i + 1]
        if kind == IPV6_TLV_HAO and size == 16 and i + 18 <= len(header):
            return addr_text(header[i + 2:i + 18])
        i += 2 + size
    return ""

"""Software RSS: the steering program's algorithm in pure Python, and the data it is configured with.

This is the one place the algorithm lives outside ``tools/examples/rss.bpf.c``; the loader
(``tools/ebpf_rss.py``) falls back to it when the program cannot be loaded or verified, and the
tests compare the two on random packets.  It follows the program step by step, including what the
program reads and how a failed read ends the parse, so both choose the same queue for any input:

- every read is ``bpf_skb_load_bytes_relative`` semantics: a read past the packet's end fails;
- EtherType at MAC+12, one VLAN tag (0x8100) → re-read at +16, QinQ (0x88A8) → at +20; L3 at NET+0;
- IPv4 fragments are MF or a non-zero offset (a DF-only packet is *not* a fragment: the 2021
  program's ``frag_off != 0`` test was a bug, fixed in QEMU 9.0);
- IPv6 walks up to 11 headers in {0, 43, 44, 58, 59, 60, 135} (ICMPv6 and NONE included, as QEMU
  does), type-2 routing → ``_EX`` destination, a home-address option → ``_EX`` source;
- TCP before UDP before IP-only; ``_EX`` bits only substitute addresses;
- a computed hash of 0 still indexes the table (QEMU 9.1 "Fix RSS error handling"); a failed
  config/key lookup returns 0 (9.1).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

INDIRECTION_TABLE_SIZE = 128
KEY_SIZE = 40
HASH_INPUT_SIZE = 36

# VIRTIO_NET_RSS_HASH_TYPE_* bits.
HASH_IPV4 = 1 << 0
HASH_TCPV4 = 1 << 1
HASH_UDPV4 = 1 << 2
HASH_IPV6 = 1 << 3
HASH_TCPV6 = 1 << 4
HASH_UDPV6 = 1 << 5
HASH_IP_EX = 1 << 6
HASH_TCP_EX = 1 << 7
HASH_UDP_EX = 1 << 8
HASH_ALL = 0x1FF
HASH_TYPE_NAMES = {"ipv4": HASH_IPV4, "tcpv4": HASH_TCPV4, "udpv4": HASH_UDPV4, "ipv6": HASH_IPV6,
                   "tcpv6": HASH_TCPV6, "udpv6": HASH_UDPV6, "ip_ex": HASH_IP_EX,
                   "tcp_ex": HASH_TCP_EX, "udp_ex": HASH_UDP_EX}

# The verification key of the published Toeplitz vectors (Microsoft, Intel 82599, DPDK).
STANDARD_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c"
                             "6a42b73bbeac01fa")

IP6_EXTENSIONS_COUNT = 11
IP6_OPTIONS_COUNT = 30
_IP6_EXT_TYPES = frozenset((0, 43, 44, 58, 59, 60, 135))


@dataclass(frozen=True)
class RssConfig:
    """``struct rss_config_t`` (packed, host = little-endian order, 10 bytes)."""
    redirect: int = 1
    populate_hash: int = 0
    hash_types: int = HASH_ALL
    indirections_len: int = INDIRECTION_TABLE_SIZE
    default_queue: int = 0

    LAYOUT = struct.Struct("<BBIHH")

    def pack(self) -> bytes:
        return self.LAYOUT.pack(self.redirect & 0xFF, self.populate_hash & 0xFF,
                                self.hash_types & 0xFFFFFFFF, self.indirections_len & 0xFFFF,
                                self.default_queue & 0xFFFF)

    @classmethod
    def unpack(cls, data: bytes) -> RssConfig:
        return cls(*cls.LAYOUT.unpack(data))


def pack_toeplitz_key(key: bytes) -> bytes:
    """``struct toeplitz_key_data_t`` from a 40-byte key: the first 32 bits as a host-order
    (little-endian) number, then key bytes 4..39, as QEMU's ``ebpf_rss_set_all`` stores it."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"the Toeplitz key is {KEY_SIZE} bytes, got {len(key)}")
    return struct.pack("<I", int.from_bytes(key[:4], "big")) + key[4:]


def toeplitz_hash(key: bytes, data: bytes) -> int:
    """NDIS Toeplitz: for each input bit set (MSB first), xor in the 32 key bits starting at that
    bit position.  ``key`` must be at least 4 bytes longer than ``data``."""
    if len(key) < len(data) + 4:
        raise ValueError("the key must be 4 bytes longer than the input")
    k = int.from_bytes(key, "big")
    kbits = len(key) * 8
    result = 0
    for i, byte in enumerate(data):
        for bit in range(8):
            if byte & (0x80 >> bit):
                shift = kbits - 32 - (i * 8 + bit)
                result ^= (k >> shift) & 0xFFFFFFFF
    return result


class _Fault(Exception):
    """A failed load: the program's parse ends with an error."""


class _Skb:
    """The two load forms the program uses, with bpf_skb_load_bytes_relative's bounds."""

    def __init__(self, data: bytes, mac: int, net: int):
        self.data, self.mac, self.net = data, mac, net

    def load(self, start: int, off: int, size: int) -> bytes:
        at = start + off
        if off > 0xFFFF or at + size > len(self.data):
            raise _Fault
        return self.data[at:at + size]


@dataclass
class _Info:
    is_ipv4: bool = False
    is_ipv6: bool = False
    is_tcp: bool = False
    is_udp: bool = False
    is_fragmented: bool = False
    ext_src: bytes = b""
    ext_dst: bytes = b""
    src: bytes = b""
    dst: bytes = b""
    ports: bytes = b""


def _eth_type(skb: _Skb) -> int:
    ethertype = int.from_bytes(skb.load(skb.mac, 12, 2), "big")
    if ethertype == 0x88A8:
        return int.from_bytes(skb.load(skb.mac, 20, 2), "big")
    if ethertype == 0x8100:
        return int.from_bytes(skb.load(skb.mac, 16, 2), "big")
    return ethertype


def _parse_ipv6_ext(skb: _Skb, info: _Info, proto: int, l4_offset: int) -> tuple[int, int]:
    if proto not in _IP6_EXT_TYPES:
        return proto, l4_offset
    for _ in range(IP6_EXTENSIONS_COUNT):
        nexthdr, hdrlen = skb.load(skb.net, l4_offset, 2)
        if proto == 43:
            rt = skb.load(skb.net, l4_offset, 4)
            if rt[2] == 2 and rt[1] == 2 and rt[3] == 1:
                info.ext_dst = skb.load(skb.net, l4_offset + 8, 16)
        elif proto == 60:
            opt_offset = 2
            for _ in range(IP6_OPTIONS_COUNT):
                kind, length = skb.load(skb.net, l4_offset + opt_offset, 2)
                if kind == 201:
                    info.ext_src = skb.load(skb.net, l4_offset + opt_offset + 2, 16)
                    break
                opt_offset += 1 if kind == 0 else length + 2
                if opt_offset + 1 >= hdrlen * 8:
                    break
        elif proto == 44:
            info.is_fragmented = True
        proto = nexthdr
        l4_offset += (hdrlen + 1) * 8
        if proto not in _IP6_EXT_TYPES:
            break
    return proto, l4_offset


def _parse(skb: _Skb) -> _Info:
    info = _Info()
    l3 = _eth_type(skb)
    if l3 == 0:
        raise _Fault
    proto, l4_offset = 0, 0
    if l3 == 0x0800:
        info.is_ipv4 = True
        ip = skb.load(skb.net, 0, 20)
        info.src, info.dst = ip[12:16], ip[16:20]
        info.is_fragmented = bool(int.from_bytes(ip[6:8], "big") & 0x3FFF)
        proto, l4_offset = ip[9], (ip[0] & 0x0F) * 4
    elif l3 == 0x86DD:
        info.is_ipv6 = True
        ip6 = skb.load(skb.net, 0, 40)
        info.src, info.dst = ip6[8:24], ip6[24:40]
        proto, l4_offset = _parse_ipv6_ext(skb, info, ip6[6], 40)
    if proto != 0 and not info.is_fragmented:
        if proto == 6:
            info.is_tcp = True
            info.ports = skb.load(skb.net, l4_offset, 20)[:4]
        elif proto == 17:
            info.is_udp = True
            info.ports = skb.load(skb.net, l4_offset, 8)[:4]
    return info


def hash_input(packet: bytes, net_offset: int, hash_types: int, mac_offset: int = 0) -> bytes | None:
    """The Toeplitz input the program builds for a packet (source first, wire order), or None
    when the packet gets no hash (parse failure, unsupported protocol, hash type off)."""
    try:
        info = _parse(_Skb(packet, mac_offset, net_offset))
    except _Fault:
        return None
    if info.is_ipv4:
        if info.is_tcp and hash_types & HASH_TCPV4 or info.is_udp and hash_types & HASH_UDPV4:
            return info.src + info.dst + info.ports
        if hash_types & HASH_IPV4:
            return info.src + info.dst
        return None
    if info.is_ipv6:
        if info.is_tcp and hash_types & HASH_TCPV6:
            ex = hash_types & HASH_TCP_EX
        elif info.is_udp and hash_types & HASH_UDPV6:
            ex = hash_types & HASH_UDP_EX
        elif hash_types & HASH_IPV6:
            ex = hash_types & HASH_IP_EX
            return ((info.ext_src if ex and info.ext_src else info.src)
                    + (info.ext_dst if ex and info.ext_dst else info.dst))
        else:
            return None
        return ((info.ext_src if ex and info.ext_src else info.src)
                + (info.ext_dst if ex and info.ext_dst else info.dst) + info.ports)
    return None


def toeplitz_from_packed(packed_key: bytes, data: bytes) -> int:
    """Toeplitz over ``data`` with a key in ``toeplitz_key_data_t`` form (what the map holds)."""
    key = struct.unpack("<I", packed_key[:4])[0].to_bytes(4, "big") + packed_key[4:KEY_SIZE]
    return toeplitz_hash(key, data)


def steer(packet: bytes, net_offset: int, config: RssConfig | None, table: list[int],
          packed_key: bytes | None, mac_offset: int = 0) -> int:
    """The program's return value for one packet (TUN then delivers to ``(u16)ret % numqueues``).
    ``table`` holds the 128 indirection entries, ``packed_key`` the 40-byte map value."""
    if config is None or packed_key is None:
        return 0
    if not config.redirect:
        return config.default_queue
    data = hash_input(packet, net_offset, config.hash_types, mac_offset)
    if data is None:
        return config.default_queue
    h = toeplitz_from_packed(packed_key, data)
    # BPF's unsigned modulo by zero leaves the dividend: the lookup then misses.
    idx = h % config.indirections_len if config.indirections_len else h
    if idx < len(table):
        return table[idx]
    return config.default_queue

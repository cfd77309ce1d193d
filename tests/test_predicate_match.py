"""What compiled filters match, as tables: (expression, record values, cpu/comm, expected)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from tracesim.filters.predicate import compile_filter, compile_subsystem_filter, is_clear_request


@dataclass(frozen=True)
class Fld:
    name: str
    type: str
    offset: int
    size: int
    is_signed: bool


COMMON = [
    Fld("common_type", "unsigned short", 0, 2, False),
    Fld("common_flags", "unsigned char", 2, 1, False),
    Fld("common_preempt_count", "unsigned char", 3, 1, False),
    Fld("common_pid", "int", 4, 4, True),
]
# A test event with one field of each kind the filter distinguishes.
FIELDS = COMMON + [
    Fld("u8", "unsigned char", 8, 1, False),
    Fld("s8", "signed char", 9, 1, True),
    Fld("u16", "unsigned short", 10, 2, False),
    Fld("s16", "short", 12, 2, True),
    Fld("u32", "unsigned int", 16, 4, False),
    Fld("s32", "int", 20, 4, True),
    Fld("u64", "unsigned long", 24, 8, False),
    Fld("s64", "long", 32, 8, True),
    Fld("arr", "char[16]", 40, 16, True),
    Fld("dname", "__data_loc char[]", 56, 4, False),
    Fld("rname", "__rel_loc char[]", 60, 4, False),
    Fld("ptr", "const char *", 64, 8, False),
    Fld("mask", "__data_loc cpumask_t", 72, 4, False),
    Fld("ip", "unsigned long", 80, 8, False),
    Fld("odd", "u8[3]", 88, 3, False),
]
_BY_NAME = {f.name: f for f in FIELDS}
_FIXED_END = 96
_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}

STRINGS_AT = {0x1000: b"eth0", 0x2000: b"lo", 0x3000: b"a" * 2000}


def read_string(addr: int) -> bytes | None:
    return STRINGS_AT.get(addr)


def record(**values: object) -> bytes:
    """A record with the given field values; strings go to the dynamic area."""
    fixed = bytearray(_FIXED_END)
    tail = bytearray()
    for name, value in values.items():
        field = _BY_NAME[name]
        if name == "arr":
            fixed[40:56] = bytes(value).ljust(16, b"\0")[:16]
        elif name in ("dname", "mask"):
            data = bytes(value) + (b"\0" if name == "dname" else b"")
            loc = _FIXED_END + len(tail)
            struct.pack_into("<I", fixed, field.offset, loc | (len(data) << 16))
            tail += data
        elif name == "rname":
            data = bytes(value) + b"\0"
            loc = _FIXED_END + len(tail) - (field.offset + 4)
            struct.pack_into("<I", fixed, field.offset, loc | (len(data) << 16))
            tail += data
        else:
            code = _INT_CODES[field.size]
            struct.pack_into("<" + (code.lower() if field.is_signed else code), fixed,
                             field.offset, value)
    return bytes(fixed + tail)


class Symbols:
    """A two-function kallsyms."""

    TABLE = {"netif_receive_skb": (0xFFFF0000, 0x100), "kfree_skb": (0xFFFF0100, 0x80)}

    def lookup_name(self, name: str) -> int:
        return self.TABLE.get(name, (0, 0))[0]

    def lookup_size_offset(self, addr: int) -> tuple[int, int] | None:
        for start, size in self.TABLE.values():
            if start <= addr < start + size:
                return size, addr - start
        return None


# (expression, record values, expected)
NUMERIC_CASES = [
    ("u32 == 5", {"u32": 5}, True),
    ("u32 == 5", {"u32": 6}, False),
    ("u32 != 5", {"u32": 6}, True),
    ("u32 == 0x10", {"u32": 16}, True),
    ("u32 == 010", {"u32": 8}, True),  # leading 0: octal
    ("u32 == 0X1f", {"u32": 31}, True),
    ("u8 == 257", {"u8": 1}, True),  # the value is cut to the field width
    ("u32 > 10", {"u32": 11}, True),
    ("u32 >= 11", {"u32": 11}, True),
    ("u32 < 11", {"u32": 11}, False),
    ("u32 <= 11", {"u32": 11}, True),
    ("u32 & 4", {"u32": 6}, True),
    ("u32 & 4", {"u32": 3}, False),
    ("s32 < 0", {"s32": -3}, True),
    ("s32 > -5", {"s32": -3}, True),
    ("s32 == -1", {"s32": -1}, True),
    ("s32 == 0xffffffff", {"s32": -1}, True),
    ("s8 < -100", {"s8": -128}, True),
    ("s16 >= -2", {"s16": -2}, True),
    ("u16 > 65534", {"u16": 65535}, True),
    ("s64 < -9223372036854775807", {"s64": -(2**63)}, True),
    ("u64 == 18446744073709551615", {"u64": 2**64 - 1}, True),
    ("u64 > 0x7fffffffffffffff", {"u64": 2**63}, True),
    ("common_pid != 0", {"common_pid": 42}, True),
    ("common_pid == 42 && u8 == 1", {"common_pid": 42, "u8": 1}, True),
    ("odd == 0", {}, False),  # 3-byte field: the kernel has no predicate for it
    ("odd != 0", {}, False),
]

LOGIC_CASES = [
    ("u8 == 1 || u8 == 2 && u16 == 3", {"u8": 1, "u16": 0}, True),  # && binds tighter
    ("u8 == 1 || u8 == 2 && u16 == 3", {"u8": 2, "u16": 0}, False),
    ("(u8 == 1 || u8 == 2) && u16 == 3", {"u8": 1, "u16": 0}, False),
    ("!(u8 == 1)", {"u8": 1}, False),
    ("!u8 == 1", {"u8": 2}, True),  # '!' applies to the next predicate
    ("!(u8 == 1 && u16 == 2)", {"u8": 1, "u16": 3}, True),
    ("!(u8 == 1 || !(u16 == 2))", {"u8": 0, "u16": 2}, True),
    ("!!u8 == 1", {"u8": 1}, True),
    ("((u8 == 1))", {"u8": 1}, True),
    ("u8 == 1 ||", {"u8": 0}, False),  # dangling operator ignored
    ("u8 == 1 &&", {"u8": 1}, True),
    ("u8 == 1 && u16 == 2 ||", {"u8": 1, "u16": 2}, True),
    ("(u8 == 1 || u8 == 2) &&", {"u8": 2}, True),
    ("  u8 == 1", {"u8": 1}, True),
    ("u8==1&&u16==2", {"u8": 1, "u16": 2}, True),
    ("u8 == 1 && (u16 == 2 || u16 == 3) && u32 == 4", {"u8": 1, "u16": 3, "u32": 4}, True),
    ("u8 == 1 && (u16 == 2 || u16 == 3) && u32 == 4", {"u8": 1, "u16": 5, "u32": 4}, False),
]

STRING_CASES = [
    ('dname == "lo"', {"dname": b"lo"}, True),
    ('dname == "lo"', {"dname": b"lo0"}, False),
    ('dname != "lo"', {"dname": b"eth0"}, True),
    ('dname ~ "eth*"', {"dname": b"eth1"}, True),
    ('dname ~ "*th1"', {"dname": b"eth1"}, True),
    ('dname ~ "*th*"', {"dname": b"eth1"}, True),
    ('dname ~ "e?h[0-9]"', {"dname": b"eth7"}, True),
    ('dname ~ "e?h[!0-9]"', {"dname": b"eth7"}, False),
    ('dname ~ "!eth*"', {"dname": b"lo"}, True),  # leading '!' inverts a ~ pattern
    ('dname ~ "1*"', {"dname": b"1*"}, True),  # leading digit: literal full match
    ('dname ~ "*"', {"dname": b""}, True),
    ("dname ~ 'l*'", {"dname": b"lo"}, True),  # single quotes work too
    ('rname == "veth"', {"rname": b"veth"}, True),
    ('rname ~ "v*"', {"rname": b"lo"}, False),
    ('arr == "bash"', {"arr": b"bash"}, True),
    ('arr ~ "ba*"', {"arr": b"bash"}, True),
    ('arr ~ "*sh*"', {"arr": b"bash"}, True),
    # *end on char[N] compares the end of the array, not of the text (regex_match_end quirk)
    ('arr ~ "*sh"', {"arr": b"bash"}, False),
    ('arr ~ "*sh"', {"arr": b"0123456789abcdsh"}, False),
    ('arr ~ "*sh"', {"arr": b"0123456789abcsh"}, True),
    ('ptr == "eth0"', {"ptr": 0x1000}, True),
    ('ptr ~ "e*"', {"ptr": 0x2000}, False),
    ('ptr != "x"', {"ptr": 0x9999}, False),  # unreadable pointer: no match, even for !=
    ('ptr ~ "*a"', {"ptr": 0x3000}, True),  # long strings are cut to 1023 bytes
]

PSEUDO_CASES = [
    # (expression, cpu, comm, expected)
    ("CPU == 1", 1, "bash", True),
    ("cpu == 1", 0, "bash", False),
    ("common_cpu != 1", 0, "bash", True),
    ("CPU > 0", 3, "bash", True),
    ("CPU & 1", 1, "bash", False),  # filter_pred_cpu has no '&'
    ('COMM == "bash"', 0, "bash", True),
    ('comm ~ "ba*"', 0, "bash", True),
    ('COMM ~ "*sh"', 0, "bash", False),  # comm is a 16-byte array: the end-match quirk
    ('COMM == "ksoftirqd/0"', 0, "ksoftirqd/0", True),
    ("CPU & CPUS{1-2}", 2, "x", True),
    ("CPU & CPUS{1-2}", 0, "x", False),
    ("CPU == CPUS{1-2}", 1, "x", False),  # a 2-CPU mask never equals one CPU
    ("CPU != CPUS{1-2}", 1, "x", True),
    ("CPU & CPUS{3}", 3, "x", True),  # one-CPU mask: plain CPU == 3
    ("CPU != CPUS{3}", 3, "x", False),
]

CPUMASK_CASES = [
    ("u32 & CPUS{0,2}", {"u32": 2}, True),
    ("u32 & CPUS{0,2}", {"u32": 1}, False),
    ("u32 & CPUS{0,2}", {"u32": 100}, False),  # beyond nr_cpu_ids
    ("u32 != CPUS{0,2}", {"u32": 100}, False),
    ("u32 != CPUS{0,2}", {"u32": 1}, True),
    ("u32 == CPUS{3}", {"u32": 3}, True),
    ("u32 & CPUS{3}", {"u32": 3}, True),
    ("mask == CPUS{1-2}", {"mask": bytes([0b110, 0, 0, 0, 0, 0, 0, 0])}, True),
    ("mask != CPUS{1-2}", {"mask": bytes([0b110, 0, 0, 0, 0, 0, 0, 0])}, False),
    ("mask & CPUS{0,5}", {"mask": bytes([0b100001, 0, 0, 0, 0, 0, 0, 0])}, True),
    ("mask == CPUS{2}", {"mask": bytes([0b100, 0, 0, 0, 0, 0, 0, 0])}, True),
    ("mask == CPUS{2}", {"mask": bytes([0b110, 0, 0, 0, 0, 0, 0, 0])}, False),
    ("mask & CPUS{2}", {"mask": bytes([0b110, 0, 0, 0, 0, 0, 0, 0])}, True),
    ("mask & CPUS{all}", {"mask": bytes([0, 0, 0, 0, 0, 0, 0, 0x80])}, True),
]

FUNCTION_CASES = [
    ("ip.function == netif_receive_skb", {"ip": 0xFFFF0010}, True),
    ("ip.function == netif_receive_skb", {"ip": 0xFFFF0100}, False),
    ("ip.function != netif_receive_skb", {"ip": 0xFFFF0100}, True),
    ("ip.function == 0xffff0105", {"ip": 0xFFFF0120}, True),  # any address inside kfree_skb
]


@pytest.mark.parametrize("expression, values, expected", NUMERIC_CASES + LOGIC_CASES)
def test_numeric_and_logic(expression: str, values: dict, expected: bool) -> None:
    assert compile_filter(expression, FIELDS).match(record(**values), 0, "x") is expected


@pytest.mark.parametrize("expression, values, expected", STRING_CASES)
def test_strings(expression: str, values: dict, expected: bool) -> None:
    flt = compile_filter(expression, FIELDS, read_string=read_string)
    assert flt.match(record(**values), 0, "x") is expected


@pytest.mark.parametrize("expression, cpu, comm, expected", PSEUDO_CASES)
def test_cpu_and_comm(expression: str, cpu: int, comm: str, expected: bool) -> None:
    flt = compile_filter(expression, FIELDS, nr_cpu_ids=4)
    assert flt.match(record(), cpu, comm) is expected


@pytest.mark.parametrize("expression, values, expected", CPUMASK_CASES)
def test_cpumask_values(expression: str, values: dict, expected: bool) -> None:
    flt = compile_filter(expression, FIELDS, nr_cpu_ids=64)
    assert flt.match(record(**values), 0, "x") is expected


@pytest.mark.parametrize("expression, values, expected", FUNCTION_CASES)
def test_function_suffix(expression: str, values: dict, expected: bool) -> None:
    flt = compile_filter(expression, FIELDS, symbols=Symbols())
    assert flt.match(record(**values), 0, "x") is expected


def test_ustring_reads_through_the_user_reader() -> None:
    flt = compile_filter('ptr.ustring == "lo"', FIELDS, read_string=read_string,
                         read_user_string=lambda addr: b"lo" if addr == 7 else None)
    assert flt.match(record(ptr=7), 0, "x") is True
    assert flt.match(record(ptr=0x2000), 0, "x") is False


def test_match_accepts_bytearray_and_memoryview() -> None:
    flt = compile_filter('u32 > 1 && dname == "lo"', FIELDS)
    rec = record(u32=2, dname=b"lo")
    assert flt.match(bytearray(rec), 0, "x") and flt.match(memoryview(rec), 0, "x")


def test_text_and_fields_used() -> None:
    flt = compile_filter('  u8 == 1 && CPU == 0 || dname ~ "x*" && u8 != 3 \n', FIELDS)
    assert flt.text == '  u8 == 1 && CPU == 0 || dname ~ "x*" && u8 != 3'
    assert flt.fields_used == ("u8", "CPU", "dname")


def test_event_field_shadows_pseudo_field() -> None:
    fields = COMMON + [Fld("cpu", "unsigned int", 8, 4, False)]
    flt = compile_filter("cpu == 7", fields)
    assert flt.match(record(u32=0)[:8] + struct.pack("<I", 7), 0, "x") is True
    assert compile_filter("CPU == 7", fields).match(bytes(12), 7, "x") is True


# The kernel's own startup self-test (trace_events_filter.c, fields a..h all int): each filter,
# a record, the expected match and the fields the short circuit must not read.
KERNEL_SELFTEST = [
    ("a == 1 && b == 1 && c == 1 && d == 1 && e == 1 && f == 1 && g == 1 && h == 1", [
        (True, (1, 1, 1, 1, 1, 1, 1, 1), ""),
        (False, (0, 1, 1, 1, 1, 1, 1, 1), "bcdefgh"),
        (False, (1, 1, 1, 1, 1, 1, 1, 0), ""),
    ]),
    ("a == 1 || b == 1 || c == 1 || d == 1 || e == 1 || f == 1 || g == 1 || h == 1", [
        (False, (0, 0, 0, 0, 0, 0, 0, 0), ""),
        (True, (0, 0, 0, 0, 0, 0, 0, 1), ""),
        (True, (1, 0, 0, 0, 0, 0, 0, 0), "bcdefgh"),
    ]),
    ("(a == 1 || b == 1) && (c == 1 || d == 1) && (e == 1 || f == 1) && (g == 1 || h == 1)", [
        (False, (0, 0, 1, 1, 1, 1, 1, 1), "dfh"),
        (True, (0, 1, 0, 1, 0, 1, 0, 1), ""),
        (True, (1, 0, 1, 0, 0, 1, 0, 1), "bd"),
        (False, (1, 0, 1, 0, 0, 1, 0, 0), "bd"),
    ]),
    ("(a == 1 && b == 1) || (c == 1 && d == 1) || (e == 1 && f == 1) || (g == 1 && h == 1)", [
        (True, (1, 0, 1, 1, 1, 1, 1, 1), "efgh"),
        (True, (0, 0, 0, 0, 0, 0, 1, 1), ""),
        (False, (0, 0, 0, 0, 0, 0, 0, 1), ""),
    ]),
    ("(a == 1 && b == 1) && (c == 1 && d == 1) && (e == 1 && f == 1) || (g == 1 && h == 1)", [
        (True, (1, 1, 1, 1, 1, 1, 0, 0), "gh"),
        (False, (0, 0, 0, 0, 0, 0, 0, 1), ""),
        (True, (1, 1, 1, 1, 1, 0, 1, 1), ""),
    ]),
    ("((a == 1 || b == 1) || (c == 1 || d == 1) || (e == 1 || f == 1)) && (g == 1 || h == 1)", [
        (True, (1, 1, 1, 1, 1, 1, 0, 1), "bcdef"),
        (False, (0, 0, 0, 0, 0, 0, 0, 0), ""),
        (True, (1, 1, 1, 1, 1, 0, 1, 1), "h"),
    ]),
    ("((((((((a == 1) && (b == 1)) || (c == 1)) && (d == 1)) || (e == 1)) && (f == 1)) || "
     "(g == 1)) && (h == 1))", [
        (True, (1, 1, 1, 1, 1, 1, 1, 1), "ceg"),
        (False, (0, 1, 0, 1, 0, 1, 0, 1), ""),
        (False, (1, 0, 1, 0, 1, 0, 1, 0), ""),
    ]),
    ("((((((((a == 1) || (b == 1)) && (c == 1)) || (d == 1)) && (e == 1)) || (f == 1)) && "
     "(g == 1)) || (h == 1))", [
        (True, (1, 1, 1, 1, 1, 1, 1, 1), "bdfh"),
        (True, (0, 1, 0, 1, 0, 1, 0, 1), ""),
        (True, (1, 0, 1, 0, 1, 0, 1, 0), "bdfh"),
    ]),
]
_SELFTEST_ROWS = [(flt, *row) for flt, rows in KERNEL_SELFTEST for row in rows]


@pytest.mark.parametrize("expression, expected, values, not_visited", _SELFTEST_ROWS)
def test_kernel_selftest_results(expression: str, expected: bool, values: tuple,
                                 not_visited: str) -> None:
    ints = [Fld(name, "int", 8 + 4 * k, 4, True) for k, name in enumerate("abcdefgh")]
    rec = bytes(8) + struct.pack("<8i", *values)
    assert compile_filter(expression, COMMON + ints).match(rec, 0, "x") is expected


@pytest.mark.parametrize("expression, expected, values, not_visited", _SELFTEST_ROWS)
def test_kernel_selftest_short_circuit(expression: str, expected: bool, values: tuple,
                                       not_visited: str) -> None:
    # Same filters over char * fields whose reads are logged: skipped terms are never read.
    ptrs = [Fld(name, "char *", 8 + 8 * k, 8, False) for k, name in enumerate("abcdefgh")]
    visited: list[str] = []

    def reader(addr: int) -> bytes:
        name, value = divmod(addr, 2)
        visited.append("abcdefgh"[name])
        return b"1" if value else b"0"

    text = expression.replace("== 1", '== "1"')
    rec = bytes(8) + struct.pack("<8Q", *(2 * k + v for k, v in enumerate(values)))
    flt = compile_filter(text, COMMON + ptrs, read_string=reader)
    assert flt.match(rec, 0, "x") is expected
    assert not set(visited) & set(not_visited)


def test_subsystem_filter_applies_where_fields_exist() -> None:
    events = {
        "netif_receive_skb": COMMON + [Fld("len", "unsigned int", 16, 4, False)],
        "kfree_skb": COMMON + [Fld("protocol", "unsigned short", 32, 2, False)],
    }
    results = compile_subsystem_filter("len > 10", events)
    assert results["netif_receive_skb"].match(bytes(16) + struct.pack("<I", 11), 0, "x")
    err = results["kfree_skb"]
    assert err.filter_file_text() == (
        "len > 10\n^\nparse_error: Couldn't find or set field in one of a subsystem's events\n\n"
    )
    assert err.error_log_entry("    1.000000").splitlines()[0] == (
        "[    1.000000] event filter parse error: error: "
        "Couldn't find or set field in one of a subsystem's events"
    )


@pytest.mark.parametrize("text, clears", [("0", True), (" 0\n", True), ("00", False),
                                          ("0 && 1", False), ("", False)])
def test_clear_request(text: str, clears: bool) -> None:
    assert is_clear_request(text) is clears

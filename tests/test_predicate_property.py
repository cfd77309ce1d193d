"""Properties of the predicate compiler over random expressions.

* Random valid expressions (random spacing and parentheses) compile, read back as written
  (trailing whitespace dropped), recompile from their own text, and match exactly what ordinary
  short-circuit boolean logic over the same tree says — the kernel's three-pass program builder
  is an implementation of &&/||/! with && binding tighter, and the generated code runs it.
* Random token soup either compiles or raises FilterError with a sane position — nothing else.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tracesim.filters.predicate import FilterError, compile_filter  # noqa: E402

from tests.conftest import FUZZ_LONG  # noqa: E402
from tests.test_predicate_match import COMMON, Fld  # noqa: E402

NUMERIC = ("a", "b", "c", "d")
FIELDS = COMMON + [Fld(name, "unsigned int", 8 + 4 * k, 4, False) for k, name in enumerate(NUMERIC)]
FIELDS += [Fld("dev", "__data_loc char[]", 24, 4, False)]
DEVICES = (b"lo", b"eth0", b"eth1", b"veth7", b"")
PATTERNS = ("lo", "eth0", "eth*", "*0", "*th*", "e?h[01]", "!eth*", "")

NUM_OPS = {
    "==": lambda x, v: x == v, "!=": lambda x, v: x != v, "<": lambda x, v: x < v,
    "<=": lambda x, v: x <= v, ">": lambda x, v: x > v, ">=": lambda x, v: x >= v,
    "&": lambda x, v: x & v != 0,
}


def _glob_ref(pattern: str, dev: bytes) -> bool:
    import fnmatch
    text = dev.decode()
    if pattern.startswith("!"):
        return not _glob_ref(pattern[1:], dev)
    return fnmatch.fnmatchcase(text, pattern.replace("[!", "[!"))


@dataclass(frozen=True)
class Leaf:
    field: str
    op: str
    value: object

    def eval(self, rec: dict) -> bool:
        if self.field == "dev":
            dev = rec["dev"]
            if self.op == "~":
                return _glob_ref(self.value, dev)
            same = dev == self.value.encode()
            return same if self.op == "==" else not same
        return NUM_OPS[self.op](rec[self.field], self.value)


@dataclass(frozen=True)
class Node:
    kind: str  # "and", "or", "not", "group"
    children: tuple

    def eval(self, rec: dict) -> bool:
        if self.kind == "and":
            return self.children[0].eval(rec) and self.children[1].eval(rec)
        if self.kind == "or":
            return self.children[0].eval(rec) or self.children[1].eval(rec)
        if self.kind == "not":
            return not self.children[0].eval(rec)
        return self.children[0].eval(rec)


numeric_leaf = st.builds(Leaf, st.sampled_from(NUMERIC), st.sampled_from(tuple(NUM_OPS)),
                         st.integers(0, 6))
string_leaf = st.one_of(
    st.builds(Leaf, st.just("dev"), st.sampled_from(("==", "!=")),
              st.sampled_from(("lo", "eth0", "veth7", ""))),
    st.builds(Leaf, st.just("dev"), st.just("~"), st.sampled_from(PATTERNS)),
)
trees = st.recursive(
    st.one_of(numeric_leaf, string_leaf),
    lambda inner: st.one_of(
        st.builds(lambda a, b: Node("and", (a, b)), inner, inner),
        st.builds(lambda a, b: Node("or", (a, b)), inner, inner),
        st.builds(lambda x: Node("not", (x,)), inner),
        st.builds(lambda x: Node("group", (x,)), inner),
    ),
    max_leaves=10,
)
spaces = st.sampled_from(("", " ", " ", "  ", "\t"))


def _prec(node: Leaf | Node) -> int:
    if isinstance(node, Leaf) or node.kind in ("not", "group"):
        return 3
    return 2 if node.kind == "and" else 1


@st.composite
def rendered(draw) -> tuple[Leaf | Node, str]:
    """A tree and one way to write it."""
    tree = draw(trees)

    def show(node: Leaf | Node) -> str:
        ws = draw(spaces)
        if isinstance(node, Leaf):
            value = f'"{node.value}"' if node.field == "dev" else str(node.value)
            return f"{node.field}{ws}{node.op}{draw(spaces)}{value}"
        if node.kind == "group":
            return f"({ws}{show(node.children[0])}{draw(spaces)})"
        if node.kind == "not":
            child = node.children[0]
            body = show(child) if _prec(child) == 3 else f"({show(child)})"
            return f"!{ws}{body}"
        need = _prec(node)
        parts = []
        for child in node.children:
            text = show(child)
            parts.append(text if _prec(child) >= need else f"({text})")
        op = "&&" if node.kind == "and" else "||"
        return f"{parts[0]}{ws}{op}{draw(spaces)}{parts[1]}"

    lead = draw(st.sampled_from(("", " ")))
    trail = draw(st.sampled_from(("", " ", "\n", " \t\n")))
    return tree, lead + show(tree) + trail


records = st.fixed_dictionaries({
    "a": st.integers(0, 6), "b": st.integers(0, 6), "c": st.integers(0, 6),
    "d": st.integers(0, 6), "dev": st.sampled_from(DEVICES),
})


def _pack(rec: dict) -> bytes:
    dev = rec["dev"] + b"\0"
    head = bytes(8) + struct.pack("<4I", rec["a"], rec["b"], rec["c"], rec["d"])
    return head + struct.pack("<I", 28 | (len(dev) << 16)) + dev


def check_tree(sample, recs) -> None:
    tree, text = sample
    flt = compile_filter(text, FIELDS)
    assert flt.text == text.rstrip(" \t\n")
    again = compile_filter(flt.text, FIELDS)
    for rec in recs:
        packed = _pack(rec)
        expected = tree.eval(rec)
        assert flt.match(packed, 0, "x") is expected, (text, rec)
        assert again.match(packed, 0, "x") is expected


TOKENS = ("a", "b", "dev", "nosuch", "CPU", "COMM", "==", "!=", "<", ">=", "&", "~", "&&", "||",
          "|", "!", "(", ")", "0", "7", "0x1f", "-3", '"lo"', '"e*"', "'x'", '"', "CPUS{0-1}",
          "{", "}", ".function", " ", " ")


def check_soup(parts) -> None:
    text = "".join(parts)
    try:
        flt = compile_filter(text, FIELDS, nr_cpu_ids=4)
    except FilterError as err:
        assert err.errno > 0
        assert err.pos is None or 0 <= err.pos <= len(text.encode()) + 2
        assert err.filter_file_text().startswith(err.text + "\n")
        return
    flt.match(_pack({"a": 1, "b": 2, "c": 3, "d": 4, "dev": b"lo"}), 1, "bash")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rendered(), st.lists(records, min_size=1, max_size=6))
def test_random_expressions_match_boolean_logic(sample, recs) -> None:
    check_tree(sample, recs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=14))
def test_token_soup_compiles_or_fails_cleanly(parts) -> None:
    check_soup(parts)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: set TRACESIM_FUZZ=long")
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rendered(), st.lists(records, min_size=1, max_size=6))
def test_random_expressions_match_boolean_logic_long(sample, recs) -> None:
    check_tree(sample, recs)


@pytest.mark.fuzz
@pytest.mark.skipif(not FUZZ_LONG, reason="long fuzz: set TRACESIM_FUZZ=long")
@settings(max_examples=20000, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=24))
def test_token_soup_compiles_or_fails_cleanly_long(parts) -> None:
    check_soup(parts)

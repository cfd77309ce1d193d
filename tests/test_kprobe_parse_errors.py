"""Malformed probe definitions → (errno, error_log text, caret column), as trace_probe.c logs them.

Each case is written with ``^`` where the kernel's caret goes (the ``^`` is not part of the
command); the error texts are trace_probe.h's ERRORS. Kinds: ``p``/``r`` (trace_kprobe, written
to kprobe_events), ``f``/``t`` (trace_fprobe) and ``e`` (event_probe), written to
dynamic_events. The same table runs through the in-process tree and, for a sample, through the
FUSE mount with a real shell ``echo``.
"""
from __future__ import annotations

import errno
import re
import subprocess

import pytest
from tracesim.kernel_model.trace.probe import ERR_TEXT

LONG = "1234567890" * 6 + "12345"          # 65 characters: longer than MAX_EVENT_NAME_LEN
DEEP = "+0(" * 14 + "@0" + ")" * 14        # 15 fetch instructions: one too many
TOO_LONG_ARG = "+1234567(" * 6 + "@1234" + ")" * 6

EINVAL, ENOENT, EEXIST, E2BIG = errno.EINVAL, errno.ENOENT, errno.EEXIST, errno.E2BIG

KPROBE_CASES = [
    ("p^100 consume_skb", "BAD_MAXACT_TYPE", EINVAL),
    ("r^1a111 consume_skb", "BAD_MAXACT", EINVAL),
    ("r^100000 consume_skb", "MAXACT_TOO_BIG", EINVAL),
    ("p ^non_exist_func", "BAD_PROBE_ADDR", ENOENT),
    ("p:test_non_unique ^name_show", "NON_UNIQ_SYMBOL", errno.EADDRNOTAVAIL),   # 4 in 6.18
    ("p ^hoge-fuga", "BAD_PROBE_ADDR", EINVAL),
    ("p ^hoge+1000-1000", "BAD_PROBE_ADDR", EINVAL),
    ("r ^consume_skb+10", "BAD_RETPROBE", EINVAL),
    ("p consume_skb^%hoge", "BAD_ADDR_SUFFIX", EINVAL),
    ("p:^/bar consume_skb", "NO_GROUP_NAME", EINVAL),
    (f"p:^{LONG}/bar consume_skb", "GROUP_TOO_LONG", EINVAL),
    ("p:^foo.1/bar consume_skb", "BAD_GROUP_NAME", EINVAL),
    ("p:^ consume_skb", "NO_EVENT_NAME", EINVAL),
    (f"p:foo/^{LONG} consume_skb", "EVENT_TOO_LONG", EINVAL),
    ("p:foo/^bar.1 consume_skb", "BAD_EVENT_NAME", EINVAL),
    ("p consume_skb ^$retval", "RETVAL_ON_PROBE", EINVAL),
    ("p consume_skb ^$stack10000", "BAD_STACK_NUM", EINVAL),
    ("p skb_release_data ^$arg10000", "BAD_ARG_NUM", EINVAL),
    ("p consume_skb ^$arg10000", "NO_BTFARG", EINVAL),
    ("p consume_skb+4 ^$arg1", "NOFENTRY_ARGS", EINVAL),
    ("p consume_skb ^$none_var", "BAD_VAR", EINVAL),
    ("p consume_skb ^%none_reg", "BAD_REG_NAME", EINVAL),
    ("p consume_skb ^@12345678abcde", "BAD_MEM_ADDR", EINVAL),
    ("p consume_skb ^@+10", "FILE_ON_KPROBE", EINVAL),
    ("p consume_skb arg1=\\^x", "BAD_IMM", EINVAL),
    ('p consume_skb arg1=\\"abcd^', "IMMSTR_NO_CLOSE", EINVAL),
    ("p consume_skb ^+0@0)", "DEREF_NEED_BRACE", EINVAL),
    ("p consume_skb ^+0ab1(@0)", "BAD_DEREF_OFFS", EINVAL),
    ("p consume_skb +0(+0(@0^)", "DEREF_OPEN_BRACE", EINVAL),
    ("p consume_skb +0(^$comm)", "COMM_CANT_DEREF", EINVAL),
    ("p consume_skb ^&1", "BAD_FETCH_ARG", EINVAL),
    ("p consume_skb +0(^" + DEEP[3:], "TOO_MANY_OPS", EINVAL),
    ("p consume_skb +0(@11):u8[10^", "ARRAY_NO_CLOSE", EINVAL),
    ("p consume_skb +0(@11):u8[10]^a", "BAD_ARRAY_SUFFIX", EINVAL),
    ("p consume_skb +0(@11):u8[^10a]", "BAD_ARRAY_NUM", EINVAL),
    ("p consume_skb +0(@11):u8[^256]", "ARRAY_TOO_BIG", EINVAL),
    ("p consume_skb @11:^unknown_type", "BAD_TYPE", EINVAL),
    ("p consume_skb $stack0:^string", "BAD_STRING", EINVAL),
    ("p consume_skb \\1:^symstr", "BAD_SYMSTRING", EINVAL),
    ("p consume_skb @11:^b10@a/16", "BAD_BITFIELD", EINVAL),
    ("p consume_skb $comm:^u32", "NEED_STRING_TYPE", EINVAL),
    ("p consume_skb ^arg123456789012345678901234567890=@11", "ARG_NAME_TOO_LONG", EINVAL),
    ("p consume_skb ^=@11", "NO_ARG_NAME", EINVAL),
    ("p consume_skb ^var.1=@11", "BAD_ARG_NAME", EINVAL),
    ("p consume_skb var1=@11 ^var1=@12", "USED_ARG_NAME", EINVAL),
    ("p consume_skb ^__probe_ip=%di", "USED_ARG_NAME", EINVAL),
    (f"p consume_skb ^{TOO_LONG_ARG}", "ARG_TOO_LONG", EINVAL),
    ("p consume_skb arg1=^", "NO_ARG_BODY", EINVAL),
    ("p ^consume_skb x=@no_such_symbol", "BAD_PROBE_ADDR", ENOENT),
    ("p consume_skb ^nosuchparam", "NO_BTFARG", EINVAL),
    ("p consume_skb+4 ^skb", "NOSUP_BTFARG", EINVAL),
    ("p skb_release_data ^skb", "NO_BTF_ENTRY", EINVAL),
    ("p skb_release_data ^$arg*", "NOSUP_BTFARG", EINVAL),
    ("p consume_skb $arg* ^$arg*", "DOUBLE_ARGS", EINVAL),
    ("p consume_skb ^$arg2", "NO_BTFARG", EINVAL),
    ("p consume_skb args=^$arg*", "BAD_VAR_ARGS", EINVAL),
    ("r consume_skb ^$retval", "NO_RETVAL", EINVAL),
    ("p ^notify_die", "FAIL_REG_PROBE", EINVAL),         # on the kprobe blacklist
]

FPROBE_CASES = [
    ("f^100 consume_skb", "BAD_MAXACT", EINVAL),
    ("f ^non_exist_func", "BAD_PROBE_ADDR", EINVAL),
    ("f ^consume_skb+10", "BAD_PROBE_ADDR", EINVAL),
    ("f:^/bar consume_skb", "NO_GROUP_NAME", EINVAL),
    ("f:^foo.1/bar consume_skb", "BAD_GROUP_NAME", EINVAL),
    ("f:^ consume_skb", "NO_EVENT_NAME", EINVAL),
    (f"f:foo/^{LONG} consume_skb", "EVENT_TOO_LONG", EINVAL),
    ("f consume_skb ^$stack10000", "BAD_STACK_NUM", EINVAL),
    ("f consume_skb ^$none_var", "BAD_VAR", EINVAL),
    ("f consume_skb ^%ax", "BAD_VAR", EINVAL),
    ("f consume_skb ^@+10", "FILE_ON_KPROBE", EINVAL),
    ("f consume_skb ^&1", "BAD_FETCH_ARG", EINVAL),
    ("f consume_skb^%hoge", "BAD_ADDR_SUFFIX", EINVAL),
    ("f consume_skb ^hoge", "NO_BTFARG", EINVAL),
    ("f kfree ^$arg10", "NO_BTFARG", EINVAL),
    ("f kfree%return ^$retval", "NO_RETVAL", EINVAL),
    ("f consume_skb +0(^$arg*)", "BAD_VAR_ARGS", EINVAL),
    ("f consume_skb%return ^$retval->foo", "NO_RETVAL", EINVAL),
    ("f __netif_receive_skb%return $retval->^len", "NO_PTR_STRCT", EINVAL),
    ("f consume_skb skb->^foo", "NO_BTF_FIELD", EINVAL),
    ("f consume_skb skb->dev->^nosuch", "NO_BTF_FIELD", EINVAL),
    ("f consume_skb skb->len->^x", "NO_PTR_STRCT", EINVAL),
    ("f consume_skb skb^-.foo", "BAD_HYPHEN", EINVAL),
    ("f consume_skb ^skb:string", "BAD_TYPE4STR", EINVAL),
    ("f consume_skb ^skb->len:string", "BAD_TYPE4STR", EINVAL),
    # the task model's functions carry their 6.18 BTF prototypes too
    ("f vfs_read file->^foo", "NO_BTF_FIELD", EINVAL),
    ("f vfs_read%return $retval->^foo", "NO_PTR_STRCT", EINVAL),
    ("f vfs_read ^hoge", "NO_BTFARG", EINVAL),
    ("t^100 kfree", "BAD_MAXACT", EINVAL),
    ("t:^/bar kfree", "NO_GROUP_NAME", EINVAL),
    ("t kfree^%return", "BAD_ADDR_SUFFIX", EINVAL),
    ("t kf^-ree", "BAD_TP_NAME", EINVAL),
    ("t kfree ^$retval", "RETVAL_ON_PROBE", EINVAL),
    ("t kfree x=^$retval", "RETVAL_ON_PROBE", EINVAL),
    ("t kfree ^%rax", "BAD_VAR", EINVAL),
    ("t kfree ^$none_var", "BAD_VAR", EINVAL),
]

EPROBE_CASES = [
    ("e ^a.", "NO_EVENT_INFO", EINVAL),
    ("e ^.b", "NO_EVENT_INFO", EINVAL),
    ("e ^a.b", "BAD_ATTACH_EVENT", EINVAL),
    ("e net/netif_receive_skb ^foo", "NOSUP_BTFARG", EINVAL),
    ("e:^/bar net/netif_receive_skb", "NO_GROUP_NAME", EINVAL),
    ("e:^foo.1/bar net/netif_receive_skb", "BAD_GROUP_NAME", EINVAL),
    ("e:^ net/netif_receive_skb", "NO_EVENT_NAME", EINVAL),
    (f"e:foo/^{LONG} net/netif_receive_skb", "EVENT_TOO_LONG", EINVAL),
    ("e:foo/bar net/netif_receive_skb arg=^len", "NOSUP_BTFARG", EINVAL),
    ("e:foo/bar net/netif_receive_skb arg=^$foo", "BAD_ATTACH_ARG", EINVAL),
    ("e:foo/bar net/netif_receive_skb ^%di", "BAD_VAR", EINVAL),
    ("e:foo/bar net/netif_receive_skb if ^", "NO_EP_FILTER", EINVAL),
]

LOCATION = {"p": "trace_kprobe", "r": "trace_kprobe", "f": "trace_fprobe", "t": "trace_fprobe",
            "e": "event_probe"}
ALL_CASES = KPROBE_CASES + FPROBE_CASES + EPROBE_CASES


def split_caret(marked: str) -> tuple[str, int]:
    pos = marked.index("^")
    return marked[:pos] + marked[pos + 1:], pos


def expected_log(command: str, key: str, pos: int) -> list[str]:
    """The entry: the command is argv joined by single spaces (argv_split drops the rest)."""
    where = LOCATION[command[0]]
    return [f"{where}: error: {ERR_TEXT[key]}", "  Command: " + " ".join(command.split()),
            " " * (11 + pos) + "^"]


def last_entry(text: str) -> list[str]:
    lines = text.splitlines()[-3:]
    return [re.sub(r"^\[ *\d+\.\d{6}\] ", "", lines[0]), *lines[1:]]


def test_the_table_covers_the_parser_errors_the_model_can_hit() -> None:
    keys = {key for _, key, _ in ALL_CASES}
    # uprobe-only errors, and those the model cannot reach (no multi-probe symbols, no
    # instruction decoder, no entry-data limit, no structure fields through BTF)
    unreachable = {"FILE_NOT_FOUND", "NO_REGULAR_FILE", "BAD_REFCNT", "REFCNT_OPEN_BRACE",
                   "BAD_REFCNT_SUFFIX", "BAD_UPROBE_OFFS", "SYM_ON_UPROBE", "BAD_FILE_OFFS",
                   "NO_TRACEPOINT", "BAD_INSN_BNDRY", "ARGS_2LONG",
                   "ARGIDX_2BIG", "NOSUP_DAT_ARG", "BAD_BTF_TID", "TOO_MANY_EARGS"}
    # tested below with a probe already defined, or with 129 arguments
    elsewhere = {"EVENT_EXIST", "DIFF_PROBE_TYPE", "DIFF_ARG_TYPE", "SAME_PROBE", "TOO_MANY_ARGS"}
    assert set(ERR_TEXT) - keys == unreachable | elsewhere


@pytest.mark.parametrize("marked, key, code", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_refusal_errno_text_and_caret(tree, marked: str, key: str, code: int) -> None:
    command, pos = split_caret(marked)
    target = "/kprobe_events" if command[0] in "pr" else "/dynamic_events"
    before = tree.read_text("/dynamic_events")
    with pytest.raises(OSError) as e:
        tree.echo(target, command, append=True)
    assert e.value.errno == code
    assert last_entry(tree.read_text("/error_log")) == expected_log(command, key, pos)
    assert tree.read_text("/dynamic_events") == before


@pytest.mark.parametrize("marked, key, code", [
    ("e:foo/bar net/netif_receive_skb if ^", "NO_EP_FILTER", EINVAL),
    ("f:foo/^bar.1 consume_skb", "BAD_EVENT_NAME", EINVAL),
    ("p consume_skb +0(^" + DEEP[3:], "TOO_MANY_OPS", EINVAL),
    ("t kfree ^$stack10000", "BAD_STACK_NUM", EINVAL),
])
def test_refusals_through_the_mount(mnt, marked: str, key: str, code: int) -> None:
    command, pos = split_caret(marked)
    done = subprocess.run(["bash", "-c", f"echo '{command}' >> dynamic_events"], cwd=mnt,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Invalid argument" in done.stderr
    log = subprocess.run(["cat", "error_log"], cwd=mnt, capture_output=True, text=True).stdout
    assert last_entry(log) == expected_log(command, key, pos)


def test_multiprobe_clashes(tree) -> None:
    """register_trace_*: type, argument and name clashes with an existing event."""
    tree.echo("/dynamic_events", "t:tracepoints/testevent kfree abcd=\\1", append=True)
    for marked, key in [("^f:tracepoints/testevent kfree", "DIFF_PROBE_TYPE"),
                        ("t:tracepoints/testevent kfree ^bcd=\\1", "DIFF_ARG_TYPE"),
                        ("t:tracepoints/testevent kfree ^abcd=\\1:u8", "DIFF_ARG_TYPE"),
                        ("^t:tracepoints/testevent kfree abcd=\\1", "SAME_PROBE"),
                        ("^p:tracepoints/testevent kfree", "EVENT_EXIST"),
                        ("^e:net/netif_receive_skb net.netif_rx", "EVENT_EXIST")]:
        command, pos = split_caret(marked)
        with pytest.raises(OSError) as e:
            tree.echo("/dynamic_events", command, append=True)
        assert e.value.errno == EEXIST, command
        assert last_entry(tree.read_text("/error_log")) == expected_log(command, key, pos)


def test_too_many_arguments_is_e2big(tree) -> None:
    command = "p consume_skb " + " ".join(f"a{i}=%di" for i in range(129))
    with pytest.raises(OSError) as e:
        tree.echo("/kprobe_events", command, append=True)
    assert e.value.errno == E2BIG
    pos = len("p consume_skb ")
    assert last_entry(tree.read_text("/error_log")) == expected_log(command, "TOO_MANY_ARGS", pos)


def test_stack_and_arg_limits_are_the_kernels(tree) -> None:
    """PARAM_MAX_STACK = THREAD_SIZE / sizeof(long) = 2048 on x86-64."""
    tree.echo("/kprobe_events", "p:ok consume_skb s=$stack2048 a=$arg2048", append=True)
    with pytest.raises(OSError):
        tree.echo("/kprobe_events", "p:bad consume_skb s=$stack2049", append=True)
    assert tree.read_text("/kprobe_events") == "p:kprobes/ok consume_skb s=$stack2048 a=$arg2048\n"


def test_no_kind_takes_it_einval_without_log(tree) -> None:
    for command in ("x:foo kfree", "p", "f", "e", "p /bin/true:0x10"):
        with pytest.raises(OSError) as e:
            tree.echo("/dynamic_events", command, append=True)
        assert e.value.errno == EINVAL
    assert tree.read_text("/error_log") == ""

"""What a program learns of its attachment through ``tracesim run`` and the attach API:
``bpf_get_func_ip`` (the probed function's address; 0 for a kprobe at an offset),
``bpf_get_attach_cookie`` (the link's, or a kprobe.multi symbol's), and under fentry/fexit
``bpf_get_func_arg``/``_ret``/``_arg_cnt`` (the count from the function's BTF prototype,
-EINVAL past it, -EOPNOTSUPP for the return value at entry), on every engine."""
from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tracesim.kernel_model.kallsyms import Kallsyms

from tests.conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
RUN = ("--workload", "eth0", "--duration", "0.01", "--clock", "virtual")

ENV_C = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 kp_ip, kp_cookie, kp_off_ip = 1, kret_ip, multi_ip1, multi_ip2, multi_other;
__u64 fe_ip, fe_cnt, fe_arg0, fe_skb, fe_cookie;
__s64 fe_bad_arg, fe_ret_err, fx_ret_err, fx_bad_arg;
__u64 fx_ip, fx_cnt, fx_ret, fx_ctx_ret, fx_arg1, tp_cookie;

SEC("kprobe/__netif_receive_skb")
int on_kprobe(struct pt_regs *ctx)
{
	kp_ip = bpf_get_func_ip(ctx);
	kp_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("kprobe/__netif_receive_skb+0x4")
int on_kprobe_off(struct pt_regs *ctx)
{
	kp_off_ip = bpf_get_func_ip(ctx);
	return 0;
}

SEC("kretprobe/consume_skb")
int on_kret(struct pt_regs *ctx)
{
	kret_ip = bpf_get_func_ip(ctx);
	return 0;
}

SEC("kprobe.multi/kmem_cache_*")
int on_multi(struct pt_regs *ctx)
{
	__u64 c = bpf_get_attach_cookie(ctx);

	if (c == 1)
		multi_ip1 = bpf_get_func_ip(ctx);
	else if (c == 2)
		multi_ip2 = bpf_get_func_ip(ctx);
	else
		multi_other++;
	return 0;
}

SEC("fentry/__netif_receive_skb")
int BPF_PROG(on_fentry, void *skb)
{
	__u64 v = 0;

	fe_ip = bpf_get_func_ip(ctx);
	fe_cnt = bpf_get_func_arg_cnt(ctx);
	if (bpf_get_func_arg(ctx, 0, &v) == 0)
		fe_arg0 = v;
	fe_skb = (__u64)skb;
	fe_bad_arg = bpf_get_func_arg(ctx, 1, &v);
	fe_ret_err = bpf_get_func_ret(ctx, &v);
	fe_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("fexit/__kmalloc_noprof")
int BPF_PROG(on_fexit, unsigned long size, unsigned int flags, void *ret)
{
	__u64 v = 0;

	fx_ip = bpf_get_func_ip(ctx);
	fx_cnt = bpf_get_func_arg_cnt(ctx);
	fx_ret_err = bpf_get_func_ret(ctx, &v);
	fx_ret = v;
	fx_ctx_ret = (__u64)ret;
	if (bpf_get_func_arg(ctx, 1, &v) == 0)
		fx_arg1 = v;
	fx_bad_arg = bpf_get_func_arg(ctx, 2, &v);
	return 0;
}

SEC("tracepoint/net/netif_receive_skb")
int on_tp(void *ctx)
{
	tp_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def build(tmp: Path, name: str, source: str) -> Path:
    clang = need_tool("clang", "clang")
    if not Path("/usr/include/bpf/bpf_tracing.h").exists():
        pytest.skip("/usr/include/bpf/bpf_tracing.h is missing: install the Debian package "
                    "'libbpf-dev'")
    src = tmp / f"{name}.bpf.c"
    src.write_text(source)
    obj = tmp / f"{name}.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True, timeout=120)
    return obj


def tracesim_run(obj: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "run", str(obj), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def bss(stdout: str) -> dict[str, int]:
    """The global variables of a text dump (``name = value`` lines from ``@.data:`` or
    ``@.bss:`` on)."""
    text = stdout[min(i for i in (stdout.find("@.data:\n"), stdout.find("@.bss:\n"), len(stdout))
                      if i >= 0):]
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^(\w+) = (\S+)$", text, re.M)}


@pytest.fixture(scope="module")
def env_object(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("attach_env"), "attachenv", ENV_C)


@pytest.mark.parametrize("engine", ["interp", "jit", "native"])
def test_attach_environment_through_tracesim_run(env_object, engine):
    done = tracesim_run(env_object, *RUN, "--engine", engine,
                        "--cookie", "on_kprobe=0xfeedface12345678",
                        "--cookie", "on_multi:kmem_cache_alloc_noprof=1",
                        "--cookie", "on_multi:kmem_cache_free=2",
                        "--cookie", "on_fentry=7", "--cookie", "on_tp=99")
    assert done.returncode == 0, done.stderr
    v = bss(done.stdout)
    syms = Kallsyms()
    # kprobe at a function's entry: its address; at an offset into it: 0 (not on func entry)
    assert v["kp_ip"] == syms.address_of("__netif_receive_skb")
    assert v["kp_cookie"] == 0xfeedface12345678
    assert v["kp_off_ip"] == 0
    assert v["kret_ip"] == syms.address_of("consume_skb")
    # kprobe.multi: each symbol's own entry ip and cookie
    assert v["multi_ip1"] == syms.address_of("kmem_cache_alloc_noprof")
    assert v["multi_ip2"] == syms.address_of("kmem_cache_free")
    assert v["multi_other"] == 0
    # fentry: the traced function, one argument (its prototype), no return value yet
    assert v["fe_ip"] == syms.address_of("__netif_receive_skb")
    assert v["fe_cnt"] == 1
    assert v["fe_arg0"] == v["fe_skb"] != 0
    assert v["fe_bad_arg"] == -errno.EINVAL
    assert v["fe_ret_err"] == -errno.EOPNOTSUPP
    assert v["fe_cookie"] == 7
    # fexit: two arguments, the return value after them
    assert v["fx_ip"] == syms.address_of("__kmalloc_noprof")
    assert v["fx_cnt"] == 2
    assert v["fx_ret_err"] == 0 and v["fx_ret"] == v["fx_ctx_ret"] != 0
    assert v["fx_arg1"] != 0                       # the gfp flags
    assert v["fx_bad_arg"] == -errno.EINVAL
    assert v["tp_cookie"] == 99


def test_without_cookies_they_are_zero(env_object):
    done = tracesim_run(env_object, *RUN)
    assert done.returncode == 0, done.stderr
    v = bss(done.stdout)
    assert v["kp_cookie"] == v["fe_cookie"] == v["tp_cookie"] == 0
    assert v["multi_ip1"] == v["multi_ip2"] == 0 and v["multi_other"] > 0


@pytest.mark.parametrize("bad", ["on_kprobe", "on_kprobe=x", "on_multi:=1", "nosuch=1"])
def test_bad_cookie_option(env_object, bad):
    done = tracesim_run(env_object, *RUN, "--cookie", bad)
    assert done.returncode != 0
    assert "--cookie" in done.stderr


TARGETS_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 hits;

SEC("fentry/no_such_func")
int BPF_PROG(missing, void *a) { hits++; return 0; }

SEC("tp_btf/no_such_tp")
int BPF_PROG(missing_tp, void *a) { hits++; return 0; }

SEC("fexit/do_exit")
int BPF_PROG(noreturn_exit, long code) { hits++; return 0; }

SEC("fentry")
int BPF_PROG(bare, void *a) { hits++; return 0; }

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btf_func_arg, void *skb)
{
	__u64 v;

	return bpf_get_func_arg(ctx, 0, &v);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btf_func_ip, void *skb)
{
	return bpf_get_func_ip(ctx);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btf_cookie, void *skb)
{
	hits += bpf_get_attach_cookie(ctx) + 1;
	return 0;
}

SEC("fentry/do_exit")
int BPF_PROG(good, long code) { hits++; return 0; }

char LICENSE[] SEC("license") = "GPL";
"""


def test_btf_targets_are_checked_at_load(tmp_path):
    """libbpf looks the target's BTF id up when it loads the program (-ESRCH, and -EINVAL
    without a target), the kernel refuses fexit on a __noreturn function, and the helpers a
    tp_btf program may not call are refused by the verifier; the other programs load."""
    obj = build(tmp_path, "targets", TARGETS_C)
    done = tracesim_run(obj, "--workload", "eth0", "--duration", "0.001", "--clock", "virtual")
    assert done.returncode == 0, done.stderr
    err = done.stderr
    for prog, name in (("missing", "no_such_func"), ("missing_tp", "no_such_tp")):
        assert (f"libbpf: prog '{prog}': failed to find kernel BTF type ID of '{name}': -ESRCH\n"
                f"libbpf: prog '{prog}': failed to prepare load attributes: -ESRCH\n"
                f"libbpf: prog '{prog}': failed to load: -ESRCH\n") in err
    assert ("libbpf: prog 'bare': no BTF-based attach target is specified, use "
            "bpf_program__set_attach_target()\nlibbpf: prog 'bare': failed to prepare load "
            "attributes: -EINVAL\nlibbpf: prog 'bare': failed to load: -EINVAL\n") in err
    assert ("-- BEGIN PROG LOAD LOG --\nAttaching fexit/fmod_ret to __noreturn function "
            "'do_exit' is rejected.\n-- END PROG LOAD LOG --\n"
            "libbpf: prog 'noreturn_exit': failed to load: -EINVAL\n") in err
    assert "program of this type cannot use helper bpf_get_func_arg#183\n" in err
    assert "libbpf: prog 'btf_func_arg': failed to load: -EACCES\n" in err
    assert "func bpf_get_func_ip#173 supported only for fentry/fexit/fmod_ret programs\n" in err
    assert "libbpf: prog 'btf_func_ip': failed to load: -ENOTSUPP\n" in err
    assert "Attached prog 'btf_cookie' (tracing) to tp_btf/netif_receive_skb" in err
    assert "Attached prog 'good' (tracing) to fentry/do_exit" in err
    assert "Traceback" not in err


def test_tracesim_check_applies_the_attach_type_rules(tmp_path, capsys):
    from tracesim.tools.cli import main as cli_main
    obj = build(tmp_path, "targets", TARGETS_C)
    assert cli_main(["check", str(obj), "--section", "btf_func_arg"]) == 1
    assert "program of this type cannot use helper bpf_get_func_arg#183" in capsys.readouterr().out
    assert cli_main(["check", str(obj), "--section", "btf_cookie"]) == 0
    capsys.readouterr()
    assert cli_main(["check", str(obj), "--section", "missing"]) == 1      # as tracesim run
    assert capsys.readouterr().out == (
        "libbpf: prog 'missing': failed to find kernel BTF type ID of 'no_such_func': -ESRCH\n"
        "libbpf: prog 'missing': failed to prepare load attributes: -ESRCH\n"
        "libbpf: prog 'missing': failed to load: -ESRCH\n")


def test_func_ip_in_a_kprobe_event_filter(system):
    """A program written to a kprobe event's filter sees the probed function's address
    (0 when the probe is at an offset into it, as the kernel's KPROBE_FLAG_ON_FUNC_ENTRY)."""
    from tests.test_bpf_filter import send, source, trace_lines
    from tests.tree_helpers import cat_into
    addr = Kallsyms().address_of("__netif_receive_skb")
    obj = source(f"""
        #include <bpf/bpf_helpers.h>
        SEC("kprobe/__netif_receive_skb")
        int at_entry(struct pt_regs *ctx)
        {{
            return bpf_get_func_ip(ctx) == {addr}ULL;
        }}
        char _license[] SEC("license") = "GPL";
    """)
    tree = system.tree
    tree.echo("/kprobe_events", "p:rx __netif_receive_skb")
    tree.echo("/kprobe_events", "p:rx4 __netif_receive_skb+4", append=True)
    for ev in ("rx", "rx4"):
        cat_into(tree, f"/events/kprobes/{ev}/filter", obj)
        tree.echo(f"/events/kprobes/{ev}/enable", "1")
    send(system, "eth0", 3)
    lines = trace_lines(tree)
    assert sum(" rx:" in line for line in lines) == 3
    assert not any(" rx4:" in line for line in lines)


def test_attach_api_sets_the_env_per_hit(kernel):
    import types

    from tracesim.filters.bpf.attach import AttachError, attach_program
    env = types.SimpleNamespace(ip=0, cookie=0, nargs=0, func_returned=False)
    seen = set()
    link = attach_program(kernel, "p", "kprobe.multi/kmem_cache_*",
                          lambda ctx: seen.add((env.ip, env.cookie)), env,
                          {"kmem_cache_free": 5})
    kernel.workloads.get("eth0").step(2)
    link.detach()
    syms = kernel.kallsyms
    assert seen == {(syms.address_of("kmem_cache_alloc_noprof"), 0),
                    (syms.address_of("kmem_cache_free"), 5)}
    fexit = attach_program(kernel, "p", "fexit/__kmalloc_noprof", lambda ctx: 0, env, 9)
    assert (env.ip, env.nargs, env.cookie, env.func_returned) == \
        (syms.address_of("__kmalloc_noprof"), 2, 9, True)
    fexit.detach()
    with pytest.raises(AttachError) as info:
        attach_program(kernel, "p", "kprobe/kfree", lambda ctx: 0, env, {"kfree": 1})
    assert info.value.errno == errno.EINVAL

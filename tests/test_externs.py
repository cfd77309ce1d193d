"""``__kconfig`` and ``__ksym`` externs of clang-built objects resolved as libbpf resolves them:
LINUX_KERNEL_VERSION is KERNEL_VERSION(6, 18, 44), CONFIG_* values come from the model's
kconfig table (bool, tristate, int, string), ksyms from the model's kallsyms, weak unresolved
ones are 0, and strong unresolved or mistyped ones fail the open with libbpf's message, the same
way for ``tracesim check`` and the loader."""
from __future__ import annotations

import errno
import struct
import subprocess
from pathlib import Path

import pytest
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.toolchain.externs import KCONFIG, kernel_version_code
from tracesim.kernel_model.kallsyms import Kallsyms
from tracesim.tools.cli import main as cli_main

from tests.conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
INCLUDES = [ROOT / "kernel_model" / "include", ROOT / "filters" / "bpf" / "include"]

EXTERNS_C = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern _Bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_NET_CLS_BPF __kconfig __weak;
extern int CONFIG_HZ __kconfig;
extern _Bool CONFIG_NOT_IN_THE_MODEL __kconfig __weak;
extern char CONFIG_DEFAULT_HOSTNAME[8] __kconfig __weak;
extern const void consume_skb __ksym;
extern const void no_such_symbol __ksym __weak;

__u64 out[8];

SEC("kprobe/consume_skb")
int prog(void *ctx)
{
	out[0] = LINUX_KERNEL_VERSION;
	out[1] = CONFIG_BPF_SYSCALL | LINUX_HAS_SYSCALL_WRAPPER << 1;
	out[2] = CONFIG_NET_CLS_BPF;
	out[3] = CONFIG_HZ;
	out[4] = CONFIG_NOT_IN_THE_MODEL;
	out[5] = (__u64)&consume_skb;
	out[6] = (__u64)&no_such_symbol;
	out[7] = CONFIG_DEFAULT_HOSTNAME[0];
	if (LINUX_KERNEL_VERSION < KERNEL_VERSION(6, 0, 0))
		return 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
"""


def _clang(tmp_path: Path, src: str, name: str = "ext") -> Path:
    clang = need_tool("clang", "clang")
    c, o = tmp_path / f"{name}.c", tmp_path / f"{name}.o"
    c.write_text(src)
    cmd = [clang, "-O2", "-g", "-target", "bpf", "-c", str(c), "-o", str(o)]
    for inc in INCLUDES:
        cmd += ["-I", str(inc)]
    subprocess.run(cmd, check=True, capture_output=True)
    return o


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_kconfig_and_ksym_values(tmp_path, engine):
    obj = loader.open_object(_clang(tmp_path, EXTERNS_C).read_bytes())
    kconfig = next(m for m in obj.maps if m.name == ".kconfig")
    assert kconfig.flags & (1 << 7)                      # BPF_F_RDONLY_PROG, as libbpf's
    loaded = loader.load_object_program(obj, obj.program("prog"), engine=engine)
    assert loaded.runner.run(bytes(168)).value == 0
    bss = next(m for m in loaded.maps if m.name == ".bss")
    out = struct.unpack("<8Q", bss.values)
    assert out[0] == kernel_version_code(6, 18, 44) == 0x6122C
    assert out[1] == 3
    assert KCONFIG["CONFIG_NET_CLS_BPF"] == "m" and out[2] == 2          # TRI_MODULE
    assert out[3] == 250 and out[4] == 0
    assert out[5] == Kallsyms().address_of("consume_skb") and out[6] == 0
    assert out[7] == ord("(")                            # "(none)"


@pytest.mark.parametrize("decl, message, err", [
    ("extern _Bool CONFIG_NOT_IN_THE_MODEL __kconfig;",
     "libbpf: extern 'CONFIG_NOT_IN_THE_MODEL' (strong): not resolved", errno.ESRCH),
    ("extern _Bool CONFIG_NET_CLS_BPF __kconfig;",
     "libbpf: extern (kcfg) 'CONFIG_NET_CLS_BPF': value 'm' implies tristate or char type",
     errno.EINVAL),
    ("extern _Bool CONFIG_DEFAULT_HOSTNAME __kconfig;",
     "libbpf: extern (kcfg) 'CONFIG_DEFAULT_HOSTNAME': value '\"(none)\"' implies char array "
     "type", errno.EINVAL),
    ("extern int LINUX_SOMETHING_ELSE __kconfig;",
     "libbpf: extern (kcfg) 'LINUX_SOMETHING_ELSE': unrecognized virtual extern", errno.EINVAL),
    ("extern const void not_a_kernel_symbol __ksym;",
     "libbpf: extern 'not_a_kernel_symbol' (strong): not resolved", errno.ESRCH),
])
def test_unresolvable_externs_fail_the_open(tmp_path, capsys, decl, message, err):
    name = decl.split()[-2]
    src = ("#include <linux/types.h>\n#include <bpf/bpf_helpers.h>\n" + decl + "\n"
           "__u64 out;\nSEC(\"kprobe/x\")\nint prog(void *ctx)\n{\n"
           f"\tout = (__u64)&{name};\n\treturn 0;\n}}\n"
           "char _license[] SEC(\"license\") = \"GPL\";\n")
    path = _clang(tmp_path, src)
    with pytest.raises(loader.LoadError) as info:
        loader.open_object(path.read_bytes())
    assert info.value.summary == message and info.value.errno == err
    assert cli_main(["check", str(path)]) == 1           # tracesim check: the same message
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


BLOOM_C = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__uint(value_size, 4);
	__ulong(map_extra, 3);
} seen SEC(".maps");

SEC("kprobe/x")
int prog(void *ctx)
{
	__u32 v = 1;
	return bpf_map_peek_elem(&seen, &v) == 0;
}

char _license[] SEC("license") = "GPL";
"""


def test_map_extra_sets_the_bloom_filters_hashes(tmp_path):
    obj = loader.open_object(_clang(tmp_path, BLOOM_C, "bloom").read_bytes())
    assert obj.maps[0].map_extra == 3
    loaded = loader.load_object_program(obj, obj.program("prog"), engine="jit")
    assert loaded.maps[0].nr_hashes == 3
    assert loaded.runner.run(bytes(168)).value == 0
    loaded.maps[0].push((1).to_bytes(4, "little"))
    assert loaded.runner.run(bytes(168)).value == 1

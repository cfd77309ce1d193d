"""Compile errors read like a C compiler's: file:line:col, the source line, a caret; never a
Python traceback."""
from __future__ import annotations

import subprocess

import pytest
from tracesim.filters.bpf.compiler import CompileError, compile_source

from tests.conftest import ROOT

HEAD = "#include <linux/skbuff.h>\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n"

# (body of a kprobe program taking `struct pt_regs *ctx`, expected message fragment)
CASES = [
    ("double d = 1.5; return d;", "floating point is not supported"),
    ("int n = ctx->di; char buf[n]; return 0;", "variable-length arrays are not supported"),
    ("return ctx->nosuch;", "no member named 'nosuch' in 'struct pt_regs'"),
    ("return undeclared + 1;", "use of undeclared identifier 'undeclared'"),
    ("return rec(3);", "recursi"),
    ("long (*fp)(long) = 0; return fp(1);", "function pointers are not supported"),
    ("return &(ctx->di + 1) != 0;", "cannot take the address of an rvalue"),
    ("register long r = 1; long *p = &r; return *p;", "address of register variable"),
    ("return kernel_function(1);", "call to undeclared function 'kernel_function'"),
    ("struct sk_buff s; return s + 1;", "invalid operands to binary expression"),
    ("break; return 0;", "'break' statement not in loop or switch statement"),
    ("return bpf_map_lookup_elem(1);", "too few arguments to function call"),
    ("return 1 / 0;", "division by zero"),
    ("char big[600]; big[0] = 1; return big[0];", "exceeds the BPF limit of 512"),
    ("return 1 +;", "expected expression"),
]

PROLOGUE = "static __noinline long rec(long x) { return x ? rec(x - 1) : 0; }\n"


@pytest.mark.parametrize("body,message", CASES, ids=[c[1][:30] for c in CASES])
def test_error_has_location_line_and_caret(body, message):
    src = HEAD + PROLOGUE + 'SEC("kprobe/x")\nint prog(struct pt_regs *ctx)\n{\n\t' + body + "\n}\n"
    with pytest.raises(CompileError) as info:
        compile_source(src, "prog.c")
    err = info.value
    assert message in err.message
    text = err.render({"prog.c": src})
    first, *rest = text.splitlines()
    assert first.startswith(f"{err.file}:{err.line}:") and ": error: " in first
    if err.file == "prog.c":
        assert len(rest) == 2 and rest[1].strip() == "^"
        assert rest[0] == src.splitlines()[err.line - 1]


def test_missing_include_names_the_file():
    with pytest.raises(CompileError) as info:
        compile_source('#include <nosuch/header.h>\nint x;\n', "p.c")
    assert info.value.line == 1 and "'nosuch/header.h' file not found" in info.value.message


def test_cli_prints_diagnostic_without_traceback(tmp_path):
    src = tmp_path / "bad.c"
    src.write_text(HEAD + 'SEC("kprobe/x")\nint prog(struct pt_regs *ctx)\n{\n\treturn ctx->bogus;\n}\n')
    run = subprocess.run([str(ROOT / ".venv" / "bin" / "tracesim"), "cc", str(src), "-o",
                          str(tmp_path / "bad.o")], capture_output=True, text=True)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"{src}:7:14: error: no member named 'bogus' in 'struct pt_regs'"
    assert lines[1] == "\treturn ctx->bogus;"
    assert lines[2] == "\t            ^"
    assert not (tmp_path / "bad.o").exists()


def test_cli_writes_object_and_assembly(tmp_path):
    src = tmp_path / "ok.c"
    src.write_text(HEAD + 'SEC("kprobe/x")\nint prog(struct pt_regs *ctx)\n{\n\treturn ctx->di == 7;\n}\n'
                   'char _license[] SEC("license") = "GPL";\n')
    tracesim = str(ROOT / ".venv" / "bin" / "tracesim")
    subprocess.run([tracesim, "cc", "-O2", "-DX=1", str(src), "-o", str(tmp_path / "ok.o")],
                   check=True)
    assert (tmp_path / "ok.o").read_bytes()[:4] == b"\x7fELF"
    asm = subprocess.run([tracesim, "cc", "-S", str(src)], check=True, capture_output=True,
                         text=True).stdout
    assert "prog:" in asm and "r1 = *(u64 *)(r1 + 112)" in asm and "exit" in asm

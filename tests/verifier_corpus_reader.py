"""Reads tests/verifier_corpus/*.s: programs in LLVM BPF assembler with ``# key: value`` headers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "verifier_corpus"
MAP_TYPES = {"hash": 1, "array": 2, "percpu_hash": 5, "percpu_array": 6, "lru_hash": 9,
             "ringbuf": 27}


@dataclass(frozen=True)
class MapDef:
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str


@dataclass
class CorpusProgram:
    name: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def prog_type(self) -> str:
        return self.headers.get("type", "kprobe")

    @property
    def privileged(self) -> bool:
        return self.headers.get("priv", "1") == "1"

    @property
    def strict(self) -> bool:
        return self.headers.get("strict", "0") == "1"

    @property
    def error(self) -> str | None:
        return self.headers.get("error")

    @property
    def maps(self) -> list[MapDef]:
        out = []
        for spec in filter(None, (s.strip() for s in self.headers.get("maps", "").split(","))):
            kind, k, v, n, name = spec.split(":")
            out.append(MapDef(MAP_TYPES[kind], int(k), int(v), int(n), name))
        return out

    def context(self):
        from tracesim.filters.bpf.verifier import ContextSpec
        size = int(self.headers.get("ctxsize", "0"))
        if self.prog_type == "conformance":
            return ContextSpec.memory(size)
        if self.prog_type == "tracepoint" and size:
            return ContextSpec.tracepoint([], size)
        return None


def read_corpus(name: str) -> list[CorpusProgram]:
    progs: list[CorpusProgram] = []
    cur: CorpusProgram | None = None
    for line in (CORPUS / name).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and ":" in stripped:
            key, value = stripped[1:].split(":", 1)
            key, value = key.strip(), value.strip()
            if key == "name":
                cur = CorpusProgram(value, "")
                progs.append(cur)
                continue
            if cur is not None and not cur.text and key in ("error", "type", "priv", "strict",
                                                             "maps", "ctxsize"):
                cur.headers[key] = value
                continue
        if cur is not None and stripped and not stripped.startswith("#"):
            cur.text += line + "\n"
    return progs


def verify_program(prog: CorpusProgram, log_level: int = 1):
    from tracesim.filters.bpf.toolchain.asm import assemble
    from tracesim.filters.bpf.verifier import verify
    return verify(assemble(prog.text), prog_type=prog.prog_type, ctx=prog.context(),
                  maps=prog.maps, privileged=prog.privileged, strict_loops=prog.strict,
                  log_level=log_level)

"""Map types beyond hash/array: creation attributes refused with the kernel's errno
(map_alloc_check of each type), and each type's semantics and errno through the public API."""
from __future__ import annotations

import errno

import pytest
from tracesim.filters.bpf.runtime import maps as mp
from tracesim.filters.bpf.runtime.maps import MapError, create_map


def k(n: int, size: int = 4) -> bytes:
    return n.to_bytes(size, "little")


def err_of(fn, *args, **kw) -> int:
    with pytest.raises(MapError) as info:
        fn(*args, **kw)
    return info.value.errno


@pytest.mark.parametrize("attrs, err", [
    ((mp.MAP_TYPE_HASH, 0, 4, 1), errno.EINVAL),                   # key_size 0
    ((mp.MAP_TYPE_HASH, 513, 4, 1), errno.E2BIG),                  # key larger than the stack
    ((mp.MAP_TYPE_HASH, 4, 4, 0), errno.EINVAL),                   # max_entries 0
    ((mp.MAP_TYPE_PERCPU_HASH, 4, 32769, 1), errno.E2BIG),         # > PCPU_MIN_UNIT_SIZE
    ((mp.MAP_TYPE_ARRAY, 8, 4, 1), errno.EINVAL),
    ((mp.MAP_TYPE_PERCPU_ARRAY, 4, 0, 1), errno.EINVAL),
    ((mp.MAP_TYPE_PROG_ARRAY, 4, 8, 4), errno.EINVAL),             # value must be an fd
    ((mp.MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0), errno.EINVAL),
    ((mp.MAP_TYPE_STACK_TRACE, 4, 12, 8), errno.EINVAL),           # not a multiple of 8
    ((mp.MAP_TYPE_STACK_TRACE, 4, 8 * 128, 8), errno.EINVAL),      # > perf_event_max_stack
    ((mp.MAP_TYPE_STACK_TRACE, 8, 8, 8), errno.EINVAL),
    ((mp.MAP_TYPE_QUEUE, 4, 4, 8), errno.EINVAL),                  # queues have no key
    ((mp.MAP_TYPE_STACK, 0, 0, 8), errno.EINVAL),
    ((mp.MAP_TYPE_BLOOM_FILTER, 4, 4, 8), errno.EINVAL),
    ((mp.MAP_TYPE_LPM_TRIE, 8, 4, 8), errno.EINVAL),               # needs BPF_F_NO_PREALLOC
    ((mp.MAP_TYPE_RINGBUF, 0, 0, 3 * 4096), errno.EINVAL),         # not a power of 2
    ((mp.MAP_TYPE_RINGBUF, 0, 0, 2048), errno.EINVAL),             # not a page multiple
    ((mp.MAP_TYPE_RINGBUF, 4, 0, 4096), errno.EINVAL),
    ((mp.MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 4), errno.EBADF),           # no inner map
    ((99, 4, 4, 4), errno.EINVAL),
    ((14, 4, 4, 4), errno.EINVAL),                                 # DEVMAP: not modelled
])
def test_create_refuses_bad_attributes_with_the_kernels_errno(attrs, err):
    assert err_of(create_map, "m", *attrs) == err


@pytest.mark.parametrize("map_type, flags, err", [
    (mp.MAP_TYPE_LRU_HASH, mp.BPF_F_NO_PREALLOC, mp.ENOTSUPP),
    (mp.MAP_TYPE_HASH, mp.BPF_F_NO_COMMON_LRU, errno.EINVAL),
    (mp.MAP_TYPE_HASH, mp.BPF_F_RDONLY_PROG | mp.BPF_F_WRONLY_PROG, errno.EINVAL),
    (mp.MAP_TYPE_PERCPU_ARRAY, mp.BPF_F_MMAPABLE, errno.EINVAL),
    (mp.MAP_TYPE_ARRAY, mp.BPF_F_PRESERVE_ELEMS, errno.EINVAL),
    (mp.MAP_TYPE_HASH, 1 << 20, errno.EINVAL),
])
def test_create_refuses_bad_flags(map_type, flags, err):
    assert err_of(create_map, "m", map_type, 4, 4, 4, flags) == err


def test_map_extra_only_for_bloom_filters():
    assert err_of(create_map, "m", mp.MAP_TYPE_HASH, 4, 4, 4, map_extra=3) == errno.EINVAL
    assert err_of(create_map, "b", mp.MAP_TYPE_BLOOM_FILTER, 0, 4, 4, map_extra=16) == \
        errno.EINVAL
    assert create_map("b", mp.MAP_TYPE_BLOOM_FILTER, 0, 4, 4, map_extra=3).nr_hashes == 3


def test_lru_percpu_hash_evicts_and_keeps_one_value_per_cpu():
    m = create_map("l", mp.MAP_TYPE_LRU_PERCPU_HASH, 4, 4, 2, ncpus=2)
    m.update(k(1), k(10))
    m.update(k(2), k(20))
    assert m.lookup(k(1)) == [k(10), k(10)]        # touches 1: 2 is now least recent
    m.update(k(3), k(30))
    assert m.lookup(k(2)) is None and sorted(m.keys()) == [k(1), k(3)]


def test_lpm_trie_longest_prefix_match():
    m = create_map("lpm", mp.MAP_TYPE_LPM_TRIE, 8, 4, 3, mp.BPF_F_NO_PREALLOC)

    def key(plen: int, ip: str) -> bytes:
        return k(plen) + bytes(int(x) for x in ip.split("."))

    m.update(key(8, "10.0.0.0"), k(8))
    m.update(key(24, "10.1.2.0"), k(24))
    m.update(key(16, "10.1.99.99"), k(16))           # bits past the prefix are ignored
    assert m.lookup(key(32, "10.1.2.3")) == k(24)
    assert m.lookup(key(32, "10.1.3.3")) == k(16)
    assert m.lookup(key(32, "10.9.9.9")) == k(8)
    assert m.lookup(key(32, "11.0.0.1")) is None
    assert m.lookup(key(12, "10.1.2.3")) == k(8)     # the key's own prefix bounds the match
    assert err_of(m.update, key(33, "1.2.3.4"), k(1)) == errno.EINVAL
    assert err_of(m.update, key(30, "1.2.3.4"), k(1)) == errno.ENOSPC
    assert err_of(m.update, key(8, "10.0.0.0"), k(1), mp.BPF_NOEXIST) == errno.EEXIST
    assert err_of(m.delete, key(9, "10.0.0.0")) == errno.ENOENT
    m.delete(key(24, "10.1.2.0"))
    assert m.lookup(key(32, "10.1.2.3")) == k(16)


@pytest.mark.parametrize("map_type, order", [(mp.MAP_TYPE_QUEUE, [1, 2, 3]),
                                             (mp.MAP_TYPE_STACK, [3, 2, 1])])
def test_queue_and_stack(map_type, order):
    m = create_map("q", map_type, 0, 4, 3)
    for v in (1, 2, 3):
        m.push(k(v))
    assert err_of(m.push, k(4)) == errno.E2BIG
    assert [int.from_bytes(m.pop(), "little") for _ in range(3)] == order
    assert err_of(m.pop) == errno.ENOENT and err_of(m.peek) == errno.ENOENT
    assert err_of(m.delete, b"") == errno.EINVAL
    for v in (1, 2, 3, 4):
        m.push(k(v), mp.BPF_EXIST)                  # full: the oldest goes
    assert sorted(m.elems) == [k(2), k(3), k(4)]
    assert err_of(m.push, k(1), 4) == errno.EINVAL


def test_bloom_filter_has_no_false_negatives():
    m = create_map("b", mp.MAP_TYPE_BLOOM_FILTER, 0, 4, 100)
    for v in range(0, 200, 2):
        m.push(k(v))
    assert all(m.peek(k(v)) for v in range(0, 200, 2))
    assert sum(m.peek(k(v)) for v in range(1, 200, 2)) < 20     # few false positives
    assert err_of(m.push, k(1), mp.BPF_EXIST) == errno.EINVAL
    assert err_of(m.delete, b"") == errno.EOPNOTSUPP


def test_stack_trace_ids_are_jhash2_buckets():
    m = create_map("st", mp.MAP_TYPE_STACK_TRACE, 4, 8 * 4, 16)
    ips = (0xFFFFFFFF81000010, 0xFFFFFFFF81000020)
    sid = m.store(ips, 0)
    assert 0 <= sid < 16 and m.store(ips, 0) == sid
    assert m.lookup(k(sid)) == b"".join(i.to_bytes(8, "little") for i in ips) + bytes(16)
    assert err_of(m.update, k(sid), bytes(32)) == errno.EINVAL
    m.delete(k(sid))
    assert m.lookup(k(sid)) is None and err_of(m.delete, k(sid)) == errno.ENOENT


def test_perf_event_array_buffers():
    m = create_map("events", mp.MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 2)
    bufs = m.open_buffers(ncpus=4, page_cnt=1)
    assert [b.cpu for b in bufs] == [0, 1]           # one event per CPU, up to max_entries
    assert bufs[0].output(b"x" * 12) == 0 and bufs[0].samples == [b"x" * 12]
    assert bufs[0].output(bytes(5000)) == -errno.ENOSPC and bufs[0].lost == 1
    assert err_of(m.update, k(0), object()) == errno.EINVAL


def test_maps_of_maps_check_the_inner_template():
    inner = create_map("inner", mp.MAP_TYPE_ARRAY, 4, 8, 4)
    outer = create_map("outer", mp.MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2, inner=inner)
    outer.update(k(0), create_map("i0", mp.MAP_TYPE_ARRAY, 4, 8, 4))
    assert err_of(outer.update, k(1), create_map("i1", mp.MAP_TYPE_ARRAY, 4, 16, 4)) == \
        errno.EINVAL
    hom = create_map("hom", mp.MAP_TYPE_HASH_OF_MAPS, 8, 4, 1, inner=inner)
    hom.update(k(1, 8), inner)
    assert err_of(hom.update, k(2, 8), inner) == errno.E2BIG
    assert err_of(hom.update, k(1, 8), inner, mp.BPF_NOEXIST) == errno.EEXIST


# lookup outer[0] -> inner map; lookup inner[1] -> its value (0xFFFF when either is missing)
MAP_IN_MAP = """
*(u32 *)(r10 - 4) = 0
ld_pseudo r1, 1, 0, 0
r2 = r10
r2 += -4
call 1
if r0 == 0 goto missing
*(u32 *)(r10 - 8) = 1
r1 = r0
r2 = r10
r2 += -8
call 1
if r0 == 0 goto missing
r0 = *(u64 *)(r0 + 0)
exit
missing:
r0 = 0xffff
exit
"""


@pytest.mark.parametrize("engine", ["interp", "jit", "native"])
def test_array_of_maps_through_a_program(engine):
    from tracesim.filters.bpf import loader
    from tracesim.filters.bpf.toolchain.asm import assemble
    inner = create_map("inner", mp.MAP_TYPE_ARRAY, 4, 8, 4)
    outer = create_map("outer", mp.MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2, inner=inner)
    prog = loader.load(assemble(MAP_IN_MAP), prog_type="kprobe", maps=[outer], engine=engine)
    assert prog.runner.run(bytes(168)).value == 0xFFFF          # slot 0 empty
    one = create_map("one", mp.MAP_TYPE_ARRAY, 4, 8, 4)
    one.update(k(1), k(77, 8))
    outer.update(k(0), one)
    assert prog.runner.run(bytes(168)).value == 77


def test_verifier_turns_a_map_of_maps_lookup_into_a_map_pointer():
    from tracesim.filters.bpf.toolchain.asm import assemble
    from tracesim.filters.bpf.verifier import verify
    inner = create_map("inner", mp.MAP_TYPE_ARRAY, 4, 8, 4)
    outer = create_map("outer", mp.MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2, inner=inner)
    assert verify(assemble(MAP_IN_MAP), maps=[outer]).ok
    deref = MAP_IN_MAP.replace("*(u32 *)(r10 - 8) = 1", "r3 = *(u64 *)(r0 + 0)")
    assert verify(assemble(deref), maps=[outer]).error == "R0 invalid mem access 'map_ptr'"
    update = assemble("*(u32 *)(r10 - 4) = 0\n*(u32 *)(r10 - 8) = 0\nld_pseudo r1, 1, 0, 0\n"
                      "r2 = r10\nr2 += -4\nr3 = r10\nr3 += -8\nr4 = 0\ncall 2\nr0 = 0\nexit\n")
    assert verify(update, maps=[outer]).error == \
        "cannot pass map_type 12 into func bpf_map_update_elem#2"

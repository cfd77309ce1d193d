"""The eBPF instruction set as data (RFC 9669).

A program is a list of 8-byte *slots*, exactly as the kernel keeps it: one ``Insn`` per slot, so an
LD_IMM64 takes two ``Insn``s (the second has opcode 0 and carries the upper 32 bits in ``imm``), and
jump offsets count slots.  Everything else in ``filters/bpf/`` (assembler, disassembler, verifier,
interpreter, JIT, ELF loader, compiler) speaks in these terms.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

# Instruction classes (opcode & 0x07).
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
CLASS_NAMES = ("ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64")

# Source operand (opcode & 0x08) for ALU/JMP classes.
K = 0x00  # use imm
X = 0x08  # use src register

# Size (opcode & 0x18) and mode (opcode & 0xe0) for load/store classes.
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# ALU operations (opcode & 0xf0).
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
ALU_OP_NAMES = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or", AND: "and", LSH: "lsh",
                RSH: "rsh", NEG: "neg", MOD: "mod", XOR: "xor", MOV: "mov", ARSH: "arsh", END: "end"}
# END: source bit selects the byte order (TO_LE = K, TO_BE = X); in ALU64 it is the unconditional bswap.
TO_LE, TO_BE = K, X

# Jump operations (opcode & 0xf0).
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
JMP_OP_NAMES = {JA: "ja", JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset", JNE: "jne", JSGT: "jsgt",
                JSGE: "jsge", CALL: "call", EXIT: "exit", JLT: "jlt", JLE: "jle", JSLT: "jslt",
                JSLE: "jsle"}
CONDITIONAL_JUMPS = (JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE)

# Atomic operations (imm of STX|ATOMIC).
ATOMIC_ADD, ATOMIC_OR, ATOMIC_AND, ATOMIC_XOR = 0x00, 0x40, 0x50, 0xA0
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH

# src_reg values of LD_IMM64 (pseudo sources) and of CALL.
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4
PSEUDO_MAP_IDX = 5
PSEUDO_MAP_IDX_VALUE = 6
PSEUDO_CALL = 1       # call to a bpf-to-bpf subprogram, imm = relative slot offset
PSEUDO_KFUNC_CALL = 2

# Registers.
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10
NUM_REGS = 11
STACK_SIZE = 512
MAX_CALL_DEPTH = 8

# Frequently used full opcodes.
LD_IMM64 = LD | IMM | DW      # 0x18
OP_CALL = JMP | CALL          # 0x85
OP_EXIT = JMP | EXIT          # 0x95
OP_JA = JMP | JA              # 0x05
OP_JA32 = JMP32 | JA          # 0x06 (gotol: offset in imm)


class Insn(NamedTuple):
    """One 8-byte slot: opcode u8, dst_reg u4, src_reg u4, off s16, imm s32."""
    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0


_SLOT = struct.Struct("<BBhi")


def decode(data: bytes) -> list[Insn]:
    """Split little-endian program bytes into slots.  Raises ValueError on a partial slot."""
    if len(data) % 8:
        raise ValueError(f"program length {len(data)} is not a multiple of 8")
    out = []
    for op, regs, off, imm in _SLOT.iter_unpack(data):
        out.append(Insn(op, regs & 0x0F, regs >> 4, off, imm))
    return out


def encode(insns: Iterable[Insn]) -> bytes:
    """Pack slots into little-endian program bytes."""
    return b"".join(_SLOT.pack(i.opcode, (i.src << 4) | i.dst, i.off, i.imm) for i in insns)


def ld_imm64(dst: int, value: int, src: int = 0) -> tuple[Insn, Insn]:
    """The two slots of ``dst = value ll`` (value taken modulo 2**64)."""
    value &= 0xFFFFFFFFFFFFFFFF
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return (Insn(LD_IMM64, dst, src, 0, to_s32(lo)), Insn(0, 0, 0, 0, to_s32(hi)))


def imm64(first: Insn, second: Insn) -> int:
    """The unsigned 64-bit constant of an LD_IMM64 pair."""
    return (first.imm & 0xFFFFFFFF) | ((second.imm & 0xFFFFFFFF) << 32)


def is_jump(insn: Insn) -> bool:
    """True for JA/conditional jumps (JMP or JMP32), false for CALL and EXIT."""
    cls = insn.opcode & 7
    return cls in (JMP, JMP32) and (insn.opcode & 0xF0) not in (CALL, EXIT)


def jump_target(pc: int, insn: Insn) -> int:
    """Slot index a jump at ``pc`` goes to (``gotol`` keeps its offset in imm)."""
    if insn.opcode == OP_JA32:
        return pc + insn.imm + 1
    return pc + insn.off + 1


def to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def to_s64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


# Linux helper ids (uapi enum bpf_func_id, ___BPF_FUNC_MAPPER order: id i is the i-th name).
# Which of them tracesim implements, with their prototypes, is filters/bpf/helper_table.py.
_FUNC_MAPPER = """
    map_lookup_elem map_update_elem map_delete_elem probe_read ktime_get_ns trace_printk
    get_prandom_u32 get_smp_processor_id skb_store_bytes l3_csum_replace l4_csum_replace
    tail_call clone_redirect get_current_pid_tgid get_current_uid_gid get_current_comm
    get_cgroup_classid skb_vlan_push skb_vlan_pop skb_get_tunnel_key skb_set_tunnel_key
    perf_event_read redirect get_route_realm perf_event_output skb_load_bytes get_stackid
    csum_diff skb_get_tunnel_opt skb_set_tunnel_opt skb_change_proto skb_change_type
    skb_under_cgroup get_hash_recalc get_current_task probe_write_user
    current_task_under_cgroup skb_change_tail skb_pull_data csum_update set_hash_invalid
    get_numa_node_id skb_change_head xdp_adjust_head probe_read_str get_socket_cookie
    get_socket_uid set_hash setsockopt skb_adjust_room redirect_map sk_redirect_map
    sock_map_update xdp_adjust_meta perf_event_read_value perf_prog_read_value getsockopt
    override_return sock_ops_cb_flags_set msg_redirect_map msg_apply_bytes msg_cork_bytes
    msg_pull_data bind xdp_adjust_tail skb_get_xfrm_state get_stack skb_load_bytes_relative
    fib_lookup sock_hash_update msg_redirect_hash sk_redirect_hash lwt_push_encap
    lwt_seg6_store_bytes lwt_seg6_adjust_srh lwt_seg6_action rc_repeat rc_keydown
    skb_cgroup_id get_current_cgroup_id get_local_storage sk_select_reuseport
    skb_ancestor_cgroup_id sk_lookup_tcp sk_lookup_udp sk_release map_push_elem map_pop_elem
    map_peek_elem msg_push_data msg_pop_data rc_pointer_rel spin_lock spin_unlock sk_fullsock
    tcp_sock skb_ecn_set_ce get_listener_sock skc_lookup_tcp tcp_check_syncookie
    sysctl_get_name sysctl_get_current_value sysctl_get_new_value sysctl_set_new_value strtol
    strtoul sk_storage_get sk_storage_delete send_signal tcp_gen_syncookie skb_output
    probe_read_user probe_read_kernel probe_read_user_str probe_read_kernel_str tcp_send_ack
    send_signal_thread jiffies64 read_branch_records get_ns_current_pid_tgid xdp_output
    get_netns_cookie get_current_ancestor_cgroup_id sk_assign ktime_get_boot_ns seq_printf
    seq_write sk_cgroup_id sk_ancestor_cgroup_id ringbuf_output ringbuf_reserve ringbuf_submit
    ringbuf_discard ringbuf_query csum_level skc_to_tcp6_sock skc_to_tcp_sock
    skc_to_tcp_timewait_sock skc_to_tcp_request_sock skc_to_udp6_sock get_task_stack
    load_hdr_opt store_hdr_opt reserve_hdr_opt inode_storage_get inode_storage_delete d_path
    copy_from_user snprintf_btf seq_printf_btf skb_cgroup_classid redirect_neigh per_cpu_ptr
    this_cpu_ptr redirect_peer task_storage_get task_storage_delete get_current_task_btf
    bprm_opts_set ktime_get_coarse_ns ima_inode_hash sock_from_file check_mtu
    for_each_map_elem snprintf sys_bpf btf_find_by_name_kind sys_close timer_init
    timer_set_callback timer_start timer_cancel get_func_ip get_attach_cookie task_pt_regs
    get_branch_snapshot trace_vprintk skc_to_unix_sock kallsyms_lookup_name find_vma loop
    strncmp get_func_arg get_func_ret get_func_arg_cnt get_retval set_retval xdp_get_buff_len
    xdp_load_bytes xdp_store_bytes copy_from_user_task skb_set_tstamp ima_file_hash kptr_xchg
    map_lookup_percpu_elem skc_to_mptcp_sock dynptr_from_mem ringbuf_reserve_dynptr
    ringbuf_submit_dynptr ringbuf_discard_dynptr dynptr_read dynptr_write dynptr_data
    tcp_raw_gen_syncookie_ipv4 tcp_raw_gen_syncookie_ipv6 tcp_raw_check_syncookie_ipv4
    tcp_raw_check_syncookie_ipv6 ktime_get_tai_ns user_ringbuf_drain cgrp_storage_get
    cgrp_storage_delete
""".split()
HELPER_IDS = {name: i for i, name in enumerate(_FUNC_MAPPER, 1)}
HELPER_NAMES = {v: k for k, v in HELPER_IDS.items()}

# Unsafe programs, in LLVM BPF assembler, each with the verifier message expected.
# Headers before each program:  name (starts a program), error (the one-line reason),
# type (kprobe default | tracepoint | socket_filter | conformance), priv (1 default | 0),
# strict (1: no back-edges), maps (type:key:value:entries:name, comma separated),
# ctxsize (bytes of the conformance memory / tracepoint record).

# name: uninit-r0-exit
# error: R0 !read_ok
exit

# name: uninit-r2-alu
# error: R2 !read_ok
r0 = r2
exit

# name: uninit-r3-add
# error: R3 !read_ok
r0 = 0
r0 += r3
exit

# name: uninit-after-call-clobber
# error: R1 !read_ok
call 5
r0 = r1
exit

# name: write-r10
# error: frame pointer is read only
r10 = 0
r0 = 0
exit

# name: write-r10-alu
# error: frame pointer is read only
r10 += 8
r0 = 0
exit

# name: scalar-deref
# error: R1 invalid mem access 'scalar'
r1 = 0
r0 = *(u64 *)(r1 + 0)
exit

# name: scalar-deref-from-ctx-load
# error: R2 invalid mem access 'scalar'
r2 = *(u64 *)(r1 + 0)
r0 = *(u32 *)(r2 + 8)
exit

# name: scalar-store
# error: R3 invalid mem access 'scalar'
r3 = 100
*(u64 *)(r3 + 0) = r3
r0 = 0
exit

# name: stack-write-below-frame
# error: invalid write to stack R10 off=-520 size=8
r0 = 0
*(u64 *)(r10 - 520) = r0
exit

# name: stack-write-above-frame
# error: invalid write to stack R10 off=0 size=8
r0 = 0
*(u64 *)(r10 + 0) = r0
exit

# name: stack-read-above-frame
# error: invalid read from stack R10 off=8 size=8
r0 = *(u64 *)(r10 + 8)
exit

# name: stack-straddle-top
# error: invalid write to stack R2 off=0 size=4
r0 = 0
r2 = r10
r2 += -4
*(u32 *)(r2 + 4) = r0
exit

# name: stack-misaligned
# error: misaligned stack access off (0x0; 0x0)+0+-6 size 4
r0 = 0
*(u32 *)(r10 - 6) = r0
exit

# name: stack-ptr-oob-after-arith
# error: invalid write to stack R2 off=-528 size=8
r2 = r10
r2 += -520
r0 = 0
*(u64 *)(r2 - 8) = r0
exit

# name: uninit-stack-read-unpriv
# type: socket_filter
# priv: 0
# error: invalid read from stack off -8+0 size 8
r0 = *(u64 *)(r10 - 8)
exit

# name: partly-uninit-stack-read-unpriv
# type: socket_filter
# priv: 0
# error: invalid read from stack off -8+4 size 8
r0 = 0
*(u32 *)(r10 - 8) = r0
r0 = *(u64 *)(r10 - 8)
exit

# name: stack-var-offset-oob
# error: invalid variable-offset read from stack R2 var_off=(0x0; 0xf8) off=-136 size=8
r1 = *(u64 *)(r1 + 0)
r1 &= 248
r2 = r10
r2 += -128
r2 += r1
r0 = *(u64 *)(r2 - 8)
exit

# name: stack-var-offset-unpriv
# type: socket_filter
# priv: 0
# error: R2 variable stack access prohibited for !root, var_off=(0x0; 0x38) off=-64
r0 = 0
*(u64 *)(r10 - 64) = r0
r1 = *(u32 *)(r1 + 0)
r1 &= 56
r2 = r10
r2 += -64
r2 += r1
r0 = *(u64 *)(r2 + 0)
exit

# name: stack-subtract-variable
# error: R2 subtraction from stack pointer prohibited
r1 = *(u64 *)(r1 + 0)
r1 &= 7
r2 = r10
r2 -= r1
r0 = 0
exit

# name: spill-partial-pointer
# error: invalid size of register spill
*(u32 *)(r10 - 8) = r1
r0 = 0
exit

# name: fill-partial-pointer
# error: invalid size of register fill
*(u64 *)(r10 - 8) = r1
r0 = *(u32 *)(r10 - 8)
exit

# name: corrupt-spilled-pointer-unpriv
# type: socket_filter
# priv: 0
# error: attempt to corrupt spilled pointer on stack
*(u64 *)(r10 - 8) = r1
r0 = 0
*(u32 *)(r10 - 8) = r0
exit

# name: ctx-out-of-bounds-kprobe
# error: invalid bpf_context access off=168 size=8
r0 = *(u64 *)(r1 + 168)
exit

# name: ctx-negative-kprobe
# error: invalid bpf_context access off=-8 size=8
r0 = *(u64 *)(r1 - 8)
exit

# name: ctx-misaligned-kprobe
# error: invalid bpf_context access off=4 size=8
r0 = *(u64 *)(r1 + 4)
exit

# name: ctx-write-kprobe
# error: invalid bpf_context access off=0 size=8
r2 = 0
*(u64 *)(r1 + 0) = r2
r0 = 0
exit

# name: ctx-st-imm
# error: BPF_ST stores into R1 ctx is not allowed
*(u64 *)(r1 + 0) = 0
r0 = 0
exit

# name: ctx-modified-pointer
# error: dereference of modified ctx ptr R1 off=8 disallowed
r1 += 8
r0 = *(u64 *)(r1 + 0)
exit

# name: ctx-variable-offset
# error: variable ctx access var_off=(0x0; 0x8) disallowed
r2 = *(u64 *)(r1 + 0)
r2 &= 8
r1 += r2
r0 = *(u64 *)(r1 + 0)
exit

# name: tracepoint-common-fields
# type: tracepoint
# ctxsize: 32
# error: invalid bpf_context access off=4 size=4
r0 = *(u32 *)(r1 + 4)
exit

# name: tracepoint-past-record
# type: tracepoint
# ctxsize: 32
# error: invalid bpf_context access off=32 size=8
r0 = *(u64 *)(r1 + 32)
exit

# name: tracepoint-write
# type: tracepoint
# ctxsize: 32
# error: invalid bpf_context access off=8 size=8
r2 = 1
*(u64 *)(r1 + 8) = r2
r0 = 0
exit

# name: skb-data-not-for-socket-filters
# type: socket_filter
# error: invalid bpf_context access off=76 size=4
r0 = *(u32 *)(r1 + 76)
exit

# name: skb-write-len
# type: socket_filter
# error: invalid bpf_context access off=0 size=4
r2 = 0
*(u32 *)(r1 + 0) = r2
r0 = 0
exit

# name: skb-wide-read-of-u32
# type: socket_filter
# error: invalid bpf_context access off=0 size=8
r0 = *(u64 *)(r1 + 0)
exit

# name: skb-cb-overflow
# type: socket_filter
# error: invalid bpf_context access off=64 size=8
r0 = *(u64 *)(r1 + 64)
exit

# name: map-lookup-no-null-check
# maps: hash:4:8:16:h
# error: R0 invalid mem access 'map_value_or_null'
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
r0 = *(u64 *)(r0 + 0)
exit

# name: map-value-oob-fixed
# maps: array:4:8:4:a
# error: invalid access to map value, value_size=8 off=8 size=8
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r0 = *(u64 *)(r0 + 8)
out:
r0 = 0
exit

# name: map-value-oob-var-unbounded
# maps: array:4:64:4:a
# error: R0 unbounded memory access, make sure to bounds check any such access
r6 = *(u64 *)(r1 + 0)
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
if r6 s< 0 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-value-index-negative
# maps: array:4:64:4:a
# error: R0 min value is negative, either use unsigned index or do a if (index >=0) check.
r6 = *(u64 *)(r1 + 0)
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
if r6 s> 63 goto out
if r6 s< -8 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-value-index-off-by-one
# maps: array:4:64:4:a
# error: invalid access to map value, value_size=64 off=64 size=1
r6 = *(u64 *)(r1 + 0)
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
if r6 > 64 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-value-wrong-bound-signed
# maps: array:4:64:4:a
# error: math between map_value pointer and register with unbounded min value is not allowed
r6 = *(u64 *)(r1 + 0)
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
if r6 s>= 64 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-ptr-arith-before-null-check
# maps: hash:4:8:16:h
# error: R0 pointer arithmetic on map_value_or_null prohibited, null-check it first
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
r0 += 4
exit

# name: map-key-uninit-unpriv
# type: socket_filter
# priv: 0
# maps: hash:4:8:16:h
# error: invalid indirect read from stack R2 off -4+0 size 4
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
r0 = 0
exit

# name: map-key-out-of-stack
# maps: hash:8:8:16:h
# error: invalid indirect access to stack R2 off=-4 size=8
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
r0 = 0
exit

# name: map-key-is-ctx
# maps: hash:4:8:16:h
# error: R2 type=ctx expected=fp, pkt, pkt_meta, map_key, map_value
r2 = r1
ld_pseudo r1, 1, 0
call 1
r0 = 0
exit

# name: map-arg-is-scalar
# error: R1 type=scalar expected=map_ptr
r2 = r10
r2 += -8
r1 = 0
call 1
r0 = 0
exit

# name: map-deref-map-ptr
# maps: hash:4:8:16:h
# error: R1 invalid mem access 'map_ptr'
ld_pseudo r1, 1, 0
r0 = *(u64 *)(r1 + 0)
exit

# name: map-ptr-arith
# maps: hash:4:8:16:h
# error: R1 pointer arithmetic on map_ptr prohibited
ld_pseudo r1, 1, 0
r1 += 8
r0 = 0
exit

# name: map-bad-index
# maps: hash:4:8:16:h
# error: fd 3 is not pointing to valid bpf_map
ld_pseudo r1, 1, 3
r0 = 0
exit

# name: map-update-value-too-small
# maps: hash:4:16:16:h
# error: invalid indirect access to stack R3 off=-8 size=16
r2 = 0
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -8
r3 = r10
r3 += -8
r4 = 0
ld_pseudo r1, 1, 0
call 2
r0 = 0
exit

# name: map-leak-pointer-unpriv
# type: socket_filter
# priv: 0
# maps: array:4:8:4:a
# error: R6 leaks addr into map
r6 = r1
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
*(u64 *)(r0 + 0) = r6
out:
r0 = 0
exit

# name: map-value-direct-oob
# maps: array:4:8:1:.data
# error: invalid access to map value, value_size=8 off=8 size=4
ld_pseudo r1, 2, 0, 4
r0 = *(u32 *)(r1 + 4)
exit

# name: map-value-direct-bad-offset
# maps: array:4:8:1:.data
# error: invalid access to map value pointer, value_size=8 off=8
ld_pseudo r1, 2, 0, 8
r0 = 0
exit

# name: map-value-direct-hash
# maps: hash:4:8:1:h
# error: no direct value access support for this map type
ld_pseudo r1, 2, 0, 0
r0 = 0
exit

# name: return-pointer-unpriv
# type: socket_filter
# priv: 0
# error: R0 leaks addr as return value
r0 = r10
exit

# name: pointer-comparison-unpriv
# type: socket_filter
# priv: 0
# error: R1 pointer comparison prohibited
if r1 == 5 goto out
out:
r0 = 0
exit

# name: pointer-leak-to-helper-unpriv
# type: socket_filter
# priv: 0
# maps: ringbuf:0:0:4096:rb
# error: R3 leaks addr into helper function
r2 = 8
r3 = r10
ld_pseudo r1, 1, 0
call 131
r0 = 0
exit

# name: pointer-plus-pointer
# error: R1 pointer += pointer prohibited
r2 = r10
r1 += r2
r0 = 0
exit

# name: pointer-and-mask
# error: R2 bitwise operator &= on pointer prohibited
r2 = r10
r2 &= 255
r0 = 0
exit

# name: pointer-mul
# error: R2 pointer arithmetic with *= operator prohibited
r2 = r10
r2 *= 2
r0 = 0
exit

# name: pointer-32bit-arith
# type: socket_filter
# priv: 0
# error: R2 32-bit pointer arithmetic prohibited
r2 = r10
w2 += 8
r0 = 0
exit

# name: scalar-minus-pointer
# error: R0 tried to subtract pointer from scalar
r0 = 0
r0 -= r10
exit

# name: pointer-plus-unbounded-scalar
# error: math between fp pointer and register with unbounded min value is not allowed
r2 = *(u64 *)(r1 + 0)
r3 = r10
r3 += r2
r0 = 0
exit

# name: pointer-plus-huge-constant
# error: math between fp pointer and 536870912 is not allowed
r3 = r10
r2 = 536870912
r3 += r2
r0 = 0
exit

# name: partial-pointer-copy-unpriv
# type: socket_filter
# priv: 0
# error: R10 partial copy of pointer
w0 = w10
exit

# name: unknown-helper
# error: invalid func unknown#999
call 999
r0 = 0
exit

# name: helper-not-for-kprobe
# error: program of this type cannot use helper bpf_skb_load_bytes#26
call 26
r0 = 0
exit

# name: helper-not-for-socket-filter
# type: socket_filter
# error: program of this type cannot use helper bpf_probe_read_kernel#113
call 113
r0 = 0
exit

# name: helper-unknown-in-conformance
# type: conformance
# error: program of this type cannot use helper bpf_map_lookup_elem#1
call 1
r0 = 0
exit

# name: helper-size-negative
# error: R2 min value is negative, either use unsigned or 'var &= const'
r2 = *(u64 *)(r1 + 0)
r1 = r10
r1 += -16
r3 = 0
call 113
r0 = 0
exit

# name: helper-size-unbounded
# error: R2 unbounded memory access, use 'var &= const' or 'if (var < const)'
r2 = *(u64 *)(r1 + 0)
r2 >>= 1
r1 = r10
r1 += -16
r3 = 0
call 113
r0 = 0
exit

# name: helper-size-zero
# error: R2 invalid zero-sized read: u64=[0,0]
r2 = 0
r1 = r10
r1 += -16
call 16
r0 = 0
exit

# name: helper-size-too-big-for-stack
# error: invalid indirect access to stack R1 off=-16 size=32
r2 = 32
r1 = r10
r1 += -16
call 16
r0 = 0
exit

# name: helper-mem-is-ctx
# error: R1 type=ctx expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_
r2 = 16
call 16
r0 = 0
exit

# name: helper-size-is-pointer
# error: R2 type=fp expected=scalar
r2 = r10
r1 = r10
r1 += -16
call 16
r0 = 0
exit

# name: helper-var-size-too-big
# error: invalid indirect access to stack R1 off=-16 size=31
r2 = *(u64 *)(r1 + 0)
r2 &= 31
r1 = r10
r1 += -16
r3 = 0
call 113
r0 = 0
exit

# name: skb-load-bytes-not-ctx
# type: socket_filter
# error: R1 type=fp expected=ctx
r1 = r10
r2 = 0
r3 = r10
r3 += -8
r4 = 8
call 26
r0 = 0
exit

# name: trace-printk-uninit-fmt-unpriv-socket
# type: socket_filter
# priv: 0
# error: program of this type cannot use helper bpf_trace_printk#6
r1 = r10
r1 += -8
r2 = 8
call 6
r0 = 0
exit

# name: ringbuf-reserve-non-const-size
# maps: ringbuf:0:0:4096:rb
# error: R2 is not a known constant'
r2 = *(u64 *)(r1 + 0)
r2 &= 15
ld_pseudo r1, 1, 0
r3 = 0
call 131
r0 = 0
exit

# name: ringbuf-leak
# maps: ringbuf:0:0:4096:rb
# error: Unreleased reference id=2 alloc_insn=4
ld_pseudo r1, 1, 0
r2 = 8
r3 = 0
call 131
r0 = 0
exit

# name: ringbuf-submit-unchecked
# maps: ringbuf:0:0:4096:rb
# error: R1 type=ringbuf_mem_or_null expected=ringbuf_mem
ld_pseudo r1, 1, 0
r2 = 8
r3 = 0
call 131
r1 = r0
r2 = 0
call 132
r0 = 0
exit

# name: ringbuf-mem-oob
# maps: ringbuf:0:0:4096:rb
# error: invalid access to memory, mem_size=8 off=8 size=8
ld_pseudo r1, 1, 0
r2 = 8
r3 = 0
call 131
if r0 == 0 goto out
r1 = 0
*(u64 *)(r0 + 8) = r1
r1 = r0
r2 = 0
call 132
out:
r0 = 0
exit

# name: ringbuf-use-after-submit
# maps: ringbuf:0:0:4096:rb
# error: R6 invalid mem access 'scalar'
ld_pseudo r1, 1, 0
r2 = 8
r3 = 0
call 131
if r0 == 0 goto out
r6 = r0
r1 = r0
r2 = 0
call 132
r1 = 0
*(u64 *)(r6 + 0) = r1
out:
r0 = 0
exit

# name: lookup-on-ringbuf
# maps: ringbuf:0:0:4096:rb
# error: cannot pass map_type 27 into func bpf_map_lookup_elem#1
r2 = r10
r2 += -8
ld_pseudo r1, 1, 0
call 1
r0 = 0
exit

# name: ringbuf-output-on-hash
# maps: hash:4:8:16:h
# error: cannot pass map_type 1 into func bpf_ringbuf_output#130
r2 = r10
r2 += -8
r3 = 0
r4 = 0
ld_pseudo r1, 1, 0
call 130
r0 = 0
exit

# name: unreachable-after-exit
# error: unreachable insn 2
r0 = 0
exit
r0 = 1
exit

# name: unreachable-jumped-over
# error: unreachable insn 1
goto +1
r0 = 1
r0 = 0
exit

# name: jump-out-of-range
# error: jump out of range from insn 1 to 10
r0 = 0
if r0 == 0 goto +8
exit

# name: jump-backwards-out-of-range
# error: jump out of range from insn 0 to -5
goto -6
exit

# name: jump-into-ldimm64
# error: jump into the middle of ldimm64 insn 2
r0 = 0
if r1 == 0 goto +1
r0 = 0x1234567890 ll
exit

# name: last-insn-not-exit
# error: last insn is not an exit or jmp
r0 = 0

# name: last-insn-ldimm64
# error: last insn is not an exit or jmp
r0 = 0x1234567890 ll

# name: fall-off-after-branch
# error: last insn is not an exit or jmp
r0 = 0
if r1 == 0 goto +1
exit
r0 = 1

# name: back-edge-strict
# strict: 1
# error: back-edge from insn 2 to 1
r0 = 0
r0 += 1
if r0 < 10 goto -2
exit

# name: back-edge-unpriv
# type: socket_filter
# priv: 0
# error: back-edge from insn 2 to 1
r0 = 0
r0 += 1
if r0 < 10 goto -2
exit

# name: infinite-loop-ja
# error: infinite loop detected at insn 4
r0 = 0
r1 = *(u64 *)(r1 + 0)
if r1 == 0 goto +1
exit
goto -1

# name: infinite-loop-unchanged-state
# error: infinite loop detected at insn 1
r1 = *(u64 *)(r1 + 0)
if r1 != 0 goto -1
r0 = 0
exit

# name: infinite-loop-dead-counter
# error: infinite loop detected at insn 4
r1 = *(u64 *)(r1 + 0)
r0 = 0
loop:
r2 = 0
r2 += 1
if r1 != 0 goto loop
exit

# name: unbounded-loop-unknown-bound
# error: The sequence of 8193 jumps is too complex.
r6 = *(u64 *)(r1 + 0)
r0 = 0
loop:
r0 += 1
if r0 > r6 goto out
goto loop
out:
exit

# name: div-by-zero-imm
# error: div by zero
r0 = 1
r0 /= 0
exit

# name: mod-by-zero-imm
# error: div by zero
w0 = 1
w0 %= 0
exit

# name: shift-too-far
# error: invalid shift 64
r0 = 1
r0 <<= 64
exit

# name: shift32-too-far
# error: invalid shift 32
w0 = 1
w0 >>= 32
exit

# name: shift-negative
# error: invalid shift -1
r0 = 1
r0 s>>= -1
exit

# name: division-trick-index
# maps: array:4:16:4:a
# error: invalid access to map value, value_size=16 off=17 size=1
r6 = *(u64 *)(r1 + 0)
r6 &= 255
r6 /= 15
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: mod-trick-index
# maps: array:4:16:4:a
# error: invalid access to map value, value_size=16 off=16 size=1
r6 = *(u64 *)(r1 + 0)
r6 %= 17
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: signed-compare-wrong-direction
# type: conformance
# ctxsize: 16
# error: R1 min value is negative, either use unsigned index or do a if (index >=0) check.
r3 = *(u64 *)(r1 + 0)
if r3 s> 15 goto out
if r3 s< -8 goto out
r1 += r3
r0 = *(u8 *)(r1 + 0)
out:
r0 = 0
exit

# name: jmp32-bound-does-not-bound-64
# type: conformance
# ctxsize: 16
# error: R1 unbounded memory access, make sure to bounds check any such access
r3 = *(u64 *)(r1 + 0)
if r3 s< 0 goto out
if w3 > 15 goto out
r1 += r3
r0 = *(u8 *)(r1 + 0)
out:
r0 = 0
exit

# name: conformance-mem-oob
# type: conformance
# ctxsize: 8
# error: invalid access to memory, mem_size=8 off=8 size=1
r0 = *(u8 *)(r1 + 8)
exit

# name: conformance-r3-uninit
# type: conformance
# error: R3 !read_ok
r0 = r3
exit

# name: xor-trick-index
# type: conformance
# ctxsize: 16
# error: invalid access to memory, mem_size=16 off=16 size=1
r3 = *(u8 *)(r1 + 0)
r3 &= 15
r3 ^= 16
r1 += r3
r0 = *(u8 *)(r1 + 0)
exit

# name: ld-abs-in-kprobe
# error: BPF_LD_[ABS|IND] instructions not allowed for this program type
r6 = r1
r0 = *(u8 *)skb[12]
exit

# name: ld-abs-r6-not-ctx
# type: socket_filter
# error: at the time of BPF_LD_ABS|IND R6 != pointer to skb
r6 = r10
r0 = *(u8 *)skb[12]
exit

# name: ld-abs-clobbers-r1
# type: socket_filter
# error: R1 !read_ok
r6 = r1
r0 = *(u8 *)skb[12]
r0 = *(u32 *)(r1 + 0)
exit

# name: atomic-on-ctx
# error: BPF_ATOMIC stores into R1 ctx is not allowed
r2 = 1
lock *(u64 *)(r1 + 0) += r2
r0 = 0
exit

# name: atomic-uninit-src
# error: R2 !read_ok
r0 = 0
*(u64 *)(r10 - 8) = r0
lock *(u64 *)(r10 - 8) += r2
exit

# name: bpf-call-too-deep
# error: the call stack of 9 frames is too deep !
call f1
exit
f1:
call f2
exit
f2:
call f3
exit
f3:
call f4
exit
f4:
call f5
exit
f5:
call f6
exit
f6:
call f7
exit
f7:
call f8
exit
f8:
r0 = 0
exit

# name: bpf-call-recursion
# error: the call stack of 9 frames is too deep !
r1 = 0
call f
r0 = 0
exit
f:
call f
r0 = 0
exit

# name: bpf-call-combined-stack
# error: combined stack size of 2 calls is 640. Too large
r0 = 0
*(u64 *)(r10 - 320) = r0
call f
r0 = 0
exit
f:
r1 = 0
*(u64 *)(r10 - 320) = r1
r0 = 0
exit

# name: bpf-call-return-own-stack
# error: cannot return stack pointer to the caller frame
call f
r0 = 0
exit
f:
r0 = r10
r0 += -8
exit

# name: bpf-call-unpriv
# type: socket_filter
# priv: 0
# error: loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN
call f
exit
f:
r0 = 0
exit

# name: bpf-call-callee-r6-uninit
# error: R6 !read_ok
r6 = 1
call f
r0 = 0
exit
f:
r0 = r6
exit

# name: bpf-call-caller-r1-clobbered
# error: R1 !read_ok
r1 = 1
call f
r0 = r1
exit
f:
r0 = 0
exit

# name: bad-opcode
# error: unknown opcode 8d
callx r1
exit

# name: uninit-r0-on-one-path
# error: R0 !read_ok
r2 = *(u64 *)(r1 + 0)
if r2 == 0 goto out
r0 = 1
out:
exit

# Pruning must keep a scalar precise when it is added to a pointer filled from the stack: the
# safe path (r4 = 0) is explored first; the other one (r4 = 16) reads past the frame.
# name: prune-offset-added-to-filled-stack-pointer
# error: invalid read from stack R5 off=0 size=8
r2 = r10
r2 += -16
*(u64 *)(r10 - 24) = r2
r3 = *(u64 *)(r1 + 0)
r4 = 16
r0 = 0
if r3 == 0 goto join
r4 = 0
r0 += 1
if r3 == 1 goto join
r0 += 2
if r3 == 2 goto join
r0 += 3
if r3 == 3 goto join
r0 += 4
r0 += 5
r0 += 6
r0 += 7
r0 += 8
r0 += 9
join:
r5 = *(u64 *)(r10 - 24)
r5 += r4
r0 = *(u64 *)(r5 + 0)
exit

# The same, the pointer spilled through a copy of the frame pointer with its own offset.
# name: prune-offset-added-to-pointer-spilled-through-fp-copy
# error: invalid read from stack R5 off=0 size=8
r2 = r10
r2 += -16
r6 = r10
r6 += -32
*(u64 *)(r6 + 8) = r2
r3 = *(u64 *)(r1 + 0)
r4 = 16
r0 = 0
if r3 == 0 goto join
r4 = 0
r0 += 1
if r3 == 1 goto join
r0 += 2
if r3 == 2 goto join
r0 += 3
if r3 == 3 goto join
r0 += 4
r0 += 5
r0 += 6
r0 += 7
r0 += 8
r0 += 9
join:
r5 = *(u64 *)(r10 - 24)
r5 += r4
r0 = *(u64 *)(r5 + 0)
exit

# The same with the ctx pointer, spilled into the caller's frame by a bpf-to-bpf callee.
# name: prune-offset-added-to-pointer-spilled-by-callee
# error: dereference of modified ctx ptr R5 off=16 disallowed
r6 = r1
r2 = r1
r1 = r10
r1 += -24
call spill
r3 = *(u64 *)(r6 + 0)
r4 = 16
r0 = 0
if r3 == 0 goto join
r4 = 0
r0 += 1
if r3 == 1 goto join
r0 += 2
if r3 == 2 goto join
r0 += 3
if r3 == 3 goto join
r0 += 4
r0 += 5
r0 += 6
r0 += 7
r0 += 8
r0 += 9
join:
r5 = *(u64 *)(r10 - 24)
r5 += r4
r0 = *(u64 *)(r5 + 0)
exit
spill:
*(u64 *)(r1 + 0) = r2
r0 = 0
exit

# A load through a stack pointer the static analysis cannot place (r10 plus a register) reads a
# spilled offset at a fixed slot: once seen, that slot must stay precise across pruning points.
# name: prune-keeps-slot-read-through-computed-stack-pointer
# error: invalid read from stack R6 off=0 size=8
r2 = *(u64 *)(r1 + 0)
r3 = 16
*(u64 *)(r10 - 8) = r3
r0 = 0
if r2 == 0 goto join
r3 = 0
*(u64 *)(r10 - 8) = r3
r0 += 1
if r2 == 1 goto join
r0 += 2
if r2 == 2 goto join
r0 += 3
if r2 == 3 goto join
r0 += 4
r0 += 5
r0 += 6
r0 += 7
r0 += 8
r0 += 9
join:
r5 = -8
r4 = r10
r4 += r5
r0 = *(u64 *)(r4 + 0)
r6 = r10
r6 += -16
r6 += r0
r0 = *(u64 *)(r6 + 0)
exit

# A callee stores a pointer to its own stack into the caller's frame; the caller would read
# through it after the callee's frame is gone.
# name: callee-spills-stack-pointer-into-caller-frame
# error: cannot spill pointers to stack into stack frame of the caller
r1 = r10
r1 += -8
call f
r2 = *(u64 *)(r10 - 8)
r0 = *(u64 *)(r2 - 8)
exit
f:
r2 = r10
r2 += -8
r3 = 0
*(u64 *)(r2 + 0) = r3
*(u64 *)(r1 + 0) = r2
r0 = 0
exit

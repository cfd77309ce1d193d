# Safe programs that need precise bounds, spills, null checks or loop handling; all must verify.
# Same headers as unsafe.s (without error).

# name: return-zero
r0 = 0
exit

# name: ctx-read-all-sizes-kprobe
r0 = *(u64 *)(r1 + 160)
r2 = *(u32 *)(r1 + 4)
r3 = *(u16 *)(r1 + 6)
r4 = *(u8 *)(r1 + 167)
r0 += r2
exit

# name: spill-fill-pointer
*(u64 *)(r10 - 8) = r1
r1 = 0
r1 = *(u64 *)(r10 - 8)
r0 = *(u64 *)(r1 + 0)
exit

# name: spill-fill-keeps-bounds
# maps: array:4:16:4:a
r6 = *(u64 *)(r1 + 0)
r6 &= 15
*(u64 *)(r10 - 16) = r6
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r6 = *(u64 *)(r10 - 16)
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: uninit-stack-read-privileged
r0 = *(u64 *)(r10 - 8)
exit

# name: map-lookup-null-checked
# maps: hash:4:8:16:h
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r1 = 1
lock *(u64 *)(r0 + 0) += r1
out:
r0 = 0
exit

# name: map-null-check-via-copy
# maps: hash:4:8:16:h
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
r6 = r0
if r0 != 0 goto found
r0 = 0
exit
found:
r0 = *(u64 *)(r6 + 0)
exit

# name: map-index-unsigned-check
# maps: array:4:64:4:a
r6 = *(u64 *)(r1 + 0)
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
if r6 > 63 goto out
r0 += r6
r0 = *(u8 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-index-signed-both-sides
# maps: array:4:64:4:a
r6 = *(u64 *)(r1 + 0)
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
if r6 s> 56 goto out
if r6 s< 0 goto out
r0 += r6
r0 = *(u64 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-index-mask
# maps: array:4:64:4:a
r6 = *(u64 *)(r1 + 0)
r6 &= 60
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r0 += r6
r0 = *(u32 *)(r0 + 0)
out:
r0 = 0
exit

# name: map-index-mod
# maps: array:4:16:4:a
r6 = *(u64 *)(r1 + 0)
r6 %= 16
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

# name: map-index-linked-copy
# maps: array:4:16:4:a
r6 = *(u64 *)(r1 + 0)
r7 = r6
if r7 > 15 goto out0
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out0
r0 += r6
r0 = *(u8 *)(r0 + 0)
out0:
r0 = 0
exit

# name: map-index-jmp32-on-zext
# maps: array:4:16:4:a
w6 = *(u32 *)(r1 + 0)
if w6 > 15 goto out
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

# name: map-update-from-stack
# maps: hash:4:8:16:h
r2 = 7
*(u32 *)(r10 - 4) = r2
r3 = 0
*(u64 *)(r10 - 16) = r3
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 0
ld_pseudo r1, 1, 0
call 2
r0 = 0
exit

# name: global-data-direct
# maps: array:4:16:1:.bss
ld_pseudo r1, 2, 0, 8
r0 = *(u64 *)(r1 + 0)
r2 = 1
*(u64 *)(r1 - 8) = r2
exit

# name: loop-sum-array-on-stack
r0 = 0
r1 = 0
init:
r2 = r10
r2 += -64
r2 += r1
*(u8 *)(r2 + 0) = r1
r1 += 1
if r1 < 64 goto init
r1 = 0
sum:
r2 = r10
r2 += -64
r2 += r1
r3 = *(u8 *)(r2 + 0)
r0 += r3
r1 += 1
if r1 < 64 goto sum
exit

# name: loop-bounded-by-unknown-min
r6 = *(u64 *)(r1 + 0)
r6 &= 7
r0 = 0
loop:
r0 += 3
r6 += -1
if r6 s> 0 goto loop
exit

# name: loop-over-map-value
# maps: array:4:32:4:a
r2 = 0
*(u32 *)(r10 - 4) = r2
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
if r0 == 0 goto out
r1 = 0
r6 = 0
loop:
r2 = r0
r2 += r1
r3 = *(u32 *)(r2 + 0)
r6 ^= r3
r1 += 4
if r1 < 32 goto loop
r0 = r6
exit
out:
r0 = 0
exit

# name: branches-with-unknown-hash
r6 = *(u64 *)(r1 + 0)
r0 = 0
r1 = 0
loop:
r2 = r6
r2 >>= r1
r2 &= 1
if r2 == 0 goto skip
r0 ^= 0x6d5a56da
r0 *= 3
skip:
r1 += 1
if r1 < 32 goto loop
exit

# name: probe-read-into-stack-var-size
r6 = r1
r2 = *(u64 *)(r6 + 8)
r2 &= 15
r1 = r10
r1 += -16
r3 = *(u64 *)(r6 + 0)
call 113
r0 = 0
exit

# name: probe-read-size-zero-allowed
r1 = r10
r1 += -8
r2 = 0
r3 = 0
call 113
r0 = 0
exit

# name: get-current-comm-then-read
r1 = r10
r1 += -16
r2 = 16
call 16
r0 = *(u64 *)(r10 - 16)
exit

# name: trace-printk
r1 = 0x0a6425 ll
*(u64 *)(r10 - 8) = r1
r1 = r10
r1 += -8
r2 = 4
r3 = 42
call 6
r0 = 0
exit

# name: ringbuf-reserve-submit
# maps: ringbuf:0:0:4096:rb
ld_pseudo r1, 1, 0
r2 = 16
r3 = 0
call 131
if r0 == 0 goto out
r1 = 5
*(u64 *)(r0 + 8) = r1
r1 = r0
r2 = 0
call 132
out:
r0 = 0
exit

# name: ringbuf-reserve-discard
# maps: ringbuf:0:0:4096:rb
ld_pseudo r1, 1, 0
r2 = 8
r3 = 0
call 131
if r0 != 0 goto have
r0 = 0
exit
have:
r1 = r0
r2 = 0
call 133
r0 = 0
exit

# name: ringbuf-output-from-stack
# maps: ringbuf:0:0:4096:rb
r2 = 1
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -8
r3 = 8
r4 = 0
ld_pseudo r1, 1, 0
call 130
r0 = 0
exit

# name: bpf-to-bpf-call-passes-stack
r1 = r10
r1 += -8
r2 = 0
*(u64 *)(r10 - 8) = r2
call f
r0 = *(u64 *)(r10 - 8)
exit
f:
r2 = 7
*(u64 *)(r1 + 0) = r2
r0 = 0
exit

# name: bpf-to-bpf-callee-saved
r6 = 5
r1 = 1
call f
r0 += r6
exit
f:
r0 = r1
r0 += 1
exit

# name: tracepoint-record-fields
# type: tracepoint
# ctxsize: 32
r0 = *(u64 *)(r1 + 8)
r2 = *(u32 *)(r1 + 16)
r3 = *(u16 *)(r1 + 30)
exit

# name: socket-filter-skb-fields
# type: socket_filter
r0 = *(u32 *)(r1 + 0)
r2 = *(u16 *)(r1 + 16)
r3 = *(u8 *)(r1 + 8)
r4 = 9
*(u32 *)(r1 + 48) = r4
r4 = *(u64 *)(r1 + 56)
exit

# name: socket-filter-ld-abs-parse
# type: socket_filter
r6 = r1
r0 = *(u16 *)skb[12]
if r0 != 0x800 goto drop
r0 = *(u8 *)skb[23]
if r0 != 6 goto drop
r0 = *(u8 *)skb[14]
r0 &= 15
r0 <<= 2
r1 = r0
r0 = *(u16 *)skb[r1 + 14]
exit
drop:
r0 = 0
exit

# name: socket-filter-load-bytes-parse
# type: socket_filter
r6 = r1
r2 = 14
r3 = r10
r3 += -64
r4 = 60
call 26
if r0 != 0 goto drop
r1 = *(u8 *)(r10 - 55)
if r1 != 6 goto drop
r1 = *(u8 *)(r10 - 64)
r1 &= 15
r1 <<= 2
if r1 < 20 goto drop
r2 = r10
r2 += -64
r2 += r1
r0 = *(u32 *)(r2 - 4)
exit
drop:
r0 = 0
exit

# name: socket-filter-unpriv-simple
# type: socket_filter
# priv: 0
r0 = *(u32 *)(r1 + 0)
r2 = 0
*(u64 *)(r10 - 8) = r2
r1 = *(u64 *)(r10 - 8)
r0 += r1
exit

# name: conformance-mem-with-len-check
# type: conformance
# ctxsize: 16
r3 = *(u64 *)(r1 + 8)
if r3 > 7 goto out
r1 += r3
r0 = *(u8 *)(r1 + 8)
exit
out:
r0 = 0
exit

# name: conformance-len-in-r2
# type: conformance
# ctxsize: 12
r3 = r1
r3 += r2
r0 = *(u32 *)(r3 - 4)
exit

# name: atomics-on-stack
r0 = 0
*(u64 *)(r10 - 8) = r0
r1 = 2
lock *(u64 *)(r10 - 8) += r1
r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)
r0 = cmpxchg_64(r10 - 8, r0, r1)
r1 = xchg_64(r10 - 8, r1)
r0 = 0
exit

# name: pointer-compare-privileged
r2 = r10
if r1 == r2 goto eq
r0 = 1
exit
eq:
r0 = 0
exit

# name: pointer-difference-privileged
r2 = r10
r2 += -16
r3 = r10
r3 -= r2
r0 = r3
exit

# name: return-pointer-privileged
r0 = r1
exit

# name: jump-ja32
r2 = *(u64 *)(r1 + 0)
r0 = 0
if r2 == 0 goto skip
gotol done
skip:
r0 = 1
done:
exit

# name: signed-div-and-movsx
r1 = *(u64 *)(r1 + 0)
r2 = (s8)r1
r2 s/= 3
w3 = (s16)w1
r0 = r2
exit

# name: bswap-and-endian
r1 = *(u64 *)(r1 + 0)
r1 = be16 r1
if r1 > 0xffff goto bad
r1 = bswap32 r1
r0 = r1
exit
bad:
r0 = *(u64 *)(r1 + 0)
exit

# name: sign-extending-load
r2 = *(s8 *)(r1 + 0)
if r2 s> 127 goto bad
if r2 s< -128 goto bad
r0 = r2
exit
bad:
r0 = *(u64 *)(r2 + 0)
exit

# name: dead-branch-by-bounds
r2 = *(u8 *)(r1 + 0)
if r2 < 256 goto ok
r0 = *(u64 *)(r2 + 0)
exit
ok:
r0 = 0
exit

# name: jset-refines
r2 = *(u64 *)(r1 + 0)
r2 &= 6
if r2 & 8 goto bad
r0 = 0
exit
bad:
r0 = *(u64 *)(r2 + 0)
exit

# Nested loops walking headers by unknown lengths (as rss.bpf.c's IPv6 extension headers and
# destination options): the offsets only feed bpf_skb_load_bytes' offset (ARG_ANYTHING), so
# states that differ only in them must prune; without that the paths double every pass.
# name: nested-loops-unknown-offsets-in-registers
# type: socket_filter
r6 = r1
r7 = 0
r8 = 12
outer:
r1 = r6
r2 = r7
r3 = r10
r3 += -8
r4 = 2
call 26
if r0 != 0 goto done
r9 = 30
inner:
r1 = r6
r2 = r7
r3 = r10
r3 += -8
r4 = 2
call 26
if r0 != 0 goto done
r2 = *(u8 *)(r10 - 8)
if r2 == 201 goto found
r1 = 1
if r2 == 0 goto pad
r1 = *(u8 *)(r10 - 7)
r1 += 2
pad:
r7 += r1
r9 += -1
if r9 != 0 goto inner
r1 = *(u8 *)(r10 - 7)
r1 <<= 3
r7 += r1
r7 += 8
r8 += -1
if r8 != 0 goto outer
found:
r0 = 1
exit
done:
r0 = 0
exit

# The same walk with the offsets spilled as 8-byte values next to a spilled stack pointer and a
# spilled ctx pointer (as clang does when registers run out): filling them gives scalars.
# name: nested-loops-unknown-offsets-spilled
# type: socket_filter
*(u64 *)(r10 - 16) = r1
r1 = r10
r1 += -8
*(u64 *)(r10 - 24) = r1
r1 = 0
*(u64 *)(r10 - 32) = r1
r1 = 12
*(u64 *)(r10 - 40) = r1
outer:
r1 = *(u64 *)(r10 - 16)
r2 = *(u64 *)(r10 - 32)
r3 = *(u64 *)(r10 - 24)
r4 = 2
call 26
if r0 != 0 goto done
r9 = 30
inner:
r1 = *(u64 *)(r10 - 16)
r2 = *(u64 *)(r10 - 32)
r3 = *(u64 *)(r10 - 24)
r4 = 2
call 26
if r0 != 0 goto done
r2 = *(u8 *)(r10 - 8)
if r2 == 201 goto found
r1 = 1
if r2 == 0 goto pad
r1 = *(u8 *)(r10 - 7)
r1 += 2
pad:
r7 = *(u64 *)(r10 - 32)
r7 += r1
*(u64 *)(r10 - 32) = r7
r9 += -1
if r9 != 0 goto inner
r1 = *(u8 *)(r10 - 7)
r1 <<= 3
r7 = *(u64 *)(r10 - 32)
r7 += r1
r7 += 8
*(u64 *)(r10 - 32) = r7
r8 = *(u64 *)(r10 - 40)
r8 += -1
*(u64 *)(r10 - 40) = r8
if r8 != 0 goto outer
found:
r0 = 1
exit
done:
r0 = 0
exit

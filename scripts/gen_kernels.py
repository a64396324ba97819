#!/usr/bin/env python3
"""Generates kernels/sha256d.cl, shaders/sha256d.wgsl and the CPU backend's
multi-lane body (src/backend/cpu/sha256d_lanes.rs) from one description.

Both kernels implement the algorithm of `KernelWork::top_word` in
src/pow/kernel_work.rs: start from the host-precomputed state after round 3's
nonce-free parts, finish the header's second block, run the second hash from
the IV, and stop as soon as H7 is known (round 60). The rounds are written
out straight-line in static single assignment form: every value is a named
local, so no compiler has to prove an array index constant (dynamic indexing
spills to memory on GPUs and defeats LLVM's vectoriser on CPU drivers), and
every word that is a compile-time constant (padding, lengths, the IV and what
follows from them) is folded here, in Python, not left to the driver.

Run from the repository root: python3 scripts/gen_kernels.py
The tests check that the committed kernels match this script's output.
"""
import sys
from pathlib import Path

K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]
IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
M = 0xffffffff

def rotr(x, n): return ((x >> n) | (x << (32 - n))) & M
def S0(x): return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22)
def S1(x): return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25)
def s0(x): return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)
def s1(x): return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10)
def ch(e, f, g): return g ^ (e & (f ^ g))
def maj(a, b, c): return (a & b) | (c & (a | b))


class Var(str):
    """A named value computed at run time (or read from the uniform work)."""


class Emitter:
    """Straight-line SSA code: each non-constant result gets its own local."""

    # Rust calls the lane type's methods (src/backend/cpu/lanes.rs).
    RS_FUNCS = {"S0": "V::big_sigma0", "S1": "V::big_sigma1", "s0": "V::small_sigma0",
                "s1": "V::small_sigma1", "CH": "V::ch", "MAJ": "V::maj"}

    def __init__(self, lang):
        self.lang = lang
        self.adder = {"cl": "ADD", "wgsl": "add", "rs": "V::add"}[lang]
        self.lines = []
        self.count = 0

    def lit(self, x):
        if self.lang == "rs":
            return f"V::splat(0x{x:08x})"
        return f"0x{x:08x}u"

    def val(self, x):
        return self.lit(x) if isinstance(x, int) else x

    def let(self, prefix, expr):
        self.count += 1
        name = Var(f"{prefix}{self.count}")
        if self.lang == "cl":
            self.lines.append(f"    const uintV {name} = {expr};")
        else:
            self.lines.append(f"    let {name} = {expr};")
        return name

    def func(self, name, const_fn, *args):
        if all(isinstance(a, int) for a in args):
            return const_fn(*args)
        if self.lang == "rs":
            name = self.RS_FUNCS[name]
        return f"{name}({', '.join(self.val(a) for a in args)})"

    def add(self, prefix, *terms):
        const = 0
        parts = []
        for t in terms:
            if isinstance(t, int):
                const = (const + t) & M
            else:
                parts.append(t)
        if not parts:
            return const
        if const:
            parts.append(self.lit(const))
        # Each sum is a chain of two-input ADDs (a macro in OpenCL C, a
        # function in WGSL): the vendor builds choose how an addition is
        # computed, the generic build gets plain `+`.
        expr = parts[0]
        for part in parts[1:]:
            expr = f"{self.adder}({expr}, {part})"
        return self.let(prefix, expr)

    def comment(self, text):
        self.lines.append(f"    // {text}")

    def round(self, state, t, w, need_a=True):
        a, b, c, d, e, f, g, h = state
        t1 = self.add("t", h, self.func("S1", S1, e), self.func("CH", ch, e, f, g), K[t], w)
        new_e = self.add("e", d, t1)
        new_a = self.add("a", t1, self.func("S0", S0, a), self.func("MAJ", maj, a, b, c)) if need_a else None
        return [new_a, a, b, c, new_e, e, f, g]

    def schedule(self, w, t):
        return self.add("w", self.func("s1", s1, w[t - 2]), w[t - 7], self.func("s0", s0, w[t - 15]), w[t - 16])


def body(lang):
    em = Emitter(lang)
    kw = lambda i: Var(f"kw{i}")
    # Word offsets into KernelWork (src/pow/kernel_work.rs).
    midstate = [kw(i) for i in range(8)]
    r3 = [kw(12 + i) for i in range(7)]
    r3_t1, r3_t2, w16, w17, w18_part, w19_part = (kw(i) for i in range(19, 25))

    em.comment("Block 2 of the header, from round 3: W3 is the only nonce word.")
    w = [None] * 64
    w[3] = Var("w3")
    w[4] = 0x80000000
    for i in range(5, 15):
        w[i] = 0
    w[15] = 640
    w[16] = w16
    w[17] = w17
    w[18] = em.add("w", w18_part, em.func("s0", s0, w[3]))
    w[19] = em.add("w", w19_part, w[3])
    t1 = em.add("t", r3_t1, w[3])
    state = [em.add("a", t1, r3_t2), r3[0], r3[1], r3[2], em.add("e", r3[3], t1), r3[4], r3[5], r3[6]]
    for t in range(4, 64):
        if t >= 20:
            w[t] = em.schedule(w, t)
        state = em.round(state, t, w[t])
    em.comment("First hash: state plus midstate.")
    hash1 = [em.add("h", state[i], midstate[i]) for i in range(8)]

    em.comment("Second hash: the 32-byte first hash, constant padding, from the IV.")
    w = hash1 + [0x80000000, 0, 0, 0, 0, 0, 0, 256] + [None] * 48
    state = list(IV)
    for t in range(61):
        if t >= 16:
            w[t] = em.schedule(w, t)
        # e after round 60 becomes h after round 63: H7. a after round 56
        # is the last one that round 60 reads (as d).
        state = em.round(state, t, w[t], need_a=t <= 56)
    h7 = em.add("h", state[4], IV[7])
    return em.lines, h7


CL_HEAD = r"""// SHA-256d nonce scanner for OpenCL 1.2+.
//
// GENERATED by scripts/gen_kernels.py from the algorithm of
// KernelWork::top_word (src/pow/kernel_work.rs); edit the script, not this
// file. The host passes the precomputed KernelWork as a constant buffer of
// 28 words, the first nonce of the batch, and a found-buffer:
// found[0] counts candidates, found[1..=FOUND_CAPACITY] holds them. A count
// above the capacity is an overflow, which the host re-scans.
//
// Build options:
//   -D VECTORS=n         nonces per work-item, as OpenCL vector lanes
//                        (1 on GPUs; 8 on CPU devices, whose compilers
//                        vectorise explicit vectors far better than
//                        work-items)
//   -D FOUND_CAPACITY=n  slots in the found-buffer
//   -D HASHRIG_VENDOR_NVIDIA=1
//                        additions as multiply-adds by a 1 read from the
//                        work (KernelWork word 25), which the compiler
//                        cannot fold: NVIDIA runs them as IMAD on the FMA
//                        pipe, beside the integer ALU pipe that the
//                        rotates (SHF) and logic (LOP3) fill
//   -D HASHRIG_VENDOR_NVIDIA=2
//                        the same, and with VECTORS=1 two of Σ0's three
//                        rotations as wide multiplies (IMAD.WIDE): fewer
//                        ALU-pipe instructions, more on the FMA pipe, a
//                        trade only a card can price (hashrig tune)
//   -D HASHRIG_PTX=1     the compiler takes inline PTX (the host sets it on
//                        NVIDIA's own OpenCL platform only, and builds
//                        again without it if the driver refuses): the wide
//                        rotations as mul.wide.u32 and Σ0's xors as two
//                        lop3.b32, which plain C does not get from LLVM
//   -D HASHRIG_VENDOR_AMD=1
//                        Maj through the previous round's a ^ b (the same
//                        VALU count as the generic kernel on LLVM's AMDGPU
//                        backend, which already finds it; see BENCHMARKS.md)
//   neither              the generic kernel: plain additions and logic

#ifndef VECTORS
#define VECTORS 1
#endif
#ifndef FOUND_CAPACITY
#define FOUND_CAPACITY 255
#endif

#if VECTORS == 1
typedef uint uintV;
#define LANES ((uintV)0u)
#elif VECTORS == 2
typedef uint2 uintV;
#define LANES ((uintV)(0u, 1u))
#elif VECTORS == 4
typedef uint4 uintV;
#define LANES ((uintV)(0u, 1u, 2u, 3u))
#elif VECTORS == 8
typedef uint8 uintV;
#define LANES ((uintV)(0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u))
#elif VECTORS == 16
typedef uint16 uintV;
#define LANES ((uintV)(0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 10u, 11u, 12u, 13u, 14u, 15u))
#else
#error "VECTORS must be 1, 2, 4, 8 or 16"
#endif

// rotate() is a left rotation. Ch and Maj are written as plain logic, which
// LLVM-based compilers turn into one LOP3 (NVIDIA) or vpternlog (AVX-512);
// bitselect() measured 10-20% slower on PoCL, where it lowered to and/andn/or.
#define ROTR(x, n) rotate((uintV)(x), (uintV)(32u - (n)))
#if HASHRIG_VENDOR_NVIDIA == 2 && VECTORS == 1
// Two of Σ0's rotations as 32x32->64 multiplies by a runtime 2^(32-n)
// (IMAD.WIDE, on the FMA pipe): the high word is x >> n, the low word
// x << (32 - n), disjoint bits, so their xor is the rotation and the five
// terms take two LOP3. One ALU-pipe instruction fewer per Σ0, two more on
// the FMA pipe.
#if HASHRIG_PTX
// In C, LLVM's NVPTX backend splits a 64-bit product whose halves are used
// apart into mul.lo and mul.hi (IMAD and IMAD.HI: two FMA-pipe instructions
// a rotation, not one), and ptxas then xors Σ0's five terms in three LOP3,
// which takes back the ALU-pipe saving. Written in PTX: one IMAD.WIDE a
// rotation and two LOP3 a Σ0 (sm_90, LLVM's PTX: 1714 ALU-pipe, 1294
// FMA-pipe and 3043 issued a nonce, against 1714, 1526 and 3275 in C).
inline uint xor3(uint a, uint b, uint c) {
    uint r;
    __asm__("lop3.b32 %0, %1, %2, %3, 0x96;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
inline ulong mul_wide(uint x, uint m) {
    ulong r;
    __asm__("mul.wide.u32 %0, %1, %2;" : "=l"(r) : "r"(x), "r"(m));
    return r;
}
inline uint sigma0_wide(uint x, uint one) {
    const ulong p13 = mul_wide(x, one << 19u);
    const ulong p22 = mul_wide(x, one << 10u);
    return xor3(xor3(ROTR(x, 2u), (uint)(p13 >> 32), (uint)p13), (uint)(p22 >> 32), (uint)p22);
}
#define S0(x) sigma0_wide((x), one)
#else
#define ROTR_WIDE(x, n) ((ulong)(x) * (ulong)(one << (32u - (n))))
#define WIDE_XOR(p) ((uint)((p) >> 32) ^ (uint)(p))
#define S0(x) (ROTR(x, 2u) ^ WIDE_XOR(ROTR_WIDE(x, 13u)) ^ WIDE_XOR(ROTR_WIDE(x, 22u)))
#endif
#else
#define S0(x) (ROTR(x, 2u) ^ ROTR(x, 13u) ^ ROTR(x, 22u))
#endif
#define S1(x) (ROTR(x, 6u) ^ ROTR(x, 11u) ^ ROTR(x, 25u))
#define s0(x) (ROTR(x, 7u) ^ ROTR(x, 18u) ^ ((uintV)(x) >> 3u))
#define s1(x) (ROTR(x, 17u) ^ ROTR(x, 19u) ^ ((uintV)(x) >> 10u))
#define CH(e, f, g) ((uintV)(g) ^ ((uintV)(e) & ((uintV)(f) ^ (uintV)(g))))
#if HASHRIG_VENDOR_AMD
// Maj as a select by b ^ c, which is the previous round's a ^ b (the
// compiler shares it): one v_bfi_b32 and one xor per round. bitselect()
// itself is avoided: offline compilers without a device library cannot
// link it.
#define MAJ(a, b, c) ((uintV)(b) ^ (((uintV)(b) ^ (uintV)(c)) & ((uintV)(a) ^ (uintV)(b))))
#else
#define MAJ(a, b, c) (((uintV)(a) & (uintV)(b)) | ((uintV)(c) & ((uintV)(a) | (uintV)(b))))
#endif
#if HASHRIG_VENDOR_NVIDIA
#define ADD(x, y) ((uintV)(x) * one + (uintV)(y))
#else
#define ADD(x, y) ((uintV)(x) + (uintV)(y))
#endif
#define BSWAP(x) (rotate((x) & (uintV)0x00ff00ffu, (uintV)24u) | rotate((x) & (uintV)0xff00ff00u, (uintV)8u))

inline void record(volatile __global uint *found, uint nonce) {
    uint slot = atomic_inc(&found[0]);
    if (slot < FOUND_CAPACITY) {
        found[1 + slot] = nonce;
    }
}

// Nonces base_nonce .. base_nonce + last_offset are the batch; lanes past it
// (the last work-group is rounded up) are computed but never reported.
__kernel void sha256d_scan(__constant const uint *kw, const uint base_nonce, const uint last_offset,
                           volatile __global uint *found) {
    const uintV nonce = (uintV)(base_nonce + (uint)get_global_id(0) * VECTORS) + LANES;
    const uintV w3 = BSWAP(nonce);
    const uint target_top = kw[11];
#if HASHRIG_VENDOR_NVIDIA
    const uint one = kw[25];
#endif
"""

CL_TAIL = r"""
    const uintV top = BSWAP({h7});
#if VECTORS == 1
    if (top <= target_top && nonce - base_nonce <= last_offset) record(found, nonce);
#else
    if (any(top <= target_top)) {{
        for (uint lane = 0; lane < VECTORS; lane++) {{
            const uint lane_top = ((const uint *)&top)[lane];
            const uint lane_nonce = ((const uint *)&nonce)[lane];
            if (lane_top <= target_top && lane_nonce - base_nonce <= last_offset) record(found, lane_nonce);
        }}
    }}
#endif
}}
"""

WGSL_HEAD = r"""// SHA-256d nonce scanner for WebGPU / Vulkan (through wgpu).
//
// GENERATED by scripts/gen_kernels.py from the algorithm of
// KernelWork::top_word (src/pow/kernel_work.rs); edit the script, not this
// file. WGSL has no rotate or bitselect: the shift-or and g ^ (e & (f ^ g))
// forms below are what drivers fuse into rotates and LOP3/BFI. Every value
// is a named local (no arrays), so nothing spills to memory.

// KernelWork's 28 words (named after their word offsets, see
// src/pow/kernel_work.rs), then the batch's first nonce, the offset of its
// last nonce and two spare words: 32 u32 fields, read as plain scalar
// loads (no vector component indexing for drivers to untangle).
struct Params {
{fields}
}

// count may exceed the capacity: the host sees the overflow and re-scans.
struct Found {
    count: atomic<u32>,
    nonces: array<u32, FOUND_CAPACITY>,
}

const FOUND_CAPACITY: u32 = 255u;

// Work-group size and nonces per invocation, set per device by the host.
override WORKGROUP_SIZE: u32 = 64u;
override NONCES_PER_INVOCATION: u32 = 1u;
// The NVIDIA build (set by the host for NVIDIA adapters): additions as
// multiply-adds by params.kw25, a 1 the compiler cannot fold, which NVIDIA's
// compiler runs as IMAD on the FMA pipe beside the integer ALU pipe that the
// rotates and logic fill. Off, the branch folds away and `add` is `+`.
override ADD_ON_MULTIPLIER: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> found: Found;

fn rotr(x: u32, n: u32) -> u32 { return (x >> n) | (x << (32u - n)); }
fn S0(x: u32) -> u32 { return rotr(x, 2u) ^ rotr(x, 13u) ^ rotr(x, 22u); }
fn S1(x: u32) -> u32 { return rotr(x, 6u) ^ rotr(x, 11u) ^ rotr(x, 25u); }
fn s0(x: u32) -> u32 { return rotr(x, 7u) ^ rotr(x, 18u) ^ (x >> 3u); }
fn s1(x: u32) -> u32 { return rotr(x, 17u) ^ rotr(x, 19u) ^ (x >> 10u); }
fn CH(e: u32, f: u32, g: u32) -> u32 { return g ^ (e & (f ^ g)); }
fn MAJ(a: u32, b: u32, c: u32) -> u32 { return (a & b) | (c & (a | b)); }
fn add(x: u32, y: u32) -> u32 {
    if ADD_ON_MULTIPLIER {
        return x * params.kw25 + y;
    }
    return x + y;
}
fn bswap(x: u32) -> u32 { return (rotr(x & 0x00ff00ffu, 8u)) | (rotr(x & 0xff00ff00u, 24u)); }

@compute @workgroup_size(WORKGROUP_SIZE)
fn sha256d_scan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // 2-D dispatch: one dimension stops at 65535 work-groups.
    let invocation = gid.y * groups.x * WORKGROUP_SIZE + gid.x;
    let target_top = params.kw11;
    let base = params.base_nonce;
    let last_offset = params.last_offset;
    let first = base + invocation * NONCES_PER_INVOCATION;
    // Loaded once per invocation, outside the loop: a driver cannot always
    // prove a uniform load loop-invariant next to the atomic below.
"""

WGSL_TAIL = r"""
            // Invocations past the batch (the dispatch is rounded up) report nothing.
            let hit = bswap({h7}) <= target_top && nonce - base <= last_offset;
            hits |= select(0u, 1u << i, hit);
        }}
        // Reported here, once per 32 nonces, not inside the hashing loop:
        // CPU drivers (lavapipe) run a branch for every SIMD step whether or
        // not a lane takes it, and an atomic there is a loop over the lanes.
        while (hits != 0u) {{
            let nonce = first + done + countTrailingZeros(hits);
            hits &= hits - 1u;
            let slot = atomicAdd(&found.count, 1u);
            if (slot < FOUND_CAPACITY) {{
                found.nonces[slot] = nonce;
            }}
        }}
        done += group;
    }}
}}
"""


def uniforms(lang):
    out = []
    for i in list(range(8)) + list(range(12, 25)):
        if lang == "cl":
            out.append(f"    const uint kw{i} = kw[{i}];")
        elif lang == "rs":
            out.append(f"    let kw{i} = V::splat(kw[{i}]);")
        else:
            out.append(f"    let kw{i} = params.kw{i};")
    return out


RS_HEAD = """//! H7 of SHA-256d for a vector of nonces at once: the algorithm of
//! `KernelWork::top_word` (src/pow/kernel_work.rs), as the GPU kernels run it.
//!
//! GENERATED by scripts/gen_kernels.py; edit the script, not this file. Every
//! value is a named local and every constant word is folded in the script,
//! so the compiler sees straight-line vector code with nothing to prove.

use super::lanes::Lanes;

/// H7 of the second hash (not yet byte-swapped) for the nonces whose
/// big-endian words (W3 of the header's second block) are `w3`, one per
/// lane, from the 28 words of a `KernelWork`.
#[inline(always)]
#[allow(clippy::too_many_lines, clippy::let_and_return)]
pub(super) fn second_hash_h7<V: Lanes>(kw: &[u32; 28], w3: V) -> V {
"""


WGSL_LOOP = """    // Nonces in groups of up to 32, one bit each in `hits`.
    var done = 0u;
    while (done < NONCES_PER_INVOCATION) {
        let group = min(32u, NONCES_PER_INVOCATION - done);
        var hits = 0u;
        for (var i = 0u; i < group; i++) {
            let nonce = first + done + i;
            let w3 = bswap(nonce);
"""


def wgsl_fields():
    names = [f"kw{i}" for i in range(28)] + ["base_nonce", "last_offset", "spare0", "spare1"]
    return "\n".join(f"    {n}: u32," for n in names)


def generate():
    cl_lines, h7 = body("cl")
    cl = CL_HEAD + "\n".join(uniforms("cl") + cl_lines) + CL_TAIL.format(h7=h7)
    wgsl_lines, h7 = body("wgsl")
    body_lines = ["        " + line for line in wgsl_lines]
    wgsl = (WGSL_HEAD.replace("{fields}", wgsl_fields()) + "\n".join(uniforms("wgsl")) + "\n" + WGSL_LOOP
            + "\n".join(body_lines) + WGSL_TAIL.format(h7=h7))
    rs_lines, h7 = body("rs")
    rs = RS_HEAD + "\n".join(uniforms("rs") + rs_lines) + f"\n    {h7}\n}}\n"
    return cl, wgsl, rs


def main():
    root = Path(__file__).resolve().parent.parent
    cl, wgsl, rs = generate()
    targets = {
        root / "kernels" / "sha256d.cl": cl,
        root / "shaders" / "sha256d.wgsl": wgsl,
        root / "src" / "backend" / "cpu" / "sha256d_lanes.rs": rs,
    }
    if "--check" in sys.argv:
        stale = [str(p) for p, text in targets.items() if not p.exists() or p.read_text() != text]
        if stale:
            print("out of date (run scripts/gen_kernels.py):", *stale)
            sys.exit(1)
        return
    for path, text in targets.items():
        path.write_text(text)


if __name__ == "__main__":
    main()

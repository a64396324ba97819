//! Many nonces per instruction: the kernels' algorithm (the generated
//! `sha256d_lanes.rs`) on a vector of 32-bit lanes, one nonce per lane.
//!
//! The generated body is written against [`Lanes`], so one source serves
//! AVX-512 (16 lanes), AVX2 (8) and plain `u32` (1, the fallback for CPUs
//! with none of them). The methods are `#[inline(always)]` and carry no
//! target features of their own: they are inlined into an entry point that
//! enables the ISA (`avx512::scan_range`, `avx2::scan_range`), and only
//! there do the intrinsics they call inline into single instructions. The
//! nonce loop around the body is `lane_scan.rs`.

/// A vector of 32-bit words, one nonce per lane, with what SHA-256 needs.
/// The defaults build each function from rotates and logic; an ISA with
/// better instructions (AVX-512's three-input logic) overrides them.
pub(super) trait Lanes: Copy {
    /// Lanes per vector: nonces per step.
    const WIDTH: usize;
    /// Every lane `word`.
    fn splat(word: u32) -> Self;
    /// Lane `i` is `first + i`, byte-swapped: the nonce as SHA-256 reads
    /// it (the header stores it little-endian, SHA-256 reads big-endian).
    fn nonce_words(first: u32) -> Self;
    /// Bit `i` set where lane `i` of `h7`, byte-swapped (the hash's top
    /// word as a little-endian number), is at most `target_top`.
    fn at_most(h7: Self, target_top: u32) -> u32;
    /// Lane-wise wrapping addition.
    fn add(x: Self, y: Self) -> Self;
    /// Lane-wise `x ^ y`.
    fn xor(x: Self, y: Self) -> Self;
    /// Lane-wise `x & y`.
    fn and(x: Self, y: Self) -> Self;
    /// Lane-wise `x | y`.
    fn or(x: Self, y: Self) -> Self;
    /// Lane-wise right rotation by `N`.
    fn rotr<const N: i32>(x: Self) -> Self;
    /// Lane-wise logical right shift by `N`.
    fn shr<const N: i32>(x: Self) -> Self;

    /// `x ^ y ^ z`.
    #[inline(always)]
    fn xor3(x: Self, y: Self, z: Self) -> Self {
        Self::xor(Self::xor(x, y), z)
    }
    /// Σ0 (FIPS 180-4, 4.1.2).
    #[inline(always)]
    fn big_sigma0(x: Self) -> Self {
        Self::xor3(Self::rotr::<2>(x), Self::rotr::<13>(x), Self::rotr::<22>(x))
    }
    /// Σ1.
    #[inline(always)]
    fn big_sigma1(x: Self) -> Self {
        Self::xor3(Self::rotr::<6>(x), Self::rotr::<11>(x), Self::rotr::<25>(x))
    }
    /// σ0.
    #[inline(always)]
    fn small_sigma0(x: Self) -> Self {
        Self::xor3(Self::rotr::<7>(x), Self::rotr::<18>(x), Self::shr::<3>(x))
    }
    /// σ1.
    #[inline(always)]
    fn small_sigma1(x: Self) -> Self {
        Self::xor3(Self::rotr::<17>(x), Self::rotr::<19>(x), Self::shr::<10>(x))
    }
    /// Ch(e, f, g): f where e is set, else g.
    #[inline(always)]
    fn ch(e: Self, f: Self, g: Self) -> Self {
        Self::xor(g, Self::and(e, Self::xor(f, g)))
    }
    /// Maj(a, b, c): the majority of each bit.
    #[inline(always)]
    fn maj(a: Self, b: Self, c: Self) -> Self {
        Self::or(Self::and(a, b), Self::and(c, Self::or(a, b)))
    }
}

/// One lane: the scalar fallback, for CPUs with neither AVX2 nor SHA-NI
/// (and every non-x86 CPU). Plain `u32` arithmetic; the compiler's own
/// rotates.
impl Lanes for u32 {
    const WIDTH: usize = 1;

    #[inline(always)]
    fn splat(word: u32) -> Self {
        word
    }
    #[inline(always)]
    fn nonce_words(first: u32) -> Self {
        first.swap_bytes()
    }
    #[inline(always)]
    fn at_most(h7: Self, target_top: u32) -> u32 {
        u32::from(h7.swap_bytes() <= target_top)
    }
    #[inline(always)]
    fn add(x: Self, y: Self) -> Self {
        x.wrapping_add(y)
    }
    #[inline(always)]
    fn xor(x: Self, y: Self) -> Self {
        x ^ y
    }
    #[inline(always)]
    fn and(x: Self, y: Self) -> Self {
        x & y
    }
    #[inline(always)]
    fn or(x: Self, y: Self) -> Self {
        x | y
    }
    #[inline(always)]
    fn rotr<const N: i32>(x: Self) -> Self {
        x.rotate_right(N as u32)
    }
    #[inline(always)]
    fn shr<const N: i32>(x: Self) -> Self {
        x >> N as u32
    }
}

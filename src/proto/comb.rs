//! Fixed-base tables for multiplying one known point by many scalars in variable time.
//!
//! Checking a seal computes `[s]B − [k]A` for the signer's key `A`. The generic
//! double-scalar multiplication spends most of its time on some 253 point doublings; a
//! signer signs thousands of entries, so it pays to work out once, per point `P`, every
//! `j·2^(w·i)·P` for the signed radix-`2^w` digits `j` a scalar can have at position `i`.
//! A product is then one point addition per nonzero digit and no doubling at all. The
//! result is the same group element (the group law does not depend on how the sum is
//! grouped), so a check built on it accepts exactly what the generic one accepts.
//!
//! Variable time is fine here: the scalars are public (they come from signatures and
//! messages anyone can read), so nothing secret leaks through timing.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::traits::Identity;
use curve25519_dalek::Scalar;

/// Bits of a reduced scalar: every [`Scalar`] is below ℓ < 2^253.
const SCALAR_BITS: usize = 253;

/// The digits a table of width `w` splits a scalar into. The top window holds at most one
/// bit of the scalar (253 = 1 mod w for w = 4, 6, 7 ...) or a few (w = 5, 8), so adding
/// the carry from below never overflows it and no extra position is needed.
const fn positions(width: usize) -> usize {
    SCALAR_BITS.div_ceil(width)
}

/// `j·2^(w·i)·P` for `i` below [`positions`] and `j` in `1..=2^(w−1)`, for one point `P`:
/// with signed digits, `[scalar]P` is one addition or subtraction per nonzero digit.
pub struct CombTable {
    width: usize,
    /// Position-major: entry `j` of position `i` is at `i·2^(w−1) + j − 1`.
    multiples: Box<[EdwardsPoint]>,
}

impl std::fmt::Debug for CombTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CombTable(width {}, {} points)",
            self.width,
            self.multiples.len()
        )
    }
}

impl CombTable {
    /// Smallest and largest supported digit widths: below 4 the table saves little, above 8
    /// a table outgrows the caches (one point is 160 bytes; width 8 is 4,096 points).
    pub const WIDTHS: std::ops::RangeInclusive<usize> = 4..=8;

    /// The table of `point` for digits of `width` bits (in [`Self::WIDTHS`]). Costs one
    /// point addition per entry: `positions(width) · 2^(width−1)` of them.
    pub fn new(point: &EdwardsPoint, width: usize) -> CombTable {
        assert!(Self::WIDTHS.contains(&width), "comb width {width}");
        let half = 1usize << (width - 1);
        let mut multiples = Vec::with_capacity(positions(width) * half);
        let mut base = *point;
        for _ in 0..positions(width) {
            let mut multiple = base;
            multiples.push(multiple);
            for _ in 1..half {
                multiple += &base;
                multiples.push(multiple);
            }
            // 2^(w−1)·base doubled is the next position's base, 2^w·base.
            base = multiple + multiple;
        }
        CombTable {
            width,
            multiples: multiples.into_boxed_slice(),
        }
    }

    /// Bytes the table holds (for bounding how many a cache keeps).
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.multiples)
    }

    /// `[scalar]P`, in variable time (one addition per nonzero digit, no doubling).
    pub fn mul(&self, scalar: &Scalar) -> EdwardsPoint {
        let mut sum = EdwardsPoint::identity();
        self.add_product(&mut sum, scalar);
        sum
    }

    /// Adds `[scalar]P` to `sum`, so two tables' products fold into one sum.
    pub fn add_product(&self, sum: &mut EdwardsPoint, scalar: &Scalar) {
        let half = 1usize << (self.width - 1);
        let mut digits = [0i16; positions(4)];
        let digits = signed_digits(scalar, self.width, &mut digits);
        for (position, &digit) in digits.iter().enumerate() {
            let row = position * half;
            if digit > 0 {
                *sum += &self.multiples[row + digit as usize - 1];
            } else if digit < 0 {
                *sum -= &self.multiples[row + digit.unsigned_abs() as usize - 1];
            }
        }
    }
}

/// `scalar` as `Σ dᵢ·2^(w·i)` with every `dᵢ` in `−2^(w−1)..=2^(w−1)`, written into the
/// front of `out` (sized for the narrowest width); returns the digits used.
fn signed_digits<'a>(scalar: &Scalar, width: usize, out: &'a mut [i16]) -> &'a [i16] {
    let bytes = scalar.as_bytes();
    let mut padded = [0u8; 40];
    padded[..32].copy_from_slice(bytes);
    let radix = 1i16 << width;
    let mask = (1u64 << width) - 1;
    let mut carry = 0i16;
    let count = positions(width);
    for (position, digit) in out[..count].iter_mut().enumerate() {
        let bit = position * width;
        let word = u64::from_le_bytes(padded[bit / 8..bit / 8 + 8].try_into().expect("8 bytes"));
        let window = ((word >> (bit % 8)) & mask) as i16 + carry;
        // A window of 2^(w−1) or more becomes negative and carries one into the next.
        carry = (window + radix / 2 - 1) >> width;
        *digit = window - (carry << width);
    }
    debug_assert_eq!(carry, 0, "a reduced scalar's top window cannot carry out");
    &out[..count]
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;

    /// Scalars spread over the whole range, with the edges (0, 1, ℓ−1, all-ones windows).
    fn scalars() -> Vec<Scalar> {
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut scalars = vec![
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(u64::MAX),
        ];
        for _ in 0..60 {
            let mut wide = [0u8; 64];
            for byte in &mut wide {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            scalars.push(Scalar::from_bytes_mod_order_wide(&wide));
        }
        scalars
    }

    #[test]
    fn digits_sum_back_to_the_scalar_at_every_width() {
        for width in CombTable::WIDTHS {
            for scalar in scalars() {
                let mut out = [0i16; positions(4)];
                let digits = signed_digits(&scalar, width, &mut out);
                let half = 1i16 << (width - 1);
                assert!(digits.iter().all(|d| (-half..=half).contains(d)));
                let radix = Scalar::from(1u64 << width);
                let sum = digits.iter().rev().fold(Scalar::ZERO, |sum, &d| {
                    let digit = Scalar::from(d.unsigned_abs() as u64);
                    sum * radix + if d < 0 { -digit } else { digit }
                });
                assert_eq!(sum, scalar, "width {width}");
            }
        }
    }

    #[test]
    fn products_match_the_generic_multiplication_at_every_width() {
        let point = ED25519_BASEPOINT_POINT * Scalar::from(987654321u64);
        // A point with a torsion component too: the table must not assume prime order.
        let torsion = curve25519_dalek::edwards::CompressedEdwardsY([
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ])
        .decompress()
        .expect("a point of order 8");
        assert!(torsion.is_small_order());
        for base in [point, point + torsion] {
            for width in CombTable::WIDTHS {
                let table = CombTable::new(&base, width);
                assert_eq!(
                    table.size_bytes(),
                    (positions(width) << (width - 1)) * std::mem::size_of::<EdwardsPoint>()
                );
                for scalar in scalars() {
                    assert_eq!(table.mul(&scalar), base * scalar, "width {width}");
                }
            }
        }
    }
}

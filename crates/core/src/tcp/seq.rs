//! Sequence numbers: 32-bit, compared modulo 2^32 (RFC 9293 §3.4).
//!
//! `a < b` means `b` is less than 2^31 ahead of `a`. The order is not total
//! across the whole space (it is a circle), which is exactly what TCP's
//! window checks need: every comparison is between numbers less than 2^31
//! apart.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence (or acknowledgment) number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// Signed distance `self - other`, in `[-2^31, 2^31)`.
    #[inline]
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self - other` as a length; `other` must not be after `self`.
    #[inline]
    pub fn distance_from(self, other: Seq) -> usize {
        debug_assert!(self.diff(other) >= 0, "{self:?} is before {other:?}");
        self.0.wrapping_sub(other.0) as usize
    }

    /// True if `lo <= self < hi` modulo 2^32.
    #[inline]
    pub fn in_range(self, lo: Seq, hi: Seq) -> bool {
        self.0.wrapping_sub(lo.0) < hi.0.wrapping_sub(lo.0)
    }

    /// The later of two numbers.
    #[inline]
    pub fn max(self, other: Seq) -> Seq {
        if self.diff(other) >= 0 {
            self
        } else {
            other
        }
    }

    /// The earlier of two numbers.
    #[inline]
    pub fn min(self, other: Seq) -> Seq {
        if self.diff(other) <= 0 {
            self
        } else {
            other
        }
    }
}

impl PartialOrd for Seq {
    #[inline]
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<usize> for Seq {
    type Output = Seq;
    #[inline]
    /// `self + n`, wrapping.
    fn add(self, n: usize) -> Seq {
        Seq(self.0.wrapping_add(n as u32))
    }
}

impl AddAssign<usize> for Seq {
    #[inline]
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

impl Sub<Seq> for Seq {
    type Output = usize;
    /// Distance from `rhs` up to `self`; `rhs` must not be after `self`.
    #[inline]
    fn sub(self, rhs: Seq) -> usize {
        self.distance_from(rhs)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_around_zero() {
        let near_end = Seq(u32::MAX - 1);
        let wrapped = near_end + 5;
        assert_eq!(wrapped, Seq(3));
        assert!(near_end < wrapped);
        assert_eq!(wrapped - near_end, 5);
        assert!(Seq(0).in_range(near_end, wrapped));
        assert!(
            !wrapped.in_range(near_end, wrapped),
            "the range is half-open"
        );
    }

    proptest! {
        #[test]
        fn order_follows_distance(a in any::<u32>(), n in 1u32..(1 << 31)) {
            let (a, b) = (Seq(a), Seq(a.wrapping_add(n)));
            prop_assert!(a < b);
            prop_assert!(b > a);
            prop_assert_eq!(b - a, n as usize);
            prop_assert_eq!(a.max(b), b);
            prop_assert_eq!(a.min(b), a);
        }

        #[test]
        fn in_range_matches_offsets(lo in any::<u32>(), len in 0u32..(1 << 31), off in 0u32..(1 << 31)) {
            let x = Seq(lo.wrapping_add(off));
            prop_assert_eq!(x.in_range(Seq(lo), Seq(lo.wrapping_add(len))), off < len);
        }

        #[test]
        fn add_then_sub_is_identity(a in any::<u32>(), n in 0usize..(1 << 31)) {
            prop_assert_eq!((Seq(a) + n) - Seq(a), n);
        }
    }
}

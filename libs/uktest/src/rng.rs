//! [`Rng`]: a small deterministic generator for stress tests.

/// A xorshift64 generator (Marsaglia's 13/7/17 triple): cheap, no
/// allocation, usable in interrupt handlers, and the same sequence for the
/// same seed, so a failing stress run can be replayed. Not for anything
/// that needs unpredictability.
///
/// ```
/// let mut a = uktest::Rng::new(42);
/// let mut b = uktest::Rng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (its low bit set: xorshift never
    /// leaves zero).
    pub const fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True one time in `n`, on average (always when `n` is 0 or 1).
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let (x, y) = (a.below(13), b.below(13));
            assert_eq!(x, y);
            assert!(x < 13);
        }
        assert_eq!(Rng::new(0).below(0), 0);
        assert_ne!(Rng::new(0).next_u64(), 0, "a zero seed does not stick at zero");
    }
}

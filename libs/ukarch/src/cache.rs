//! Cache-line alignment, against false sharing.

/// Size of a cache line on every x86_64 CPU in use (64 bytes). Adjacent-line
/// prefetch on some Intel parts makes 128 bytes the safer padding for very
/// hot data; the types here use 64 and say so.
pub const CACHE_LINE: usize = 64;

/// `T` aligned to (and padded to a multiple of) a cache line, so two values
/// written by different CPUs never share a line.
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
/// use ukarch::cache::CacheAligned;
///
/// static COUNTERS: [CacheAligned<AtomicU64>; 2] =
///     [CacheAligned::new(AtomicU64::new(0)), CacheAligned::new(AtomicU64::new(0))];
/// COUNTERS[1].fetch_add(1, Ordering::Relaxed);
/// assert_eq!(core::mem::align_of_val(&COUNTERS[0]), 64);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct CacheAligned<T>(pub T);

impl<T> CacheAligned<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> core::ops::Deref for CacheAligned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for CacheAligned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_padded() {
        assert_eq!(align_of::<CacheAligned<u8>>(), CACHE_LINE);
        assert_eq!(size_of::<CacheAligned<u8>>(), CACHE_LINE);
        assert_eq!(size_of::<CacheAligned<[u8; 65]>>(), 2 * CACHE_LINE);
        let mut v = CacheAligned::new(5u32);
        *v += 1;
        assert_eq!(v.into_inner(), 6);
    }
}

//! Sets of CPUs: thread affinity.

use core::fmt;
use ukplat::cpu::{CpuIndex, MAX_CPUS};

const WORDS: usize = MAX_CPUS.div_ceil(64);

/// A set of CPU indices (`0..ukplat::cpu::MAX_CPUS`), e.g. the CPUs a
/// thread may run on.
///
/// ```
/// use uksched::CpuSet;
/// let set = CpuSet::single(1).with(3);
/// assert!(set.contains(3) && !set.contains(2));
/// assert_eq!(set.iter().collect::<Vec<_>>(), [1, 3]);
/// assert!(CpuSet::all().contains(0));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSet([u64; WORDS]);

impl CpuSet {
    /// No CPU.
    pub const fn empty() -> Self {
        Self([0; WORDS])
    }

    /// Every CPU.
    pub const fn all() -> Self {
        let mut words = [u64::MAX; WORDS];
        let extra = WORDS * 64 - MAX_CPUS;
        if extra > 0 {
            words[WORDS - 1] >>= extra;
        }
        Self(words)
    }

    /// Only CPU `cpu`.
    ///
    /// # Panics
    /// When `cpu >= MAX_CPUS`.
    pub const fn single(cpu: CpuIndex) -> Self {
        Self::empty().with(cpu)
    }

    /// This set and CPU `cpu`.
    ///
    /// # Panics
    /// When `cpu >= MAX_CPUS`.
    pub const fn with(mut self, cpu: CpuIndex) -> Self {
        assert!(cpu < MAX_CPUS, "CPU index beyond ukplat::cpu::MAX_CPUS");
        self.0[cpu / 64] |= 1 << (cpu % 64);
        self
    }

    /// This set without CPU `cpu`.
    pub const fn without(mut self, cpu: CpuIndex) -> Self {
        if cpu < MAX_CPUS {
            self.0[cpu / 64] &= !(1 << (cpu % 64));
        }
        self
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(&self, cpu: CpuIndex) -> bool {
        cpu < MAX_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        let mut i = 0;
        while i < WORDS {
            if self.0[i] != 0 {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The CPUs in the set, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = CpuIndex> + '_ {
        (0..MAX_CPUS).filter(|&c| self.contains(c))
    }

    /// How many CPUs are in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::all() {
            return f.write_str("all");
        }
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<CpuIndex> for CpuSet {
    fn from_iter<I: IntoIterator<Item = CpuIndex>>(iter: I) -> Self {
        iter.into_iter().fold(Self::empty(), Self::with)
    }
}

/// A [`CpuSet`] that may change while other CPUs read it (a thread's
/// affinity): one atomic word per 64 CPUs, so a membership test is one
/// load. A reader racing with a change sees the old or the new word.
pub(crate) struct AtomicCpuSet([core::sync::atomic::AtomicU64; WORDS]);

impl AtomicCpuSet {
    pub(crate) fn new(set: CpuSet) -> Self {
        Self(set.0.map(core::sync::atomic::AtomicU64::new))
    }

    pub(crate) fn load(&self) -> CpuSet {
        let mut words = [0; WORDS];
        for (w, a) in words.iter_mut().zip(&self.0) {
            *w = a.load(core::sync::atomic::Ordering::Acquire);
        }
        CpuSet(words)
    }

    pub(crate) fn store(&self, set: CpuSet) {
        for (a, w) in self.0.iter().zip(set.0) {
            a.store(w, core::sync::atomic::Ordering::Release);
        }
    }

    #[inline(always)]
    pub(crate) fn contains(&self, cpu: CpuIndex) -> bool {
        cpu < MAX_CPUS
            && self.0[cpu / 64].load(core::sync::atomic::Ordering::Acquire) & (1 << (cpu % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let s: CpuSet = [0, 2, 63].into_iter().collect();
        assert_eq!(s.len(), 3);
        assert!(s.contains(63) && !s.contains(1));
        assert_eq!(s.without(2).iter().collect::<std::vec::Vec<_>>(), [0, 63]);
        assert!(CpuSet::empty().is_empty());
        assert_eq!(CpuSet::all().len(), MAX_CPUS);
        assert!(!CpuSet::all().contains(MAX_CPUS));
        assert_eq!(format!("{:?}", CpuSet::single(1)), "{1}");
    }
}

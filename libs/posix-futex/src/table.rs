//! The hash table of wait buckets.
//!
//! A futex's key is its word's address. The table has
//! `buckets_per_cpu × CPUs` buckets, rounded up to a power of two, created
//! on the first futex operation and never freed (a requeue moves waiters
//! to a bucket they did not borrow, which `uksched` allows only for
//! `'static` queues). Each bucket is a [`WaitQueue`] on its own cache line,
//! so two CPUs working on futexes of different buckets do not share a line.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;
use ukplat::once::Once;
use uksched::WaitQueue;

/// One bucket, alone on its cache line.
#[repr(align(64))]
struct Bucket(WaitQueue);

struct Table {
    buckets: &'static [Bucket],
    /// 64 − log2(buckets): the hash keeps the product's top bits.
    shift: u32,
}

static TABLE: Once<Table> = Once::new();

fn table() -> &'static Table {
    TABLE.call_once(|| {
        let n = (crate::BUCKETS_PER_CPU * ukplat::cpu::count()).next_power_of_two().max(2);
        let buckets: Vec<Bucket> = (0..n).map(|_| Bucket(WaitQueue::new())).collect();
        Table { buckets: Box::leak(buckets.into_boxed_slice()), shift: 64 - n.trailing_zeros() }
    })
}

/// How many hash buckets the table has (created now if it was not).
pub fn buckets() -> usize {
    table().buckets.len()
}

/// A futex word's key: its address.
pub(crate) fn key(word: &AtomicU32) -> usize {
    core::ptr::from_ref(word) as usize
}

/// Fibonacci hashing of the word index (the address over 4): consecutive
/// words spread over the table.
fn index(addr: usize, shift: u32) -> usize {
    ((addr as u64 >> 2).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

/// The bucket of the futex at `addr`.
pub(crate) fn bucket(addr: usize) -> &'static WaitQueue {
    let t = table();
    &t.buckets[index(addr, t.shift)].0
}

#[cfg(test)]
mod tests {
    use super::index;

    #[test]
    fn the_hash_spreads_neighbouring_words() {
        let shift = 64 - 10; // 1024 buckets
        let mut seen = std::collections::BTreeSet::new();
        for w in 0..256usize {
            let i = index(0x20_0000 + 4 * w, shift);
            assert!(i < 1024);
            seen.insert(i);
        }
        assert!(seen.len() > 200, "256 consecutive words hit only {} buckets", seen.len());
    }
}

//! In-guest tests of guarded stacks: the page tables really hold what the
//! crate says, stacks are usable as stacks, and freed ones are reused.

use crate::{AREA, GuardedStack, MAX_STACK_SIZE, PAGE_SIZE, StackError, guard_page_at, stats, translate};
use alloc::string::String;
use alloc::vec::Vec;
use uktest::{TestResult, ut_assert, ut_assert_eq};

/// Checks a stack's geometry and mappings, then writes every usable byte
/// and reads it back.
fn check_stack(stack: &GuardedStack, size: usize) -> TestResult {
    let expected = size.div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
    ut_assert_eq!(stack.size(), expected);
    ut_assert_eq!(stack.top() - stack.bottom(), expected);
    ut_assert_eq!(stack.range(), stack.bottom()..stack.top());
    ut_assert!(stack.top().is_multiple_of(16));
    ut_assert!(AREA.contains(&stack.bottom()) && AREA.contains(&(stack.top() - 1)));
    let guard = stack.guard();
    ut_assert_eq!(guard, stack.bottom() - PAGE_SIZE..stack.bottom());
    if ukplat::vmem::page_tables().is_some() {
        // Through the page tables: the guard page (and the page above the
        // top) is not present, every usable page is, each on its own frame.
        ut_assert_eq!(translate(guard.start), None);
        ut_assert_eq!(translate(guard.end - 1), None);
        ut_assert_eq!(translate(stack.top()), None);
        let mut frames = Vec::new();
        for page in stack.range().step_by(PAGE_SIZE) {
            let phys = translate(page);
            ut_assert!(phys.is_some(), "stack page {:#x} is not mapped", page);
            let phys = phys.unwrap();
            ut_assert!(phys.is_multiple_of(PAGE_SIZE) && phys < 4 << 30, "frame {:#x}", phys);
            ut_assert_eq!(translate(page + 123), Some(phys + 123));
            frames.push(phys);
        }
        frames.sort_unstable();
        frames.dedup();
        ut_assert_eq!(frames.len(), stack.size() / PAGE_SIZE);
    } else {
        // The host maps memory: ask it. The guard page (and the page above
        // the top) cannot be read, every usable page can, and this crate's
        // own answer agrees.
        for addr in [guard.start, guard.end - 1, stack.top()] {
            ut_assert!(!ukplat::vmem::readable(addr), "{:#x} is readable", addr);
            ut_assert!(!crate::is_mapped(addr), "{:#x} counts as mapped", addr);
        }
        for page in stack.range().step_by(PAGE_SIZE) {
            ut_assert!(ukplat::vmem::readable(page + 123), "stack page {:#x} is not mapped", page);
            ut_assert!(crate::is_mapped(page + 123));
        }
        ut_assert_eq!(translate(stack.bottom()), None, "no physical addresses on the host");
    }
    // The fault lookup finds the stack from its guard page only.
    ut_assert_eq!(guard_page_at(guard.start), Some(stack.range()));
    ut_assert_eq!(guard_page_at(stack.bottom() - 8), Some(stack.range()));
    ut_assert_eq!(guard_page_at(stack.bottom()), None);
    ut_assert_eq!(guard_page_at(stack.top() - 8), None);
    // Every byte: zeroed at first, then holds what is written.
    let base = core::ptr::with_exposed_provenance_mut::<u8>(stack.bottom());
    for i in 0..stack.size() {
        // SAFETY: inside the stack's usable range, which it owns; nothing
        // runs on this stack.
        let byte = unsafe { base.add(i).read_volatile() };
        ut_assert_eq!(byte, 0, "byte {:#x} of a new stack", stack.bottom() + i);
        // SAFETY: as above.
        unsafe { base.add(i).write_volatile((i % 251) as u8) };
    }
    for i in 0..stack.size() {
        // SAFETY: as above.
        let byte = unsafe { base.add(i).read_volatile() };
        ut_assert_eq!(byte, (i % 251) as u8, "byte {:#x}", stack.bottom() + i);
    }
    Ok(())
}

fn stacks_of_several_sizes_sit_above_an_unmapped_guard_page() -> TestResult {
    let sizes = [0, 1, PAGE_SIZE, PAGE_SIZE + 1, 16 * 1024, 64 * 1024 - 8, 256 * 1024];
    let before = stats();
    let mut stacks = Vec::new();
    for size in sizes.into_iter().filter(|&size| size <= MAX_STACK_SIZE) {
        let stack = GuardedStack::allocate(size);
        ut_assert!(stack.is_ok(), "allocate({}): {:?}", size, stack.as_ref().err());
        let stack = stack.unwrap();
        check_stack(&stack, size)?;
        stacks.push(stack);
    }
    // Distinct slots, none overlapping another's guard page.
    for (i, a) in stacks.iter().enumerate() {
        for b in &stacks[i + 1..] {
            ut_assert!(a.top() <= b.guard().start || b.top() <= a.guard().start);
        }
    }
    ut_assert_eq!(stats().live, before.live + stacks.len());
    Ok(())
}
uktest::test_case!(stacks_of_several_sizes_sit_above_an_unmapped_guard_page);

fn a_dropped_stack_is_reused_mapped_and_cleared() -> TestResult {
    // A size no other test uses, so the cache holds only ours.
    const SIZE: usize = 7 * PAGE_SIZE;
    let first = GuardedStack::allocate(SIZE).unwrap();
    let (range, frame) = (first.range(), translate(first.bottom()));
    // SAFETY: the stack's own memory.
    unsafe { core::ptr::with_exposed_provenance_mut::<u64>(first.top() - 8).write_volatile(0xdead_beef) };
    let before = stats();
    drop(first);
    let after_drop = stats();
    ut_assert_eq!(after_drop.live, before.live - 1);
    ut_assert_eq!(after_drop.cached, before.cached + 1);
    ut_assert_eq!(after_drop.bytes_mapped, before.bytes_mapped);
    // Still mapped while cached, and still recognised as a guard page.
    ut_assert_eq!(translate(range.start), frame);
    ut_assert_eq!(guard_page_at(range.start - 1), Some(range.clone()));

    let again = GuardedStack::allocate(SIZE - 100).unwrap();
    ut_assert_eq!(again.range(), range);
    ut_assert_eq!(translate(again.bottom()), frame);
    // SAFETY: the stack's own memory.
    let word = unsafe { core::ptr::with_exposed_provenance::<u64>(again.top() - 8).read_volatile() };
    ut_assert_eq!(word, 0, "a reused stack was not cleared");
    let now = stats();
    ut_assert_eq!(now.cached, after_drop.cached - 1);
    ut_assert_eq!(now.bytes_mapped, before.bytes_mapped);
    ut_assert_eq!(now.slots_used, before.slots_used);
    check_stack(&again, SIZE)
}
uktest::test_case!(a_dropped_stack_is_reused_mapped_and_cleared);

fn stats_count_live_cached_and_mapped_bytes() -> TestResult {
    const SIZE: usize = 3 * PAGE_SIZE;
    let before = stats();
    let a = GuardedStack::allocate(SIZE).unwrap();
    let b = GuardedStack::allocate(SIZE).unwrap();
    let with_two = stats();
    ut_assert_eq!(with_two.live, before.live + 2);
    ut_assert_eq!(with_two.cached + with_two.live, with_two.slots_used);
    ut_assert!(with_two.bytes_mapped <= before.bytes_mapped + 2 * SIZE);
    if ukplat::vmem::page_tables().is_some() {
        ut_assert!(with_two.page_table_bytes >= 3 * PAGE_SIZE, "no page tables counted");
    } else {
        ut_assert_eq!(with_two.page_table_bytes, 0, "page tables counted on a host-mapped platform");
    }
    ut_assert_eq!(with_two.slots, crate::MAX_STACKS);
    drop(a);
    drop(b);
    let after = stats();
    ut_assert_eq!(after.live, before.live);
    ut_assert_eq!(after.cached + after.live, after.slots_used);
    ut_assert_eq!(after.bytes_mapped, with_two.bytes_mapped);
    Ok(())
}
uktest::test_case!(stats_count_live_cached_and_mapped_bytes);

fn oversized_stacks_are_refused() -> TestResult {
    let before = stats();
    let error = GuardedStack::allocate(MAX_STACK_SIZE + 1).unwrap_err();
    ut_assert_eq!(error, StackError::TooLarge { size: MAX_STACK_SIZE + 1, max: MAX_STACK_SIZE });
    ut_assert!(alloc::format!("{error}").contains("option ukvmem.max_stack_kib"), "{}", error);
    let largest = GuardedStack::allocate(MAX_STACK_SIZE).unwrap();
    ut_assert_eq!(largest.size(), MAX_STACK_SIZE);
    ut_assert_eq!(translate(largest.guard().start), None);
    drop(largest);
    ut_assert_eq!(stats().live, before.live);
    Ok(())
}
uktest::test_case!(oversized_stacks_are_refused);

/// Runs on a guarded stack: recurses `depth` times with a 1 KiB frame and
/// returns the lowest stack address it used.
#[inline(never)]
extern "C" fn dig(depth: usize) -> usize {
    let mut frame = [0u8; 1024];
    frame[0] = depth as u8;
    let frame = core::hint::black_box(&mut frame);
    let here = frame.as_ptr() as usize;
    if depth == 0 { here } else { dig(depth - 1).min(here) }
}

fn code_runs_on_a_guarded_stack() -> TestResult {
    let stack = GuardedStack::allocate(64 * 1024).unwrap();
    let lowest: usize;
    // SAFETY: switches RSP to the top of a mapped 64 KiB stack that nothing
    // else uses, calls `dig` (about 24 KiB deep) with the C ABI and switches
    // back; r12 (callee-saved, declared clobbered) keeps the old RSP.
    // Interrupts taken meanwhile push onto the guarded stack, which is
    // mapped.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {dig}",
            "mov rsp, r12",
            top = in(reg) stack.top(),
            dig = sym dig,
            inout("rdi") 20usize => _,
            out("rax") lowest,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    ut_assert!(stack.range().contains(&lowest), "the frames at {:#x} are not on {:?}", lowest, stack.range());
    ut_assert!(stack.top() - lowest >= 20 * 1024, "only {} bytes used", stack.top() - lowest);
    Ok(())
}
uktest::test_case!(code_runs_on_a_guarded_stack);

fn overflows_are_explained() -> TestResult {
    let stack = GuardedStack::allocate(2 * PAGE_SIZE).unwrap();
    let info = ukplat::fault::FaultInfo {
        vector: ukplat::fault::DOUBLE_FAULT,
        error_code: 0,
        rip: 0,
        rsp: stack.bottom() as u64,
        cr2: (stack.bottom() - 8) as u64,
        cpu: Some(0),
    };
    let mut out = String::new();
    // The explainer was registered at boot.
    ut_assert!(ukplat::fault::explain(&info, &mut out) >= 1);
    let expected = alloc::format!(
        "stack overflow: {:#x} is in the guard page below the stack {:#x}-{:#x}\n",
        stack.bottom() - 8,
        stack.bottom(),
        stack.top()
    );
    ut_assert!(out.contains(&expected), "{:?}", out);
    // Elsewhere: nothing to say.
    let mut out = String::new();
    let elsewhere = ukplat::fault::FaultInfo { cr2: 0x10_0000_0000, rsp: 0x20_0000, ..info };
    ut_assert!(!crate::explain_stack_overflow(&elsewhere, &mut out));
    ut_assert!(out.is_empty());
    Ok(())
}
uktest::test_case!(overflows_are_explained);

//! # faults — trigger one fault on request
//!
//! `main` looks at its first argument (the first command-line word without
//! `=`, so `key=value` settings may come before it) and triggers that fault,
//! so that `cargo xtask test` can check the guest's report and exit status:
//!
//! | argument | what happens | expected report |
//! |---|---|---|
//! | `ud` | executes `ud2` | invalid-opcode exception (#UD) |
//! | `pf` | reads `0x10_0000_0000` (64 GiB), which the boot page tables do not map | page fault (#PF) at that address |
//! | `null` | reads address 0 (the platform unmaps page 0) | page fault at address 0 |
//! | `stack-overflow` | allocates a 16 KiB `ukvmem::GuardedStack`, sets RSP to its bottom and pushes: the push writes into the unmapped guard page (#PF), and delivering that #PF needs the same stack, so the CPU raises a double fault on its IST stack | double fault (#DF) with CR2 in the guard page, then ukvmem's `stack overflow: 0x… is in the guard page below the stack 0x…-0x…` |
//! | `oom` | allocates until the heap (256 KiB in `config/faults.toml`) is exhausted | ukalloc's out-of-memory line, then the allocation panic |
//! | `panic` | panics with a message | the panic report |
//! | `hang` | spins forever | none: `cargo xtask` must time out, kill QEMU and show the serial log |
//!
//! Each case prints what it is about to do first. An unknown or missing
//! argument prints the usage and returns 2.
//!
//! **Needs:** `ukconsole`, `ukalloc` (for `oom`), `ukvmem` (for
//! `stack-overflow`), `ukplat`, `ukarch`.
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;

use ukconsole::println;

/// An address the boot page tables do not map (64 GiB).
pub const UNMAPPED: usize = 0x10_0000_0000;

/// Usage text.
pub const USAGE: &str = "usage: faults ud|pf|null|stack-overflow|oom|panic|hang";

/// The fault requested by `args`: the first argument that is not `key=value`.
pub fn requested<'a>(args: &[&'a str]) -> Option<&'a str> {
    args.iter().copied().find(|a| !a.contains('='))
}

/// The app's entry point.
pub fn main(args: &[&str]) -> i32 {
    match requested(args) {
        Some("ud") => invalid_opcode(),
        Some("pf") => page_fault(),
        Some("null") => null_read(),
        Some("stack-overflow") => stack_overflow(),
        Some("oom") => out_of_memory(),
        Some("hang") => {
            println!("faults: hanging on purpose (spinning forever)");
            loop {
                core::hint::spin_loop();
            }
        }
        Some("panic") => {
            println!("faults: panicking on purpose");
            panic!("faults: deliberate panic requested on the command line");
        }
        other => {
            if let Some(other) = other {
                println!("faults: unknown fault \"{other}\"");
            } else {
                println!("faults: no fault named on the command line");
            }
            println!("{USAGE}");
            2
        }
    }
}

fn invalid_opcode() -> i32 {
    println!("faults: executing ud2 (invalid opcode)");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `ud2` raises #UD, which the platform's exception handler
    // reports before shutting down; it touches no memory.
    unsafe {
        core::arch::asm!("ud2", options(nomem, nostack));
    }
    println!("faults: ud2 returned, the exception was not raised");
    1
}

fn page_fault() -> i32 {
    println!("faults: reading unmapped address {UNMAPPED:#x} (page fault)");
    let ptr = core::ptr::without_provenance::<u64>(UNMAPPED);
    // SAFETY: deliberately invalid: the address is aligned and non-null but
    // not mapped, so the read raises #PF, which the platform reports and
    // does not return from.
    let value = unsafe { core::ptr::read_volatile(ptr) };
    println!("faults: read {value:#x} from {UNMAPPED:#x}, no page fault");
    1
}

fn null_read() -> i32 {
    println!("faults: reading address 0 (null pointer, page fault)");
    #[cfg(target_arch = "x86_64")]
    {
        let value: u64;
        // SAFETY: deliberately invalid: page 0 is unmapped, the load raises
        // #PF, which the platform reports and does not return from. Inline
        // assembly, because a null `read_volatile` is caught by Rust's debug
        // precondition checks before it reaches the CPU.
        unsafe {
            core::arch::asm!(
                "mov {value}, qword ptr [{addr}]",
                value = out(reg) value,
                addr = in(reg) 0usize,
                options(nostack, readonly)
            );
        }
        println!("faults: read {value:#x} from address 0, no page fault");
    }
    1
}

fn stack_overflow() -> i32 {
    let stack = match ukvmem::GuardedStack::allocate(16 * 1024) {
        Ok(stack) => stack,
        Err(error) => {
            println!("faults: no guarded stack: {error}");
            return 1;
        }
    };
    let guard = stack.guard();
    println!(
        "faults: overflowing the guarded stack {:#x}-{:#x}: RSP = its bottom, then a push into the guard page {:#x}-{:#x} (#PF, then #DF)",
        stack.bottom(),
        stack.top(),
        guard.start,
        guard.end
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: deliberately invalid: the push writes below the stack's
    // bottom, into its unmapped guard page, which raises #PF; the CPU cannot
    // push the #PF frame there either and raises #DF on its IST stack,
    // which the platform reports and does not return from. Nothing after
    // the `mov` runs on the old stack, so abandoning it is fine.
    unsafe {
        core::arch::asm!("mov rsp, {bottom}", "push rax", bottom = in(reg) stack.bottom(), options(noreturn));
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        drop(stack);
        1
    }
}

fn out_of_memory() -> i32 {
    let stats = ukalloc::heap_stats();
    println!(
        "faults: allocating 4 KiB blocks until the heap ({} bytes free of {}) is exhausted",
        stats.free, stats.total
    );
    let mut blocks: Vec<Box<[u8]>> = Vec::new();
    // Far more than any heap this image can have; the loop ends by the
    // allocation failure (report, then panic), not by this bound.
    for i in 0..(1usize << 40) {
        let mut block = Vec::with_capacity(4096);
        block.resize(4096, (i % 251) as u8);
        blocks.push(block.into_boxed_slice());
    }
    println!("faults: the heap was never exhausted ({} blocks)", blocks.len());
    1
}

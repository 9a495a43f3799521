//! # uktest — in-guest tests
//!
//! What it offers, in the spirit of Unikraft's `lib/uktest`:
//!
//! * a registry: [`test_case!`] registers a `fn() -> TestResult` from any
//!   crate into the [`TESTS`] distributed slice under the name
//!   `module_path::function`;
//! * assertion macros that *return* a failed [`Stop`] instead of panicking
//!   (images are built with `panic = abort`, so a panic would end the whole
//!   run): [`ut_assert!`], [`ut_assert_eq!`], [`ut_assert_ne!`],
//!   [`ut_fail!`];
//! * real skips: [`ut_skip!`] returns a skipped [`Stop`] with a reason, for
//!   a test that cannot run in this configuration (too few CPUs, a CPU
//!   feature or accelerator the machine lacks, the other scheduling
//!   policy). A skipped test is reported and counted as skipped, never as
//!   passed. [`require_cpus`] is the common case as a function;
//! * both kinds of [`Stop`] record the file and line (`#[track_caller]`)
//!   and a message formatted into a fixed-size buffer ([`MESSAGE_CAPACITY`]
//!   bytes, so a `Stop` stays under clippy's 128-byte `result_large_err`
//!   limit): no heap needed, so the allocator itself can be tested. Both
//!   propagate with `?` out of helpers that return `Result<T, Stop>`;
//! * a runner, [`run_all`] (also usable as an app's `main`: [`main`]), that
//!   runs the tests in name order and prints exactly one line per case, one
//!   of
//!
//!   ```text
//!   test NAME ... ok (N cycles)
//!   test NAME ... FAILED at FILE:LINE: MESSAGE
//!   test NAME ... skipped: REASON
//!   ```
//!
//!   and then, alone on the last line, `N passed, N failed, N skipped` (all
//!   three, always). It returns 0 when at least one selected test ran and
//!   none failed — a run whose tests were all skipped still exits 0, and
//!   says so in its closing line — and 1 otherwise; selecting no test at all
//!   is a failure (a filter with a typo must not look like success).
//!
//! How libraries use it: an optional dependency on `uktest` behind a cargo
//! feature named `uktest`, which `cargo xtask` enables on every selected
//! library when `uktest` itself is selected:
//!
//! ```toml
//! [dependencies]
//! uktest = { workspace = true, optional = true }
//! [features]
//! uktest = ["dep:uktest"]
//! ```
//!
//! ```
//! use uktest::{Stop, TestResult, ut_assert, ut_assert_eq, ut_skip};
//!
//! fn addition_works() -> TestResult {
//!     ut_assert_eq!(1 + 1, 2);
//!     ut_assert!(2 > 1, "ordering of {} and {}", 2, 1);
//!     Ok(())
//! }
//! uktest::test_case!(addition_works);
//!
//! /// A helper that skips: the test calling it stops there with `?`.
//! fn needs_avx(has_avx: bool) -> Result<u32, Stop> {
//!     if !has_avx {
//!         ut_skip!("the CPU has no AVX (CPUID.1:ECX[28] = {})", 0);
//!     }
//!     Ok(256)
//! }
//!
//! fn wide_registers() -> TestResult {
//!     let bits = needs_avx(false)?;
//!     ut_assert_eq!(bits, 256); // not reached: skipped above
//!     Ok(())
//! }
//! uktest::test_case!(wide_registers);
//!
//! # fn main() {
//! assert!(addition_works().is_ok());
//! let stop = wide_registers().unwrap_err();
//! assert!(stop.is_skip());
//! assert_eq!(stop.message(), "the CPU has no AVX (CPUID.1:ECX[28] = 0)");
//! # }
//! ```
//!
//! **Needs:** `ukplat` (console output, command line), `ukarch` (TSC for the
//! cycle counts), `ukboot` (command-line parsing), `ukconfig`. Not
//! `ukconsole`: that crate registers its own tests here, and Cargo forbids
//! the dependency cycle, so the runner writes to the platform console.
//!
//! **Config options:** `filter` (run only tests whose name contains one of
//! a comma-separated list of texts, e.g. `"sched::,uklock::"` — see
//! [`selects`]; empty: all; `uktest.filter=TEXT` on the kernel command line
//! overrides it), `fail_fast` (stop at the first failure).
//!
//! **Why `linkme`:** test cases are registered from the crates that define
//! them, without a central list, collected by the linker into one slice (as
//! Unikraft does with a linker section) — the same mechanism as `ukboot`'s
//! init table.
#![cfg_attr(not(test), no_std)]

mod rng;
mod runner;
mod stop;

#[doc(hidden)]
pub use linkme;
pub use rng::Rng;
pub use runner::{Options, Summary, run, selects};
pub use stop::{MESSAGE_CAPACITY, Message, OrFail, Stop, StopKind};

/// What a test function returns: `Ok(())` (passed), or the [`Stop`] that
/// ended it early: the first failed assertion, or a skip.
pub type TestResult = Result<(), Stop>;

/// One registered test case.
#[derive(Debug)]
pub struct TestCase {
    /// `module_path::function`, the sort key and what filters match.
    pub name: &'static str,
    /// The test.
    pub func: fn() -> TestResult,
}

/// Every test case registered with [`test_case!`] in every linked crate.
#[linkme::distributed_slice]
pub static TESTS: [TestCase];

/// Registers `func: fn() -> TestResult` as a test case named
/// `module_path!()::func`.
///
/// ```
/// fn always_passes() -> uktest::TestResult {
///     Ok(())
/// }
/// uktest::test_case!(always_passes);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_case {
    ($func:path) => {
        const _: () = {
            #[$crate::linkme::distributed_slice($crate::TESTS)]
            #[linkme(crate = $crate::linkme)]
            static CASE: $crate::TestCase = $crate::TestCase {
                name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!($func)),
                func: $func,
            };
        };
    };
}

/// Fails the test (returns a failed [`Stop`]) unless `cond` holds. The message
/// is `assertion failed: COND`, followed by `: MESSAGE` when a format string
/// and arguments are given.
///
/// ```
/// fn check(x: u32) -> uktest::TestResult {
///     uktest::ut_assert!(x < 10);
///     uktest::ut_assert!(x % 2 == 0, "{} is odd", x);
///     Ok(())
/// }
/// assert!(check(4).is_ok());
/// assert_eq!(check(3).unwrap_err().message(), "assertion failed: x % 2 == 0: 3 is odd");
/// ```
#[macro_export]
macro_rules! ut_assert {
    ($cond:expr $(,)?) => {
        if !$cond {
            return ::core::result::Result::Err($crate::Stop::failure(
                ::core::format_args!("assertion failed: {}", ::core::stringify!($cond)),
            ));
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return ::core::result::Result::Err($crate::Stop::failure(
                ::core::format_args!(
                    "assertion failed: {}: {}",
                    ::core::stringify!($cond),
                    ::core::format_args!($($arg)+)
                ),
            ));
        }
    };
}

/// Fails the test unless `left == right`; the message names both
/// expressions and shows both values (`Debug`), plus an optional message.
///
/// ```
/// fn check() -> uktest::TestResult {
///     let v = 3;
///     uktest::ut_assert_eq!(v + 1, 5, "off by {}", 1);
///     Ok(())
/// }
/// assert_eq!(
///     check().unwrap_err().message(),
///     "assertion failed: v + 1 == 5 (left: 4, right: 5): off by 1"
/// );
/// ```
#[macro_export]
macro_rules! ut_assert_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if !(*left == *right) {
                    return ::core::result::Result::Err($crate::Stop::failure(
                        ::core::format_args!(
                            "assertion failed: {} == {} (left: {:?}, right: {:?})",
                            ::core::stringify!($left),
                            ::core::stringify!($right),
                            left,
                            right
                        ),
                    ));
                }
            }
        }
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if !(*left == *right) {
                    return ::core::result::Result::Err($crate::Stop::failure(
                        ::core::format_args!(
                            "assertion failed: {} == {} (left: {:?}, right: {:?}): {}",
                            ::core::stringify!($left),
                            ::core::stringify!($right),
                            left,
                            right,
                            ::core::format_args!($($arg)+)
                        ),
                    ));
                }
            }
        }
    };
}

/// Fails the test unless `left != right`; the message names both
/// expressions and shows the value, plus an optional message.
///
/// ```
/// fn check() -> uktest::TestResult {
///     uktest::ut_assert_ne!(2 * 2, 4);
///     Ok(())
/// }
/// assert_eq!(check().unwrap_err().message(), "assertion failed: 2 * 2 != 4 (both: 4)");
/// ```
#[macro_export]
macro_rules! ut_assert_ne {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left == *right {
                    return ::core::result::Result::Err($crate::Stop::failure(
                        ::core::format_args!(
                            "assertion failed: {} != {} (both: {:?})",
                            ::core::stringify!($left),
                            ::core::stringify!($right),
                            left
                        ),
                    ));
                }
            }
        }
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left == *right {
                    return ::core::result::Result::Err($crate::Stop::failure(
                        ::core::format_args!(
                            "assertion failed: {} != {} (both: {:?}): {}",
                            ::core::stringify!($left),
                            ::core::stringify!($right),
                            left,
                            ::core::format_args!($($arg)+)
                        ),
                    ));
                }
            }
        }
    };
}

/// Fails the test unconditionally with a formatted message.
///
/// ```
/// fn check(found: Option<u8>) -> uktest::TestResult {
///     let Some(_) = found else { uktest::ut_fail!("nothing found in {} tries", 3) };
///     Ok(())
/// }
/// assert_eq!(check(None).unwrap_err().message(), "nothing found in 3 tries");
/// ```
#[macro_export]
macro_rules! ut_fail {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Stop::failure(
            ::core::format_args!($($arg)+),
        ))
    };
}

/// Skips the test: returns a skipped [`Stop`] with the formatted reason,
/// from the test function or from a helper returning `Result<T, Stop>`
/// (which the test propagates with `?`). The runner prints `test NAME ...
/// skipped: REASON` and counts it as skipped, not passed. Say *why* the
/// test cannot run here (what it needs, what this configuration has).
///
/// ```
/// fn needs(cpus: usize, have: usize) -> uktest::TestResult {
///     if have < cpus {
///         uktest::ut_skip!("needs {} CPUs, this run has {}", cpus, have);
///     }
///     Ok(())
/// }
/// assert!(needs(2, 4).is_ok());
/// let stop = needs(2, 1).unwrap_err();
/// assert!(stop.is_skip());
/// assert_eq!(stop.message(), "needs 2 CPUs, this run has 1");
/// ```
#[macro_export]
macro_rules! ut_skip {
    ($($arg:tt)+) => {
        return ::core::result::Result::Err($crate::Stop::skip(
            ::core::format_args!($($arg)+),
        ))
    };
}

/// Skips the calling test unless at least `n` CPUs run
/// (`ukplat::cpu::count()`); `what` says what needs them. Use it with `?`:
/// `uktest::require_cpus(2, "a thread moving between two CPUs")?;` skips
/// with `needs 2 CPUs (a thread moving between two CPUs); this run has 1`.
#[track_caller]
pub fn require_cpus(n: usize, what: &str) -> TestResult {
    let have = ukplat::cpu::count();
    if have < n {
        ut_skip!("needs {} CPUs ({}); this run has {}", n, what, have);
    }
    Ok(())
}

/// `fast` where the CPU runs instructions natively or translated (bare
/// metal, a process on the linuxu platform, QEMU's TCG), `emulated` where
/// the hypervisor emulates them one by one (this project's PVM-backed KVM,
/// ~2 µs per instruction: `ukarch::fpu::config().emulated`). For the
/// iteration counts of stress tests, which must be long enough to make
/// threads meet and short enough to finish.
///
/// ```no_run
/// let rounds = uktest::scaled(20_000, 2_000);
/// # let _ = rounds;
/// ```
pub fn scaled(fast: u64, emulated: u64) -> u64 {
    if ukarch::fpu::config().emulated { emulated } else { fast }
}

/// Runs every registered test with the filter and `fail_fast` from the
/// configuration (`uktest.filter=TEXT` on the command line overrides the
/// configured filter; both are comma-separated lists, see [`selects`]),
/// printing to the platform console. Returns the exit
/// status: 0 when at least one test ran (passed or skipped) and none
/// failed, else 1.
pub fn run_all() -> i32 {
    let cmdline = ukplat::boot_info().cmdline;
    let options = Options {
        filter: ukboot::cmdline_value(cmdline, "uktest.filter").unwrap_or(ukconfig::uktest::FILTER),
        fail_fast: ukconfig::uktest::FAIL_FAST,
    };
    run(&TESTS, &options, &mut ukplat::console::Writer).exit_code()
}

/// [`run_all`] with the signature of an app's `main`, so an image can be
/// nothing but its tests (`ukboot::image_main!(uktest::main)`). The arguments
/// are not used: the filter comes from `uktest.filter=` / the configuration.
pub fn main(_args: &[&str]) -> i32 {
    run_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered_on_host() -> TestResult {
        Ok(())
    }
    test_case!(registered_on_host);

    #[test]
    fn test_case_registers_with_module_path_name() {
        let case = TESTS.iter().find(|c| c.name.ends_with("registered_on_host")).unwrap();
        assert_eq!(case.name, "uktest::tests::registered_on_host");
        assert!((case.func)().is_ok());
    }

    fn asserts(x: i32) -> TestResult {
        ut_assert!(x != 1);
        ut_assert!(x != 2, "x is {}", x);
        ut_assert_eq!(x * 2, 6 * 2);
        ut_assert_eq!(x, 3, "hint {}", "h");
        Ok(())
    }

    #[test]
    fn assertion_macros_report_expression_values_file_and_line() {
        let line = line!();
        let f = asserts(1).unwrap_err();
        assert_eq!(f.message(), "assertion failed: x != 1");
        assert_eq!(f.file(), file!());
        assert!(f.line() > line - 30 && f.line() < line, "{}", f.line());
        assert_eq!(asserts(2).unwrap_err().message(), "assertion failed: x != 2: x is 2");
        assert_eq!(
            asserts(4).unwrap_err().message(),
            "assertion failed: x * 2 == 6 * 2 (left: 8, right: 12)"
        );
        assert_eq!(asserts(6).unwrap_err().message(), "assertion failed: x == 3 (left: 6, right: 3): hint h");
    }

    #[test]
    fn ne_and_fail_messages() {
        fn ne(x: i32) -> TestResult {
            ut_assert_ne!(x + 1, 4, "plus {}", 1);
            ut_assert_ne!(x, 5);
            ut_fail!("reached with {}", x)
        }
        assert_eq!(ne(3).unwrap_err().message(), "assertion failed: x + 1 != 4 (both: 4): plus 1");
        assert_eq!(ne(5).unwrap_err().message(), "assertion failed: x != 5 (both: 5)");
        assert_eq!(ne(7).unwrap_err().message(), "reached with 7");
    }

    #[test]
    fn failure_display_names_location() {
        let before = line!();
        let f = Stop::failure(format_args!("boom {}", 1));
        assert_eq!(f.line(), before + 1);
        assert_eq!(std::format!("{f}"), std::format!("FAILED at {}:{}: boom 1", file!(), f.line()));
    }

    /// Skips from the test itself and from a helper (through `?`); the
    /// code after a skip does not run.
    fn skip_in_helper(skip: bool) -> Result<u32, Stop> {
        if skip {
            ut_skip!("helper cannot run: {}", "no device");
        }
        Ok(7)
    }

    fn skipping(mode: u8, reached: &mut bool) -> TestResult {
        if mode == 0 {
            ut_skip!("mode {} is not supported", mode);
        }
        let v = skip_in_helper(mode == 1)?;
        *reached = true;
        ut_assert_eq!(v, 8);
        Ok(())
    }

    #[test]
    fn ut_skip_returns_a_skip_with_its_reason_from_tests_and_helpers() {
        let mut reached = false;
        let line = line!() - 11;
        let s = skipping(0, &mut reached).unwrap_err();
        assert!(s.is_skip(), "{s:?}");
        assert_eq!(s.message(), "mode 0 is not supported");
        assert_eq!((s.file(), s.line()), (file!(), line));
        assert!(!reached);

        let s = skipping(1, &mut reached).unwrap_err();
        assert_eq!((s.kind(), s.message()), (StopKind::Skipped, "helper cannot run: no device"));
        assert!(!reached, "the test went on after its helper skipped");

        // Not skipped: the assertion after the helper fails as a failure.
        let f = skipping(2, &mut reached).unwrap_err();
        assert!(reached);
        assert_eq!(f.kind(), StopKind::Failed);
        assert_eq!(f.message(), "assertion failed: v == 8 (left: 7, right: 8)");
    }

    #[test]
    fn assertion_macros_make_failures_not_skips() {
        assert!(asserts(1).unwrap_err().is_failure());
        assert!(asserts(6).unwrap_err().is_failure());
        fn fails() -> TestResult {
            ut_fail!("no")
        }
        assert_eq!(fails().unwrap_err().kind(), StopKind::Failed);
    }
}

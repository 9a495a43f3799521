//! Running a set of test cases and reporting.

use core::fmt::Write;

use crate::{StopKind, TestCase};

/// How to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Run only the tests whose name contains one of these texts, separated
    /// by commas (`"sched::,uklock::"`); empty (or only commas): all. See
    /// [`selects`].
    pub filter: &'a str,
    /// Stop after the first failing test.
    pub fail_fast: bool,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Test cases registered.
    pub registered: usize,
    /// Selected by the filter.
    pub selected: usize,
    /// Ran and passed.
    pub passed: usize,
    /// Ran and failed.
    pub failed: usize,
    /// Ran and skipped themselves ([`ut_skip!`](crate::ut_skip)): neither
    /// passed nor failed.
    pub skipped: usize,
    /// Not selected by the filter.
    pub filtered_out: usize,
    /// Selected but skipped after a failure under `fail_fast`.
    pub not_run: usize,
}

impl Summary {
    /// True when at least one test ran (passed or skipped) and none failed
    /// (nor was left out by `fail_fast`). A run whose selected tests all
    /// skipped is a success, and its closing line says `0 passed`; a run
    /// that selected no test is not.
    pub const fn success(&self) -> bool {
        self.failed == 0 && self.not_run == 0 && self.passed + self.skipped > 0
    }

    /// The app exit status: 0 on [`Summary::success`], else 1.
    pub const fn exit_code(&self) -> i32 {
        if self.success() { 0 } else { 1 }
    }
}

/// Whether `filter` selects the test named `name`: the filter is a
/// comma-separated list of substrings, and a test is selected when its name
/// contains any of them. Blanks around a pattern are ignored, and so are
/// empty patterns; a filter with no pattern at all selects every test.
///
/// ```
/// use uktest::selects;
/// assert!(selects("uksched::guest_tests::join", "sched::,uklock::"));
/// assert!(selects("uklock::guest_tests::mutex", "sched::, uklock::"));
/// assert!(!selects("uktime::guest_tests::tick", "sched::,uklock::"));
/// assert!(selects("anything", ""));
/// assert!(selects("anything", " , "));
/// ```
pub fn selects(name: &str, filter: &str) -> bool {
    selects_all(filter) || patterns(filter).any(|p| name.contains(p))
}

/// The filter's non-empty patterns.
fn patterns(filter: &str) -> impl Iterator<Item = &str> {
    filter.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// Whether the filter has no pattern (selects every test).
fn selects_all(filter: &str) -> bool {
    patterns(filter).next().is_none()
}

/// The selected tests in name order (ties: registration order), without
/// allocation: each step picks the smallest key above the previous one.
fn in_name_order<'t>(tests: &'t [TestCase], filter: &'t str) -> impl Iterator<Item = &'t TestCase> + 't {
    let key = |(i, t): (usize, &'t TestCase)| (t.name, i);
    let mut last: Option<(&str, usize)> = None;
    core::iter::from_fn(move || {
        let next = tests
            .iter()
            .enumerate()
            .filter(|(_, t)| selects(t.name, filter))
            .filter(|&e| last.is_none_or(|l| key(e) > l))
            .min_by_key(|&e| key(e))?;
        last = Some(key(next));
        Some(next.1)
    })
}

/// Runs the tests of `tests` selected by `options`, in name order, writing
/// exactly one line per case that ran — `test NAME ... ok (N cycles)`,
/// `test NAME ... FAILED at FILE:LINE: MESSAGE` or `test NAME ... skipped:
/// REASON` — and a summary to `out`; the last line is exactly `N passed, N
/// failed, N skipped`, and its counts are those of the case lines.
///
/// ```
/// fn good() -> uktest::TestResult { Ok(()) }
/// fn bad() -> uktest::TestResult { uktest::ut_assert_eq!(1, 2); Ok(()) }
/// fn cannot() -> uktest::TestResult { uktest::ut_skip!("needs {} CPUs", 2) }
/// let tests = [
///     uktest::TestCase { name: "m::good", func: good },
///     uktest::TestCase { name: "m::bad", func: bad },
///     uktest::TestCase { name: "m::cannot", func: cannot },
/// ];
/// let mut out = String::new();
/// let summary = uktest::run(&tests, &uktest::Options::default(), &mut out);
/// assert_eq!((summary.passed, summary.failed, summary.skipped), (1, 1, 1));
/// assert!(out.contains("\ntest m::bad ... FAILED at "));
/// assert!(out.contains("\ntest m::cannot ... skipped: needs 2 CPUs\n"));
/// assert!(out.ends_with("\n1 passed, 1 failed, 1 skipped\n"));
/// ```
pub fn run(tests: &[TestCase], options: &Options<'_>, out: &mut dyn Write) -> Summary {
    // Output errors cannot be reported anywhere better than the output, so
    // they are ignored (the platform console never fails).
    let filter = options.filter;
    let mut summary = Summary { registered: tests.len(), ..Summary::default() };
    summary.selected = tests.iter().filter(|t| selects(t.name, filter)).count();
    summary.filtered_out = summary.registered - summary.selected;

    if summary.selected == 0 {
        if summary.registered == 0 {
            let _ = writeln!(
                out,
                "uktest: no test registered (was the `uktest` feature enabled on the libraries?); \
                 running no test is a failure"
            );
        } else {
            let _ = writeln!(
                out,
                "uktest: no test selected: the filter \"{filter}\" matches none of the {} registered tests; \
                 running no test is a failure",
                summary.registered
            );
        }
        let _ = writeln!(out, "0 passed, 0 failed, 0 skipped");
        return summary;
    }

    if selects_all(filter) {
        let _ = writeln!(out, "uktest: running {} tests", summary.selected);
    } else {
        let _ = writeln!(
            out,
            "uktest: running {} of {} tests (filter \"{filter}\")",
            summary.selected, summary.registered
        );
    }

    for case in in_name_order(tests, filter) {
        if options.fail_fast && summary.failed > 0 {
            summary.not_run += 1;
            continue;
        }
        let start = ukarch::tsc::read();
        let result = (case.func)();
        let cycles = ukarch::tsc::read().wrapping_sub(start);
        match result {
            Ok(()) => {
                summary.passed += 1;
                let _ = writeln!(out, "test {} ... ok ({cycles} cycles)", case.name);
            }
            Err(stop) => {
                match stop.kind() {
                    StopKind::Failed => summary.failed += 1,
                    StopKind::Skipped => summary.skipped += 1,
                }
                // `FAILED at FILE:LINE: MESSAGE` or `skipped: REASON`.
                let _ = writeln!(out, "test {} ... {stop}", case.name);
            }
        }
    }

    if summary.not_run > 0 {
        let _ = writeln!(
            out,
            "uktest: fail_fast: stopped at the first failure, {} tests not run",
            summary.not_run
        );
    }
    if summary.filtered_out > 0 {
        let _ = writeln!(out, "uktest: {} filtered out by \"{filter}\"", summary.filtered_out);
    }
    let _ =
        writeln!(out, "{} passed, {} failed, {} skipped", summary.passed, summary.failed, summary.skipped);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Stop, TestResult, ut_assert, ut_assert_eq, ut_skip};
    use std::string::String;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RUNS: AtomicUsize = AtomicUsize::new(0);

    fn pass() -> TestResult {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn fail() -> TestResult {
        RUNS.fetch_add(1, Ordering::SeqCst);
        ut_assert_eq!(1 + 1, 3);
        Ok(())
    }
    fn fail_msg() -> TestResult {
        ut_assert!(false, "value {}", 42);
        Ok(())
    }
    fn skip() -> TestResult {
        ut_skip!("needs {} CPUs, this run has {}", 2, 1);
    }
    fn needs_device() -> Result<(), Stop> {
        ut_skip!("no such device")
    }
    fn skip_in_helper() -> TestResult {
        needs_device()?;
        ut_assert!(false, "not reached");
        Ok(())
    }

    fn cases() -> [TestCase; 4] {
        [
            TestCase { name: "b::pass", func: pass },
            TestCase { name: "a::fail", func: fail },
            TestCase { name: "c::fail_msg", func: fail_msg },
            TestCase { name: "a::pass", func: pass },
        ]
    }

    /// `cases()` plus two skips (one from a helper, through `?`).
    fn cases_with_skips() -> [TestCase; 6] {
        let [a, b, c, d] = cases();
        [
            a,
            b,
            TestCase { name: "b::skip", func: skip },
            c,
            d,
            TestCase { name: "d::skip_in_helper", func: skip_in_helper },
        ]
    }

    fn lines(out: &str) -> std::vec::Vec<&str> {
        out.lines().collect()
    }

    /// The closing line's three counts, and the counts of the per-case
    /// lines, which must agree (as xtask checks).
    fn closing_and_case_counts(out: &str) -> ([usize; 3], [usize; 3]) {
        let last = *lines(out).last().unwrap();
        let parts: std::vec::Vec<&str> = last.split(", ").collect();
        assert_eq!(parts.len(), 3, "closing line {last:?}");
        let count = |part: &str, word: &str| -> usize {
            part.strip_suffix(word).unwrap_or_else(|| panic!("{last:?} lacks {word:?}")).parse().unwrap()
        };
        let closing = [count(parts[0], " passed"), count(parts[1], " failed"), count(parts[2], " skipped")];
        let mut cases = [0; 3];
        for line in lines(out).iter().filter(|l| l.starts_with("test ")) {
            let (_, rest) = line.split_once(" ... ").unwrap();
            let i = if rest.starts_with("ok (") {
                0
            } else if rest.starts_with("FAILED at ") {
                1
            } else if rest.starts_with("skipped: ") {
                2
            } else {
                panic!("unknown case line {line:?}")
            };
            cases[i] += 1;
        }
        (closing, cases)
    }

    #[test]
    fn runs_in_name_order_and_reports_each_case() {
        let mut out = String::new();
        let s = run(&cases(), &Options::default(), &mut out);
        assert_eq!((s.passed, s.failed, s.skipped, s.filtered_out, s.not_run), (2, 2, 0, 0, 0));
        assert_eq!(s.exit_code(), 1);
        let l = lines(&out);
        assert_eq!(l[0], "uktest: running 4 tests");
        assert!(l[1].starts_with("test a::fail ... FAILED at "), "{}", l[1]);
        assert!(l[1].ends_with(": assertion failed: 1 + 1 == 3 (left: 2, right: 3)"), "{}", l[1]);
        assert!(l[1].contains(file!()), "{}", l[1]);
        assert!(l[2].starts_with("test a::pass ... ok ("), "{}", l[2]);
        assert!(l[2].ends_with(" cycles)"), "{}", l[2]);
        assert!(l[3].starts_with("test b::pass ... ok ("), "{}", l[3]);
        assert!(l[4].ends_with(": assertion failed: false: value 42"), "{}", l[4]);
        assert_eq!(*l.last().unwrap(), "2 passed, 2 failed, 0 skipped");
        assert_eq!(l.len(), 6);
    }

    #[test]
    fn skips_are_reported_with_their_reason_and_never_counted_as_passed() {
        let mut out = String::new();
        let s = run(&cases_with_skips(), &Options::default(), &mut out);
        assert_eq!((s.selected, s.passed, s.failed, s.skipped, s.not_run), (6, 2, 2, 2, 0));
        assert_eq!(s.exit_code(), 1, "two failures");
        let l = lines(&out);
        assert_eq!(l[0], "uktest: running 6 tests");
        assert_eq!(l[4], "test b::skip ... skipped: needs 2 CPUs, this run has 1");
        assert_eq!(l[6], "test d::skip_in_helper ... skipped: no such device");
        assert_eq!(*l.last().unwrap(), "2 passed, 2 failed, 2 skipped");
        assert_eq!(l.len(), 8, "{out}");
        // One line per case, and the closing counts are theirs.
        let (closing, counted) = closing_and_case_counts(&out);
        assert_eq!(closing, [2, 2, 2]);
        assert_eq!(closing, counted);
    }

    #[test]
    fn a_run_of_passes_and_skips_succeeds_and_counts_both() {
        let mut out = String::new();
        let s = run(&cases_with_skips(), &Options { filter: "pass,skip", fail_fast: false }, &mut out);
        assert_eq!((s.passed, s.failed, s.skipped, s.filtered_out), (2, 0, 2, 2));
        assert!(s.success());
        assert_eq!(s.exit_code(), 0);
        assert!(out.ends_with("\n2 passed, 0 failed, 2 skipped\n"), "{out}");
    }

    #[test]
    fn a_run_whose_tests_all_skip_succeeds_but_passes_nothing() {
        let mut out = String::new();
        let s = run(&cases_with_skips(), &Options { filter: "skip", fail_fast: true }, &mut out);
        assert_eq!((s.selected, s.passed, s.failed, s.skipped, s.not_run), (2, 0, 0, 2, 0));
        assert_eq!(s.exit_code(), 0, "nothing failed");
        let l = lines(&out);
        assert_eq!(l[0], "uktest: running 2 of 6 tests (filter \"skip\")");
        assert_eq!(*l.last().unwrap(), "0 passed, 0 failed, 2 skipped");
        // A skip is not a failure: fail_fast does not stop at it.
        assert!(!out.contains("fail_fast"), "{out}");
        let (closing, counted) = closing_and_case_counts(&out);
        assert_eq!(closing, counted);
    }

    #[test]
    fn filter_selects_by_substring_and_counts_the_rest_on_a_separate_line() {
        let mut out = String::new();
        let s = run(&cases(), &Options { filter: "pass", fail_fast: false }, &mut out);
        assert_eq!((s.passed, s.failed, s.skipped, s.filtered_out), (2, 0, 0, 2));
        assert_eq!(s.exit_code(), 0);
        let l = lines(&out);
        assert_eq!(l[0], "uktest: running 2 of 4 tests (filter \"pass\")");
        assert_eq!(l[l.len() - 2], "uktest: 2 filtered out by \"pass\"");
        assert_eq!(l[l.len() - 1], "2 passed, 0 failed, 0 skipped");
    }

    #[test]
    fn a_comma_separated_filter_selects_tests_matching_any_pattern() {
        let mut out = String::new();
        let s = run(&cases(), &Options { filter: "b::,c::", fail_fast: false }, &mut out);
        assert_eq!((s.selected, s.passed, s.failed, s.filtered_out), (2, 1, 1, 2));
        let l = lines(&out);
        assert_eq!(l[0], "uktest: running 2 of 4 tests (filter \"b::,c::\")");
        assert!(l[1].starts_with("test b::pass ... ok ("), "{}", l[1]);
        assert!(l[2].starts_with("test c::fail_msg ... FAILED at "), "{}", l[2]);
        assert_eq!(l[3], "uktest: 2 filtered out by \"b::,c::\"");

        // Overlapping patterns select a test once; blanks and empty
        // patterns are ignored.
        let mut out = String::new();
        let s = run(&cases(), &Options { filter: " a:: , ,::pass,", fail_fast: false }, &mut out);
        assert_eq!((s.selected, s.passed, s.failed, s.filtered_out), (3, 2, 1, 1));
        assert!(!out.contains("c::fail_msg"), "{out}");

        // Only separators: no pattern, every test.
        let mut out = String::new();
        let s = run(&cases(), &Options { filter: ", ,", fail_fast: false }, &mut out);
        assert_eq!((s.selected, s.filtered_out), (4, 0));
        assert_eq!(lines(&out)[0], "uktest: running 4 tests");

        // A list that matches nothing is a failure like a single pattern.
        let mut out = String::new();
        let s = run(&cases(), &Options { filter: "x::,y::", fail_fast: false }, &mut out);
        assert_eq!((s.selected, s.exit_code()), (0, 1));
        assert!(out.contains("the filter \"x::,y::\" matches none of the 4 registered tests"), "{out}");
    }

    #[test]
    fn selects_matches_any_pattern_of_the_list() {
        assert!(selects("sched::threads::join", "sched::"));
        assert!(selects("uklock::guest_tests::mutex", "sched::,uklock::,ukvmem::"));
        assert!(selects("ukvmem::guest_tests::reuse", "sched::, uklock:: ,ukvmem::"));
        assert!(!selects("uktime::guest_tests::tick", "sched::,uklock::,ukvmem::"));
        assert!(!selects("a", "b"));
        assert!(selects("a", ""));
        assert!(selects("a", ","));
    }

    #[test]
    fn fail_fast_stops_at_the_first_failure() {
        let mut out = String::new();
        let before = RUNS.load(Ordering::SeqCst);
        let s = run(&cases(), &Options { filter: "", fail_fast: true }, &mut out);
        assert_eq!((s.passed, s.failed, s.skipped, s.not_run), (0, 1, 0, 3));
        // Only a::fail ran (other tests may run `pass` concurrently, so >= 1).
        assert!(RUNS.load(Ordering::SeqCst) > before);
        let l = lines(&out);
        assert_eq!(l.len(), 4, "{out}");
        assert_eq!(l[2], "uktest: fail_fast: stopped at the first failure, 3 tests not run");
        assert_eq!(l[3], "0 passed, 1 failed, 0 skipped");
        assert_eq!(s.exit_code(), 1);
    }

    #[test]
    fn fail_fast_runs_on_past_skips() {
        let skip_then_fail =
            [TestCase { name: "a::skip", func: skip }, TestCase { name: "b::fail", func: fail_msg }];
        let mut out = String::new();
        let s = run(&skip_then_fail, &Options { filter: "", fail_fast: true }, &mut out);
        assert_eq!((s.passed, s.failed, s.skipped, s.not_run), (0, 1, 1, 0));
        assert_eq!(s.exit_code(), 1);
        assert!(out.ends_with("\n0 passed, 1 failed, 1 skipped\n"), "{out}");
    }

    #[test]
    fn selecting_nothing_is_a_failure_with_a_reason() {
        let mut out = String::new();
        let s = run(&cases(), &Options { filter: "nomatch", fail_fast: false }, &mut out);
        assert_eq!(s.exit_code(), 1);
        assert!(out.contains("the filter \"nomatch\" matches none of the 4 registered tests"), "{out}");
        assert!(out.ends_with("\n0 passed, 0 failed, 0 skipped\n"));

        let mut out = String::new();
        let s = run(&[], &Options::default(), &mut out);
        assert_eq!(s.exit_code(), 1);
        assert!(out.starts_with("uktest: no test registered"), "{out}");
        assert!(out.ends_with("\n0 passed, 0 failed, 0 skipped\n"));
    }

    #[test]
    fn duplicate_names_all_run() {
        let tests = [TestCase { name: "x", func: pass }, TestCase { name: "x", func: pass }];
        let mut out = String::new();
        let s = run(&tests, &Options::default(), &mut out);
        assert_eq!(s.passed, 2);
        assert_eq!(lines(&out).iter().filter(|l| l.starts_with("test x ... ok (")).count(), 2);
    }

    #[test]
    fn success_needs_a_test_that_ran_and_no_failure() {
        let summary = |passed, failed, skipped, not_run| Summary {
            registered: 9,
            selected: passed + failed + skipped + not_run,
            passed,
            failed,
            skipped,
            filtered_out: 0,
            not_run,
        };
        assert!(summary(1, 0, 0, 0).success());
        assert!(summary(0, 0, 1, 0).success());
        assert!(summary(3, 0, 2, 0).success());
        assert!(!summary(0, 0, 0, 0).success(), "nothing ran");
        assert!(!summary(5, 1, 0, 0).success());
        assert!(!summary(0, 1, 5, 0).success());
        assert!(!summary(0, 1, 0, 2).success());
    }
}

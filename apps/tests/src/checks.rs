//! The app's own test cases.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use ukplat::{MemoryKind, PhysRange};
use uktest::{TestResult, test_case, ut_assert, ut_assert_eq, ut_fail};

/// Console output captured by [`capture`] (the bytes past its capacity are
/// counted, not kept).
static CAPTURED: [AtomicU8; 128] = [const { AtomicU8::new(0) }; 128];
static CAPTURED_LEN: AtomicUsize = AtomicUsize::new(0);

/// The console tap: every chunk written to the console.
fn capture(bytes: &[u8]) {
    for &b in bytes {
        let i = CAPTURED_LEN.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = CAPTURED.get(i) {
            slot.store(b, Ordering::Relaxed);
        }
    }
}

/// Runs `f` with the console output captured; returns what it printed
/// (the first 128 bytes) and how many bytes that was.
fn captured(f: impl FnOnce()) -> ([u8; 128], usize) {
    CAPTURED_LEN.store(0, Ordering::Relaxed);
    let previous = ukconsole::set_tap(Some(capture));
    f();
    ukconsole::set_tap(previous);
    let len = CAPTURED_LEN.load(Ordering::Relaxed);
    let mut out = [0u8; 128];
    for (o, c) in out.iter_mut().zip(&CAPTURED) {
        *o = c.load(Ordering::Relaxed);
    }
    (out, len)
}

/// What `config/tests.toml` sets on purpose (each differs from the
/// default) takes effect, checked against the file's literal values rather
/// than the generated constants: `log_level = "debug"` prints debug records
/// and drops trace records, `log_prefix = "[guest] "` starts each record,
/// and `memory = 128` is the RAM QEMU gave the guest.
fn tests_toml_settings_take_effect() -> TestResult {
    let (out, len) = captured(|| log::debug!(target: "tests", "debug probe {}", 7));
    let text = core::str::from_utf8(&out[..len.min(out.len())]).unwrap_or("(not UTF-8)");
    ut_assert_eq!(text, "[guest] [DEBUG] tests: debug probe 7\n");
    let (out, len) = captured(|| log::trace!(target: "tests", "trace probe"));
    let text = core::str::from_utf8(&out[..len.min(out.len())]).unwrap_or("(not UTF-8)");
    ut_assert_eq!(len, 0, "a trace record was printed at log level debug: {:?}", text);
    let ram = ukplat::boot_info().ram_bytes();
    ut_assert!((120 << 20..=128 << 20).contains(&ram), "{} bytes of RAM, tests.toml asks for 128 MiB", ram);
    Ok(())
}
test_case!(tests_toml_settings_take_effect);

/// Crates with in-guest tests (their `uktest` feature registers them).
const LIBRARIES_WITH_GUEST_TESTS: [&str; 9] =
    ["apic", "ukalloc", "ukconsole", "uklock", "uksched", "uksmp", "ukspin", "uktime", "ukvmem"];

/// The crate a test's name (`crate::module::function`) comes from.
fn crate_of(name: &str) -> &str {
    name.split("::").next().unwrap_or(name)
}

/// xtask enables the `uktest` feature of every library the app selects
/// and of the platform: each selected library with in-guest tests
/// registered some in this image, and every registered test comes from
/// this app, a selected library or the platform (`ukplat_kvm`'s clock
/// tests).
fn selected_libraries_register_their_tests() -> TestResult {
    let tests = &uktest::TESTS;
    for lib in ukconfig::LIBRARIES.iter().filter(|l| LIBRARIES_WITH_GUEST_TESTS.contains(l)) {
        ut_assert!(
            tests.iter().any(|t| crate_of(t.name) == *lib),
            "selected library {} registered no test",
            lib
        );
    }
    ut_assert!(tests.iter().any(|t| crate_of(t.name) == "tests"), "the app's own tests are missing");
    for t in tests.iter() {
        let from = crate_of(t.name);
        let platform = from.strip_prefix("ukplat_") == Some(ukconfig::platform::NAME);
        ut_assert!(
            from == "tests" || platform || ukconfig::LIBRARIES.contains(&from),
            "{} is from an unselected crate",
            t.name
        );
    }
    Ok(())
}
test_case!(selected_libraries_register_their_tests);

/// The backend compiled in is the one the host expects
/// (`tests.expect_backend=NAME` on the command line, which xtask sets
/// independently of the `--set ukalloc.backend=...` it builds with). That
/// the heap in use behaves as that backend is ukalloc's own guest test
/// (`the_heap_in_use_packs_blocks_as_the_configured_backend`).
fn heap_backend_is_the_expected_one() -> TestResult {
    let cmdline = ukplat::boot_info().cmdline;
    let Some(expected) = ukboot::cmdline_value(cmdline, "tests.expect_backend") else {
        ut_fail!("no tests.expect_backend=NAME on the command line \"{}\"", cmdline)
    };
    ut_assert_eq!(ukconfig::ukalloc::BACKEND.as_str(), expected);
    ut_assert_eq!(ukalloc::backend().as_str(), expected);
    Ok(())
}
test_case!(heap_backend_is_the_expected_one);

/// The command line's words are within `max_args` (ukboot would have
/// refused to boot otherwise) and the config's command line is in it.
fn cmdline_is_passed() -> TestResult {
    let cmdline = ukplat::boot_info().cmdline;
    ut_assert!(cmdline.split_ascii_whitespace().count() <= ukconfig::ukboot::MAX_ARGS);
    for word in ukconfig::platform::CMDLINE.split_ascii_whitespace() {
        if !word.starts_with("tests.expect_backend=") {
            ut_assert!(
                cmdline.split_ascii_whitespace().any(|w| w == word),
                "{} not in \"{}\"",
                word,
                cmdline
            );
        }
    }
    Ok(())
}
test_case!(cmdline_is_passed);

fn inside_ram(range: &PhysRange) -> bool {
    ukplat::boot_info()
        .memory_map
        .iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .any(|r| r.range.start <= range.start && range.end <= r.range.end)
}

fn overlaps(a: &PhysRange, b: &PhysRange) -> bool {
    a.start < b.end && b.start < a.end
}

/// The memory map is present, sorted and about the configured size.
fn memory_map_is_sane() -> TestResult {
    let info = ukplat::boot_info();
    ut_assert!(!info.memory_map.is_empty(), "empty memory map");
    for pair in info.memory_map.windows(2) {
        ut_assert!(pair[0].range.start <= pair[1].range.start, "unsorted: {:?}", pair);
    }
    for region in info.memory_map {
        ut_assert!(!region.range.is_empty(), "empty entry {:?}", region);
    }
    let configured = (ukconfig::platform::MEMORY as u64) << 20;
    let ram = info.ram_bytes();
    ut_assert!(ram <= configured, "{} bytes of RAM, more than the configured {}", ram, configured);
    ut_assert!(ram >= configured - configured / 16, "{} bytes of RAM, configured {}", ram, configured);
    Ok(())
}
test_case!(memory_map_is_sane);

/// The image lies in RAM; free memory lies in RAM, outside the image, sorted
/// and disjoint.
fn free_memory_and_image_are_consistent() -> TestResult {
    let info = ukplat::boot_info();
    ut_assert!(!info.image.is_empty(), "empty image range {}", info.image);
    ut_assert!(inside_ram(&info.image), "image {} not inside a RAM region", info.image);
    ut_assert!(!info.free_memory.is_empty(), "no free memory");
    for range in info.free_memory {
        ut_assert!(!range.is_empty(), "empty free range {}", range);
        ut_assert!(inside_ram(range), "free range {} not inside a RAM region", range);
        ut_assert!(!overlaps(range, &info.image), "free range {} overlaps the image {}", range, info.image);
    }
    for pair in info.free_memory.windows(2) {
        ut_assert!(
            pair[0].end <= pair[1].start,
            "free ranges {} and {} unsorted or overlapping",
            pair[0],
            pair[1]
        );
    }
    ut_assert!(info.free_bytes() < info.ram_bytes());
    Ok(())
}
test_case!(free_memory_and_image_are_consistent);

/// The heap lies inside the free memory the platform reported.
fn heap_fits_in_free_memory() -> TestResult {
    let info = ukplat::boot_info();
    let stats = ukalloc::heap_stats();
    ut_assert!(stats.total > 0);
    ut_assert!(stats.total as u64 <= info.free_bytes());
    let addr = alloc_probe()? as u64;
    ut_assert!(
        info.free_memory.iter().any(|r| r.start <= addr && addr < r.end),
        "heap block at {:#x} is not in free memory",
        addr
    );
    Ok(())
}
test_case!(heap_fits_in_free_memory);

/// A heap block's address (allocated and freed at once).
fn alloc_probe() -> Result<usize, uktest::Stop> {
    let layout = core::alloc::Layout::new::<[u64; 4]>();
    match ukalloc::try_alloc(layout) {
        Ok(p) => {
            let addr = p.as_ptr() as usize;
            // SAFETY: allocated just above with `layout`, freed once.
            unsafe { ukalloc::free(p, layout) };
            Ok(addr)
        }
        Err(f) => ut_fail!("probe allocation failed: {}", f),
    }
}

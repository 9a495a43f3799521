//! The app's own test cases.

use core::fmt::Write;

use ukconsole::BufWriter;
use ukplat::{MemoryKind, PhysRange};
use uktest::{TestResult, test_case, ut_assert, ut_assert_eq, ut_fail};

/// The values `config/tests.toml` sets on purpose (all differ from the
/// defaults, so a config that is not applied fails here).
fn config_constants_match_tests_toml() -> TestResult {
    ut_assert_eq!(ukconfig::APP, "tests");
    ut_assert_eq!(ukconfig::ukconsole::LOG_LEVEL.as_str(), "debug");
    ut_assert_eq!(ukconfig::ukconsole::LOG_PREFIX, "[guest] ");
    ut_assert_eq!(ukconfig::ukboot::MAX_ARGS, 48);
    ut_assert_eq!(ukconfig::platform::MEMORY, 128);
    ut_assert_eq!(ukconfig::platform::NAME, "kvm");
    ut_assert!(!ukconfig::uktest::FAIL_FAST);
    Ok(())
}
test_case!(config_constants_match_tests_toml);

/// The selected libraries are listed and flagged as selected.
fn selected_libraries_are_listed() -> TestResult {
    for lib in ["ukarch", "ukplat", "ukboot", "ukconsole", "ukalloc", "uktest"] {
        ut_assert!(ukconfig::LIBRARIES.contains(&lib), "{} missing from {:?}", lib, ukconfig::LIBRARIES);
    }
    ut_assert!(ukconfig::ukconsole::SELECTED);
    ut_assert!(ukconfig::ukalloc::SELECTED);
    ut_assert!(ukconfig::uktest::SELECTED);
    ut_assert!(ukconfig::ukboot::SELECTED);
    Ok(())
}
test_case!(selected_libraries_are_listed);

/// The backend compiled in is the one the host expects
/// (`tests.expect_backend=NAME` on the command line).
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

/// Every byte printed with `println!` is handed to the console device.
fn console_counts_bytes_written() -> TestResult {
    let value = core::hint::black_box(12345u32);
    let mut expected = BufWriter::<96>::new();
    let _ = writeln!(expected, "tests: console check, value {value} {:#x}", value);
    let before = ukconsole::bytes_written();
    ukconsole::println!("tests: console check, value {value} {:#x}", value);
    let written = ukconsole::bytes_written() - before;
    ut_assert_eq!(written, expected.len() as u64);
    ut_assert!(ukplat::console::device_name().is_some(), "no console device registered");
    Ok(())
}
test_case!(console_counts_bytes_written);

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
fn alloc_probe() -> Result<usize, uktest::Failure> {
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

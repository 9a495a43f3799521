//! `cargo xtask bench`: benchmarks that print medians over repeats and a
//! baseline measured in the same run. Not tests: nothing here passes or fails
//! on a number.

use crate::image::{self, BuildOptions};
use crate::qemu::{self, Outcome};
use anyhow::{Context, Result, bail};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Boot time of helloworld against the minimal `exit` image, on microvm and q35.
    Boot {
        /// Boots per image and machine.
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Accelerator: auto, kvm or tcg.
        #[arg(long, default_value = "auto")]
        accel: String,
    },
}

/// Runs a benchmark.
pub fn run(which: &BenchCmd) -> Result<ExitCode> {
    match which {
        BenchCmd::Boot { repeats, accel } => boot(*repeats, accel),
    }
}

/// Median of a non-empty sample (the lower middle for even counts).
pub fn median<T: Copy + Ord>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[(sorted.len() - 1) / 2]
}

/// The host's TSC frequency, measured against the monotonic clock. Under KVM
/// and TCG the guest's TSC runs at the host's rate, so this converts guest
/// cycle counts to time when the guest cannot tell its own frequency.
pub fn host_tsc_hz() -> u64 {
    let start = Instant::now();
    // SAFETY: `rdtsc` is unprivileged on Linux/x86_64 and has no memory effects.
    let t0 = unsafe { core::arch::x86_64::_rdtsc() };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    let t1 = unsafe { core::arch::x86_64::_rdtsc() };
    let elapsed = start.elapsed();
    ((t1 - t0) as f64 / elapsed.as_secs_f64()) as u64
}

/// The cycle count helloworld prints: "Boot: N cycles from first instruction to main".
fn boot_cycles(serial: &str) -> Option<u64> {
    serial.lines().find_map(|l| l.strip_prefix("Boot: ")?.split_whitespace().next()?.parse().ok())
}

fn boot(repeats: usize, accel: &str) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let release = BuildOptions { release: true, quiet: true, ..Default::default() };
    let tsc_hz = host_tsc_hz();
    println!("bench boot: {repeats} boots per image and machine; host TSC {:.0} MHz", tsc_hz as f64 / 1e6);

    for machine in ["microvm", "q35"] {
        let sets = vec![format!("platform.machine={machine}"), format!("platform.accel={accel}")];
        let hello = ws.resolve("helloworld", None, &sets)?;
        let baseline = ws.resolve("exit", None, &sets)?;
        let hello_img = image::build(&ws, &hello, &release)?;
        let base_img = image::build(&ws, &baseline, &release)?;
        let (vm, why) = crate::vm_config(&hello, false)?;
        let (base_vm, _) = crate::vm_config(&baseline, false)?;

        let mut hello_wall = Vec::new();
        let mut base_wall = Vec::new();
        let mut cycles = Vec::new();
        // Interleave the two images so drift in the host affects both alike.
        for _ in 0..repeats {
            let r = qemu::run(qemu::command(&hello_img.path, &vm), Some(Duration::from_secs(60)), false)?;
            if r.outcome != Outcome::Status(0) {
                bail!("helloworld on {machine}: {}\n{}", r.outcome.describe(), r.serial);
            }
            hello_wall.push(r.wall.as_micros() as u64);
            cycles.push(boot_cycles(&r.serial).context("helloworld did not print its boot cycles")?);
            let b = qemu::run(qemu::command(&base_img.path, &base_vm), Some(Duration::from_secs(60)), false)?;
            if b.outcome != Outcome::Status(0) {
                bail!("baseline on {machine}: {}\n{}", b.outcome.describe(), b.serial);
            }
            base_wall.push(b.wall.as_micros() as u64);
        }
        let (hw, bw, cyc) = (median(&hello_wall), median(&base_wall), median(&cycles));
        println!();
        println!("machine {machine}, accelerator {} ({why}):", vm.accel.name());
        println!("  {:<44} {:>12} {:>12} {:>12}", "", "median", "min", "max");
        println!(
            "  {:<44} {:>9.2} ms {:>9.2} ms {:>9.2} ms",
            "helloworld: QEMU start -> exit (wall)",
            hw as f64 / 1e3,
            *hello_wall.iter().min().unwrap_or(&0) as f64 / 1e3,
            *hello_wall.iter().max().unwrap_or(&0) as f64 / 1e3
        );
        println!(
            "  {:<44} {:>9.2} ms {:>9.2} ms {:>9.2} ms",
            "baseline (exit app): QEMU start -> exit",
            bw as f64 / 1e3,
            *base_wall.iter().min().unwrap_or(&0) as f64 / 1e3,
            *base_wall.iter().max().unwrap_or(&0) as f64 / 1e3
        );
        println!(
            "  {:<44} {:>12.3}x   (target <= 1.2x)",
            "helloworld / baseline wall time",
            hw as f64 / bw as f64
        );
        println!(
            "  {:<44} {:>9} cyc = {:.1} us at host TSC rate   (target < 50 us)",
            "guest first instruction -> main (TSC)",
            cyc,
            cyc as f64 * 1e6 / tsc_hz as f64
        );
        println!(
            "  {:<44} {:>9.1} KiB (helloworld), {:.1} KiB (baseline)   (target < 150 KiB)",
            "release image size",
            hello_img.size as f64 / 1024.0,
            base_img.size as f64 / 1024.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(median(&[3, 1, 2]), 2);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
        assert_eq!(median(&[7]), 7);
    }

    #[test]
    fn boot_cycles_are_parsed() {
        let log = "Hello\nBoot: 12345 cycles from first instruction to main (x)\n";
        assert_eq!(boot_cycles(log), Some(12345));
        assert_eq!(boot_cycles("nothing"), None);
    }
}

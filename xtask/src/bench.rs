//! `cargo xtask bench`: benchmarks that print medians over repeats and a
//! baseline measured in the same run. Not tests: nothing here passes or fails
//! on a number.

use crate::anchors::{self, Anchor, Repeated, RepeatedOutcome};
use crate::guest::Guest;
use crate::image::{self, BuildOptions};
use crate::qemu::{self, Outcome};
use anyhow::{Context, Result, bail};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where a benchmark runs its images (`--platform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// Under QEMU, with KVM or TCG.
    Kvm,
    /// As a Linux process on the host, no QEMU; the native peers
    /// (`bench/anchors`) run in the same command, beside it.
    Linuxu,
}

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
        /// Count instructions instead (TCG with `-icount`): helloworld's
        /// first instruction -> main, per boot stage, on each machine; the
        /// counts must be the same in every boot.
        #[arg(long)]
        icount: bool,
        /// Platform: boot times are QEMU's, so kvm only.
        #[arg(long, value_enum, default_value_t = Platform::Kvm)]
        platform: Platform,
    },
    /// SMP: application processor start, IPI and cross-CPU call round trips,
    /// spinlock throughput and fairness. Without --accel/--smp it runs TCG
    /// with 4 CPUs and, when /dev/kvm works, KVM with 2. With --platform
    /// linuxu: the image as a Linux process and, beside it, its native
    /// peers (pthread locks, a futex hand-off between host CPUs).
    Smp {
        /// Boots per configuration (medians over them).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Only this accelerator (auto, kvm, tcg; kvm platform only).
        #[arg(long)]
        accel: Option<String>,
        /// CPUs (with --accel; default 4 under TCG, 2 under KVM; on linuxu
        /// the host's CPUs, at least 2 and at most 4).
        #[arg(long)]
        smp: Option<u32>,
        /// IPI round trips per boot.
        #[arg(long, default_value_t = 1000)]
        ipi_rounds: u64,
        #[command(flatten)]
        on: PlatformArgs,
    },
    /// Scheduler: same-CPU context switch, thread create + join, cross-CPU
    /// wake-up latency and contended mutex hand-off, against baselines
    /// measured in the same boot; the image is built once per policy
    /// (`uksched.policy=coop` and `preempt`) and the table shows both.
    Sched {
        /// Boots per policy (medians over them).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Accelerator: auto (the default), kvm or tcg; kvm platform only.
        #[arg(long)]
        accel: Option<String>,
        /// CPUs. 2 by default: the cross-CPU measurements use CPUs 0 and 1
        /// only, and under TCG on this project's 2-core build machines
        /// more vCPUs than host cores add host-scheduling noise (a vCPU
        /// the host has descheduled) to every hand-off.
        #[arg(long, default_value_t = 2)]
        smp: u32,
        /// Length of the guest's inner loops (its `rounds=` option).
        #[arg(long, default_value_t = 100)]
        rounds: u64,
        #[command(flatten)]
        on: PlatformArgs,
    },
    /// RCU: read-side cost against a plain pointer load, read throughput
    /// against `ukspin::RwSpinLock` and `uklock::RwLock` at 1..N CPUs,
    /// `synchronize`/`synchronize_expedited` latency against a cross-CPU
    /// call round trip, `call_rcu` throughput and `barrier` latency, with
    /// the goals; the image is built once per policy (`uksched.policy`),
    /// RCU flavour (`ukrcu.flavor`) and CPU count, and each table shows
    /// every (policy, flavour) pair side by side. The goals are qsbr's:
    /// refcount's ratios are shown next to them, not judged.
    Rcu {
        /// Boots per image: per policy, flavour and CPU count (medians
        /// over them).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Accelerator: tcg (the default), kvm or auto; kvm platform only.
        #[arg(long)]
        accel: Option<String>,
        /// CPUs (default: 1, 2 and 4, one table each; on linuxu one table
        /// at the host's CPUs, at most 4).
        #[arg(long)]
        smp: Option<u32>,
        /// Only this RCU flavour (default: qsbr and refcount side by side).
        #[arg(long, value_parser = FLAVORS)]
        flavor: Option<String>,
        #[command(flatten)]
        on: PlatformArgs,
    },
    /// Futexes: uncontended lock + unlock of `uklock::Mutex`, a raw
    /// posix-futex mutex and `ukspin::TicketLock` (the baseline);
    /// futex wake-to-run latency on one CPU and across two, against a bare
    /// wait queue; contended lock throughput at 1..N CPUs. The image is
    /// built once per `uklock.mutex` kind (`waitqueue`, `futex`) and the
    /// table shows both; a kind that cannot be built is shown as such.
    Futex {
        /// Boots per image (medians over them).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Accelerator: auto (the default), kvm or tcg; kvm platform only.
        #[arg(long)]
        accel: Option<String>,
        /// CPUs: the contended rows run at 1..N (default 4; on linuxu the
        /// host's CPUs, at most 4).
        #[arg(long)]
        smp: Option<u32>,
        /// Wake-ups per wake-to-run measurement (the guest's `rounds=`).
        #[arg(long, default_value_t = 200)]
        rounds: u64,
        /// Lock + increment + unlock iterations per thread in the
        /// contended rows (the guest's `iters=`).
        #[arg(long, default_value_t = 5000)]
        iters: u64,
        #[command(flatten)]
        on: PlatformArgs,
    },
    /// Native peers only (bench/anchors/*.c: liburcu, pthread locks, futex
    /// and sched_yield ping-pong), built with the host's C compiler and run
    /// as processes: one table, missing peers with their reason.
    Anchors,
    /// Instruction counts (TCG with `-icount`, where guest TSC deltas are
    /// instructions): an RCU read section (qsbr and refcount), a same-CPU
    /// context switch, uncontended lock + unlock of `uklock::Mutex` (futex
    /// and wait-queue kinds), a raw futex mutex and `ukspin::TicketLock`,
    /// and a `uksmp::run_on` round trip between two CPUs, each per
    /// operation, raw and net of an empty loop measured in the same boot,
    /// for each scheduling policy. Every image runs with 2 CPUs and boots
    /// `--repeats` times; a count of one CPU that differs between boots
    /// fails the command, the round trip (two vCPUs) is reported with its
    /// spread instead.
    Icount {
        /// Boots per image (at least 2: the counts are compared between them).
        #[arg(long, default_value_t = 2)]
        repeats: usize,
        /// Accelerator: instruction counting needs TCG (tcg or auto; kvm is refused).
        #[arg(long, default_value = "tcg")]
        accel: String,
        /// Only this scheduling policy (default: coop and preempt side by side).
        #[arg(long, value_parser = POLICIES)]
        policy: Option<String>,
        /// Platform: instruction counting is QEMU's, so kvm only.
        #[arg(long, value_enum, default_value_t = Platform::Kvm)]
        platform: Platform,
    },
}

/// Where `bench smp|sched|rcu|futex` run their images.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct PlatformArgs {
    /// kvm (under QEMU, the default) or linuxu (the image as a Linux
    /// process, its figures beside native peers measured in the same run).
    #[arg(long, value_enum, default_value_t = Platform::Kvm)]
    pub platform: Platform,
    /// linuxu: leave each CPU's host thread unpinned (`platform.pin=false`;
    /// by default CPU i is pinned to host CPU i mod n).
    #[arg(long)]
    pub no_pin: bool,
}

/// Runs a benchmark.
pub fn run(which: &BenchCmd) -> Result<ExitCode> {
    match which {
        BenchCmd::Boot { platform: Platform::Linuxu, .. } => bail!(
            "bench boot measures QEMU boots (wall time, TSC to main, image size): --platform linuxu cannot run it (leave --platform out)"
        ),
        BenchCmd::Icount { platform: Platform::Linuxu, .. } => bail!(
            "bench icount counts instructions under QEMU's TCG: --platform linuxu cannot run it (leave --platform out)"
        ),
        BenchCmd::Boot { repeats, accel, icount: true, .. } => {
            if !matches!(accel.as_str(), "auto" | "tcg") {
                bail!(
                    "bench boot --icount counts instructions under TCG only; --accel {accel} cannot run it (leave --accel out or say tcg)"
                );
            }
            boot_icount(*repeats)
        }
        BenchCmd::Boot { repeats, accel, icount: false, .. } => boot(*repeats, accel),
        BenchCmd::Smp { repeats, accel, smp, ipi_rounds, on } => match on.platform {
            Platform::Kvm => {
                Target::new("smp", None, "", on)?;
                smp_bench(*repeats, accel.as_deref(), *smp, *ipi_rounds)
            }
            Platform::Linuxu => {
                let target = Target::new("smp", accel.as_deref(), "", on)?;
                smp_linuxu(*repeats, &target, *smp, *ipi_rounds)
            }
        },
        BenchCmd::Sched { repeats, accel, smp, rounds, on } => {
            sched_bench(*repeats, &Target::new("sched", accel.as_deref(), "auto", on)?, *smp, *rounds)
        }
        BenchCmd::Rcu { repeats, accel, smp, flavor, on } => {
            rcu_bench(*repeats, &Target::new("rcu", accel.as_deref(), "tcg", on)?, *smp, flavor.as_deref())
        }
        BenchCmd::Futex { repeats, accel, smp, rounds, iters, on } => {
            futex_bench(*repeats, &Target::new("futex", accel.as_deref(), "auto", on)?, *smp, *rounds, *iters)
        }
        BenchCmd::Anchors => crate::anchors::bench(),
        BenchCmd::Icount { repeats, accel, policy, .. } => {
            if !matches!(accel.as_str(), "auto" | "tcg") {
                bail!(
                    "bench icount counts instructions under TCG only; --accel {accel} cannot run it (leave --accel out or say tcg)"
                );
            }
            icount_bench(*repeats, policy.as_deref())
        }
    }
}

/// Where one benchmark's images run: the `--set` options that say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Under QEMU with this accelerator (`platform.accel`).
    Qemu(String),
    /// As a Linux process (`platform.name=linuxu`), each CPU's thread
    /// pinned to a host CPU (`platform.pin`) or not.
    Linuxu {
        /// `platform.pin`.
        pin: bool,
    },
}

impl Target {
    /// The target of `bench NAME` with `--accel` (`default_accel` when
    /// not given) and the platform options; an option that makes no sense
    /// on the platform is an error naming both.
    pub fn new(bench: &str, accel: Option<&str>, default_accel: &str, on: &PlatformArgs) -> Result<Target> {
        match on.platform {
            Platform::Kvm if on.no_pin => bail!(
                "bench {bench}: --no-pin is for --platform linuxu (it sets platform.pin, which platform kvm does not have: QEMU's vCPU threads are not pinned); drop --no-pin"
            ),
            Platform::Kvm => Ok(Target::Qemu(accel.unwrap_or(default_accel).to_string())),
            Platform::Linuxu => match accel {
                Some(a) => bail!(
                    "bench {bench}: --accel {a} makes no sense with --platform linuxu: the image runs as a Linux process, not under QEMU (drop --accel)"
                ),
                None => Ok(Target::Linuxu { pin: !on.no_pin }),
            },
        }
    }

    /// The `--set` options of every image of this target.
    fn sets(&self) -> Vec<String> {
        match self {
            Target::Qemu(accel) => vec![format!("platform.accel={accel}")],
            Target::Linuxu { pin } => vec!["platform.name=linuxu".into(), format!("platform.pin={pin}")],
        }
    }

    /// Its part of an image name: the accelerator, or `linuxu`.
    fn tag(&self) -> &str {
        match self {
            Target::Qemu(accel) => accel,
            Target::Linuxu { pin: true } => "linuxu",
            Target::Linuxu { pin: false } => "linuxu-unpinned",
        }
    }

    fn is_linuxu(&self) -> bool {
        matches!(self, Target::Linuxu { .. })
    }
}

/// The host CPUs this process may use.
fn host_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default CPU count of an image on linuxu: the host's CPUs, at least
/// `least` (the cross-CPU rows need 2) and at most 4 (as the kvm defaults).
fn linuxu_cpus(least: u32) -> u32 {
    u32::try_from(host_cores()).unwrap_or(u32::MAX).clamp(least, 4)
}

/// The host's 1-minute load average, for table headers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
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
        let (vm, why) = crate::vm_config(&hello, None)?;
        let (base_vm, _) = crate::vm_config(&baseline, None)?;

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

/// The `ukboot: boot stage NAME N` lines and the `ukboot: first
/// instruction to main N` total of a boot with `ukboot.init_times`.
pub fn boot_stages(serial: &str) -> (Vec<(String, u64)>, Option<u64>) {
    let stages = serial
        .lines()
        .filter_map(|l| {
            let (name, n) = l.strip_prefix("ukboot: boot stage ")?.rsplit_once(' ')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect();
    let total = serial
        .lines()
        .find_map(|l| l.strip_prefix("ukboot: first instruction to main ")?.trim().parse().ok());
    (stages, total)
}

/// The goal of `bench boot --icount`: at most this many instructions from
/// helloworld's first one to `main`, on microvm and on q35 (`cargo xtask
/// test` checks it).
pub const BOOT_ICOUNT_GOAL: u64 = 30_000;

/// `bench boot --icount`: helloworld under TCG with `-icount`, where the TSC
/// counts instructions: first instruction -> main per boot stage, on each
/// machine, `repeats` times; the counts must not vary.
fn boot_icount(repeats: usize) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let release = BuildOptions { release: true, quiet: true, ..Default::default() };
    println!(
        "bench boot --icount: helloworld (release), TCG with -icount shift=0: guest TSC deltas are instructions"
    );
    let mut varied = false;
    for machine in ["microvm", "q35"] {
        let sets = vec![
            format!("platform.machine={machine}"),
            "platform.accel=tcg".into(),
            "platform.icount=true".into(),
            "ukboot.init_times=true".into(),
        ];
        let hello = ws.resolve("helloworld", None, &sets)?;
        let img = image::build(&ws, &hello, &release)?;
        let (vm, _) = crate::vm_config(&hello, None)?;
        let mut boots = Vec::new();
        for _ in 0..repeats {
            let r = qemu::run(qemu::command(&img.path, &vm), Some(Duration::from_secs(60)), false)?;
            if r.outcome != Outcome::Status(0) {
                bail!(
                    "helloworld on {machine}: {}
{}",
                    r.outcome.describe(),
                    r.serial
                );
            }
            let (stages, total) = boot_stages(&r.serial);
            let total = total.context("helloworld with ukboot.init_times printed no total")?;
            boots.push((stages, total));
        }
        let (stages, total) = &boots[0];
        let same = boots.iter().all(|b| b.1 == *total && b.0 == *stages);
        varied |= !same;
        println!();
        println!(
            "machine {machine}: {total} instructions from the first one to main ({}in {repeats} boots; goal: at most {BOOT_ICOUNT_GOAL})",
            if same { "the same " } else { "VARYING " }
        );
        for (name, n) in stages {
            println!("  {name:<60} {n:>9}");
        }
        if !same {
            let totals: Vec<u64> = boots.iter().map(|b| b.1).collect();
            println!("  totals per boot: {totals:?}");
        }
    }
    if varied {
        println!(
            "\nthe counts varied between boots: something depends on time (a poll loop, a timer) before main"
        );
    }
    Ok(if varied { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// One `bench:` line of a guest: `metric=NAME key=value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchLine {
    /// The metric and its identifying keys (`cpu=1`, `kind=ticket`, ...), in
    /// order: lines with equal identities are the same measurement.
    pub identity: Vec<(String, String)>,
    /// The numeric values (`cycles=...`, `ops=...`).
    pub values: Vec<(String, u64)>,
}

/// Keys that identify a measurement rather than measure it.
const IDENTITY_KEYS: &[&str] = &["metric", "cpu", "cpus", "kind", "samples", "apic", "source"];

/// Parses the `bench:` lines of a serial log.
pub fn bench_lines(serial: &str) -> Vec<BenchLine> {
    serial
        .lines()
        .filter_map(|l| l.strip_prefix("bench: "))
        .map(|rest| {
            let mut identity = Vec::new();
            let mut values = Vec::new();
            for (k, v) in rest.split_whitespace().filter_map(|kv| kv.split_once('=')) {
                match v.parse::<u64>() {
                    Ok(n) if !IDENTITY_KEYS.contains(&k) => values.push((k.to_string(), n)),
                    _ => identity.push((k.to_string(), v.to_string())),
                }
            }
            BenchLine { identity, values }
        })
        .collect()
}

/// One value of a measurement over several boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The value's key (`cycles`, `ops`, ...).
    pub key: String,
    /// Median over the boots.
    pub median: u64,
    /// Smallest.
    pub min: u64,
    /// Largest.
    pub max: u64,
}

/// One measurement aggregated over several boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The metric and its identifying keys.
    pub identity: Vec<(String, String)>,
    /// Its values.
    pub stats: Vec<Stat>,
}

impl Row {
    /// An identifying key's value.
    pub fn id(&self, key: &str) -> Option<&str> {
        self.identity.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A value's statistics.
    pub fn stat(&self, key: &str) -> Option<&Stat> {
        self.stats.iter().find(|s| s.key == key)
    }
}

/// Medians per identity and value key over several boots' lines, in the
/// order identities first appeared.
pub fn aggregate(boots: &[Vec<BenchLine>]) -> Vec<Row> {
    let mut order: Vec<Vec<(String, String)>> = Vec::new();
    for line in boots.iter().flatten() {
        if !order.contains(&line.identity) {
            order.push(line.identity.clone());
        }
    }
    order
        .into_iter()
        .map(|identity| {
            let lines: Vec<&BenchLine> = boots.iter().flatten().filter(|l| l.identity == identity).collect();
            let mut keys: Vec<&str> = Vec::new();
            for (k, _) in lines.iter().flat_map(|l| &l.values) {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
            let stats = keys
                .into_iter()
                .map(|key| {
                    let samples: Vec<u64> = lines
                        .iter()
                        .filter_map(|l| l.values.iter().find(|(k, _)| k == key))
                        .map(|(_, v)| *v)
                        .collect();
                    Stat {
                        key: key.to_string(),
                        median: median(&samples),
                        min: samples.iter().copied().min().unwrap_or(0),
                        max: samples.iter().copied().max().unwrap_or(0),
                    }
                })
                .collect();
            Row { identity, stats }
        })
        .collect()
}

/// How long one benchmark boot may run.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// A benchmark app's release image, built once and booted several times.
struct Booted {
    /// Every boot's `bench:` lines, in boot order (for ratios within a boot).
    boots: Vec<Vec<BenchLine>>,
    /// Medians over the boots ([`aggregate`]).
    rows: Vec<Row>,
    /// The guest's TSC rate, from its `metric=machine` line.
    tsc_hz: u64,
    /// Where it ran ...
    ran: Ran,
    /// ... and why there (the accelerator's reason; linuxu: how).
    why: String,
}

/// Where a benchmark image ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Under QEMU with this accelerator.
    Qemu(qemu::Accel),
    /// As a Linux process; `pinned`: `platform.pin`.
    Linuxu { pinned: bool },
}

impl Booted {
    /// Where it ran, for a header: `accelerator tcg (why)` or `platform linuxu (...)`.
    fn where_ran(&self) -> String {
        match self.ran {
            Ran::Qemu(accel) => format!("accelerator {} ({})", accel.name(), self.why),
            Ran::Linuxu { pinned } => format!(
                "platform linuxu ({}; {})",
                self.why,
                if pinned {
                    "CPU i's thread pinned to host CPU i mod n"
                } else {
                    "threads not pinned: --no-pin"
                }
            ),
        }
    }

    fn is_tcg(&self) -> bool {
        self.ran == Ran::Qemu(qemu::Accel::Tcg)
    }
}

/// Builds `app` (release) with `sets` as the image `image_name`, boots it
/// `repeats` times and parses its `bench:` lines; any boot that does not
/// exit with status 0 is an error that shows its serial log. The app must
/// print a `metric=machine ... tsc_hz=N` line.
fn build_and_boot(
    ws: &kconfig::Workspace,
    app: &str,
    image_name: &str,
    sets: &[String],
    repeats: usize,
) -> Result<Booted> {
    let resolved = ws.resolve(app, None, sets)?;
    let options =
        BuildOptions { release: true, quiet: true, name: Some(image_name.to_string()), ..Default::default() };
    let img = image::build(ws, &resolved, &options)?;
    let (guest, why) = Guest::from_resolved(&resolved, None)?;
    let ran = match &guest {
        Guest::Qemu(vm) => Ran::Qemu(vm.accel),
        Guest::Process { .. } => Ran::Linuxu {
            pinned: matches!(resolved.option("platform", "pin"), Some(kconfig::Value::Bool(true))),
        },
    };
    let mut boots = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let r = guest.run(&img.path, Some(BOOT_TIMEOUT), false, None)?;
        if r.outcome != Outcome::Status(0) {
            let (on, stderr) = match &guest {
                Guest::Qemu(vm) => (vm.accel.name().to_string(), String::new()),
                Guest::Process { .. } => {
                    ("linuxu".to_string(), format!("\n{}:\n{}", guest.stderr_name(), r.stderr.trim_end()))
                }
            };
            bail!(
                "{image_name} ({} CPUs, {on}): {}\n{}{}",
                guest.cpus(),
                r.outcome.describe(),
                r.serial,
                if r.stderr.trim().is_empty() { "" } else { stderr.as_str() }
            );
        }
        boots.push(bench_lines(&r.serial));
    }
    let rows = aggregate(&boots);
    let tsc_hz = rows
        .iter()
        .find(|r| r.id("metric") == Some("machine"))
        .and_then(|r| r.stat("tsc_hz"))
        .map(|s| s.median)
        .with_context(|| format!("{app} printed no machine line with its TSC rate"))?;
    Ok(Booted { boots, rows, tsc_hz, ran, why })
}

/// Checks that an image built with `uksched.policy=policy` says so on its
/// machine line.
fn check_policy(booted: &Booted, app: &str, policy: &str) -> Result<()> {
    check_machine_id(booted, app, "uksched.policy", "policy", policy)
}

/// Checks that an image built with `ukrcu.flavor=flavor` says on its
/// machine line that this flavour is the one linked.
fn check_flavor(booted: &Booted, app: &str, flavor: &str) -> Result<()> {
    check_machine_id(booted, app, "ukrcu.flavor", "flavor", flavor)
}

/// Checks that the machine line's `key` is `value`, the value of the
/// config option `option` the image was built with.
fn check_machine_id(booted: &Booted, app: &str, option: &str, key: &str, value: &str) -> Result<()> {
    let reported = booted.rows.iter().find(|r| r.id("metric") == Some("machine")).and_then(|r| r.id(key));
    if reported != Some(value) {
        bail!("{app} built with {option}={value} reports {key} {reported:?}");
    }
    Ok(())
}

fn smp_bench(repeats: usize, accel: Option<&str>, smp: Option<u32>, ipi_rounds: u64) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let configurations: Vec<(String, u32)> = match accel {
        Some(a) => {
            let (resolved, _) = qemu::choose_accel(a)?;
            let default = if resolved == qemu::Accel::Kvm { 2 } else { 4 };
            vec![(a.to_string(), smp.unwrap_or(default))]
        }
        None => {
            let mut c = vec![("tcg".to_string(), smp.unwrap_or(4))];
            if qemu::kvm_usable().is_ok() {
                c.push(("kvm".to_string(), smp.unwrap_or(2)));
            }
            c
        }
    };
    for (accel, cpus) in configurations {
        let sets = vec![
            format!("platform.accel={accel}"),
            format!("platform.cpus={cpus}"),
            format!("platform.cmdline=ipi_rounds={ipi_rounds}"),
        ];
        let booted = build_and_boot(&ws, "smpbench", &format!("smpbench-{accel}-{cpus}"), &sets, repeats)?;
        println!();
        println!(
            "bench smp: {} CPUs, {}, {repeats} boots, median [min..max] over boots; TSC {:.0} MHz",
            cpus,
            booted.where_ran(),
            booted.tsc_hz as f64 / 1e6
        );
        print_smp_table(&booted.rows, booted.tsc_hz);
    }
    Ok(ExitCode::SUCCESS)
}

/// The futex ping-pong peer taken whole, as the peer of a round trip.
const CROSS_ROUND_TRIP: &str = "futex ping-pong across 2 host CPUs, a round trip (2 hand-offs)";

/// The native peers of `bench smp --platform linuxu`.
fn smp_peer_pairs() -> Vec<PeerPair> {
    vec![
        PeerPair {
            anchor: Anchor::PthreadMutexPair,
            ours: "ukspin::SpinLock (ukspin.kind) acquire + increment + release, 1 CPU",
            figure: per_op_of_rate("lock", "spinlock", 1),
            times: 1.0,
            peer: None,
            goal: None,
        },
        PeerPair {
            anchor: Anchor::PthreadRwlockRead,
            ours: "ukspin::RwSpinLock read lock + read + unlock, 1 CPU",
            figure: per_op_of_rate("rwlock_read", "rwlock", 1),
            times: 1.0,
            peer: None,
            goal: None,
        },
        PeerPair {
            anchor: Anchor::FutexPingPongCrossCpu,
            ours: "IPI round trip CPU 0 <-> CPU 1",
            figure: kindless("ipi_rtt"),
            times: 2.0,
            peer: Some(CROSS_ROUND_TRIP),
            goal: None,
        },
        PeerPair {
            anchor: Anchor::FutexPingPongCrossCpu,
            ours: "uksmp::run_on round trip CPU 0 -> CPU 1",
            figure: kindless("call_rtt"),
            times: 2.0,
            peer: Some(CROSS_ROUND_TRIP),
            goal: None,
        },
    ]
}

/// `bench smp --platform linuxu`: one image of `smp` CPUs (default: the
/// host's, 2 to 4) as a Linux process, the table of `bench smp`, and the
/// native peers beside it.
fn smp_linuxu(repeats: usize, target: &Target, smp: Option<u32>, ipi_rounds: u64) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let cpus = smp.unwrap_or_else(|| linuxu_cpus(2));
    let pairs = smp_peer_pairs();
    let peers = run_peers("smp", &pairs, repeats, None);
    let mut sets = target.sets();
    sets.extend([format!("platform.cpus={cpus}"), format!("platform.cmdline=ipi_rounds={ipi_rounds}")]);
    let name = format!("smpbench-{}-{cpus}", target.tag());
    eprintln!("bench smp: {name}: release build, then {repeats} boots");
    let booted = build_and_boot(&ws, "smpbench", &name, &sets, repeats)?;
    let host_cores = host_cores();
    println!();
    println!(
        "bench smp: {cpus} CPUs, {}, {repeats} boots, median [min..max] over boots; TSC {:.0} MHz; \
         host: {host_cores} cores, load average {}",
        booted.where_ran(),
        booted.tsc_hz as f64 / 1e6,
        load_average()
    );
    if cpus > 1 && cpus as usize > host_cores {
        println!(
            "  {cpus} CPUs (host threads) on {host_cores} host cores: a CPU that waits for another may wait for a"
        );
        println!("  host time slice, and the spinlocks' throughput cannot scale past the host's free cores.");
    }
    print_smp_table(&booted.rows, booted.tsc_hz);
    let heads = [Head { label: format!("linuxu, {cpus} CPUs"), unjudged: None }];
    let (section, summary) = peer_section(&[Some(&booted)], &heads, &peers, &pairs);
    println!();
    print!("{}", render_sections(&[section], &[heads[0].label.clone()]));
    print!("{}", linuxu_notes(repeats, &summary));
    Ok(if peer_failed(&peers) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn ns(cycles: u64, tsc_hz: u64) -> f64 {
    ns_f(cycles as f64, tsc_hz)
}

fn ns_f(cycles: f64, tsc_hz: u64) -> f64 {
    cycles * 1e9 / tsc_hz as f64
}

fn print_smp_table(rows: &[Row], tsc_hz: u64) {
    for row in rows {
        let metric = row.id("metric").unwrap_or_default();
        let label = match metric {
            "machine" => {
                match row.id("apic") {
                    Some("none") => println!(
                        "  machine: no local APIC (interrupts and IPIs are signals), TSC calibrated from {}",
                        row.id("source").unwrap_or_default()
                    ),
                    apic => println!(
                        "  machine: local APIC in {} mode, TSC calibrated from {}",
                        apic.unwrap_or_default(),
                        row.id("source").unwrap_or_default()
                    ),
                }
                continue;
            }
            "ap_start" => format!("AP start, CPU {}", row.id("cpu").unwrap_or_default()),
            "ap_start_total" => {
                format!("AP start, all {} CPUs (parallel)", row.id("cpus").unwrap_or_default())
            }
            "ipi_rtt" => "IPI round trip CPU 0 <-> CPU 1".to_string(),
            "call_rtt" => "uksmp::run_on round trip CPU 0 -> CPU 1".to_string(),
            _ => continue,
        };
        if let Some(s) = row.stat("cycles") {
            println!(
                "  {label:<44} {:>12} cyc {:>12.0} ns   [{}..{}] cyc",
                s.median,
                ns(s.median, tsc_hz),
                s.min,
                s.max
            );
        }
    }
    for (metric, title) in [
        ("lock", "spinlocks: acquire + one increment + release, every participating CPU in a loop"),
        ("rwlock_read", "reader-writer lock, every participating CPU read-locking"),
    ] {
        let lock_rows: Vec<&Row> = rows.iter().filter(|r| r.id("metric") == Some(metric)).collect();
        if lock_rows.is_empty() {
            continue;
        }
        println!();
        println!("  {title}:");
        println!(
            "  {:<18} {:>4} {:>14} {:>14} {:>12}   {:>22}",
            "kind", "CPUs", "Macq/s (all)", "cyc/acq (all)", "ns/acq", "fairness min/max per CPU"
        );
        for row in lock_rows {
            let (Some(ops), Some(window)) = (row.stat("ops"), row.stat("window")) else { continue };
            let (min, max) =
                (row.stat("min").map_or(0, |s| s.median), row.stat("max").map_or(0, |s| s.median));
            let seconds = window.median as f64 / tsc_hz as f64;
            let per_acq = window.median as f64 / ops.median.max(1) as f64;
            println!(
                "  {:<18} {:>4} {:>14.2} {:>14.1} {:>12.1}   {:>10} / {:<10} {:>5.2}",
                row.id("kind").unwrap_or_default(),
                row.id("cpus").unwrap_or_default(),
                ops.median as f64 / seconds / 1e6,
                per_acq,
                ns(1, tsc_hz) * per_acq,
                min,
                max,
                min as f64 / max.max(1) as f64
            );
        }
    }
}

/// The scheduling policies `bench sched` and `bench rcu` compare, in table
/// order.
const POLICIES: [&str; 2] = ["coop", "preempt"];

/// The RCU flavours (`ukrcu.flavor`) `bench rcu` compares, in table order.
const FLAVORS: [&str; 2] = ["qsbr", "refcount"];

/// The flavour the issue's RCU goals are for; other flavours' ratios are
/// shown next to them without a verdict.
const GOAL_FLAVOR: &str = "qsbr";

/// The native peers of `bench sched --platform linuxu`.
fn sched_peer_pairs() -> Vec<PeerPair> {
    vec![PeerPair {
        anchor: Anchor::YieldPingPongSameCpu,
        ours: "context switch: 2 threads on 1 CPU yielding",
        figure: per_op("switch", "same-cpu", None),
        times: 1.0,
        peer: None,
        goal: Some(PeerGoal {
            cell: "<= 0.2x peer",
            summary: "same-CPU thread switch <= 0.2x Linux's sched_yield ping-pong",
            goal: Goal::AtMost(0.2),
        }),
    }]
}

fn sched_bench(repeats: usize, target: &Target, smp: u32, rounds: u64) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let pairs = if target.is_linuxu() { sched_peer_pairs() } else { Vec::new() };
    let peers = run_peers("sched", &pairs, repeats, None);
    let mut columns = Vec::new();
    let mut booted_columns = Vec::new();
    let mut machine = String::new();
    let tag = target.tag();
    for policy in POLICIES {
        let mut sets = target.sets();
        sets.extend([
            format!("platform.cpus={smp}"),
            format!("uksched.policy={policy}"),
            format!("platform.cmdline=rounds={rounds}"),
        ]);
        let name = format!("schedbench-{policy}-{tag}-{smp}");
        if target.is_linuxu() {
            eprintln!("bench sched: {name}: release build, then {repeats} boots");
        }
        let booted = build_and_boot(&ws, "schedbench", &name, &sets, repeats)?;
        check_policy(&booted, "schedbench", policy)?;
        machine = format!("{smp} CPUs, {}", booted.where_ran());
        columns.push(SchedColumn { rows: booted.rows.clone(), tsc_hz: booted.tsc_hz });
        booted_columns.push(booted);
    }
    println!();
    if !target.is_linuxu() {
        println!(
            "bench sched: {machine}, {repeats} boots per policy, release; median over boots of each boot's median \
             (11 or 51 samples); TSC {:.0} MHz",
            columns[0].tsc_hz as f64 / 1e6
        );
        print!("{}", sched_table(&columns));
        return Ok(ExitCode::SUCCESS);
    }
    let host_cores = host_cores();
    println!(
        "bench sched: {machine}, {repeats} boots per policy, release; median over boots of each boot's median \
         (11 or 51 samples); TSC {:.0} MHz; host: {host_cores} cores, load average {}",
        columns[0].tsc_hz as f64 / 1e6,
        load_average()
    );
    if smp as usize > host_cores {
        println!(
            "  {smp} CPUs (host threads) on {host_cores} host cores: a CPU that waits for another may wait for a"
        );
        println!("  host time slice.");
    }
    let heads: Vec<Head> =
        POLICIES.iter().take(columns.len()).map(|p| Head { label: p.to_string(), unjudged: None }).collect();
    let labels: Vec<String> = heads.iter().map(|h| h.label.clone()).collect();
    let booted: Vec<Option<&Booted>> = booted_columns.iter().map(Some).collect();
    let (peer, summary) = peer_section(&booted, &heads, &peers, &pairs);
    print!("{}", render_sections(&[sched_section(&columns), peer], &labels));
    print!("{}", linuxu_notes(repeats, &summary));
    Ok(if peer_failed(&peers) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// One policy's results.
struct SchedColumn {
    rows: Vec<Row>,
    tsc_hz: u64,
}

/// A `bench sched` measurement: its `metric` and `kind`.
type SchedKey = (String, String);

/// The measurements of `bench sched` (a row each, in the order first
/// printed) and their cells per policy: [cycles, ns, spread].
fn sched_cells(columns: &[SchedColumn]) -> Vec<(SchedKey, Vec<[String; 3]>)> {
    let key = |r: &Row| {
        (r.id("metric").unwrap_or_default().to_string(), r.id("kind").unwrap_or_default().to_string())
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in columns.iter().flat_map(|c| &c.rows).filter(|r| r.id("metric") != Some("machine")) {
        if !keys.contains(&key(row)) {
            keys.push(key(row));
        }
    }
    keys.into_iter()
        .map(|k| {
            let cells = columns
                .iter()
                .map(|column| match column.rows.iter().find(|r| key(r) == k).and_then(|r| r.stat("cycles")) {
                    Some(s) => [
                        s.median.to_string(),
                        format!("{:.1}", ns(s.median, column.tsc_hz)),
                        format!("[{}..{}]", s.min, s.max),
                    ],
                    None => ["-".into(), "-".into(), String::new()],
                })
                .collect();
            (k, cells)
        })
        .collect()
}

/// The rows of `bench sched` as a section of a table with goals (linuxu,
/// where the native peers follow them).
fn sched_section(columns: &[SchedColumn]) -> Section {
    let lines = sched_cells(columns)
        .into_iter()
        .map(|((metric, kind), cells)| TableLine {
            label: sched_label(&metric, &kind),
            cells,
            goal: String::new(),
        })
        .collect();
    Section {
        title: "schedbench, median over boots".into(),
        heads: ["cycles", "ns", "[min..max] cyc"],
        lines,
    }
}

/// What a `schedbench` measurement is, for the table.
fn sched_label(metric: &str, kind: &str) -> String {
    match (metric, kind) {
        ("yield", "alone") => "yield_now, nothing else runnable (no switch)".into(),
        ("switch", "same-cpu") => "context switch: 2 threads on 1 CPU yielding".into(),
        ("spawn_join", "same-cpu") => "spawn + join, empty closure, caller's CPU".into(),
        ("spawn_join", "any") => "spawn + join, empty closure, placed anywhere".into(),
        ("wakeup", "waitqueue") => "wake-up CPU 0 -> thread blocked on CPU 1".into(),
        ("wakeup", "spin-flag") => "  baseline: flag seen by a spinner on CPU 1".into(),
        ("handoff", "uklock-mutex") => "hand-off CPU 0 <-> 1: uklock::Mutex".into(),
        ("handoff", "ukspin") => "  baseline: ukspin::SpinLock".into(),
        ("handoff", "atomic-turn") => "  baseline: atomic turn variable, no lock".into(),
        _ => format!("{metric} {kind}"),
    }
}

/// The table of `bench sched`: one row per measurement, for each policy
/// the median in cycles and ns and the spread over boots.
fn sched_table(columns: &[SchedColumn]) -> String {
    use std::fmt::Write as _;
    // Cells: per measurement and policy, [cycles, ns, spread].
    let (keys, cells): (Vec<SchedKey>, Vec<Vec<[String; 3]>>) = sched_cells(columns).into_iter().unzip();
    let header = ["cycles", "ns", "[min..max] cyc"];
    let width =
        |i: usize| cells.iter().flatten().map(|c| c[i].len()).chain([header[i].len()]).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let column_width = w0 + w1 + w2 + 2;
    let label_width = 46;
    let mut out = String::new();
    let _ = write!(out, "  {:<label_width$}", "");
    for policy in POLICIES.iter().take(columns.len()) {
        let _ = write!(out, " | {policy:^column_width$}");
    }
    let _ = write!(out, "\n  {:<label_width$}", "measurement");
    for _ in columns {
        let _ = write!(out, " | {:>w0$} {:>w1$} {:>w2$}", header[0], header[1], header[2]);
    }
    out.push('\n');
    for ((metric, kind), row) in keys.iter().zip(&cells) {
        let _ = write!(out, "  {:<label_width$}", sched_label(metric, kind));
        for [cycles, ns, spread] in row {
            let _ = write!(out, " | {cycles:>w0$} {ns:>w1$} {spread:>w2$}");
        }
        out.push('\n');
    }
    out
}

/// The CPU counts `bench rcu` runs without `--smp`.
const RCU_CPUS: [u32; 3] = [1, 2, 4];

/// How often (us) rcubench's busy readers yield on linuxu, a quiescent
/// state each (`reader_yield_us`; 200 under QEMU): liburcu's busy reader,
/// the peer of `synchronize`, reports one after every read section, so
/// that the two grace periods wait for readers that report as often.
const LINUXU_READER_YIELD_US: u64 = 1;

/// The native peers of `bench rcu --platform linuxu`.
fn rcu_peer_pairs() -> Vec<PeerPair> {
    let read = || per_op("read_cost", "rcu", None);
    let sync = || per_op("gp", "sync-busy", None);
    let read_goal = PeerGoal {
        cell: "<= 1.2x peer",
        summary: "RCU qsbr read section <= 1.2x liburcu-qsbr's",
        goal: Goal::AtMost(1.2),
    };
    let sync_goal = PeerGoal {
        cell: "<= 1x peer",
        summary: "synchronize_rcu <= liburcu-qsbr's",
        goal: Goal::AtMost(1.0),
    };
    vec![
        PeerPair {
            anchor: Anchor::UrcuQsbrRead,
            ours: "read_lock + RcuCell::load + deref + drop",
            figure: read(),
            times: 1.0,
            peer: None,
            goal: Some(read_goal),
        },
        PeerPair {
            anchor: Anchor::UrcuQsbrRead,
            ours: "baseline: AtomicPtr load + deref (our loop's floor)",
            figure: per_op("read_cost", "plain", None),
            times: 1.0,
            peer: None,
            goal: None,
        },
        PeerPair {
            anchor: Anchor::UrcuMembRead,
            ours: "read_lock + RcuCell::load + deref + drop",
            figure: read(),
            times: 1.0,
            peer: None,
            goal: None,
        },
        PeerPair {
            anchor: Anchor::PthreadRwlockRead,
            ours: "uklock::RwLock read, 1 CPU (window / reads)",
            figure: per_op_of_rate("read_tput", "uklock-rw", 1),
            times: 1.0,
            peer: None,
            goal: None,
        },
        PeerPair {
            anchor: Anchor::UrcuQsbrSync,
            ours: "synchronize(), readers busy on the other CPUs",
            figure: sync(),
            times: 1.0,
            peer: None,
            goal: Some(sync_goal),
        },
        PeerPair {
            anchor: Anchor::UrcuMembSync,
            ours: "synchronize(), readers busy on the other CPUs",
            figure: sync(),
            times: 1.0,
            peer: None,
            goal: None,
        },
    ]
}

fn rcu_bench(repeats: usize, target: &Target, smp: Option<u32>, flavor: Option<&str>) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let flavors: Vec<&str> = match flavor {
        Some(f) if FLAVORS.contains(&f) => vec![f],
        Some(f) => bail!("--flavor {f}: expected one of {}", FLAVORS.join(", ")),
        None => FLAVORS.to_vec(),
    };
    let ws = crate::load()?;
    let counts = match (smp, target.is_linuxu()) {
        (Some(n), _) => vec![n],
        (None, false) => RCU_CPUS.to_vec(),
        (None, true) => vec![linuxu_cpus(1)],
    };
    let host_cores = host_cores();
    let tag = target.tag();
    let mut failed = false;
    for cpus in counts {
        // The peers first (linuxu), liburcu's busy readers one per other CPU of the image.
        let pairs = if target.is_linuxu() { rcu_peer_pairs() } else { Vec::new() };
        let peers = run_peers("rcu", &pairs, repeats, Some(cpus.max(2) as usize));
        let mut columns = Vec::new();
        let mut heads = Vec::new();
        for &flavor in &flavors {
            for policy in POLICIES {
                let name = format!("rcubench-{policy}-{flavor}-{tag}-{cpus}");
                eprintln!("bench rcu: {name}: release build, then {repeats} boots");
                let mut sets = target.sets();
                sets.extend([
                    format!("platform.cpus={cpus}"),
                    format!("uksched.policy={policy}"),
                    format!("ukrcu.flavor={flavor}"),
                ]);
                if target.is_linuxu() {
                    sets.push(format!("platform.cmdline=reader_yield_us={LINUXU_READER_YIELD_US}"));
                }
                let booted = build_and_boot(&ws, "rcubench", &name, &sets, repeats)?;
                check_policy(&booted, "rcubench", policy)?;
                check_flavor(&booted, "rcubench", flavor)?;
                columns.push(booted);
                heads.push(rcu_head(policy, flavor));
            }
        }
        let first = &columns[0];
        let option = |key: &str| machine_value(&first.rows, key).unwrap_or(0);
        let load = load_average();
        println!();
        println!(
            "bench rcu: {cpus} CPU(s), {}, {repeats} boots per policy and flavour, release; \
             TSC {:.0} MHz; host: {host_cores} cores, load average {load}",
            first.where_ran(),
            first.tsc_hz as f64 / 1e6
        );
        if first.is_tcg() {
            println!("  Under TCG the times mostly measure QEMU's translator, not the hardware: each guest");
            println!(
                "  instruction is emulated by several host ones, and calls, returns and IPIs go through"
            );
            println!("  QEMU's helpers. Read the ratios (x) to the baselines measured in the same boot.");
        }
        if cpus > 1 && cpus as usize >= host_cores {
            let what = if target.is_linuxu() { "CPUs (host threads)" } else { "vCPUs" };
            let one = if target.is_linuxu() { "CPU" } else { "vCPU" };
            println!(
                "  {cpus} {what} on {host_cores} host cores: a {one} that waits for another may wait for a host"
            );
            println!("  time slice (~4 ms on the 2-core build machines), and throughput cannot scale past");
            println!("  the host's free cores.");
        }
        println!(
            "  Columns: scheduling policy (uksched.policy) and RCU flavour (ukrcu.flavor), one image each."
        );
        println!(
            "  Cells: medians over boots of each boot's median; ratios are taken within each boot, then"
        );
        println!(
            "  the median [min-max] over boots. Busy readers yield every {} us (under coop nothing else",
            option("reader_yield_us")
        );
        println!("  gives a quiescent state). \"linear\" counts as met at >= 0.9 x CPUs. The goals are");
        println!("  {GOAL_FLAVOR}'s: other flavours' ratios are shown for comparison, without a verdict.");
        if target.is_linuxu() {
            println!(
                "  linuxu: busy readers yield every {LINUXU_READER_YIELD_US} us (200 under QEMU), as liburcu's busy reader reports a"
            );
            println!(
                "  quiescent state after every section; the peer's readers are one per other CPU of the image."
            );
        }
        let labels: Vec<String> = heads.iter().map(|h| h.label.clone()).collect();
        let mut sections = rcu_sections(&columns, &heads);
        let mut summary = Vec::new();
        if target.is_linuxu() {
            let booted: Vec<Option<&Booted>> = columns.iter().map(Some).collect();
            let (section, goals) = peer_section(&booted, &heads, &peers, &pairs);
            sections.push(section);
            summary = goals;
            failed |= peer_failed(&peers);
        }
        print!("{}", render_sections(&sections, &labels));
        let forced: Vec<String> = heads
            .iter()
            .zip(&columns)
            .filter_map(|(head, c)| {
                let s = c
                    .rows
                    .iter()
                    .find(|r| r.id("metric") == Some("gp") && r.id("kind") == Some("exp-busy"))?;
                Some(format!(
                    "{} {} forced / {} grace periods",
                    head.label,
                    s.stat("forced")?.median,
                    s.stat("gps")?.median
                ))
            })
            .collect();
        if !forced.is_empty() {
            println!("  expedited, readers busy: {}", forced.join(", "));
        }
        for (head, c) in heads.iter().zip(&columns) {
            let stalls =
                c.rows.iter().find(|r| r.id("metric") == Some("rcu_stats")).and_then(|r| r.stat("stalls"));
            if let Some(s) = stalls.filter(|s| s.max > 0) {
                println!("  {}: RCU stall reports in some boots (up to {} in one)", head.label, s.max);
            }
        }
        if target.is_linuxu() {
            print!("{}", linuxu_notes(repeats, &summary));
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The column head of `policy` and `flavor` in a `bench rcu` table: the
/// goals judge [`GOAL_FLAVOR`]'s columns only.
fn rcu_head(policy: &str, flavor: &str) -> Head {
    Head {
        label: format!("{policy} {flavor}"),
        unjudged: (flavor != GOAL_FLAVOR).then(|| format!("{GOAL_FLAVOR}'s goal, not judged for {flavor}")),
    }
}

/// A numeric value of the `machine` line (its options, its TSC rate).
fn machine_value(rows: &[Row], key: &str) -> Option<u64> {
    rows.iter().find(|r| r.id("metric") == Some("machine"))?.stat(key).map(|s| s.median)
}

/// A value of one boot's line `metric`/`kind` (and `cpus`, if given).
fn boot_value(boot: &[BenchLine], metric: &str, kind: &str, cpus: Option<usize>, key: &str) -> Option<u64> {
    let id =
        |line: &BenchLine, k: &str| line.identity.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
    boot.iter()
        .find(|l| {
            id(l, "metric").as_deref() == Some(metric)
                && id(l, "kind").as_deref() == Some(kind)
                && cpus.is_none_or(|c| id(l, "cpus") == Some(c.to_string()))
        })?
        .values
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
}

/// A ratio over boots: its median and range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratio {
    median: f64,
    min: f64,
    max: f64,
}

/// `f` of every boot that has what it needs, as a [`Ratio`] (the lower
/// middle for even counts, as [`median`]).
fn per_boot(boots: &[Vec<BenchLine>], f: impl Fn(&[BenchLine]) -> Option<f64>) -> Option<Ratio> {
    let mut values: Vec<f64> = boots.iter().filter_map(|b| f(b)).filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(Ratio { median: values[(values.len() - 1) / 2], min: values[0], max: values[values.len() - 1] })
}

/// A goal from the issue: a ratio at most or at least this.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtMost(g) => ratio <= g,
            Goal::AtLeast(g) => ratio >= g,
        }
    }
}

/// One row of a `bench rcu` section: three cells per column (see
/// [`Head`]), then the goal.
#[derive(Debug, Clone)]
struct TableLine {
    label: String,
    cells: Vec<[String; 3]>,
    goal: String,
}

/// A titled group of rows with its own column heads.
#[derive(Debug, Clone)]
struct Section {
    title: String,
    heads: [&'static str; 3],
    lines: Vec<TableLine>,
}

/// A number with as many decimals as its size deserves.
fn num(v: f64) -> String {
    match v.abs() {
        a if a < 10.0 => format!("{v:.2}"),
        a if a < 1000.0 => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

/// `1.03x [0.98-1.10]`.
fn ratio_cell(r: Option<Ratio>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{}x [{}-{}]", num(r.median), num(r.min), num(r.max)))
}

/// A column of a table with goals: its label and whether the goals judge it.
#[derive(Debug, Clone)]
struct Head {
    /// What the column shows, e.g. `coop qsbr`.
    label: String,
    /// `None`: the goals give this column a verdict; `Some(note)`: its
    /// ratios are shown without one, and the goal cell says `note` instead.
    unjudged: Option<String>,
}

/// The goal column: the goal and, per judged column ([`Head`]), whether
/// the median met it; then the notes of the unjudged columns that have a
/// ratio (each once).
fn goal_cell(text: &str, goal: Goal, heads: &[Head], ratios: &[Option<Ratio>]) -> String {
    let mut verdicts = Vec::new();
    let mut notes: Vec<&str> = Vec::new();
    for (head, ratio) in heads.iter().zip(ratios) {
        let Some(r) = ratio else { continue };
        match &head.unjudged {
            None => {
                verdicts.push(format!("{} {}", head.label, if goal.met(r.median) { "met" } else { "MISSED" }))
            }
            Some(note) if !notes.contains(&note.as_str()) => notes.push(note),
            Some(_) => {}
        }
    }
    let mut parts = Vec::new();
    if !verdicts.is_empty() {
        parts.push(verdicts.join(", "));
    }
    parts.extend(notes.iter().map(|n| n.to_string()));
    if parts.is_empty() { text.to_string() } else { format!("{text}: {}", parts.join("; ")) }
}

/// The sections of one `bench rcu` table: one column per image, `heads[i]`
/// the head of `columns[i]`.
fn rcu_sections(columns: &[Booted], heads: &[Head]) -> Vec<Section> {
    let stat = |c: &Booted, metric: &str, kind: &str, cpus: Option<usize>, key: &str| {
        c.rows
            .iter()
            .find(|r| {
                r.id("metric") == Some(metric)
                    && r.id("kind") == Some(kind)
                    && cpus.is_none_or(|n| r.id("cpus") == Some(n.to_string().as_str()))
            })
            .and_then(|r| r.stat(key))
            .map(|s| s.median)
    };
    let dash = || ["-".to_string(), "-".to_string(), "-".to_string()];
    let cpus = columns
        .iter()
        .filter_map(|c| c.rows.iter().find(|r| r.id("metric") == Some("machine"))?.id("cpus")?.parse().ok())
        .max()
        .unwrap_or(1usize);
    let first = columns.first();
    let option = |key: &str| first.and_then(|c| machine_value(&c.rows, key)).unwrap_or(0);
    let mut sections = Vec::new();

    // Read-side cost.
    let cost = |b: &[BenchLine], kind: &str| {
        Some(
            boot_value(b, "read_cost", kind, None, "cycles")? as f64
                / boot_value(b, "read_cost", kind, None, "ops")? as f64,
        )
    };
    let mut lines = Vec::new();
    for (kind, label) in [
        ("plain", "baseline: AtomicPtr load (Relaxed) + deref"),
        ("rcu", "read_lock + RcuCell::load + deref + drop"),
    ] {
        let ratios: Vec<Option<Ratio>> = columns
            .iter()
            .map(|c| {
                if kind == "rcu" {
                    per_boot(&c.boots, |b| Some(cost(b, "rcu")? / cost(b, "plain")?))
                } else {
                    None
                }
            })
            .collect();
        let cells = columns
            .iter()
            .zip(&ratios)
            .map(|(c, r)| {
                match (stat(c, "read_cost", kind, None, "cycles"), stat(c, "read_cost", kind, None, "ops")) {
                    (Some(cycles), Some(ops)) => {
                        let per_op = cycles as f64 / ops.max(1) as f64;
                        [
                            num(per_op),
                            num(per_op * 1e9 / c.tsc_hz as f64),
                            if kind == "rcu" { ratio_cell(*r) } else { String::new() },
                        ]
                    }
                    _ => dash(),
                }
            })
            .collect();
        let goal = if kind == "rcu" {
            goal_cell("<= 1.2x plain", Goal::AtMost(1.2), heads, &ratios)
        } else {
            String::new()
        };
        lines.push(TableLine { label: label.into(), cells, goal });
    }
    sections.push(Section {
        title: format!("read side on CPU 0, {} reads per sample", option("read_iters")),
        heads: ["cyc/op", "ns/op", "x plain"],
        lines,
    });

    // Read throughput.
    let tput = |b: &[BenchLine], kind: &str, n: usize| {
        Some(
            boot_value(b, "read_tput", kind, Some(n), "ops")? as f64
                / boot_value(b, "read_tput", kind, Some(n), "window")? as f64,
        )
    };
    const READERS: [(&str, &str); 4] = [
        ("rcu", "RCU"),
        ("rwspin", "ukspin::RwSpinLock (read)"),
        ("uklock-rw", "uklock::RwLock (read)"),
        ("plain", "floor: AtomicPtr load + deref"),
    ];
    let mut lines = Vec::new();
    for n in 1..=cpus {
        for (kind, name) in READERS {
            let ratios: Vec<Option<Ratio>> = columns
                .iter()
                .map(|c| per_boot(&c.boots, |b| Some(tput(b, kind, n)? / tput(b, kind, 1)?)))
                .collect();
            let cells = columns
                .iter()
                .zip(&ratios)
                .map(|(c, r)| {
                    match (
                        stat(c, "read_tput", kind, Some(n), "ops"),
                        stat(c, "read_tput", kind, Some(n), "window"),
                    ) {
                        (Some(ops), Some(window)) => {
                            let per_s = ops as f64 * c.tsc_hz as f64 / window.max(1) as f64 / 1e6;
                            [num(per_s), num(per_s / n as f64), ratio_cell(*r)]
                        }
                        _ => dash(),
                    }
                })
                .collect();
            let goal = if kind == "rcu" && n > 1 {
                goal_cell(&format!("linear ({n}x)"), Goal::AtLeast(0.9 * n as f64), heads, &ratios)
            } else {
                String::new()
            };
            let plural = if n == 1 { "" } else { "s" };
            lines.push(TableLine { label: format!("{name}, {n} CPU{plural}"), cells, goal });
        }
        if n == 2 {
            for (kind, name) in [("rwspin", "RwSpinLock"), ("uklock-rw", "uklock::RwLock")] {
                let ratios: Vec<Option<Ratio>> = columns
                    .iter()
                    .map(|c| per_boot(&c.boots, |b| Some(tput(b, "rcu", 2)? / tput(b, kind, 2)?)))
                    .collect();
                let cells = ratios.iter().map(|r| [String::new(), String::new(), ratio_cell(*r)]).collect();
                lines.push(TableLine {
                    label: format!("RCU reads / {name} reads, 2 CPUs"),
                    cells,
                    goal: goal_cell(">= 10x", Goal::AtLeast(10.0), heads, &ratios),
                });
            }
        }
    }
    sections.push(Section {
        title: format!("read throughput: a reader pinned to each CPU, {} ms", option("read_ms")),
        heads: ["Mreads/s", "M/s/CPU", "x 1 CPU"],
        lines,
    });

    // Grace periods.
    let latency = |b: &[BenchLine], metric: &str, kind: &str| {
        boot_value(b, metric, kind, None, "cycles").map(|v| v as f64)
    };
    let mut lines = Vec::new();
    let others = if cpus > 2 { format!("CPUs 1-{}", cpus - 1) } else { "CPU 1".into() };
    let gp_rows: [(&str, &str, String, Option<&str>); 6] = [
        ("call_rtt", "idle", "baseline: run_on(1, || ()) round trip, CPU 1 idle".into(), None),
        ("gp", "sync-idle", "synchronize(), other CPUs idle".into(), Some("idle")),
        ("gp", "exp-idle", "synchronize_expedited(), other CPUs idle".into(), Some("idle")),
        ("call_rtt", "busy", "baseline: run_on round trip, CPU 1 reading".into(), None),
        ("gp", "sync-busy", format!("synchronize(), readers busy on {others}"), Some("busy")),
        ("gp", "exp-busy", format!("synchronize_expedited(), readers on {others}"), Some("busy")),
    ];
    for (metric, kind, label, baseline) in gp_rows {
        if !columns.iter().any(|c| stat(c, metric, kind, None, "cycles").is_some()) {
            continue;
        }
        let ratios: Vec<Option<Ratio>> = columns
            .iter()
            .map(|c| {
                let base = baseline?;
                per_boot(&c.boots, |b| Some(latency(b, metric, kind)? / latency(b, "call_rtt", base)?))
            })
            .collect();
        let cells = columns
            .iter()
            .zip(&ratios)
            .map(|(c, r)| match stat(c, metric, kind, None, "cycles") {
                Some(cycles) => [
                    cycles.to_string(),
                    num(ns(cycles, c.tsc_hz)),
                    if baseline.is_some() { ratio_cell(*r) } else { String::new() },
                ],
                None => dash(),
            })
            .collect();
        let goal = if kind.starts_with("exp") && ratios.iter().any(Option::is_some) {
            goal_cell("<= 3x run_on", Goal::AtMost(3.0), heads, &ratios)
        } else {
            String::new()
        };
        lines.push(TableLine { label, cells, goal });
    }
    sections.push(Section {
        title: format!("grace periods from CPU 0, {} calls", option("gp_samples")),
        heads: ["cycles", "ns", "x run_on"],
        lines,
    });

    // Callbacks.
    let mut lines = Vec::new();
    for (kind, label) in [
        ("box-push", "baseline: Box the closure + Vec::push"),
        ("queue", "call_rcu(closure) from CPU 0"),
        ("barrier", "barrier() right after: until all ran"),
    ] {
        let cells = columns
            .iter()
            .map(|c| {
                match (stat(c, "call_rcu", kind, None, "cycles"), stat(c, "call_rcu", kind, None, "ops")) {
                    (Some(cycles), Some(_)) if kind == "barrier" => {
                        let gps = stat(c, "call_rcu", kind, None, "gps").unwrap_or(0);
                        [
                            cycles.to_string(),
                            num(ns(cycles, c.tsc_hz)),
                            format!("{gps} GP{}", if gps == 1 { "" } else { "s" }),
                        ]
                    }
                    (Some(cycles), Some(ops)) => {
                        let per = cycles as f64 / ops.max(1) as f64;
                        [
                            num(per),
                            num(per * 1e9 / c.tsc_hz as f64),
                            format!("{} M/s", num(c.tsc_hz as f64 / per / 1e6)),
                        ]
                    }
                    _ => dash(),
                }
            })
            .collect();
        lines.push(TableLine { label: label.into(), cells, goal: String::new() });
    }
    sections.push(Section {
        title: format!("call_rcu: {} callbacks, per callback (barrier: total)", option("callbacks")),
        heads: ["cycles", "ns", "rate"],
        lines,
    });
    sections
}

/// Renders sections as one table: the label column, a group of three
/// cells per column (headed by its entry of `labels`), and the goal; every
/// section's title line carries its column heads.
fn render_sections(sections: &[Section], labels: &[String]) -> String {
    use std::fmt::Write as _;
    let all_lines = || sections.iter().flat_map(|s| &s.lines);
    let label_width = all_lines()
        .map(|l| l.label.len() + 2)
        .chain(sections.iter().map(|s| s.title.len()))
        .max()
        .unwrap_or(0);
    let width = |i: usize| {
        all_lines()
            .flat_map(|l| l.cells.iter().map(move |c| c[i].len()))
            .chain(sections.iter().map(|s| s.heads[i].len()))
            .max()
            .unwrap_or(0)
    };
    let mut w = [width(0), width(1), width(2)];
    // A label wider than its cells widens the last cell of every group.
    let widest = labels.iter().map(String::len).max().unwrap_or(0);
    w[2] += widest.saturating_sub(w[0] + w[1] + w[2] + 2);
    let group = w[0] + w[1] + w[2] + 2;
    let mut out = String::new();
    let _ = write!(out, "  {:<label_width$}", "");
    for label in labels {
        let _ = write!(out, " | {label:^group$}");
    }
    out.push_str(" | goal\n");
    for section in sections {
        let _ = write!(out, "  {:<label_width$}", section.title);
        for _ in labels {
            let [h0, h1, h2] = section.heads;
            let _ = write!(out, " | {h0:>w0$} {h1:>w1$} {h2:>w2$}", w0 = w[0], w1 = w[1], w2 = w[2]);
        }
        out.push_str(" |\n");
        for line in &section.lines {
            let _ = write!(out, "    {:<width$}", line.label, width = label_width - 2);
            for [a, b, c] in &line.cells {
                let _ = write!(out, " | {a:>w0$} {b:>w1$} {c:>w2$}", w0 = w[0], w1 = w[1], w2 = w[2]);
            }
            out.push_str(" |");
            if !line.goal.is_empty() {
                let _ = write!(out, " {}", line.goal);
            }
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Native peers (`--platform linuxu`)

/// Our figure of one boot, in TSC cycles per operation.
type Figure = Box<dyn Fn(&[BenchLine]) -> Option<f64>>;

/// A goal of the issue on ours / a native peer.
struct PeerGoal {
    /// In the goal column: `<= 1.2x peer`.
    cell: &'static str,
    /// In the summary under the table.
    summary: &'static str,
    goal: Goal,
}

/// One of our rows beside its native peer.
struct PeerPair {
    anchor: Anchor,
    /// What of ours it is the peer of.
    ours: &'static str,
    /// Our cycles per operation in one boot.
    figure: Figure,
    /// The peer's figure times this: 2 where ours is a round trip and the
    /// peer's a hand-off (round trip / 2).
    times: f64,
    /// The peer's label, when not [`Anchor::describe`] (with `times`).
    peer: Option<&'static str>,
    /// The issue's goal on the pair, judged for the columns whose [`Head`]
    /// is judged.
    goal: Option<PeerGoal>,
}

/// Cycles per operation of line `metric`/`kind` (at `cpus`) in one boot:
/// `cycles` / `ops` (`ops` 1 when absent).
fn per_op(metric: &'static str, kind: &'static str, cpus: Option<usize>) -> Figure {
    Box::new(move |b| {
        let cycles = boot_value(b, metric, kind, cpus, "cycles")? as f64;
        Some(cycles / boot_value(b, metric, kind, cpus, "ops").unwrap_or(1).max(1) as f64)
    })
}

/// The cycles of the line `metric` that has no `kind` (smpbench's round
/// trips) in one boot.
fn kindless(metric: &'static str) -> Figure {
    Box::new(move |b| {
        let line = b.iter().find(|l| {
            l.identity.iter().any(|(k, v)| k == "metric" && v == metric)
                && !l.identity.iter().any(|(k, _)| k == "kind")
        })?;
        line.values.iter().find(|(k, _)| k == "cycles").map(|(_, v)| *v as f64)
    })
}

/// Cycles per operation of a throughput line (`window` / `ops`) in one boot.
fn per_op_of_rate(metric: &'static str, kind: &'static str, cpus: usize) -> Figure {
    Box::new(move |b| {
        let window = boot_value(b, metric, kind, Some(cpus), "window")? as f64;
        Some(window / boot_value(b, metric, kind, Some(cpus), "ops")?.max(1) as f64)
    })
}

/// The anchors of `pairs`, each once, in order.
fn peer_anchors(pairs: &[PeerPair]) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    for p in pairs {
        if !anchors.contains(&p.anchor) {
            anchors.push(p.anchor);
        }
    }
    anchors
}

/// Runs the peers of `pairs` `repeats` times (see
/// [`anchors::run_repeated`]), saying so on stderr.
fn run_peers(bench: &str, pairs: &[PeerPair], repeats: usize, max_cpus: Option<usize>) -> Vec<Repeated> {
    let anchors = peer_anchors(pairs);
    if anchors.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = anchors.iter().map(|a| a.name()).collect();
    eprintln!("bench {bench}: native peers ({}): {repeats} runs", names.join(", "));
    anchors::run_repeated(&anchors, repeats, max_cpus)
}

/// The section of native peers of a table (one column per image,
/// `columns[i]` headed `heads[i]`, `None` when it did not run): per pair
/// the peer's line and ours, with the ratio ours / peer (ns per
/// operation, within each boot, then the median [min-max] over boots) and
/// the goal; and the summary of the goals, a line each.
fn peer_section(
    columns: &[Option<&Booted>],
    heads: &[Head],
    peers: &[Repeated],
    pairs: &[PeerPair],
) -> (Section, Vec<String>) {
    let dash = || ["-".to_string(), "-".to_string(), "-".to_string()];
    let runs = peers
        .iter()
        .filter_map(|p| match p.outcome {
            RepeatedOutcome::Measured { runs, .. } => Some(runs),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    let mut summary = Vec::new();
    let mut previous: Option<(Anchor, f64, Option<&str>)> = None;
    for pair in pairs {
        let outcome = peers.iter().find(|p| p.anchor == pair.anchor).map(|p| &p.outcome);
        let t = pair.times;
        let (peer_cells, peer_ns, unavailable) = match outcome {
            Some(RepeatedOutcome::Measured { ns, cycles, min_ns, max_ns, .. }) => (
                [
                    cycles.map_or_else(|| "-".to_string(), |c| num(c * t)),
                    num(ns * t),
                    format!("[{}-{}]", num(min_ns * t), num(max_ns * t)),
                ],
                Some(ns * t),
                None,
            ),
            Some(RepeatedOutcome::Missing(reason)) => (dash(), None, Some(format!("MISSING: {reason}"))),
            Some(RepeatedOutcome::Failed(reason)) => (dash(), None, Some(format!("FAILED: {reason}"))),
            None => (dash(), None, Some("MISSING: not run".to_string())),
        };
        // The peer's line, unless the pair before showed the same.
        if previous != Some((pair.anchor, t, pair.peer)) {
            lines.push(TableLine {
                label: format!("peer: {}", pair.peer.unwrap_or(pair.anchor.describe())),
                cells: columns.iter().map(|_| peer_cells.clone()).collect(),
                goal: unavailable.clone().map_or_else(
                    || format!("[{}]", pair.anchor.name()),
                    |u| format!("[{}] {u}", pair.anchor.name()),
                ),
            });
        }
        previous = Some((pair.anchor, t, pair.peer));
        // Ours: cycles and ns per operation, the ratio to the peer per boot.
        let ratios: Vec<Option<Ratio>> = columns
            .iter()
            .map(|c| {
                let (b, peer) = ((*c)?, peer_ns?);
                per_boot(&b.boots, |boot| Some(ns_f((pair.figure)(boot)?, b.tsc_hz) / peer))
            })
            .collect();
        let cells = columns
            .iter()
            .zip(&ratios)
            .map(|(c, r)| match c.and_then(|b| Some((per_boot(&b.boots, |boot| (pair.figure)(boot))?, b))) {
                Some((cycles, b)) => [num(cycles.median), num(ns_f(cycles.median, b.tsc_hz)), ratio_cell(*r)],
                None => dash(),
            })
            .collect();
        let goal = match (&pair.goal, &unavailable) {
            (None, _) => String::new(),
            (Some(g), None) => goal_cell(g.cell, g.goal, heads, &ratios),
            (Some(g), Some(_)) => format!("{}: not judged, no peer", g.cell),
        };
        lines.push(TableLine { label: format!("  ours: {}", pair.ours), cells, goal });
        if let Some(g) = &pair.goal {
            let verdicts: Vec<String> = heads
                .iter()
                .zip(&ratios)
                .filter(|(h, _)| h.unjudged.is_none())
                .map(|(h, r)| match (r, &unavailable) {
                    (_, Some(u)) => format!("{} not judged (peer {u})", h.label),
                    (Some(r), None) => format!(
                        "{} {} ({}x)",
                        h.label,
                        if g.goal.met(r.median) { "met" } else { "MISSED" },
                        num(r.median)
                    ),
                    (None, None) => format!("{} not measured (no such row in this run)", h.label),
                })
                .collect();
            summary.push(format!("{} [{}]: {}", g.summary, pair.anchor.name(), verdicts.join(", ")));
        }
    }
    let title = format!("native peers on this host (bench/anchors, C; median of {runs} runs)");
    (Section { title, heads: ["cyc/op", "ns/op", "x peer"], lines }, summary)
}

/// Whether a peer failed (built or ran wrongly, not just missing here):
/// the command then exits with failure, after its report.
fn peer_failed(peers: &[Repeated]) -> bool {
    peers.iter().any(|p| matches!(p.outcome, RepeatedOutcome::Failed(_)))
}

/// The lines under a linuxu table: how to read it, and the goals.
fn linuxu_notes(repeats: usize, summary: &[String]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "  linuxu: the image ran as a Linux process, each CPU a host thread; its cycles are the host's TSC,\n  \
         converted to ns with the image's calibrated tsc_hz. The native peers ran in this command, before\n  \
         the images, as C programs on the host kernel; x peer = our ns per op / the peer's, within each\n  \
         boot, then the median [min-max] over boots (below 1: ours is faster).\n",
    );
    if summary.is_empty() {
        return out;
    }
    let _ = writeln!(out, "  goals (ours / native peer, median over {repeats} boots; not asserted):");
    for line in summary {
        let _ = writeln!(out, "    {line}");
    }
    out
}

// ---------------------------------------------------------------------------
// bench futex

/// The `uklock.mutex` kinds `bench futex` builds an image for, in column
/// order.
const MUTEX_KINDS: [&str; 2] = ["waitqueue", "futex"];

/// Host Linux figures for this project's build machines, from issue 11:
/// printed beside the table as anchors, never measured by the run.
const FUTEX_ANCHORS: &str =
    "pthread_mutex lock+unlock 7.07 ns; futex ping-pong 4.82 us on one vCPU, 48.7 us across vCPUs";

/// Why a `bench futex` column has no numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Missing {
    /// kconfig refused the configuration (e.g. uklock declares no `mutex`
    /// option, or not this choice): its one-line error.
    Config(String),
    /// The image did not build, a boot failed, or it reported another
    /// mutex kind than it was built for.
    Failed(String),
}

/// One image of `bench futex`: a column of its table.
struct FutexColumn {
    /// The `uklock.mutex` value it stands for.
    kind: &'static str,
    /// Its boots, or why there are none.
    result: std::result::Result<Booted, Missing>,
    /// How it was built, when not with `--set uklock.mutex=KIND`.
    note: Option<String>,
}

impl FutexColumn {
    fn booted(&self) -> Option<&Booted> {
        self.result.as_ref().ok()
    }

    /// The column head: the kind, `*` when built another way ([`Self::note`]),
    /// `(missing)` without numbers.
    fn label(&self) -> String {
        match (&self.result, &self.note) {
            (Err(_), _) => format!("{} (missing)", self.kind),
            (Ok(_), Some(_)) => format!("{}*", self.kind),
            (Ok(_), None) => self.kind.to_string(),
        }
    }
}

/// The native peers of `bench futex --platform linuxu`.
fn futex_peer_pairs() -> Vec<PeerPair> {
    vec![
        PeerPair {
            anchor: Anchor::PthreadMutexPair,
            ours: "uklock::Mutex lock + unlock (column's uklock.mutex)",
            figure: per_op("pair", "uklock-mutex", None),
            times: 1.0,
            peer: None,
            goal: Some(PeerGoal {
                cell: "futex mutex <= 0.8x peer",
                summary: "uncontended futex mutex (uklock::Mutex, uklock.mutex=futex) <= 0.8x pthread_mutex",
                goal: Goal::AtMost(0.8),
            }),
        },
        PeerPair {
            anchor: Anchor::FutexPingPongSameCpu,
            ours: "futex ping-pong on CPU 0, round trip / 2",
            figure: per_op("wake_same", "futex-pingpong", None),
            times: 1.0,
            peer: None,
            goal: None,
        },
        PeerPair {
            anchor: Anchor::FutexPingPongCrossCpu,
            ours: "futex ping-pong CPU 0 <-> CPU 1, round trip / 2",
            figure: per_op("wake_cross", "futex-pingpong", None),
            times: 1.0,
            peer: None,
            goal: None,
        },
    ]
}

fn futex_bench(
    repeats: usize,
    target: &Target,
    smp: Option<u32>,
    rounds: u64,
    iters: u64,
) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let smp = smp.unwrap_or_else(|| if target.is_linuxu() { linuxu_cpus(1) } else { 4 });
    let pairs = if target.is_linuxu() { futex_peer_pairs() } else { Vec::new() };
    let peers = run_peers("futex", &pairs, repeats, None);
    let mut base = target.sets();
    base.extend([format!("platform.cpus={smp}"), format!("platform.cmdline=rounds={rounds} iters={iters}")]);
    let tag = target.tag();
    let columns: Vec<FutexColumn> = MUTEX_KINDS
        .into_iter()
        .map(|kind| futex_column(&ws, &base, kind, repeats, &format!("futexbench-{kind}-{tag}-{smp}")))
        .collect();
    println!();
    let with_peers = target.is_linuxu().then_some((peers.as_slice(), pairs.as_slice()));
    print!("{}", futex_report(&columns, repeats, host_cores(), &load_average(), with_peers));
    let failed = columns.iter().any(|c| matches!(c.result, Err(Missing::Failed(_))));
    let none = columns.iter().all(|c| c.booted().is_none());
    Ok(if failed || none || peer_failed(&peers) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Builds and boots the image of `uklock.mutex=kind`; a kind kconfig
/// refuses leaves the column missing with kconfig's error.
fn futex_column(
    ws: &kconfig::Workspace,
    base: &[String],
    kind: &'static str,
    repeats: usize,
    name: &str,
) -> FutexColumn {
    let mut sets = base.to_vec();
    sets.push(format!("uklock.mutex={kind}"));
    let (sets, reports, note) = match ws.resolve("futexbench", None, &sets) {
        Ok(_) => (sets, kind, None),
        Err(e) => return FutexColumn { kind, result: Err(Missing::Config(e.to_string())), note: None },
    };
    eprintln!("bench futex: {name}: release build, then {repeats} boots");
    let result = build_and_boot(ws, "futexbench", name, &sets, repeats)
        .and_then(|b| {
            check_machine_id(&b, "futexbench", "uklock.mutex", "mutex", reports)?;
            Ok(b)
        })
        .map_err(|e| Missing::Failed(format!("{e:#}")));
    FutexColumn { kind, result, note }
}

/// What `bench futex` prints: the header, the table, what is missing and
/// why, and the host anchors: on kvm issue 11's figures, on linuxu the
/// native peers measured in this run (`peers`) in the table, and the goals.
fn futex_report(
    columns: &[FutexColumn],
    repeats: usize,
    host_cores: usize,
    load: &str,
    peers: Option<(&[Repeated], &[PeerPair])>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let booted: Vec<Option<&Booted>> = columns.iter().map(FutexColumn::booted).collect();
    let machine = |b: &Booted, key: &str| {
        b.rows.iter().find(|r| r.id("metric") == Some("machine")).and_then(|r| r.id(key)).map(String::from)
    };
    let Some(first) = booted.iter().flatten().next() else {
        let _ = writeln!(out, "bench futex: no image ran");
        for c in columns {
            let _ = writeln!(out, "  {}: {}", c.kind, futex_missing_text(c));
        }
        return out;
    };
    let cpus: u32 = machine(first, "cpus").and_then(|c| c.parse().ok()).unwrap_or(1);
    let _ = writeln!(
        out,
        "bench futex: {cpus} CPU(s), {}, {repeats} boots per image, release; uksched.policy {}, \
         ukspin.kind {}; TSC {:.0} MHz; host: {host_cores} cores, load average {load}",
        first.where_ran(),
        machine(first, "policy").unwrap_or_else(|| "?".into()),
        machine(first, "spin").unwrap_or_else(|| "?".into()),
        first.tsc_hz as f64 / 1e6
    );
    if first.is_tcg() {
        out.push_str(
            "  Under TCG the times mostly measure QEMU's translator, not the hardware: each guest\n  \
             instruction is emulated by several host ones, atomics and IPIs go through QEMU's\n  \
             helpers. Read the ratios (x) to the baselines measured in the same boot.\n",
        );
    }
    if cpus > 1 && cpus as usize >= host_cores {
        let (what, one) = if peers.is_some() { ("CPUs (host threads)", "CPU") } else { ("vCPUs", "vCPU") };
        let _ = writeln!(
            out,
            "  {cpus} {what} on {host_cores} host cores: a {one} that waits for another may wait for a host\n  \
             time slice (a lock holder descheduled by the host stalls every spinning waiter), and\n  \
             throughput cannot scale past the host's free cores."
        );
    }
    if cpus == 1 {
        out.push_str(
            "  1 CPU: ukspin's locks compile to a held flag and the preemption counter, no atomic\n  \
             instruction (ukspin's SINGLE_CPU): the ticket baseline is no ticket lock here.\n",
        );
    }
    let impls: Vec<String> = columns
        .iter()
        .filter_map(|c| Some(format!("{} {}", c.label(), machine(c.booted()?, "mutex_impl")?)))
        .collect();
    let _ = writeln!(
        out,
        "  Columns: uklock.mutex, one image each (uklock::RawMutex is: {}).",
        if impls.is_empty() { "?".to_string() } else { impls.join(", ") }
    );
    out.push_str(
        "  Cells: medians over boots of each boot's figure; ratios are taken within each boot, then\n  \
         the median [min-max] over boots. x ticket: time per acquisition / ukspin::TicketLock's\n  \
         (below 1 is faster); x waitq: latency / a bare uksched::WaitQueue's.\n",
    );
    let heads: Vec<Head> = columns.iter().map(|c| Head { label: c.label(), unjudged: None }).collect();
    let labels: Vec<String> = heads.iter().map(|h| h.label.clone()).collect();
    let kinds: Vec<&str> = columns.iter().map(|c| c.kind).collect();
    let mut sections = futex_sections(&booted, &heads, &kinds);
    let mut summary = Vec::new();
    if let Some((peers, pairs)) = peers {
        let (section, goals) = peer_section(&booted, &futex_goal_heads(&heads, &kinds), peers, pairs);
        sections.push(section);
        summary = goals;
    }
    out.push_str(&render_sections(&sections, &labels));
    for c in columns {
        if let Some(note) = &c.note {
            let _ = writeln!(out, "  {note}");
        }
    }
    for (c, b) in columns.iter().zip(&booted) {
        let Some(b) = b else { continue };
        for row in b.rows.iter().filter(|r| r.id("metric") == Some("contended")) {
            let hit = b
                .boots
                .iter()
                .filter(|boot| {
                    boot_value(
                        boot,
                        "contended",
                        row.id("kind").unwrap_or_default(),
                        row.id("cpus").and_then(|n| n.parse().ok()),
                        "capped",
                    )
                    .is_some_and(|n| n > 0)
                })
                .count();
            if hit > 0 {
                let _ = writeln!(
                    out,
                    "  {}: {} at {} CPUs stopped at cap_ms ({} ms) in {hit} of {} boots (rate of the acquisitions made)",
                    c.label(),
                    futex_lock_name(row.id("kind").unwrap_or_default(), b),
                    row.id("cpus").unwrap_or_default(),
                    machine_value(&b.rows, "cap_ms").unwrap_or(0),
                    b.boots.len()
                );
            }
        }
    }
    for c in columns.iter().filter(|c| c.result.is_err()) {
        let _ = writeln!(out, "  {}: {}", c.label(), futex_missing_text(c));
    }
    match peers {
        None => {
            let _ = writeln!(
                out,
                "  Host Linux on this machine (issue 11; anchors, NOT measured by this run): {FUTEX_ANCHORS}."
            );
        }
        Some(_) => out.push_str(&linuxu_notes(repeats, &summary)),
    }
    out
}

/// The heads of the futex mutex goal: it judges `uklock::Mutex` in the
/// `uklock.mutex=futex` image only.
fn futex_goal_heads(heads: &[Head], kinds: &[&str]) -> Vec<Head> {
    heads
        .iter()
        .zip(kinds)
        .map(|(h, k)| Head {
            label: h.label.clone(),
            unjudged: (*k != "futex").then(|| "the wait-queue mutex is not judged".to_string()),
        })
        .collect()
}

/// Why column `c` has no numbers, for the report.
fn futex_missing_text(c: &FutexColumn) -> String {
    match &c.result {
        Ok(_) => "ran".into(),
        Err(Missing::Config(e)) => format!("unavailable, kconfig refused uklock.mutex={}: {e}", c.kind),
        Err(Missing::Failed(e)) => format!("FAILED: {e}"),
    }
}

/// The name of a lock of `futexbench` in the table.
fn futex_lock_name(kind: &str, b: &Booted) -> String {
    match kind {
        "ticket" => "ukspin::TicketLock".into(),
        "spinlock" => {
            let spin = b
                .rows
                .iter()
                .find(|r| r.id("metric") == Some("machine"))
                .and_then(|r| r.id("spin"))
                .unwrap_or("?");
            format!("ukspin::SpinLock (ukspin.kind={spin})")
        }
        "uklock-mutex" => "uklock::Mutex (column's uklock.mutex)".into(),
        "futex-word" => "raw posix-futex mutex".into(),
        other => other.into(),
    }
}

/// The sections of the `bench futex` table: one column per image
/// (`columns[i]`, `None` when missing), headed `heads[i]`, built for
/// `uklock.mutex=kinds[i]`.
fn futex_sections(columns: &[Option<&Booted>], heads: &[Head], kinds: &[&str]) -> Vec<Section> {
    let dash = || ["-".to_string(), "-".to_string(), "-".to_string()];
    let has = |metric: &str, kind: &str, cpus: Option<usize>| {
        columns
            .iter()
            .flatten()
            .any(|b| b.boots.iter().any(|boot| boot_value(boot, metric, kind, cpus, "cycles").is_some()))
    };
    let first = columns.iter().flatten().next();
    let option = |key: &str| first.and_then(|b| machine_value(&b.rows, key)).unwrap_or(0);
    let cpus = columns
        .iter()
        .flatten()
        .filter_map(|b| b.rows.iter().find(|r| r.id("metric") == Some("machine"))?.id("cpus")?.parse().ok())
        .max()
        .unwrap_or(1usize);
    // Cycles per operation in one boot.
    let cost = |boot: &[BenchLine], metric: &str, kind: &str, n: Option<usize>| {
        let cycles = boot_value(boot, metric, kind, n, "cycles")? as f64;
        let ops = boot_value(boot, metric, kind, n, "ops").unwrap_or(1).max(1) as f64;
        Some(cycles / ops)
    };
    let lock_name = |kind: &str| first.map_or_else(|| kind.to_string(), |b| futex_lock_name(kind, b));
    // One line: per column the cost per operation (median over boots),
    // `per_op` renders [value, ns] from (cycles, tsc_hz); the ratio to
    // `baseline` within each boot.
    let line = |label: String,
                metric: &str,
                kind: &str,
                n: Option<usize>,
                baseline: &str,
                per_op: &dyn Fn(f64, u64) -> [String; 2],
                goal: Option<(&str, &[Head])>| {
        let ratios: Vec<Option<Ratio>> = columns
            .iter()
            .map(|b| {
                per_boot(&(*b)?.boots, |boot| {
                    Some(cost(boot, metric, kind, n)? / cost(boot, metric, baseline, n)?)
                })
            })
            .collect();
        let cells = columns
            .iter()
            .zip(&ratios)
            .map(|(b, r)| {
                match b.and_then(|b| Some((per_boot(&b.boots, |boot| cost(boot, metric, kind, n))?, b))) {
                    Some((c, b)) => {
                        let [v, ns] = per_op(c.median, b.tsc_hz);
                        [v, ns, if kind == baseline { "1.00x".into() } else { ratio_cell(*r) }]
                    }
                    None => dash(),
                }
            })
            .collect();
        let goal = match goal {
            Some((text, heads)) => goal_cell(text, Goal::AtMost(1.0), heads, &ratios),
            None => String::new(),
        };
        TableLine { label, cells, goal }
    };
    let cycles_ns = |c: f64, hz: u64| [num(c), num(c * 1e9 / hz as f64)];
    let mut kinds_measured = vec!["ticket"];
    if has("pair", "spinlock", None) {
        kinds_measured.push("spinlock");
    }
    kinds_measured.extend(["uklock-mutex", "futex-word"]);
    // The futex mutex goal judges uklock::Mutex in the futex image only,
    // and the raw futex mutex everywhere.
    let mutex_heads = futex_goal_heads(heads, kinds);
    let mut sections = Vec::new();

    // Uncontended pairs.
    let mut lines = Vec::new();
    for kind in &kinds_measured {
        let label = match *kind {
            "ticket" => "baseline: ukspin::TicketLock".to_string(),
            "futex-word" => "raw posix-futex mutex (cmpxchg + xchg)".to_string(),
            k => lock_name(k),
        };
        let goal = match *kind {
            "uklock-mutex" => Some(("futex mutex <= 1x ticket", mutex_heads.as_slice())),
            "futex-word" => Some(("<= 1x ticket", heads)),
            _ => None,
        };
        lines.push(line(label, "pair", kind, None, "ticket", &cycles_ns, goal));
    }
    sections.push(Section {
        title: format!("uncontended lock + unlock, CPU 0, {} per sample", option("pairs")),
        heads: ["cyc/pair", "ns/pair", "x ticket"],
        lines,
    });

    // Wake-to-run latency.
    for (metric, place) in [("wake_same", "both on CPU 0"), ("wake_cross", "CPU 0 -> sleeper on CPU 1")] {
        let rows = [
            ("waitq-pingpong", "baseline: WaitQueue ping-pong, round trip / 2", "waitq-pingpong"),
            ("futex-pingpong", "futex ping-pong, round trip / 2", "waitq-pingpong"),
            ("waitq-oneway", "baseline: WaitQueue wake_one -> waiter runs", "waitq-oneway"),
            ("futex-oneway", "futex_wake -> futex_wait returns there", "waitq-oneway"),
        ];
        let lines: Vec<TableLine> = rows
            .into_iter()
            .filter(|(kind, ..)| has(metric, kind, None))
            .map(|(kind, label, baseline)| line(label.into(), metric, kind, None, baseline, &cycles_ns, None))
            .collect();
        if !lines.is_empty() {
            sections.push(Section {
                title: format!("wake-to-run, {place}, {} wake-ups", option("rounds")),
                heads: ["cycles", "ns", "x waitq"],
                lines,
            });
        }
    }

    // Contended throughput.
    let rate = |c: f64, hz: u64| [num(hz as f64 / c / 1e6), num(c * 1e9 / hz as f64)];
    let mut lines = Vec::new();
    for n in 1..=cpus {
        for kind in &kinds_measured {
            if !has("contended", kind, Some(n)) {
                continue;
            }
            let plural = if n == 1 { "" } else { "s" };
            let label = format!("{}, {n} CPU{plural}", lock_name(kind));
            lines.push(line(label, "contended", kind, Some(n), "ticket", &rate, None));
        }
    }
    sections.push(Section {
        title: format!(
            "contended, a thread on each of n CPUs, {} x lock + increment + unlock",
            option("iters")
        ),
        heads: ["Macq/s", "ns/acq", "x ticket"],
        lines,
    });
    sections
}

// ---------------------------------------------------------------------------
// bench icount

/// An image of `bench icount`: an app built with `platform.icount` and
/// booted with `icount=1`, which makes it print only its `metric=icount`
/// lines (see each app's crate documentation).
struct IcountImage {
    /// The table section's title.
    title: &'static str,
    app: &'static str,
    /// The image name's middle part.
    name: &'static str,
    /// Its own `--set` options.
    sets: &'static [&'static str],
    /// Whether it links uksched: one image per policy; otherwise one image
    /// for every column.
    scheduled: bool,
    /// `(option, machine-line key, value)` the image must report.
    reports: Option<(&'static str, &'static str, &'static str)>,
    /// Its rows, `(kind, label)`, in table order; a kind the image did not
    /// print is left out.
    rows: &'static [(&'static str, &'static str)],
}

/// The empty loop's row: the harness alone, what `net` subtracts.
const ICOUNT_EMPTY: (&str, &str) = ("empty", "empty loop (the harness alone)");

/// The images of `bench icount`, in table order.
const ICOUNT_IMAGES: [IcountImage; 6] = [
    IcountImage {
        title: "rcubench, ukrcu.flavor=qsbr",
        app: "rcubench",
        name: "qsbr",
        sets: &["ukrcu.flavor=qsbr"],
        scheduled: true,
        reports: Some(("ukrcu.flavor", "flavor", "qsbr")),
        rows: &[
            ICOUNT_EMPTY,
            ("plain-read", "baseline: AtomicPtr load (Relaxed) + deref"),
            ("rcu-read", "read_lock + RcuCell::load + deref + unlock"),
        ],
    },
    IcountImage {
        title: "rcubench, ukrcu.flavor=refcount",
        app: "rcubench",
        name: "refcount",
        sets: &["ukrcu.flavor=refcount"],
        scheduled: true,
        reports: Some(("ukrcu.flavor", "flavor", "refcount")),
        rows: &[ICOUNT_EMPTY, ("rcu-read", "read_lock + RcuCell::load + deref + unlock")],
    },
    IcountImage {
        title: "schedbench",
        app: "schedbench",
        name: "sched",
        sets: &[],
        scheduled: true,
        reports: None,
        rows: &[
            ICOUNT_EMPTY,
            ("yield-alone", "yield_now, nothing else runnable (no switch)"),
            ("switch", "context switch: 2 threads on CPU 0 yielding"),
        ],
    },
    IcountImage {
        title: "futexbench, uklock.mutex=futex",
        app: "futexbench",
        name: "futex",
        sets: &["uklock.mutex=futex"],
        scheduled: true,
        reports: Some(("uklock.mutex", "mutex", "futex")),
        rows: &[
            ICOUNT_EMPTY,
            ("ticket", "baseline: ukspin::TicketLock lock + unlock"),
            ("spinlock", "ukspin::SpinLock (ukspin.kind) lock + unlock"),
            ("futex-word", "raw posix-futex mutex lock + unlock"),
            ("uklock-mutex", "uklock::Mutex lock + unlock"),
        ],
    },
    IcountImage {
        title: "futexbench, uklock.mutex=waitqueue",
        app: "futexbench",
        name: "waitqueue",
        sets: &["uklock.mutex=waitqueue"],
        scheduled: true,
        reports: Some(("uklock.mutex", "mutex", "waitqueue")),
        rows: &[ICOUNT_EMPTY, ("uklock-mutex", "uklock::Mutex lock + unlock")],
    },
    IcountImage {
        title: "smpbench (no uksched: one image, shown in each column)",
        app: "smpbench",
        name: "smp",
        sets: &[],
        scheduled: false,
        reports: None,
        rows: &[ICOUNT_EMPTY, ("run-on", "uksmp::run_on(1, || ()) round trip from CPU 0")],
    },
];

/// Kinds that involve more than one vCPU: QEMU runs the vCPUs round-robin
/// in one thread, and whether that interleaving repeats exactly is
/// measured, not assumed; their spread over boots is reported, never
/// failed.
const ICOUNT_MULTI_CPU: &[&str] = &["run-on"];

/// CPUs of every `bench icount` image: the round trip needs two, and with
/// two the spinlocks are the SMP ones (one CPU compiles them down).
const ICOUNT_CPUS: u32 = 2;

/// The `metric=icount` lines of a serial log: what must be the same in
/// every boot of an image under `-icount` (the test suite compares them).
pub fn icount_lines(serial: &str) -> Vec<String> {
    serial.lines().filter(|l| l.starts_with("bench: metric=icount ")).map(str::to_string).collect()
}

/// One kind's count in one image, over its boots.
#[derive(Debug, Clone, PartialEq)]
struct IcountCell {
    /// Per boot: the median sample's `(cycles, ops)` (cycles are
    /// instructions here).
    per_boot: Vec<(u64, u64)>,
    /// Per boot: instructions per operation.
    per_op: Vec<f64>,
    /// Per boot: the same minus the empty loop's per operation.
    net: Vec<f64>,
    /// Boots in which some sample made another number of operations
    /// (`odd=`: the context switch's count off by a preemption).
    odd_boots: usize,
    /// Boots of the image (a boot without this kind's line makes the cell
    /// vary).
    boots: usize,
}

impl IcountCell {
    /// The same in every boot.
    fn same(&self) -> bool {
        self.per_boot.len() == self.boots && self.per_boot.windows(2).all(|w| w[0] == w[1])
    }
}

/// The median (the lower middle for even counts), smallest and largest of
/// a non-empty sample.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2], v[0], v[v.len() - 1])
}

/// `kind`'s cell in an image's boots, `None` when no boot printed it.
fn icount_cell(boots: &[Vec<BenchLine>], kind: &str) -> Option<IcountCell> {
    let value = |b: &[BenchLine], k: &str, key: &str| boot_value(b, "icount", k, None, key);
    let mut cell = IcountCell {
        per_boot: Vec::new(),
        per_op: Vec::new(),
        net: Vec::new(),
        odd_boots: 0,
        boots: boots.len(),
    };
    for b in boots {
        let (Some(cycles), Some(ops)) = (value(b, kind, "cycles"), value(b, kind, "ops")) else { continue };
        let per_op = cycles as f64 / ops.max(1) as f64;
        cell.per_boot.push((cycles, ops));
        cell.per_op.push(per_op);
        if let (Some(e), Some(n)) = (value(b, "empty", "cycles"), value(b, "empty", "ops")) {
            cell.net.push(per_op - e as f64 / n.max(1) as f64);
        }
        cell.odd_boots += usize::from(value(b, kind, "odd").is_some_and(|n| n > 0));
    }
    (!cell.per_boot.is_empty()).then_some(cell)
}

/// One section of the `bench icount` table: an image's rows, a cell per
/// column (policy).
struct IcountSection {
    title: String,
    /// One image shown in every column (it links no scheduler): its
    /// spread and notes are given once.
    shared: bool,
    /// `(kind, label, cells per column)`.
    rows: Vec<(&'static str, &'static str, Vec<Option<IcountCell>>)>,
}

/// The `bench:` lines of each boot of one image.
type Boots = Vec<Vec<BenchLine>>;

/// Builds the sections from each image's boots per column.
fn icount_sections(images: &[(&IcountImage, Vec<Boots>)]) -> Vec<IcountSection> {
    images
        .iter()
        .map(|(image, columns)| {
            let rows = image
                .rows
                .iter()
                .map(|&(kind, label)| {
                    let cells: Vec<Option<IcountCell>> =
                        columns.iter().map(|boots| icount_cell(boots, kind)).collect();
                    (kind, label, cells)
                })
                .filter(|(_, _, cells)| cells.iter().any(Option::is_some))
                .collect();
            IcountSection { title: image.title.to_string(), shared: !image.scheduled, rows }
        })
        .collect()
}

/// The table of `bench icount` and the lines below it; the second value
/// lists the counts of one CPU that were not the same in every boot (the
/// command fails on them).
fn icount_table(sections: &[IcountSection], policies: &[&str]) -> (String, Vec<String>) {
    use std::fmt::Write as _;
    let label_width = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.1.len() + 4).chain([s.title.len() + 2]))
        .max()
        .unwrap_or(0);
    // Per column: instructions per operation and net, each median over boots.
    let cell_text = |kind: &str, c: &Option<IcountCell>| match c {
        None => ["-".to_string(), "-".to_string()],
        Some(c) => {
            let (per_op, _, _) = spread(&c.per_op);
            let mark = if c.same() { "" } else { "~" };
            let net = if c.net.is_empty() || kind == ICOUNT_EMPTY.0 {
                "-".to_string()
            } else {
                format!("{mark}{:.2}", spread(&c.net).0)
            };
            [format!("{mark}{per_op:.2}"), net]
        }
    };
    let heads = ["instr/op", "net"];
    let w = |i: usize| {
        sections
            .iter()
            .flat_map(|s| s.rows.iter().flat_map(|r| r.2.iter().map(|c| cell_text(r.0, c)[i].len())))
            .chain([heads[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (w(0), w(1));
    let group = (w0 + w1 + 1).max(policies.iter().map(|p| p.len()).max().unwrap_or(0));
    let w0 = group - w1 - 1;
    let mut out = String::new();
    let mut varied = Vec::new();
    let mut notes = Vec::new();
    let _ = write!(out, "  {:<label_width$} {:>6}", "", "");
    for p in policies {
        let _ = write!(out, " | {p:^group$}");
    }
    let _ = writeln!(out, " |");
    let _ = write!(out, "  {:<label_width$} {:>6}", "path", "ops");
    for _ in policies {
        let _ = write!(out, " | {:>w0$} {:>w1$}", heads[0], heads[1]);
    }
    let _ = writeln!(out, " | across boots");
    for section in sections {
        let _ = writeln!(out, "  {}", section.title);
        for (kind, label, cells) in &section.rows {
            let ops = cells.iter().flatten().find_map(|c| c.per_boot.first().map(|p| p.1)).unwrap_or(0);
            let _ = write!(out, "    {:<width$} {ops:>6}", label, width = label_width - 2);
            for c in cells {
                let [a, b] = cell_text(kind, c);
                let _ = write!(out, " | {a:>w0$} {b:>w1$}");
            }
            let mut present: Vec<(&str, &IcountCell)> =
                policies.iter().zip(cells).filter_map(|(p, c)| Some((*p, c.as_ref()?))).collect();
            if section.shared {
                present = present.into_iter().take(1).map(|(_, c)| ("one image:", c)).collect();
            }
            let boots = present.iter().map(|(_, c)| c.boots).max().unwrap_or(0);
            let unequal: Vec<String> = present
                .iter()
                .filter(|(_, c)| !c.same())
                .map(|(p, c)| {
                    let (m, lo, hi) = spread(&c.per_op);
                    let per_boot: Vec<String> = c.per_op.iter().map(|v| format!("{v:.2}")).collect();
                    format!("{p} {m:.2} [{lo:.2}..{hi:.2}] (per boot: {})", per_boot.join(", "))
                })
                .collect();
            if unequal.is_empty() {
                let _ = writeln!(out, " | same in {boots} boots");
            } else {
                let _ = writeln!(out, " | VARIES: {}", unequal.join("; "));
                let what = format!("{}: {label}: {}", section.title, unequal.join("; "));
                if ICOUNT_MULTI_CPU.contains(kind) {
                    notes.push(format!(
                        "{what}: two vCPUs take part and QEMU interleaves them round-robin; reported as the median [min..max] over boots, not failed"
                    ));
                } else {
                    varied.push(what);
                }
            }
            if ICOUNT_MULTI_CPU.contains(kind) && unequal.is_empty() {
                notes.push(format!(
                    "{}: {label}: two vCPUs take part (QEMU runs them round-robin in one thread); the count was the same in all {boots} boots",
                    section.title
                ));
            }
            for (p, c) in &present {
                if c.odd_boots > 0 {
                    notes.push(format!(
                        "{}: {label} [{p}]: in {} of {} boots some sample made another number of operations than {ops} (a preemption in the window); the median sample is shown",
                        section.title, c.odd_boots, c.boots
                    ));
                }
            }
        }
    }
    for note in notes {
        let _ = writeln!(out, "  note: {note}");
    }
    (out, varied)
}

fn icount_bench(repeats: usize, policy: Option<&str>) -> Result<ExitCode> {
    if repeats < 2 {
        bail!("--repeats must be at least 2: bench icount compares the counts between boots");
    }
    let policies: Vec<&str> = match policy {
        Some(p) => vec![POLICIES.into_iter().find(|q| *q == p).with_context(|| format!("--policy {p}"))?],
        None => POLICIES.to_vec(),
    };
    let ws = crate::load()?;
    let mut images = Vec::new();
    for image in &ICOUNT_IMAGES {
        let mut columns: Vec<Boots> = Vec::new();
        let per_image: &[&str] = if image.scheduled { &policies } else { &policies[..1] };
        for &p in per_image {
            let mut sets = vec![
                "platform.accel=tcg".to_string(),
                "platform.icount=true".into(),
                format!("platform.cpus={ICOUNT_CPUS}"),
                "platform.cmdline=icount=1".into(),
            ];
            sets.extend(image.sets.iter().map(|s| s.to_string()));
            let name = if image.scheduled {
                sets.push(format!("uksched.policy={p}"));
                format!("{}-icount-{}-{p}", image.app, image.name)
            } else {
                format!("{}-icount-{}", image.app, image.name)
            };
            eprintln!("bench icount: {name}: release build, then {repeats} boots");
            let booted = build_and_boot(&ws, image.app, &name, &sets, repeats)?;
            if image.scheduled {
                check_policy(&booted, image.app, p)?;
            }
            if let Some((option, key, value)) = image.reports {
                check_machine_id(&booted, image.app, option, key, value)?;
            }
            if !booted.rows.iter().any(|r| r.id("metric") == Some("icount")) {
                bail!("{name} printed no metric=icount line (does {} know icount=1?)", image.app);
            }
            columns.push(booted.boots);
        }
        if !image.scheduled {
            let only = columns[0].clone();
            columns.resize(policies.len(), only);
        }
        images.push((image, columns));
    }
    let (table, varied) = icount_table(&icount_sections(&images), &policies);
    println!();
    println!(
        "bench icount: instructions per operation: TCG with -icount shift=0,align=off,sleep=off, where a guest TSC"
    );
    println!(
        "  delta counts the instructions every vCPU executed; release, {ICOUNT_CPUS} CPUs, the measured loop on CPU 0"
    );
    println!("  (the other CPU idle unless the path uses it), {repeats} boots per image and policy.");
    println!(
        "  Each boot: the median of 11 samples, after a warm-up, of one loop of `ops` operations: TSC delta / ops"
    );
    println!(
        "  (the TSC reads around the loop add their few instructions / ops). net: minus the empty loop's instr/op"
    );
    println!("  in the same boot, which is the harness's own cost per operation.");
    println!("  A count shown with ~ varied between boots (median over boots); see across boots.");
    print!("{table}");
    if varied.is_empty() {
        println!("every count of one CPU was the same in all {repeats} boots of its image");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "\nFAILED: counts of one CPU differed between boots; under -icount they cannot unless something in the"
        );
        println!(
            "measured window depends on the host (wall-clock time, a poll loop, a timer set from host time):"
        );
        for v in &varied {
            println!("  {v}");
        }
        Ok(ExitCode::FAILURE)
    }
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
    fn bench_lines_aggregate_to_medians() {
        let boot = |c: u64| {
            bench_lines(&format!(
                "noise\nbench: metric=ipi_rtt samples=10 cycles={c}\nbench: metric=ap_start cpu=1 cycles={}\n",
                c * 10
            ))
        };
        let boots = [boot(5), boot(1), boot(3)];
        assert_eq!(
            boots[0][0].identity,
            [("metric".into(), "ipi_rtt".into()), ("samples".into(), "10".into())]
        );
        let rows = aggregate(&boots);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].stat("cycles"), Some(&Stat { key: "cycles".into(), median: 3, min: 1, max: 5 }));
        assert_eq!(rows[1].stat("cycles").map(|s| (s.median, s.min, s.max)), Some((30, 10, 50)));
        assert_eq!(rows[1].id("cpu"), Some("1"));
    }

    #[test]
    fn sched_table_has_a_row_per_measurement_and_a_column_per_policy() {
        let boot = |c: u64, policy: &str| {
            bench_lines(&format!(
                "bench: metric=machine cpus=2 tsc_hz=1000000000 policy={policy}\n\
                 bench: metric=switch kind=same-cpu samples=11 cycles={c}\n\
                 bench: metric=handoff kind=ukspin samples=11 cycles={}\n",
                c * 2
            ))
        };
        let coop =
            SchedColumn { rows: aggregate(&[boot(100, "coop"), boot(300, "coop")]), tsc_hz: 1_000_000_000 };
        let preempt = SchedColumn { rows: aggregate(&[boot(500, "preempt")]), tsc_hz: 2_000_000_000 };
        assert_eq!(coop.rows[0].id("policy"), Some("coop"));
        let table = sched_table(&[coop, preempt]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("coop") && lines[0].contains("preempt"), "{table}");
        // The lower median of 100 and 300 cycles at 1 GHz; 500 cycles at 2 GHz.
        assert!(lines[2].starts_with("  context switch: 2 threads on 1 CPU yielding"), "{table}");
        let cells = |line: &str, column: usize| -> Vec<String> {
            line.split('|').nth(column).unwrap_or_default().split_whitespace().map(String::from).collect()
        };
        assert_eq!(cells(lines[2], 1), ["100", "100.0", "[100..300]"], "{table}");
        assert_eq!(cells(lines[2], 2), ["500", "250.0", "[500..500]"], "{table}");
        assert!(lines[3].contains("baseline: ukspin::SpinLock"), "{table}");
        assert!(!table.contains("machine"), "{table}");
    }

    #[test]
    fn boot_stages_are_parsed() {
        let serial = "ukrs: app x\nukboot: boot stage platform 1200\nukboot: boot stage banner 300\nukboot: boot stage init:20:uktime::init 4000\nukboot: first instruction to main 5600\nHello\n";
        let (stages, total) = boot_stages(serial);
        assert_eq!(
            stages,
            [
                ("platform".to_string(), 1200),
                ("banner".to_string(), 300),
                ("init:20:uktime::init".to_string(), 4000)
            ]
        );
        assert_eq!(total, Some(5600));
        assert_eq!(boot_stages("nothing"), (vec![], None));
    }

    #[test]
    fn boot_cycles_are_parsed() {
        let log = "Hello\nBoot: 12345 cycles from first instruction to main (x)\n";
        assert_eq!(boot_cycles(log), Some(12345));
        assert_eq!(boot_cycles("nothing"), None);
    }

    /// One synthetic `rcubench` boot with 2 CPUs: RCU reads cost `rcu`
    /// cycles per 1000 against 1000 for the plain load; RCU reads 20 per
    /// cycle-window per CPU against 1 for the locks; the expedited grace
    /// period takes `exp` cycles against a 1000-cycle round trip.
    fn rcu_boot(policy: &str, flavor: &str, rcu: u64, exp: u64) -> Vec<BenchLine> {
        bench_lines(&format!(
            "bench: metric=machine cpus=2 tsc_hz=1000000000 policy={policy} flavor={flavor} read_iters=1000 \
             read_ms=20 gp_samples=51 reader_yield_us=200 callbacks=100\n\
             bench: metric=read_cost kind=plain samples=11 ops=1000 cycles=1000\n\
             bench: metric=read_cost kind=rcu samples=11 ops=1000 cycles={rcu}\n\
             bench: metric=read_tput kind=rcu cpus=1 ops=20000 window=1000 min=20000 max=20000\n\
             bench: metric=read_tput kind=rwspin cpus=1 ops=1000 window=1000 min=1000 max=1000\n\
             bench: metric=read_tput kind=rcu cpus=2 ops=40000 window=1000 min=20000 max=20000\n\
             bench: metric=read_tput kind=rwspin cpus=2 ops=1000 window=1000 min=500 max=500\n\
             bench: metric=call_rtt kind=busy samples=51 cycles=1000\n\
             bench: metric=gp kind=exp-busy samples=51 cycles={exp} gps=51 forced=51\n\
             bench: metric=call_rcu kind=queue samples=5 ops=100 cycles=100000\n\
             bench: metric=call_rcu kind=barrier samples=5 ops=100 cycles=5000 gps=2\n"
        ))
    }

    fn booted(boots: Vec<Vec<BenchLine>>) -> Booted {
        let rows = aggregate(&boots);
        Booted {
            boots,
            rows,
            tsc_hz: 1_000_000_000,
            ran: Ran::Qemu(qemu::Accel::Tcg),
            why: "requested".into(),
        }
    }

    #[test]
    fn ratios_are_taken_within_each_boot() {
        // Boot medians of the two values alone would give 3000/1000 = 3.
        let boots = [
            rcu_boot("coop", "qsbr", 1000, 3000),
            rcu_boot("coop", "qsbr", 3000, 1000),
            rcu_boot("coop", "qsbr", 1500, 1000),
        ];
        let r =
            per_boot(&boots, |b| Some(boot_value(b, "read_cost", "rcu", None, "cycles")? as f64 / 1000.0))
                .expect("every boot has the line");
        assert_eq!(r, Ratio { median: 1.5, min: 1.0, max: 3.0 });
        assert_eq!(boot_value(&boots[0], "read_tput", "rcu", Some(2), "ops"), Some(40000));
        assert_eq!(boot_value(&boots[0], "read_tput", "rcu", Some(3), "ops"), None);
    }

    /// The table of `columns`, headed as `bench rcu` heads (policy, flavour).
    fn rcu_table(columns: Vec<(&str, &str, Booted)>) -> String {
        let heads: Vec<Head> = columns.iter().map(|(p, f, _)| rcu_head(p, f)).collect();
        let labels: Vec<String> = heads.iter().map(|h| h.label.clone()).collect();
        let columns: Vec<Booted> = columns.into_iter().map(|(_, _, b)| b).collect();
        render_sections(&rcu_sections(&columns, &heads), &labels)
    }

    fn table_line<'a>(table: &'a str, start: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("{start}\n{table}"))
    }

    /// The three cells of column `i` (from 0) of a table line.
    fn column_cells(line: &str, i: usize) -> Vec<&str> {
        line.split('|').nth(i + 1).unwrap_or_default().split_whitespace().collect()
    }

    #[test]
    fn rcu_table_shows_every_policy_and_flavour_and_the_goals() {
        let table = rcu_table(vec![
            ("coop", "qsbr", booted(vec![rcu_boot("coop", "qsbr", 1100, 2000)])),
            (
                "preempt",
                "qsbr",
                booted(vec![
                    rcu_boot("preempt", "qsbr", 2000, 5000),
                    rcu_boot("preempt", "qsbr", 2000, 5000),
                ]),
            ),
            ("coop", "refcount", booted(vec![rcu_boot("coop", "refcount", 3000, 2500)])),
            ("preempt", "refcount", booted(vec![rcu_boot("preempt", "refcount", 4000, 6000)])),
        ]);
        let line = |start: &str| table_line(&table, start);
        let head: Vec<&str> = table.lines().next().unwrap_or_default().split('|').map(str::trim).collect();
        assert_eq!(
            head,
            ["", "coop qsbr", "preempt qsbr", "coop refcount", "preempt refcount", "goal"],
            "{table}"
        );
        // Every line's column separators line up with the heads'.
        let bars = |l: &str| l.match_indices('|').map(|(i, _)| i).collect::<Vec<_>>();
        let head_bars = bars(table.lines().next().unwrap_or_default());
        assert_eq!(head_bars.len(), 5, "{table}");
        for l in table.lines() {
            assert_eq!(bars(l)[..], head_bars[..], "{table}");
        }
        let read = line("read_lock + RcuCell::load");
        for (i, ratio) in ["1.10x", "2.00x", "3.00x", "4.00x"].into_iter().enumerate() {
            assert_eq!(column_cells(read, i)[2], ratio, "{table}");
        }
        assert!(
            read.ends_with(
                "<= 1.2x plain: coop qsbr met, preempt qsbr MISSED; qsbr's goal, not judged for refcount"
            ),
            "{table}"
        );
        // 40000 reads in 1000 cycles at 1 GHz: 40,000 M/s, twice 1 CPU's.
        let two = line("RCU, 2 CPUs");
        assert!(two.contains("40000") && two.contains("2.00x"), "{table}");
        assert!(
            two.ends_with(
                "linear (2x): coop qsbr met, preempt qsbr met; qsbr's goal, not judged for refcount"
            ),
            "{table}"
        );
        let rwspin = line("RCU reads / RwSpinLock reads, 2 CPUs");
        assert!((0..4).all(|i| column_cells(rwspin, i) == ["40.0x", "[40.0-40.0]"]), "{table}");
        assert!(
            rwspin.ends_with(">= 10x: coop qsbr met, preempt qsbr met; qsbr's goal, not judged for refcount"),
            "{table}"
        );
        let exp = line("synchronize_expedited(), readers on CPU 1");
        assert_eq!(column_cells(exp, 3)[2], "6.00x", "{table}");
        assert!(
            exp.ends_with(
                "<= 3x run_on: coop qsbr met, preempt qsbr MISSED; qsbr's goal, not judged for refcount"
            ),
            "{table}"
        );
        // No verdict for a refcount column, even one that would miss.
        assert!(!table.contains("refcount met") && !table.contains("refcount MISSED"), "{table}");
        // 100000 cycles for 100 callbacks: 1000 cycles, 1 us each, 1 M/s.
        assert!(line("call_rcu(closure)").contains("1.00 M/s"), "{table}");
        assert!(line("barrier()").contains("2 GPs"), "{table}");
        // Not measured: no grace-period row; dashes in a throughput row.
        assert!(!table.contains("other CPUs idle"), "{table}");
        let uklock = line("uklock::RwLock (read), 1 CPU");
        assert!((0..4).all(|i| column_cells(uklock, i) == ["-", "-", "-"]), "{table}");
    }

    #[test]
    fn rcu_table_of_one_flavour() {
        // --flavor qsbr: the two policies, with verdicts.
        let table = rcu_table(vec![
            ("coop", "qsbr", booted(vec![rcu_boot("coop", "qsbr", 1100, 2000)])),
            ("preempt", "qsbr", booted(vec![rcu_boot("preempt", "qsbr", 2000, 5000)])),
        ]);
        let read = table_line(&table, "read_lock + RcuCell::load");
        assert!(read.ends_with("<= 1.2x plain: coop qsbr met, preempt qsbr MISSED"), "{table}");
        assert!(!table.contains("not judged"), "{table}");
        // --flavor refcount: the ratios and the goals, no verdict.
        let table = rcu_table(vec![
            ("coop", "refcount", booted(vec![rcu_boot("coop", "refcount", 3000, 2500)])),
            ("preempt", "refcount", booted(vec![rcu_boot("preempt", "refcount", 1000, 1000)])),
        ]);
        let read = table_line(&table, "read_lock + RcuCell::load");
        assert!(read.contains("3.00x") && read.contains("1.00x"), "{table}");
        assert!(read.ends_with("<= 1.2x plain: qsbr's goal, not judged for refcount"), "{table}");
        let exp = table_line(&table, "synchronize_expedited(), readers on CPU 1");
        assert!(exp.ends_with("<= 3x run_on: qsbr's goal, not judged for refcount"), "{table}");
        assert!(!table.contains(" met") && !table.contains("MISSED"), "{table}");
    }

    #[test]
    fn goal_cells_judge_only_judged_columns_with_a_ratio() {
        let head =
            |label: &str, note: Option<&str>| Head { label: label.into(), unjudged: note.map(String::from) };
        let r = |median| Some(Ratio { median, min: median, max: median });
        let heads =
            [head("a", None), head("b", None), head("c", Some("not for c")), head("d", Some("not for c"))];
        assert_eq!(
            goal_cell("<= 2x", Goal::AtMost(2.0), &heads, &[r(1.0), None, r(9.0), r(9.0)]),
            "<= 2x: a met; not for c"
        );
        assert_eq!(
            goal_cell(">= 2x", Goal::AtLeast(2.0), &heads, &[r(1.0), r(2.0), None, None]),
            ">= 2x: a MISSED, b met"
        );
        assert_eq!(goal_cell(">= 2x", Goal::AtLeast(2.0), &heads, &[None, None, None, None]), ">= 2x");
    }

    #[test]
    fn a_wrong_image_is_an_error() {
        let refcount = booted(vec![rcu_boot("preempt", "refcount", 1000, 1000)]);
        assert!(check_policy(&refcount, "rcubench", "preempt").is_ok());
        assert!(check_flavor(&refcount, "rcubench", "refcount").is_ok());
        let err = check_flavor(&refcount, "rcubench", "qsbr").expect_err("qsbr image reports refcount");
        assert_eq!(
            err.to_string(),
            "rcubench built with ukrcu.flavor=qsbr reports flavor Some(\"refcount\")"
        );
        assert!(check_policy(&refcount, "rcubench", "coop").is_err());
        // An image that does not say which flavour it links.
        let silent =
            booted(vec![bench_lines("bench: metric=machine cpus=1 tsc_hz=1000000000 policy=coop\n")]);
        let err = check_flavor(&silent, "rcubench", "qsbr").expect_err("no flavor= on the machine line");
        assert!(err.to_string().ends_with("reports flavor None"), "{err}");
    }

    #[test]
    fn bench_rcu_takes_one_flavour_or_both() {
        use clap::Parser as _;
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(subcommand)]
            bench: BenchCmd,
        }
        let flavor = |args: &[&str]| {
            Cli::try_parse_from([&["bench", "rcu"], args].concat())
                .map(|c| match c.bench {
                    BenchCmd::Rcu { flavor, .. } => flavor,
                    other => panic!("{other:?}"),
                })
                .map_err(|e| e.kind())
        };
        assert_eq!(flavor(&[]), Ok(None));
        assert_eq!(flavor(&["--flavor", "refcount"]), Ok(Some("refcount".into())));
        assert_eq!(flavor(&["--flavor", "qsbr"]), Ok(Some("qsbr".into())));
        assert_eq!(flavor(&["--flavor", "rcu"]), Err(clap::error::ErrorKind::InvalidValue));
    }

    /// One synthetic `futexbench` boot with 2 CPUs at 1 GHz, built for
    /// `uklock.mutex=mutex`: uncontended pairs cost 100 cycles for the
    /// ticket lock, `uklock` for `uklock::Mutex` and `futex` for the raw
    /// futex mutex; the ticket lock at 2 CPUs hit the cap.
    fn futex_boot(mutex: &str, uklock: u64, futex: u64) -> Vec<BenchLine> {
        bench_lines(&format!(
            "bench: metric=machine cpus=2 tsc_hz=1000000000 policy=preempt mutex={mutex} \
             mutex_impl=uklock::{mutex}::RawMutex spin=ticket pairs=1000 rounds=200 iters=100 cap_ms=150\n\
             bench: metric=pair kind=ticket samples=11 ops=1000 cycles=100000\n\
             bench: metric=pair kind=uklock-mutex samples=11 ops=1000 cycles={}\n\
             bench: metric=pair kind=futex-word samples=11 ops=1000 cycles={}\n\
             bench: metric=wake_same kind=waitq-pingpong samples=200 cycles=1000\n\
             bench: metric=wake_same kind=futex-pingpong samples=200 cycles=1500\n\
             bench: metric=wake_same kind=waitq-oneway samples=200 cycles=2000\n\
             bench: metric=wake_same kind=futex-oneway samples=200 cycles=3000\n\
             bench: metric=wake_cross kind=waitq-pingpong samples=200 cycles=10000\n\
             bench: metric=wake_cross kind=futex-pingpong samples=200 cycles=20000\n\
             bench: metric=wake_cross kind=waitq-oneway samples=200 cycles=10000\n\
             bench: metric=wake_cross kind=futex-oneway samples=200 cycles=15000\n\
             bench: metric=contended kind=ticket cpus=1 samples=3 ops=100 cycles=10000 capped=0\n\
             bench: metric=contended kind=uklock-mutex cpus=1 samples=3 ops=100 cycles=20000 capped=0\n\
             bench: metric=contended kind=futex-word cpus=1 samples=3 ops=100 cycles=5000 capped=0\n\
             bench: metric=contended kind=ticket cpus=2 samples=3 ops=150 cycles=30000 capped=1\n\
             bench: metric=contended kind=uklock-mutex cpus=2 samples=3 ops=200 cycles=20000 capped=0\n\
             bench: metric=contended kind=futex-word cpus=2 samples=3 ops=200 cycles=10000 capped=0\n",
            uklock * 1000,
            futex * 1000
        ))
    }

    fn futex_column(kind: &'static str, boots: Vec<Vec<BenchLine>>) -> FutexColumn {
        FutexColumn { kind, result: Ok(booted(boots)), note: None }
    }

    fn futex_table(columns: &[FutexColumn]) -> String {
        let booted: Vec<Option<&Booted>> = columns.iter().map(FutexColumn::booted).collect();
        let heads: Vec<Head> = columns.iter().map(|c| Head { label: c.label(), unjudged: None }).collect();
        let labels: Vec<String> = heads.iter().map(|h| h.label.clone()).collect();
        let kinds: Vec<&str> = columns.iter().map(|c| c.kind).collect();
        render_sections(&futex_sections(&booted, &heads, &kinds), &labels)
    }

    #[test]
    fn futex_table_has_a_row_per_measurement_and_a_column_per_image() {
        let columns = [
            futex_column("waitqueue", vec![futex_boot("waitqueue", 250, 60)]),
            futex_column("futex", vec![futex_boot("futex", 80, 60), futex_boot("futex", 80, 60)]),
        ];
        let table = futex_table(&columns);
        let head: Vec<&str> = table.lines().next().unwrap_or_default().split('|').map(str::trim).collect();
        assert_eq!(head, ["", "waitqueue", "futex", "goal"], "{table}");
        let bars = |l: &str| l.match_indices('|').map(|(i, _)| i).collect::<Vec<_>>();
        let head_bars = bars(table.lines().next().unwrap_or_default());
        for l in table.lines() {
            assert_eq!(bars(l)[..], head_bars[..], "{table}");
        }
        // A header, 4 section titles, 3 pair rows (no spinlock row: the
        // configured kind is the ticket lock), 4 + 4 wake-ups, 3 x 2 CPUs.
        assert_eq!(table.lines().count(), 1 + 4 + 3 + 8 + 6, "{table}");
        let line = |start: &str| table_line(&table, start);
        assert!(line("uncontended lock + unlock, CPU 0, 1000 per sample").contains("x ticket"), "{table}");
        assert_eq!(
            column_cells(line("baseline: ukspin::TicketLock"), 0),
            ["100.0", "100.0", "1.00x"],
            "{table}"
        );
        let mutex = line("uklock::Mutex (column's uklock.mutex)");
        assert_eq!(column_cells(mutex, 0)[..3], ["250.0", "250.0", "2.50x"], "{table}");
        assert_eq!(column_cells(mutex, 1)[..3], ["80.0", "80.0", "0.80x"], "{table}");
        // The futex image's uklock::Mutex is judged; the wait-queue one is not.
        assert!(
            mutex.ends_with("futex mutex <= 1x ticket: futex met; the wait-queue mutex is not judged"),
            "{table}"
        );
        let raw = line("raw posix-futex mutex (cmpxchg + xchg)");
        assert!(raw.ends_with("<= 1x ticket: waitqueue met, futex met"), "{table}");
        // Wake-ups: cycles, ns and the ratio to the wait queue's.
        assert!(line("wake-to-run, both on CPU 0, 200 wake-ups").contains("x waitq"), "{table}");
        let cross =
            table.lines().skip_while(|l| !l.contains("CPU 0 -> sleeper on CPU 1")).collect::<Vec<_>>();
        assert_eq!(cross.len(), 1 + 4 + 1 + 6, "{table}");
        assert_eq!(column_cells(cross[2], 1)[..3], ["20000", "20000", "2.00x"], "{table}");
        assert!(cross[2].trim_start().starts_with("futex ping-pong, round trip / 2"), "{table}");
        // Contended: 200 cycles per acquisition at 1 GHz = 5 M/s.
        let ticket = line("ukspin::TicketLock, 2 CPUs");
        assert_eq!(column_cells(ticket, 0), ["5.00", "200.0", "1.00x"], "{table}");
        let futex = line("raw posix-futex mutex, 2 CPUs");
        assert_eq!(column_cells(futex, 1)[..3], ["20.0", "50.0", "0.25x"], "{table}");
        assert!(line("uklock::Mutex (column's uklock.mutex), 1 CPU").contains("2.00x"), "{table}");
        assert!(!table.contains("machine"), "{table}");
    }

    #[test]
    fn futex_ratios_are_taken_within_each_boot() {
        // Per boot, uklock::Mutex costs 3x, 1x and 2x the ticket lock
        // (the ticket lock's cost changes with the boot); medians of the
        // two alone would give 300/100 = 3x.
        let boot = |ticket: u64, mutex: u64| {
            let mut lines = futex_boot("futex", 1, 1);
            for l in &mut lines {
                let kind = l.identity.iter().find(|(k, _)| k == "kind").map(|(_, v)| v.clone());
                if l.identity[0].1 == "pair" {
                    let cycles = match kind.as_deref() {
                        Some("ticket") => ticket,
                        Some("uklock-mutex") => mutex,
                        _ => continue,
                    };
                    l.values.retain(|(k, _)| k != "cycles");
                    l.values.push(("cycles".into(), cycles * 1000));
                }
            }
            lines
        };
        let columns = [futex_column("futex", vec![boot(100, 300), boot(300, 300), boot(50, 100)])];
        let table = futex_table(&columns);
        let mutex = table_line(&table, "uklock::Mutex (column's uklock.mutex)");
        assert_eq!(column_cells(mutex, 0), ["300.0", "300.0", "2.00x", "[1.00-3.00]"], "{table}");
        assert!(mutex.ends_with("futex mutex <= 1x ticket: futex MISSED"), "{table}");
    }

    #[test]
    fn a_missing_futex_column_is_reported_never_skipped() {
        let error = "--set: uklock.mutex: \"futex\" is not one of \"waitqueue\"";
        let columns = [
            FutexColumn {
                kind: "waitqueue",
                result: Ok(booted(vec![futex_boot("waitqueue", 250, 60)])),
                note: None,
            },
            FutexColumn { kind: "futex", result: Err(Missing::Config(error.into())), note: None },
        ];
        let report = futex_report(&columns, 1, 2, "0.5", None);
        let table_head = report.lines().find(|l| l.contains(" | goal")).unwrap_or_default();
        let head: Vec<&str> = table_head.split('|').map(str::trim).collect();
        assert_eq!(head, ["", "waitqueue", "futex (missing)", "goal"], "{report}");
        assert_eq!(
            column_cells(table_line(&report, "uklock::Mutex (column's uklock.mutex)"), 1),
            ["-", "-", "-"]
        );
        assert!(
            report.contains(&format!(
                "  futex (missing): unavailable, kconfig refused uklock.mutex=futex: {error}"
            )),
            "{report}"
        );
    }

    #[test]
    fn a_futex_image_of_another_mutex_is_an_error() {
        let b = booted(vec![futex_boot("waitqueue", 250, 60)]);
        assert!(check_machine_id(&b, "futexbench", "uklock.mutex", "mutex", "waitqueue").is_ok());
        let err = check_machine_id(&b, "futexbench", "uklock.mutex", "mutex", "futex").expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "futexbench built with uklock.mutex=futex reports mutex Some(\"waitqueue\")"
        );
    }

    #[test]
    fn bench_futex_options() {
        use clap::Parser as _;
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(subcommand)]
            bench: BenchCmd,
        }
        let parsed = |args: &[&str]| match Cli::try_parse_from([&["bench", "futex"], args].concat()) {
            Ok(Cli { bench: BenchCmd::Futex { repeats, accel, smp, rounds, iters, on } }) => {
                assert_eq!(on, PlatformArgs { platform: Platform::Kvm, no_pin: false });
                (repeats, accel, smp, rounds, iters)
            }
            other => panic!("{other:?}"),
        };
        // --accel and --smp default in futex_bench (auto and 4 under QEMU).
        assert_eq!(parsed(&[]), (5, None, None, 200, 5000));
        assert_eq!(
            parsed(&["--repeats", "3", "--smp", "2", "--accel", "tcg"]),
            (3, Some("tcg".into()), Some(2), 200, 5000)
        );
    }

    /// One synthetic `icount=1` boot: the empty loop at 2 instructions per
    /// iteration, `switch` at `switch` per switch, `run-on` at `run_on`.
    fn icount_boot(switch: u64, run_on: u64, odd: u64) -> Vec<BenchLine> {
        bench_lines(&format!(
            "bench: metric=machine cpus=2 tsc_hz=1000000000 policy=preempt\n\
             bench: metric=icount kind=empty samples=11 ops=1000 cycles=2010 min=2010 max=2010\n\
             bench: metric=icount kind=switch samples=11 ops=200 cycles={} min=1 max=2 odd={odd}\n\
             bench: metric=icount kind=run-on samples=11 ops=100 cycles={} min=1 max=2\n",
            switch * 200,
            run_on * 100
        ))
    }

    const ICOUNT_TEST_IMAGE: IcountImage = IcountImage {
        title: "synthetic",
        app: "schedbench",
        name: "test",
        sets: &[],
        scheduled: true,
        reports: None,
        rows: &[
            ICOUNT_EMPTY,
            ("yield-alone", "absent from every boot"),
            ("switch", "context switch"),
            ("run-on", "round trip"),
        ],
    };

    #[test]
    fn icount_table_shows_raw_and_net_and_checks_boots() {
        // coop: the same in both boots; preempt: the switch varies (a
        // failure) and so does the round trip (a note only).
        let coop = vec![icount_boot(400, 350, 0), icount_boot(400, 350, 0)];
        let preempt = vec![icount_boot(400, 350, 1), icount_boot(410, 360, 0)];
        let images = [(&ICOUNT_TEST_IMAGE, vec![coop, preempt])];
        let sections = icount_sections(&images);
        assert_eq!(sections[0].rows.len(), 3, "a kind no boot printed has no row");
        let (table, varied) = icount_table(&sections, &["coop", "preempt"]);
        let head: Vec<&str> = table.lines().next().unwrap_or_default().split('|').map(str::trim).collect();
        assert_eq!(head, ["", "coop", "preempt", ""], "{table}");
        let empty = table_line(&table, "empty loop");
        // 2010 / 1000 = 2.01; no net for the empty loop itself.
        assert_eq!(column_cells(empty, 0), ["2.01", "-"], "{table}");
        assert!(empty.ends_with("| same in 2 boots"), "{table}");
        let switch = table_line(&table, "context switch");
        assert_eq!(column_cells(switch, 0), ["400.00", "397.99"], "{table}");
        // The lower median of 400 and 410, marked as varying.
        assert_eq!(column_cells(switch, 1), ["~400.00", "~397.99"], "{table}");
        assert!(
            switch.contains("VARIES: preempt 400.00 [400.00..410.00] (per boot: 400.00, 410.00)"),
            "{table}"
        );
        // Only the single-CPU row fails; the two-vCPU one is a note.
        assert_eq!(varied.len(), 1, "{varied:?}");
        assert!(varied[0].starts_with("synthetic: context switch: preempt"), "{varied:?}");
        assert!(table.contains("note: synthetic: round trip: preempt 350.00 [350.00..360.00]"), "{table}");
        assert!(table.contains("context switch [preempt]: in 1 of 2 boots some sample"), "{table}");
        // An image without a scheduler fills every column; its spread is given once.
        let unscheduled = IcountImage { scheduled: false, ..ICOUNT_TEST_IMAGE };
        let boots = vec![icount_boot(400, 350, 0), icount_boot(400, 360, 0)];
        let images = [(&unscheduled, vec![boots.clone(), boots])];
        let (table, varied) = icount_table(&icount_sections(&images), &["coop", "preempt"]);
        assert!(varied.is_empty(), "{varied:?}");
        let round_trip = table_line(&table, "round trip");
        assert_eq!(column_cells(round_trip, 0), column_cells(round_trip, 1), "{table}");
        assert!(
            round_trip.ends_with("| VARIES: one image: 350.00 [350.00..360.00] (per boot: 350.00, 360.00)"),
            "{table}"
        );
    }

    #[test]
    fn icount_cells_compare_whole_boots() {
        let boots = [icount_boot(400, 350, 0), icount_boot(400, 350, 0)];
        let cell = icount_cell(&boots, "switch").expect("printed");
        assert!(cell.same());
        assert_eq!(cell.per_boot, [(80000, 200), (80000, 200)]);
        // A boot without the line is not "the same".
        let missing =
            [icount_boot(400, 350, 0), bench_lines("bench: metric=icount kind=empty ops=1 cycles=2\n")];
        assert!(!icount_cell(&missing, "switch").expect("one boot printed it").same());
        assert_eq!(icount_cell(&missing, "yield-alone"), None);
        assert_eq!(
            icount_lines("x\nbench: metric=icount kind=empty ops=1 cycles=2\nbench: metric=machine cpus=1\n"),
            ["bench: metric=icount kind=empty ops=1 cycles=2"]
        );
    }

    #[test]
    fn bench_icount_options_and_kvm_refused() {
        use clap::Parser as _;
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(subcommand)]
            bench: BenchCmd,
        }
        let parsed = |args: &[&str]| {
            Cli::try_parse_from([&["bench", "icount"], args].concat())
                .map(|c| match c.bench {
                    BenchCmd::Icount { repeats, accel, policy, .. } => (repeats, accel, policy),
                    other => panic!("{other:?}"),
                })
                .map_err(|e| e.kind())
        };
        assert_eq!(parsed(&[]), Ok((2, "tcg".into(), None)));
        assert_eq!(parsed(&["--policy", "coop"]), Ok((2, "tcg".into(), Some("coop".into()))));
        assert_eq!(parsed(&["--policy", "fifo"]), Err(clap::error::ErrorKind::InvalidValue));
        // Refused before anything is built.
        let err =
            run(&BenchCmd::Icount { repeats: 2, accel: "kvm".into(), policy: None, platform: Platform::Kvm })
                .expect_err("kvm cannot count instructions");
        assert!(err.to_string().contains("under TCG only; --accel kvm cannot run it"), "{err}");
        let err =
            run(&BenchCmd::Icount { repeats: 1, accel: "tcg".into(), policy: None, platform: Platform::Kvm })
                .expect_err("one boot compares nothing");
        assert!(err.to_string().contains("at least 2"), "{err}");
    }

    fn parse_bench(args: &[&str]) -> std::result::Result<BenchCmd, clap::error::ErrorKind> {
        use clap::Parser as _;
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(subcommand)]
            bench: BenchCmd,
        }
        Cli::try_parse_from([&["bench"], args].concat()).map(|c| c.bench).map_err(|e| e.kind())
    }

    #[test]
    fn every_bench_with_images_takes_a_platform() {
        let linuxu = PlatformArgs { platform: Platform::Linuxu, no_pin: false };
        for bench in ["smp", "sched", "rcu", "futex"] {
            let on = match parse_bench(&[bench, "--platform", "linuxu"]) {
                Ok(
                    BenchCmd::Smp { on, .. }
                    | BenchCmd::Sched { on, .. }
                    | BenchCmd::Rcu { on, .. }
                    | BenchCmd::Futex { on, .. },
                ) => on,
                other => panic!("{bench}: {other:?}"),
            };
            assert_eq!(on, linuxu, "{bench}");
            let Ok(
                BenchCmd::Smp { on, .. }
                | BenchCmd::Sched { on, .. }
                | BenchCmd::Rcu { on, .. }
                | BenchCmd::Futex { on, .. },
            ) = parse_bench(&[bench])
            else {
                panic!("{bench}")
            };
            assert_eq!(on, PlatformArgs { platform: Platform::Kvm, no_pin: false }, "{bench}");
            assert_eq!(
                parse_bench(&[bench, "--platform", "xen"]).err(),
                Some(clap::error::ErrorKind::InvalidValue),
                "{bench}"
            );
        }
        // --no-pin parses anywhere; Target refuses it on kvm.
        let Ok(BenchCmd::Rcu { on, accel, .. }) = parse_bench(&["rcu", "--platform", "linuxu", "--no-pin"])
        else {
            panic!()
        };
        assert_eq!((on.no_pin, accel), (true, None));
    }

    #[test]
    fn options_that_make_no_sense_on_the_platform_are_errors_naming_both() {
        let kvm = PlatformArgs { platform: Platform::Kvm, no_pin: false };
        let linuxu = PlatformArgs { platform: Platform::Linuxu, no_pin: false };
        // kvm: --accel or its default, exactly as before.
        assert_eq!(Target::new("rcu", None, "tcg", &kvm).unwrap(), Target::Qemu("tcg".into()));
        assert_eq!(Target::new("futex", Some("kvm"), "auto", &kvm).unwrap(), Target::Qemu("kvm".into()));
        assert_eq!(Target::new("sched", None, "auto", &kvm).unwrap().sets(), ["platform.accel=auto"]);
        // linuxu: pinned unless --no-pin.
        let t = Target::new("sched", None, "auto", &linuxu).unwrap();
        assert_eq!(t.sets(), ["platform.name=linuxu", "platform.pin=true"]);
        assert_eq!(t.tag(), "linuxu");
        let unpinned = PlatformArgs { no_pin: true, ..linuxu.clone() };
        let t = Target::new("sched", None, "auto", &unpinned).unwrap();
        assert_eq!(t.sets(), ["platform.name=linuxu", "platform.pin=false"]);
        assert_eq!(t.tag(), "linuxu-unpinned");
        let err = Target::new("rcu", Some("tcg"), "tcg", &linuxu).expect_err("no QEMU on linuxu").to_string();
        assert!(err.contains("--accel tcg") && err.contains("--platform linuxu"), "{err}");
        let err = Target::new("futex", None, "auto", &PlatformArgs { no_pin: true, ..kvm })
            .expect_err("kvm has no platform.pin")
            .to_string();
        assert!(err.contains("--no-pin") && err.contains("platform kvm"), "{err}");
        // Refused before anything is built: smp with --accel, boot and icount at all.
        let err = run(&BenchCmd::Smp {
            repeats: 1,
            accel: Some("kvm".into()),
            smp: None,
            ipi_rounds: 1,
            on: linuxu.clone(),
        })
        .expect_err("no QEMU on linuxu")
        .to_string();
        assert!(err.starts_with("bench smp: --accel kvm makes no sense with --platform linuxu"), "{err}");
        for (args, what) in [
            (&["boot", "--platform", "linuxu"][..], "bench boot"),
            (&["boot", "--icount", "--platform", "linuxu"][..], "bench boot"),
            (&["icount", "--platform", "linuxu"][..], "bench icount"),
        ] {
            let cmd = parse_bench(args).expect("parses");
            let err = run(&cmd).expect_err("kvm only").to_string();
            assert!(err.starts_with(what) && err.contains("--platform linuxu cannot run it"), "{err}");
        }
    }

    #[test]
    fn linuxu_sets_resolve_for_every_bench_app() {
        let ws = crate::load().expect("the workspace loads");
        let linuxu = Target::Linuxu { pin: true };
        for (app, extra) in [
            ("smpbench", vec!["platform.cmdline=ipi_rounds=10"]),
            ("schedbench", vec!["uksched.policy=coop", "platform.cmdline=rounds=10"]),
            (
                "rcubench",
                vec!["uksched.policy=preempt", "ukrcu.flavor=qsbr", "platform.cmdline=reader_yield_us=1"],
            ),
            ("futexbench", vec!["uklock.mutex=futex", "platform.cmdline=rounds=10 iters=10"]),
        ] {
            let mut sets = linuxu.sets();
            sets.push("platform.cpus=2".into());
            sets.extend(extra.iter().map(|s| s.to_string()));
            let resolved = ws.resolve(app, None, &sets).unwrap_or_else(|e| panic!("{app}: {e}"));
            assert_eq!(resolved.platform, "linuxu", "{app}");
            let (guest, _) = Guest::from_resolved(&resolved, None).expect("a process");
            assert!(matches!(guest, Guest::Process { cpus: 2, .. }), "{app}: {guest:?}");
            assert_eq!(resolved.option("platform", "pin"), Some(&kconfig::Value::Bool(true)), "{app}");
        }
    }

    /// A peer measured at `ns` ns (and 2.3 cycles per ns) in every run.
    fn measured(anchor: Anchor, ns: f64) -> Repeated {
        Repeated {
            anchor,
            outcome: RepeatedOutcome::Measured {
                ns,
                cycles: Some(ns * 2.3),
                min_ns: ns * 0.9,
                max_ns: ns * 1.1,
                runs: 3,
            },
        }
    }

    #[test]
    fn the_peer_section_shows_each_peer_and_ours_with_the_ratio_and_goal() {
        // Two sched columns at 1 GHz: switches of 100 and 300 cycles (ns).
        let boot = |switch: u64, policy: &str| {
            bench_lines(&format!(
                "bench: metric=machine cpus=2 tsc_hz=1000000000 policy={policy}\n\
                 bench: metric=switch kind=same-cpu samples=11 cycles={switch}\n"
            ))
        };
        let coop = booted(vec![boot(100, "coop"), boot(120, "coop"), boot(80, "coop")]);
        let preempt = booted(vec![boot(300, "preempt")]);
        let heads: Vec<Head> =
            POLICIES.iter().map(|p| Head { label: p.to_string(), unjudged: None }).collect();
        let peers = [measured(Anchor::YieldPingPongSameCpu, 1000.0)];
        let (section, summary) =
            peer_section(&[Some(&coop), Some(&preempt)], &heads, &peers, &sched_peer_pairs());
        assert_eq!(section.lines.len(), 2);
        let table = render_sections(&[section], &["coop".into(), "preempt".into()]);
        let peer = table_line(&table, "peer: sched_yield ping-pong");
        assert_eq!(column_cells(peer, 0), ["2300", "1000", "[900.0-1100]"], "{table}");
        assert_eq!(column_cells(peer, 0), column_cells(peer, 1), "{table}");
        assert!(peer.ends_with("| [yield_pingpong_same_cpu]"), "{table}");
        let ours = table_line(&table, "ours: context switch");
        // Per boot 0.1, 0.12 and 0.08 of the peer: the median and range.
        assert_eq!(column_cells(ours, 0), ["100.0", "100.0", "0.10x", "[0.08-0.12]"], "{table}");
        assert_eq!(column_cells(ours, 1), ["300.0", "300.0", "0.30x", "[0.30-0.30]"], "{table}");
        assert!(ours.ends_with("<= 0.2x peer: coop met, preempt MISSED"), "{table}");
        assert_eq!(
            summary,
            ["same-CPU thread switch <= 0.2x Linux's sched_yield ping-pong [yield_pingpong_same_cpu]: \
                 coop met (0.10x), preempt MISSED (0.30x)"]
        );
    }

    #[test]
    fn a_missing_peer_is_shown_with_its_reason_and_judges_nothing() {
        let columns = [FutexColumn {
            kind: "futex",
            result: Ok(booted(vec![futex_boot("futex", 80, 60)])),
            note: None,
        }];
        let reason = "liburcu is not installed (header <urcu/urcu-qsbr.h> not found)";
        let peers = [
            measured(Anchor::PthreadMutexPair, 100.0),
            Repeated {
                anchor: Anchor::FutexPingPongSameCpu,
                outcome: RepeatedOutcome::Failed("crashed".into()),
            },
            Repeated {
                anchor: Anchor::FutexPingPongCrossCpu,
                outcome: RepeatedOutcome::Missing("needs 2 host CPUs".into()),
            },
        ];
        let pairs = futex_peer_pairs();
        let report = futex_report(&columns, 1, 2, "0.5", Some((&peers, &pairs)));
        // 80 cycles at 1 GHz against 100 ns: 0.8x, met (at most 0.8x).
        let ours = table_line(&report, "ours: uklock::Mutex lock + unlock");
        assert_eq!(column_cells(ours, 0), ["80.0", "80.0", "0.80x", "[0.80-0.80]"], "{report}");
        assert!(ours.ends_with("futex mutex <= 0.8x peer: futex met"), "{report}");
        let cross = table_line(&report, "peer: futex ping-pong across 2 host CPUs");
        assert_eq!(column_cells(cross, 0), ["-", "-", "-"], "{report}");
        assert!(cross.ends_with("[futex_pingpong_cross_cpu] MISSING: needs 2 host CPUs"), "{report}");
        let same = table_line(&report, "peer: futex ping-pong on 1 host CPU");
        assert!(same.ends_with("[futex_pingpong_same_cpu] FAILED: crashed"), "{report}");
        assert!(report.contains(
            "    uncontended futex mutex (uklock::Mutex, uklock.mutex=futex) <= 0.8x pthread_mutex [pthread_mutex_pair]: futex met (0.80x)"
        ), "{report}");
        assert!(!report.contains("NOT measured by this run"), "{report}");
        assert!(peer_failed(&peers));
        // A goal whose peer is missing: not judged, with the reason.
        let missing =
            [Repeated { anchor: Anchor::PthreadMutexPair, outcome: RepeatedOutcome::Missing(reason.into()) }];
        let report = futex_report(&columns, 1, 2, "0.5", Some((&missing, &pairs)));
        assert!(report.contains(&format!("[pthread_mutex_pair] MISSING: {reason}")), "{report}");
        assert!(
            table_line(&report, "ours: uklock::Mutex lock + unlock")
                .ends_with("futex mutex <= 0.8x peer: not judged, no peer"),
            "{report}"
        );
        assert!(
            report.contains(&format!("[pthread_mutex_pair]: futex not judged (peer MISSING: {reason})")),
            "{report}"
        );
        assert!(!peer_failed(&missing));
        // The peers asked for but not run at all are missing too, never dropped.
        let report = futex_report(&columns, 1, 2, "0.5", Some((&[], &pairs)));
        // Three peer lines and the goal's summary.
        assert_eq!(report.matches("MISSING: not run").count(), 4, "{report}");
    }

    #[test]
    fn peer_figures_read_one_boot() {
        let boot = bench_lines(
            "bench: metric=machine cpus=2 tsc_hz=1000000000 apic=none source=TSC\n\
             bench: metric=ipi_rtt samples=1000 cycles=5000\n\
             bench: metric=call_rtt samples=1000 cycles=7000\n\
             bench: metric=lock kind=spinlock cpus=1 ops=1000 window=30000 min=1000 max=1000\n\
             bench: metric=lock kind=spinlock cpus=2 ops=1000 window=90000 min=400 max=600\n\
             bench: metric=pair kind=uklock-mutex samples=11 ops=2000 cycles=86000\n",
        );
        assert_eq!(kindless("ipi_rtt")(&boot), Some(5000.0));
        assert_eq!(kindless("call_rtt")(&boot), Some(7000.0));
        assert_eq!(kindless("lock")(&boot), None);
        assert_eq!(per_op_of_rate("lock", "spinlock", 1)(&boot), Some(30.0));
        assert_eq!(per_op_of_rate("lock", "spinlock", 2)(&boot), Some(90.0));
        assert_eq!(per_op("pair", "uklock-mutex", None)(&boot), Some(43.0));
        assert_eq!(per_op("pair", "ticket", None)(&boot), None);
        // Each bench's peers are the anchors that map to its rows.
        for (bench, pairs) in [
            ("rcu", rcu_peer_pairs()),
            ("futex", futex_peer_pairs()),
            ("sched", sched_peer_pairs()),
            ("smp", smp_peer_pairs()),
        ] {
            for p in &pairs {
                assert!(p.anchor.ukrs_row().contains(bench), "{bench}: {:?}", p.anchor);
            }
        }
        assert_eq!(
            peer_anchors(&rcu_peer_pairs()),
            [
                Anchor::UrcuQsbrRead,
                Anchor::UrcuMembRead,
                Anchor::PthreadRwlockRead,
                Anchor::UrcuQsbrSync,
                Anchor::UrcuMembSync
            ]
        );
    }

    #[test]
    fn a_peer_shared_by_consecutive_rows_is_shown_once() {
        let boot = bench_lines(
            "bench: metric=machine cpus=2 tsc_hz=1000000000 apic=none source=TSC\n\
             bench: metric=ipi_rtt samples=1000 cycles=5000\n\
             bench: metric=call_rtt samples=1000 cycles=7000\n",
        );
        let b = booted(vec![boot]);
        let heads = [Head { label: "linuxu, 2 CPUs".into(), unjudged: None }];
        let peers = [measured(Anchor::FutexPingPongCrossCpu, 5000.0)];
        let (section, summary) = peer_section(&[Some(&b)], &heads, &peers, &smp_peer_pairs());
        assert!(summary.is_empty(), "{summary:?}");
        let table = render_sections(&[section], &[heads[0].label.clone()]);
        assert_eq!(
            table.matches("peer: futex ping-pong across 2 host CPUs, a round trip").count(),
            1,
            "{table}"
        );
        // The round trips against twice the hand-off: 10000 ns.
        let peer = table_line(&table, "peer: futex ping-pong across");
        assert_eq!(column_cells(peer, 0)[1], "10000", "{table}");
        assert_eq!(column_cells(table_line(&table, "ours: IPI round trip"), 0)[2], "0.50x", "{table}");
        assert_eq!(column_cells(table_line(&table, "ours: uksmp::run_on"), 0)[2], "0.70x", "{table}");
        // The peers of the 1-CPU lock rows are missing (not run): shown so.
        assert_eq!(table.matches("MISSING: not run").count(), 2, "{table}");
    }

    #[test]
    fn the_linuxu_sched_table_keeps_the_rows_of_kvm() {
        let boot = |c: u64| {
            bench_lines(&format!(
                "bench: metric=machine cpus=2 tsc_hz=1000000000 policy=coop\n\
                 bench: metric=switch kind=same-cpu samples=11 cycles={c}\n\
                 bench: metric=wakeup kind=spin-flag samples=51 cycles=400\n"
            ))
        };
        let column = SchedColumn { rows: aggregate(&[boot(100), boot(300)]), tsc_hz: 1_000_000_000 };
        let section = sched_section(std::slice::from_ref(&column));
        let table = render_sections(&[section], &["coop".into()]);
        let switch = table_line(&table, "context switch: 2 threads on 1 CPU yielding");
        assert_eq!(column_cells(switch, 0), ["100", "100.0", "[100..300]"], "{table}");
        assert!(table.contains("      baseline: flag seen by a spinner on CPU 1"), "{table}");
        assert_eq!(sched_table(&[column]).lines().count(), 4);
    }
}

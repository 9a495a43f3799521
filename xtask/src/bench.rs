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
    /// SMP: application processor start, IPI and cross-CPU call round trips,
    /// spinlock throughput and fairness. Without --accel/--smp it runs TCG
    /// with 4 CPUs and, when /dev/kvm works, KVM with 2.
    Smp {
        /// Boots per configuration (medians over them).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Only this accelerator (auto, kvm, tcg).
        #[arg(long)]
        accel: Option<String>,
        /// CPUs (with --accel; default 4 under TCG, 2 under KVM).
        #[arg(long)]
        smp: Option<u32>,
        /// IPI round trips per boot.
        #[arg(long, default_value_t = 1000)]
        ipi_rounds: u64,
    },
    /// Scheduler: same-CPU context switch, thread create + join, cross-CPU
    /// wake-up latency and contended mutex hand-off, against baselines
    /// measured in the same boot; the image is built once per policy
    /// (`uksched.policy=coop` and `preempt`) and the table shows both.
    Sched {
        /// Boots per policy (medians over them).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Accelerator: auto, kvm or tcg.
        #[arg(long, default_value = "auto")]
        accel: String,
        /// CPUs. 2 by default: the cross-CPU measurements use CPUs 0 and 1
        /// only, and under TCG on this project's 2-core build machines
        /// more vCPUs than host cores add host-scheduling noise (a vCPU
        /// the host has descheduled) to every hand-off.
        #[arg(long, default_value_t = 2)]
        smp: u32,
        /// Length of the guest's inner loops (its `rounds=` option).
        #[arg(long, default_value_t = 100)]
        rounds: u64,
    },
}

/// Runs a benchmark.
pub fn run(which: &BenchCmd) -> Result<ExitCode> {
    match which {
        BenchCmd::Boot { repeats, accel } => boot(*repeats, accel),
        BenchCmd::Smp { repeats, accel, smp, ipi_rounds } => {
            smp_bench(*repeats, accel.as_deref(), *smp, *ipi_rounds)
        }
        BenchCmd::Sched { repeats, accel, smp, rounds } => sched_bench(*repeats, accel, *smp, *rounds),
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
    let release = BuildOptions { release: true, quiet: true, ..Default::default() };
    for (accel, cpus) in configurations {
        let sets = vec![
            format!("platform.accel={accel}"),
            format!("platform.cpus={cpus}"),
            format!("platform.cmdline=ipi_rounds={ipi_rounds}"),
        ];
        let resolved = ws.resolve("smpbench", None, &sets)?;
        let img = image::build(
            &ws,
            &resolved,
            &BuildOptions { name: Some(format!("smpbench-{accel}-{cpus}")), ..release.clone() },
        )?;
        let (vm, why) = crate::vm_config(&resolved, None)?;
        let mut boots = Vec::new();
        for _ in 0..repeats {
            let r = qemu::run(qemu::command(&img.path, &vm), Some(Duration::from_secs(300)), false)?;
            if r.outcome != Outcome::Status(0) {
                bail!("smpbench ({accel}, {cpus} CPUs): {}\n{}", r.outcome.describe(), r.serial);
            }
            boots.push(bench_lines(&r.serial));
        }
        let rows = aggregate(&boots);
        let tsc_hz = rows
            .iter()
            .find(|r| r.id("metric") == Some("machine"))
            .and_then(|r| r.stat("tsc_hz"))
            .map(|s| s.median)
            .context("smpbench printed no machine line")?;
        println!();
        println!(
            "bench smp: {} CPUs, accelerator {} ({why}), {repeats} boots, median [min..max] over boots; TSC {:.0} MHz",
            cpus,
            vm.accel.name(),
            tsc_hz as f64 / 1e6
        );
        print_smp_table(&rows, tsc_hz);
    }
    Ok(ExitCode::SUCCESS)
}

fn ns(cycles: u64, tsc_hz: u64) -> f64 {
    cycles as f64 * 1e9 / tsc_hz as f64
}

fn print_smp_table(rows: &[Row], tsc_hz: u64) {
    for row in rows {
        let metric = row.id("metric").unwrap_or_default();
        let label = match metric {
            "machine" => {
                println!(
                    "  machine: local APIC in {} mode, TSC calibrated from {}",
                    row.id("apic").unwrap_or_default(),
                    row.id("source").unwrap_or_default()
                );
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

/// The scheduling policies `bench sched` compares, in table order.
const POLICIES: [&str; 2] = ["coop", "preempt"];

fn sched_bench(repeats: usize, accel: &str, smp: u32, rounds: u64) -> Result<ExitCode> {
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let ws = crate::load()?;
    let release = BuildOptions { release: true, quiet: true, ..Default::default() };
    let mut columns = Vec::new();
    let mut machine = String::new();
    for policy in POLICIES {
        let sets = vec![
            format!("platform.accel={accel}"),
            format!("platform.cpus={smp}"),
            format!("uksched.policy={policy}"),
            format!("platform.cmdline=rounds={rounds}"),
        ];
        let resolved = ws.resolve("schedbench", None, &sets)?;
        let img = image::build(
            &ws,
            &resolved,
            &BuildOptions { name: Some(format!("schedbench-{policy}-{accel}-{smp}")), ..release.clone() },
        )?;
        let (vm, why) = crate::vm_config(&resolved, None)?;
        machine = format!("{smp} CPUs, accelerator {} ({why})", vm.accel.name());
        let mut boots = Vec::new();
        for _ in 0..repeats {
            let r = qemu::run(qemu::command(&img.path, &vm), Some(Duration::from_secs(300)), false)?;
            if r.outcome != Outcome::Status(0) {
                bail!("schedbench ({policy}, {accel}, {smp} CPUs): {}\n{}", r.outcome.describe(), r.serial);
            }
            boots.push(bench_lines(&r.serial));
        }
        let rows = aggregate(&boots);
        let machine_row = rows
            .iter()
            .find(|r| r.id("metric") == Some("machine"))
            .context("schedbench printed no machine line")?;
        if machine_row.id("policy") != Some(policy) {
            bail!(
                "schedbench built with uksched.policy={policy} reports policy {:?}",
                machine_row.id("policy")
            );
        }
        let tsc_hz =
            machine_row.stat("tsc_hz").map(|s| s.median).context("schedbench printed no TSC rate")?;
        columns.push(SchedColumn { rows, tsc_hz });
    }
    println!();
    println!(
        "bench sched: {machine}, {repeats} boots per policy, release; median over boots of each boot's median \
         (11 or 51 samples); TSC {:.0} MHz",
        columns[0].tsc_hz as f64 / 1e6
    );
    print!("{}", sched_table(&columns));
    Ok(ExitCode::SUCCESS)
}

/// One policy's results.
struct SchedColumn {
    rows: Vec<Row>,
    tsc_hz: u64,
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
    let key = |r: &Row| {
        (r.id("metric").unwrap_or_default().to_string(), r.id("kind").unwrap_or_default().to_string())
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in columns.iter().flat_map(|c| &c.rows).filter(|r| r.id("metric") != Some("machine")) {
        if !keys.contains(&key(row)) {
            keys.push(key(row));
        }
    }
    // Cells: per measurement and policy, [cycles, ns, spread].
    let cells: Vec<Vec<[String; 3]>> = keys
        .iter()
        .map(|k| {
            columns
                .iter()
                .map(|column| {
                    match column.rows.iter().find(|r| key(r) == *k).and_then(|r| r.stat("cycles")) {
                        Some(s) => [
                            s.median.to_string(),
                            format!("{:.1}", ns(s.median, column.tsc_hz)),
                            format!("[{}..{}]", s.min, s.max),
                        ],
                        None => ["-".into(), "-".into(), String::new()],
                    }
                })
                .collect()
        })
        .collect();
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
    fn boot_cycles_are_parsed() {
        let log = "Hello\nBoot: 12345 cycles from first instruction to main (x)\n";
        assert_eq!(boot_cycles(log), Some(12345));
        assert_eq!(boot_cycles("nothing"), None);
    }
}

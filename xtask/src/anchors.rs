//! Native peers ("anchors") of the benchmark rows: small C programs under
//! `bench/anchors/`, built with the system C compiler and run as ordinary
//! Linux processes on the host, so that a table of ukrs numbers can show,
//! from the same run on the same machine, what the well-known native
//! implementation of the same operation costs there.
//!
//! | anchor | measures (per op) | ukrs row it anchors |
//! |---|---|---|
//! | `urcu_qsbr_read`, `urcu_memb_read` | liburcu read-side section: `read_lock`, `rcu_dereference`, a field, `read_unlock` | `bench rcu`: `read_cost`/`rcu` (RCU read section) |
//! | `urcu_qsbr_sync`, `urcu_memb_sync` | one `synchronize_rcu` with a busy registered reader on every other host CPU | `bench rcu`: `gp`/`sync-busy` (`synchronize`) |
//! | `pthread_rwlock_read` | `pthread_rwlock_rdlock` + `unlock`, one thread | `bench rcu`: `read_tput`/`uklock-rw` at 1 CPU; `bench smp`: `rwlock_read`/`rwlock` at 1 CPU |
//! | `pthread_mutex_pair` | uncontended `pthread_mutex_lock` + `unlock` | `bench futex`: `pair`/`uklock-mutex`; `bench smp`: `lock`/`spinlock` at 1 CPU |
//! | `futex_pingpong_same_cpu` | one futex hand-off (round trip / 2), both threads on one host CPU | `bench futex`: `wake_same`/`futex-pingpong` |
//! | `futex_pingpong_cross_cpu` | the same across two host CPUs | `bench futex`: `wake_cross`/`futex-pingpong`; `bench smp`: `ipi_rtt`, `call_rtt` (against twice it: a round trip) |
//! | `yield_pingpong_same_cpu` | one switch between two threads pinned to one host CPU calling `sched_yield` | `bench sched`: `switch`/`same-cpu` |
//!
//! Each program prints one `anchor: name=NAME ns_per_op=F [cycles_per_op=F]
//! samples=N ops=N min_ns=F max_ns=F [key=value...]` line per anchor (the
//! median over the samples after a warm-up; `bench/anchors/anchor.h` and its
//! README say more), or `anchor: name=NAME missing="REASON"` when the host
//! cannot run it (the cross-CPU peer on a process allowed one CPU).
//!
//! [`run`] builds what the anchors asked for need into `target/anchors/`
//! (again only when the source, the shared header or the compiler command
//! changed), runs each program with a timeout and returns one
//! [`AnchorResult`] per anchor, in the order asked. An anchor is never left
//! out: one that cannot be built because its library is missing (liburcu:
//! the compile fails on the header or the link) is [`Outcome::Missing`] with
//! the reason, after [`crate::setup::package`] tried to install
//! `liburcu-dev`; one that fails otherwise is [`Outcome::Failed`].
//! `cargo xtask bench anchors` runs them all and prints a table;
//! `cargo xtask bench rcu|futex|sched|smp --platform linuxu` run theirs
//! `--repeats` times ([`run_repeated`]: the median over runs) and show
//! them in the benchmark's table beside the rows they are the peers of.
//! [`run_limited`] passes `ANCHOR_MAX_CPUS` so that liburcu's busy readers
//! are as many as the image's other CPUs.

use anyhow::Result;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one anchor program may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One native peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// liburcu qsbr read-side section.
    UrcuQsbrRead,
    /// liburcu qsbr `synchronize_rcu` with busy readers.
    UrcuQsbrSync,
    /// liburcu memb read-side section.
    UrcuMembRead,
    /// liburcu memb `synchronize_rcu` with busy readers.
    UrcuMembSync,
    /// `pthread_rwlock` read lock + unlock.
    PthreadRwlockRead,
    /// `pthread_mutex` lock + unlock, uncontended.
    PthreadMutexPair,
    /// Futex hand-off between two threads on one host CPU.
    FutexPingPongSameCpu,
    /// Futex hand-off between two threads on two host CPUs.
    FutexPingPongCrossCpu,
    /// `sched_yield` switch between two threads on one host CPU.
    YieldPingPongSameCpu,
}

impl Anchor {
    /// Every anchor, in table order.
    pub const ALL: [Anchor; 9] = [
        Anchor::UrcuQsbrRead,
        Anchor::UrcuMembRead,
        Anchor::PthreadRwlockRead,
        Anchor::UrcuQsbrSync,
        Anchor::UrcuMembSync,
        Anchor::PthreadMutexPair,
        Anchor::FutexPingPongSameCpu,
        Anchor::FutexPingPongCrossCpu,
        Anchor::YieldPingPongSameCpu,
    ];

    /// The name its program prints (`name=`).
    pub fn name(self) -> &'static str {
        match self {
            Anchor::UrcuQsbrRead => "urcu_qsbr_read",
            Anchor::UrcuQsbrSync => "urcu_qsbr_sync",
            Anchor::UrcuMembRead => "urcu_memb_read",
            Anchor::UrcuMembSync => "urcu_memb_sync",
            Anchor::PthreadRwlockRead => "pthread_rwlock_read",
            Anchor::PthreadMutexPair => "pthread_mutex_pair",
            Anchor::FutexPingPongSameCpu => "futex_pingpong_same_cpu",
            Anchor::FutexPingPongCrossCpu => "futex_pingpong_cross_cpu",
            Anchor::YieldPingPongSameCpu => "yield_pingpong_same_cpu",
        }
    }

    /// The benchmark rows it is the native peer of (`cargo xtask bench
    /// ... --platform linuxu` shows them side by side).
    pub fn ukrs_row(self) -> &'static str {
        match self {
            Anchor::UrcuQsbrRead | Anchor::UrcuMembRead => "rcu read_cost/rcu",
            Anchor::UrcuQsbrSync | Anchor::UrcuMembSync => "rcu gp/sync-busy",
            Anchor::PthreadRwlockRead => "rcu read_tput/uklock-rw (1 CPU); smp rwlock_read/rwlock (1 CPU)",
            Anchor::PthreadMutexPair => "futex pair/uklock-mutex; smp lock/spinlock (1 CPU)",
            Anchor::FutexPingPongSameCpu => "futex wake_same/futex-pingpong",
            Anchor::FutexPingPongCrossCpu => {
                "futex wake_cross/futex-pingpong; smp ipi_rtt, call_rtt (x2: round trips)"
            }
            Anchor::YieldPingPongSameCpu => "sched switch/same-cpu",
        }
    }

    /// What it measures, per operation, for a table row.
    pub fn describe(self) -> &'static str {
        match self {
            Anchor::UrcuQsbrRead => "liburcu qsbr: read_lock + rcu_dereference + field + read_unlock",
            Anchor::UrcuMembRead => "liburcu memb: read_lock + rcu_dereference + field + read_unlock",
            Anchor::UrcuQsbrSync => "liburcu qsbr: synchronize_rcu, a busy reader per other CPU",
            Anchor::UrcuMembSync => "liburcu memb: synchronize_rcu, a busy reader per other CPU",
            Anchor::PthreadRwlockRead => "pthread_rwlock_rdlock + read + unlock",
            Anchor::PthreadMutexPair => "pthread_mutex_lock + increment + unlock",
            Anchor::FutexPingPongSameCpu => "futex ping-pong on 1 host CPU, round trip / 2",
            Anchor::FutexPingPongCrossCpu => "futex ping-pong across 2 host CPUs, round trip / 2",
            Anchor::YieldPingPongSameCpu => "sched_yield ping-pong on 1 host CPU, per switch",
        }
    }

    /// The program that measures it.
    fn program(self) -> &'static Program {
        match self {
            Anchor::UrcuQsbrRead | Anchor::UrcuQsbrSync => &URCU_QSBR,
            Anchor::UrcuMembRead | Anchor::UrcuMembSync => &URCU_MEMB,
            Anchor::PthreadRwlockRead | Anchor::PthreadMutexPair => &PTHREAD_LOCKS,
            Anchor::FutexPingPongSameCpu | Anchor::FutexPingPongCrossCpu => &FUTEX_PINGPONG,
            Anchor::YieldPingPongSameCpu => &YIELD_PINGPONG,
        }
    }
}

/// A library an anchor program links besides libc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Library {
    /// Userspace RCU (liburcu), 0.13's flavour-prefixed API.
    Urcu,
}

impl Library {
    /// The header whose absence means the library is not installed.
    fn header(self) -> &'static str {
        match self {
            Library::Urcu => "urcu/urcu-qsbr.h",
        }
    }

    /// Its development package on each distribution.
    fn package(distro: crate::setup::Distro) -> &'static str {
        use crate::setup::Distro;
        match distro {
            Distro::Debian => "liburcu-dev",
            Distro::Fedora => "userspace-rcu-devel",
            Distro::Arch => "liburcu",
            Distro::Suse => "liburcu-devel",
            Distro::Alpine => "userspace-rcu-dev",
        }
    }
}

/// How one program under `bench/anchors/` is built.
#[derive(Debug)]
struct Program {
    /// The executable's name in `target/anchors/`.
    name: &'static str,
    /// The source file in `bench/anchors/`.
    source: &'static str,
    /// Extra compiler arguments (defines).
    defines: &'static [&'static str],
    /// Libraries to link (`-l...`).
    libs: &'static [&'static str],
    /// The library it needs installed, if any.
    needs: Option<Library>,
}

const URCU_QSBR: Program = Program {
    name: "urcu_qsbr",
    source: "urcu.c",
    defines: &["-DANCHOR_QSBR"],
    libs: &["-lurcu-qsbr"],
    needs: Some(Library::Urcu),
};
const URCU_MEMB: Program = Program {
    name: "urcu_memb",
    source: "urcu.c",
    defines: &["-DANCHOR_MEMB"],
    libs: &["-lurcu-memb"],
    needs: Some(Library::Urcu),
};
const PTHREAD_LOCKS: Program =
    Program { name: "pthread_locks", source: "pthread_locks.c", defines: &[], libs: &[], needs: None };
const FUTEX_PINGPONG: Program =
    Program { name: "futex_pingpong", source: "futex_pingpong.c", defines: &[], libs: &[], needs: None };
const YIELD_PINGPONG: Program =
    Program { name: "yield_pingpong", source: "yield_pingpong.c", defines: &[], libs: &[], needs: None };

/// The shared header every program includes.
const HEADER: &str = "anchor.h";
/// Compiler flags of every program (then the defines, `-o`, the source, the libraries).
const CFLAGS: &[&str] = &["-O2", "-pthread", "-Wall", "-Wextra"];

/// A measured anchor: medians over its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Median nanoseconds per operation.
    pub ns_per_op: f64,
    /// Median TSC cycles per operation (x86_64 only).
    pub cycles_per_op: Option<f64>,
    /// Timed samples the medians are over.
    pub samples: u32,
    /// Operations per sample.
    pub ops: u64,
    /// The fastest and slowest sample, nanoseconds per operation.
    pub min_ns: f64,
    /// See `min_ns`.
    pub max_ns: f64,
    /// The line's other `key=value` pairs (CPUs used, readers, ...).
    pub extra: Vec<(String, String)>,
}

/// What became of one anchor.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It ran.
    Measured(Measurement),
    /// It cannot run on this host: a library is not installed, or too few
    /// host CPUs. `reason` says which and what to do.
    Missing {
        /// Why, in one line.
        reason: String,
    },
    /// Building or running it failed otherwise (a compile error, a crash, a
    /// timeout, no line printed).
    Failed {
        /// Why, in one line.
        reason: String,
    },
}

/// One anchor and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorResult {
    /// Which.
    pub anchor: Anchor,
    /// Its measurement, or why there is none.
    pub outcome: Outcome,
}

/// Builds and runs `anchors` (each program once, with the anchors asked of
/// it as arguments) and returns their results in the order asked.
pub fn run(anchors: &[Anchor]) -> Vec<AnchorResult> {
    run_limited(anchors, None)
}

/// [`run`], the programs using at most the first `max_cpus` host CPUs they
/// may run on (`ANCHOR_MAX_CPUS`: liburcu's busy readers are one per other
/// CPU, as many as an image of that many CPUs has).
pub fn run_limited(anchors: &[Anchor], max_cpus: Option<usize>) -> Vec<AnchorResult> {
    let root = crate::root();
    let mut programs: Vec<(&'static Program, Vec<Anchor>)> = Vec::new();
    for &anchor in anchors {
        let program = anchor.program();
        match programs.iter_mut().find(|(p, _)| p.name == program.name) {
            Some((_, list)) => list.push(anchor),
            None => programs.push((program, vec![anchor])),
        }
    }
    let mut outcomes: Vec<(Anchor, Outcome)> = Vec::new();
    for (program, asked) in programs {
        match build(&root, program) {
            Ok(exe) => outcomes.extend(run_program(&exe, &asked, max_cpus)),
            Err(outcome) => outcomes.extend(asked.iter().map(|&a| (a, outcome.clone()))),
        }
    }
    anchors
        .iter()
        .map(|&anchor| {
            let outcome = outcomes
                .iter()
                .find(|(a, _)| *a == anchor)
                .map(|(_, o)| o.clone())
                .expect("every anchor asked has an outcome");
            AnchorResult { anchor, outcome }
        })
        .collect()
}

/// `cargo xtask bench anchors`: every anchor, in a table.
pub fn bench() -> Result<ExitCode> {
    let started = Instant::now();
    let results = run(&Anchor::ALL);
    print!("{}", table(&results, &host_cpus()));
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// One anchor over several runs of its program (`cargo xtask bench ...
/// --platform linuxu` runs the peers `--repeats` times).
#[derive(Clone, Debug, PartialEq)]
pub struct Repeated {
    /// Which.
    pub anchor: Anchor,
    /// The median over runs of each run's median, or why there is none.
    pub outcome: RepeatedOutcome,
}

/// What became of one anchor over several runs.
#[derive(Clone, Debug, PartialEq)]
pub enum RepeatedOutcome {
    /// Every run measured it.
    Measured {
        /// Median over runs of the run's median ns per operation.
        ns: f64,
        /// The same in TSC cycles, where the host has them.
        cycles: Option<f64>,
        /// The smallest and largest run's median, ns per operation.
        min_ns: f64,
        /// See `min_ns`.
        max_ns: f64,
        /// Runs.
        runs: usize,
    },
    /// It cannot run on this host (in some run): why.
    Missing(String),
    /// Building or running it failed (in some run): why.
    Failed(String),
}

/// Runs `anchors` `times` times ([`run_limited`]) and takes, per anchor,
/// the median over runs; a failure in any run makes it failed, else one
/// run's "missing" makes it missing (with that run's reason).
pub fn run_repeated(anchors: &[Anchor], times: usize, max_cpus: Option<usize>) -> Vec<Repeated> {
    let runs: Vec<Vec<AnchorResult>> = (0..times.max(1)).map(|_| run_limited(anchors, max_cpus)).collect();
    repeated(anchors, &runs)
}

/// [`run_repeated`]'s aggregation of `runs` (each in the order of `anchors`).
pub fn repeated(anchors: &[Anchor], runs: &[Vec<AnchorResult>]) -> Vec<Repeated> {
    anchors
        .iter()
        .map(|&anchor| {
            let outcomes: Vec<&Outcome> =
                runs.iter().flatten().filter(|r| r.anchor == anchor).map(|r| &r.outcome).collect();
            let failed = outcomes.iter().find_map(|o| match o {
                Outcome::Failed { reason } => Some(reason.clone()),
                _ => None,
            });
            let missing = outcomes.iter().find_map(|o| match o {
                Outcome::Missing { reason } => Some(reason.clone()),
                _ => None,
            });
            let measured: Vec<&Measurement> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Outcome::Measured(m) => Some(m),
                    _ => None,
                })
                .collect();
            let outcome = match (failed, missing) {
                (Some(reason), _) => RepeatedOutcome::Failed(reason),
                (None, Some(reason)) => RepeatedOutcome::Missing(reason),
                (None, None) if measured.is_empty() => RepeatedOutcome::Failed("no run measured it".into()),
                (None, None) => {
                    let lower_median = |mut v: Vec<f64>| {
                        v.sort_by(f64::total_cmp);
                        v[(v.len() - 1) / 2]
                    };
                    let ns: Vec<f64> = measured.iter().map(|m| m.ns_per_op).collect();
                    let cycles: Option<Vec<f64>> = measured.iter().map(|m| m.cycles_per_op).collect();
                    RepeatedOutcome::Measured {
                        ns: lower_median(ns.clone()),
                        cycles: cycles.map(lower_median),
                        min_ns: ns.iter().copied().fold(f64::INFINITY, f64::min),
                        max_ns: ns.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        runs: measured.len(),
                    }
                }
            };
            Repeated { anchor, outcome }
        })
        .collect()
}

/// The host CPUs this process may run on, as a list ("0,1").
pub fn host_cpus() -> String {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return "?".into();
    }
    let cpus: Vec<String> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .map(|cpu| cpu.to_string())
        .collect();
    cpus.join(",")
}

/// The results as a table: one line per anchor, the missing ones with their
/// reason.
pub fn table(results: &[AnchorResult], cpus: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Native peers (bench/anchors, cc {}; host CPUs {cpus}):", CFLAGS.join(" "));
    let _ = writeln!(
        out,
        "  {:<26} {:>11} {:>11} {:>7} {:>23}   ukrs row",
        "peer", "ns/op", "cycles/op", "samples", "[min..max] ns/op"
    );
    for r in results {
        let name = r.anchor.name();
        match &r.outcome {
            Outcome::Measured(m) => {
                let cycles = m.cycles_per_op.map_or_else(|| "-".to_string(), fmt_ns);
                let spread = format!("[{}..{}]", fmt_ns(m.min_ns), fmt_ns(m.max_ns));
                let extra: Vec<String> = m.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(
                    out,
                    "  {name:<26} {:>11} {cycles:>11} {:>7} {spread:>23}   {}{}",
                    fmt_ns(m.ns_per_op),
                    m.samples,
                    r.anchor.ukrs_row(),
                    if extra.is_empty() { String::new() } else { format!("  ({})", extra.join(" ")) }
                );
            }
            Outcome::Missing { reason } => {
                let _ = writeln!(out, "  {name:<26} MISSING: {reason}   [{}]", r.anchor.ukrs_row());
            }
            Outcome::Failed { reason } => {
                let _ = writeln!(out, "  {name:<26} FAILED: {reason}   [{}]", r.anchor.ukrs_row());
            }
        }
    }
    out
}

/// Nanoseconds (or cycles) with as many decimals as matter.
fn fmt_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2}")
    } else if ns < 1000.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

// ---------------------------------------------------------------------------
// Building

/// The C compiler: `$CC`, else `cc`.
fn compiler() -> String {
    std::env::var("CC").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| "cc".into())
}

/// FNV-1a over `parts` (a stable content hash for the rebuild stamp).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ["ab", "c"] and ["a", "bc"] differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The arguments `cc` gets for `program` (sources relative to `dir`).
fn compile_args(dir: &Path, program: &Program, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = CFLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("-I{}", dir.display()));
    args.extend(program.defines.iter().map(|s| s.to_string()));
    args.push("-o".into());
    args.push(out.display().to_string());
    args.push(dir.join(program.source).display().to_string());
    args.extend(program.libs.iter().map(|s| s.to_string()));
    args
}

/// The result of trying to install `library` (once per process).
fn install(library: Library) -> &'static Result<(), String> {
    static URCU: OnceLock<Result<(), String>> = OnceLock::new();
    match library {
        Library::Urcu => URCU.get_or_init(|| {
            crate::setup::package(Library::package, "for the liburcu peers of `cargo xtask bench`", || {
                header_present(library.header())
            })
            .map_err(|e| format!("{e:#}"))
        }),
    }
}

/// Whether the C compiler finds `<header>`.
fn header_present(header: &str) -> bool {
    let child = Command::new(compiler())
        .args(["-E", "-x", "c", "-o", "/dev/null", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = writeln!(stdin, "#include <{header}>");
    }
    child.wait().is_ok_and(|s| s.success())
}

/// Builds `program` into `target/anchors/` unless the stamp says it is up to
/// date; the executable, or the outcome of its anchors when it cannot be
/// built.
fn build(root: &Path, program: &Program) -> Result<PathBuf, Outcome> {
    let dir = root.join("bench").join("anchors");
    let out_dir = root.join("target").join("anchors");
    let exe = out_dir.join(program.name);
    let failed = |reason: String| Outcome::Failed { reason };
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| failed(format!("reading bench/anchors/{name}: {e}")))
    };
    let (source, header) = (read(program.source)?, read(HEADER)?);
    let cc = compiler();
    let tmp = out_dir.join(format!("{}.tmp", program.name));
    let args = compile_args(&dir, program, &tmp);
    let stamp = format!("{:016x}\n", fnv1a(&[cc.as_bytes(), args.join(" ").as_bytes(), &source, &header]));
    let stamp_path = out_dir.join(format!("{}.stamp", program.name));
    if exe.is_file() && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(exe);
    }
    let install_error = program.needs.and_then(|lib| install(lib).as_ref().err().cloned());
    std::fs::create_dir_all(&out_dir).map_err(|e| failed(format!("creating {}: {e}", out_dir.display())))?;
    let output = match Command::new(&cc).args(&args).stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Outcome::Missing {
                reason: format!("no C compiler: `{cc}` is not on PATH (set CC)"),
            });
        }
        Err(e) => return Err(failed(format!("running {cc}: {e}"))),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(compile_failure(program, &stderr, install_error.as_deref()));
    }
    if !stderr.trim().is_empty() {
        eprintln!("xtask: warnings building bench/anchors/{}:\n{}", program.source, stderr.trim_end());
    }
    std::fs::rename(&tmp, &exe).map_err(|e| failed(format!("renaming {}: {e}", tmp.display())))?;
    let _ = std::fs::write(&stamp_path, stamp);
    Ok(exe)
}

/// What a failed compile of `program` means: a library that is not
/// installed (the header is not found, or the linker does not find a
/// `-l`) makes its anchors missing, with the reason and, where set-up
/// tried to install the library and could not, why; anything else is a
/// failure with the compiler's first error.
fn compile_failure(program: &Program, stderr: &str, install_error: Option<&str>) -> Outcome {
    let what = missing_from_compile_errors(stderr);
    match (what, program.needs) {
        (Some(what), needs) => {
            let library = match needs {
                Some(Library::Urcu) => format!(
                    "liburcu is not installed ({what}; Debian/Ubuntu package {})",
                    Library::package(crate::setup::Distro::Debian)
                ),
                None => what,
            };
            let reason = match install_error {
                Some(e) => format!("{library}; installing it failed: {}", one_line(e)),
                None => library,
            };
            Outcome::Missing { reason }
        }
        (None, _) => {
            let first = stderr
                .lines()
                .find(|l| l.contains("error"))
                .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
                .unwrap_or("no output");
            Outcome::Failed {
                reason: format!("compiling bench/anchors/{}: {}", program.source, first.trim()),
            }
        }
    }
}

/// The missing header or library a compiler's error output names (gcc/ld
/// and clang/lld wordings), as "header <x.h> not found" or "library -lx not
/// found by the linker".
pub fn missing_from_compile_errors(stderr: &str) -> Option<String> {
    for line in stderr.lines() {
        // gcc: "x.c:1:10: fatal error: urcu/urcu-qsbr.h: No such file or directory"
        if let Some(rest) = line.split("fatal error: ").nth(1) {
            if let Some(header) = rest.strip_suffix(": No such file or directory") {
                return Some(format!("header <{}> not found", header.trim()));
            }
            // clang: "fatal error: 'urcu/urcu-qsbr.h' file not found"
            if let Some(header) = rest.strip_suffix(" file not found") {
                return Some(format!("header <{}> not found", header.trim().trim_matches('\'')));
            }
        }
        // GNU ld: "/usr/bin/ld: cannot find -lurcu-qsbr: No such file or directory"
        // (older: "cannot find -lurcu-qsbr"); lld: "unable to find library -lurcu-qsbr"
        for marker in ["cannot find -l", "unable to find library -l"] {
            if let Some(rest) = line.split(marker).nth(1) {
                let lib = rest.split([':', ' ']).next().unwrap_or(rest);
                return Some(format!("library -l{lib} not found by the linker"));
            }
        }
    }
    None
}

/// The first line of `text`, with "..." when there was more.
fn one_line(text: &str) -> String {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("").trim().to_string();
    if lines.next().is_some() { format!("{first} ...") } else { first }
}

// ---------------------------------------------------------------------------
// Running

/// Runs `exe` with the names of `asked` as arguments (and `max_cpus` as
/// `ANCHOR_MAX_CPUS`) and returns an outcome for each.
fn run_program(exe: &Path, asked: &[Anchor], max_cpus: Option<usize>) -> Vec<(Anchor, Outcome)> {
    let names: Vec<&str> = asked.iter().map(|a| a.name()).collect();
    let mut command = Command::new(exe);
    command.args(&names);
    match max_cpus {
        Some(n) => command.env("ANCHOR_MAX_CPUS", n.max(1).to_string()),
        None => command.env_remove("ANCHOR_MAX_CPUS"),
    };
    let ran = run_with_timeout(&mut command, TIMEOUT);
    let (stdout, problem) = match ran {
        Ok((stdout, stderr, status)) => {
            let problem = (!status.success()).then(|| {
                let tail = one_line(stderr.lines().last().unwrap_or(""));
                format!(
                    "{} exited with {status}{}",
                    exe.display(),
                    if tail.is_empty() { tail } else { format!(": {tail}") }
                )
            });
            (stdout, problem)
        }
        Err(e) => (String::new(), Some(e)),
    };
    let lines = parse_output(&stdout);
    asked
        .iter()
        .map(|&anchor| {
            let line = lines.iter().find(|(name, _)| name == anchor.name());
            let outcome = match (line, &problem) {
                (Some((_, Ok(m))), None) => Outcome::Measured(m.clone()),
                (Some((_, Err(reason))), _) => Outcome::Missing { reason: reason.clone() },
                (Some((_, Ok(_))), Some(p)) => Outcome::Failed { reason: p.clone() },
                (None, Some(p)) => Outcome::Failed { reason: p.clone() },
                (None, None) => {
                    Outcome::Failed { reason: format!("{} printed no line for it", exe.display()) }
                }
            };
            (anchor, outcome)
        })
        .collect()
}

/// Runs `command`, killing it after `timeout`: its stdout, stderr and status.
fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
) -> Result<(String, String, std::process::ExitStatus), String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", command.get_program()))?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{:?} timed out after {} s", command.get_program(), timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {:?}: {e}", command.get_program())),
        }
    };
    Ok((out.join().unwrap_or_default(), err.join().unwrap_or_default(), status))
}

/// Every `anchor:` line of a program's output: the name, and the
/// measurement or (for `missing="..."`) the reason.
pub fn parse_output(stdout: &str) -> Vec<(String, Result<Measurement, String>)> {
    stdout.lines().filter_map(parse_line).collect()
}

/// One `anchor: name=N key=value ...` line (values may be double-quoted);
/// `None` for other lines and for lines without a name. A line with a name
/// but without the numbers is reported as missing, with what it lacks.
pub fn parse_line(line: &str) -> Option<(String, Result<Measurement, String>)> {
    let rest = line.trim().strip_prefix("anchor:")?;
    let pairs = key_values(rest);
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let name = get("name")?.to_string();
    if let Some(reason) = get("missing") {
        return Some((name, Err(reason.to_string())));
    }
    let num = |key: &str| get(key).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
    let Some(ns_per_op) = num("ns_per_op") else {
        return Some((name, Err(format!("its line has no ns_per_op: {}", line.trim()))));
    };
    const KNOWN: [&str; 7] = ["name", "ns_per_op", "cycles_per_op", "samples", "ops", "min_ns", "max_ns"];
    let measurement = Measurement {
        ns_per_op,
        cycles_per_op: num("cycles_per_op"),
        samples: get("samples").and_then(|v| v.parse().ok()).unwrap_or(0),
        ops: get("ops").and_then(|v| v.parse().ok()).unwrap_or(0),
        min_ns: num("min_ns").unwrap_or(ns_per_op),
        max_ns: num("max_ns").unwrap_or(ns_per_op),
        extra: pairs.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())).cloned().collect(),
    };
    Some((name, Ok(measurement)))
}

/// `key=value` pairs separated by spaces; a value may be `"quoted with
/// spaces"`. Words without `=` are skipped.
fn key_values(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let Some(eq) = rest[..word_end].find('=') else {
            rest = rest[word_end..].trim_start();
            continue;
        };
        let key = rest[..eq].to_string();
        let after = &rest[eq + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            },
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            }
        };
        pairs.push((key, value));
        rest = next.trim_start();
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_line_is_parsed() {
        let line = "anchor: name=futex_pingpong_cross_cpu ns_per_op=6908.442 cycles_per_op=15884.79 \
                    samples=11 ops=10000 min_ns=5998.763 max_ns=8001.280 cpus=0,1 rounds=5000";
        let (name, m) = parse_line(line).unwrap();
        assert_eq!(name, "futex_pingpong_cross_cpu");
        let m = m.unwrap();
        assert_eq!(m.ns_per_op, 6908.442);
        assert_eq!(m.cycles_per_op, Some(15884.79));
        assert_eq!((m.samples, m.ops), (11, 10000));
        assert_eq!((m.min_ns, m.max_ns), (5998.763, 8001.28));
        assert_eq!(m.extra, [("cpus".to_string(), "0,1".to_string()), ("rounds".into(), "5000".into())]);
    }

    #[test]
    fn missing_lines_and_other_lines() {
        let out = "#\nanchor: name=futex_pingpong_cross_cpu missing=\"needs 2 host CPUs (this process may run on 1: CPU 0)\"\n\
                   noise\nanchor: name=pthread_mutex_pair ns_per_op=15.7 samples=11 ops=1000000 min_ns=7.7 max_ns=26.1\n\
                   anchor: ns_per_op=1\nanchor: name=broken samples=3\n";
        let lines = parse_output(out);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            (
                "futex_pingpong_cross_cpu".to_string(),
                Err("needs 2 host CPUs (this process may run on 1: CPU 0)".to_string())
            )
        );
        let m = lines[1].1.as_ref().unwrap();
        assert_eq!((m.ns_per_op, m.cycles_per_op, m.samples), (15.7, None, 11));
        assert!(lines[2].1.as_ref().unwrap_err().contains("no ns_per_op"));
    }

    #[test]
    fn quoted_values_and_stray_words() {
        assert_eq!(
            key_values("a=1 word b=\"x y\" c=\"unterminated"),
            [
                ("a".to_string(), "1".to_string()),
                ("b".into(), "x y".into()),
                ("c".into(), "unterminated".into())
            ]
        );
        assert!(key_values("   ").is_empty());
    }

    #[test]
    fn compile_errors_name_the_missing_header_or_library() {
        let gcc = "urcu.c:17:10: fatal error: urcu/urcu-qsbr.h: No such file or directory\n   17 | #include <urcu/urcu-qsbr.h>\ncompilation terminated.\n";
        assert_eq!(missing_from_compile_errors(gcc).as_deref(), Some("header <urcu/urcu-qsbr.h> not found"));
        let clang = "urcu.c:17:10: fatal error: 'urcu/urcu-memb.h' file not found\n";
        assert_eq!(
            missing_from_compile_errors(clang).as_deref(),
            Some("header <urcu/urcu-memb.h> not found")
        );
        let ld = "/usr/bin/ld: cannot find -lurcu-qsbr: No such file or directory\ncollect2: error: ld returned 1 exit status\n";
        assert_eq!(
            missing_from_compile_errors(ld).as_deref(),
            Some("library -lurcu-qsbr not found by the linker")
        );
        let lld = "ld.lld: error: unable to find library -lurcu-memb\n";
        assert_eq!(
            missing_from_compile_errors(lld).as_deref(),
            Some("library -lurcu-memb not found by the linker")
        );
        assert_eq!(missing_from_compile_errors("x.c:3:1: error: expected ';' before '}' token\n"), None);
    }

    #[test]
    fn a_missing_library_makes_its_anchors_missing_with_the_reason() {
        let gcc = "urcu.c:17:10: fatal error: urcu/urcu-qsbr.h: No such file or directory\n";
        let Outcome::Missing { reason } = compile_failure(&URCU_QSBR, gcc, None) else { panic!() };
        assert_eq!(
            reason,
            "liburcu is not installed (header <urcu/urcu-qsbr.h> not found; Debian/Ubuntu package liburcu-dev)"
        );
        let Outcome::Missing { reason } = compile_failure(
            &URCU_MEMB,
            gcc,
            Some("apt-get install -y -qq liburcu-dev failed (exit status: 100): E: no network\nmore"),
        ) else {
            panic!()
        };
        assert!(reason.ends_with("; installing it failed: apt-get install -y -qq liburcu-dev failed (exit status: 100): E: no network ..."), "{reason}");
        let Outcome::Failed { reason } =
            compile_failure(&PTHREAD_LOCKS, "In function 'main':\nx.c:3:1: error: expected ';'\n", None)
        else {
            panic!()
        };
        assert_eq!(reason, "compiling bench/anchors/pthread_locks.c: x.c:3:1: error: expected ';'");
    }

    /// The real compiler on a program whose header is not installed: its
    /// anchors are reported missing, not skipped.
    #[test]
    fn a_real_compile_of_an_absent_header_is_reported_missing() {
        if crate::setup::which(&compiler()).is_none() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-anchors-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("absent.c"),
            "#include <ukrs_no_such_lib/none.h>\nint main(void) { return 0; }\n",
        )
        .unwrap();
        let program = Program { name: "absent", source: "absent.c", defines: &[], libs: &[], needs: None };
        let output = Command::new(compiler())
            .args(compile_args(&dir, &program, &dir.join("absent")))
            .output()
            .unwrap();
        assert!(!output.status.success());
        let outcome = compile_failure(&program, &String::from_utf8_lossy(&output.stderr), None);
        assert_eq!(outcome, Outcome::Missing { reason: "header <ukrs_no_such_lib/none.h> not found".into() });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_anchor_has_a_program_and_a_distinct_name() {
        let mut names: Vec<&str> = Anchor::ALL.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Anchor::ALL.len());
        for a in Anchor::ALL {
            let p = a.program();
            assert!(a.name().starts_with(p.name.split('_').next().unwrap()), "{a:?} in {}", p.name);
            let source = crate::root().join("bench/anchors").join(p.source);
            let text = std::fs::read_to_string(&source).unwrap();
            assert!(
                text.contains(&format!("\"{}\"", a.name())) || text.contains("FLAVOUR"),
                "{a:?} in {}",
                source.display()
            );
        }
    }

    #[test]
    fn the_table_shows_every_anchor_missing_ones_with_their_reason() {
        let results = vec![
            AnchorResult {
                anchor: Anchor::PthreadMutexPair,
                outcome: Outcome::Measured(Measurement {
                    ns_per_op: 15.77,
                    cycles_per_op: Some(36.3),
                    samples: 11,
                    ops: 1_000_000,
                    min_ns: 7.7,
                    max_ns: 26.2,
                    extra: vec![],
                }),
            },
            AnchorResult {
                anchor: Anchor::UrcuQsbrRead,
                outcome: Outcome::Missing { reason: "liburcu is not installed".into() },
            },
            AnchorResult {
                anchor: Anchor::YieldPingPongSameCpu,
                outcome: Outcome::Failed { reason: "timed out".into() },
            },
        ];
        let t = table(&results, "0,1");
        assert!(t.contains("host CPUs 0,1"), "{t}");
        assert!(t.contains("pthread_mutex_pair") && t.contains("15.8") && t.contains("[7.70..26.2]"), "{t}");
        assert!(
            t.contains("urcu_qsbr_read             MISSING: liburcu is not installed   [rcu read_cost/rcu]"),
            "{t}"
        );
        assert!(t.contains("yield_pingpong_same_cpu    FAILED: timed out"), "{t}");
    }

    #[test]
    fn repeated_runs_take_the_median_and_keep_what_went_wrong() {
        let m = |ns: f64| Measurement {
            ns_per_op: ns,
            cycles_per_op: Some(ns * 2.0),
            samples: 11,
            ops: 1000,
            min_ns: ns,
            max_ns: ns,
            extra: vec![],
        };
        let run = |mutex: f64, cross: Outcome, yield_: Outcome| {
            vec![
                AnchorResult { anchor: Anchor::PthreadMutexPair, outcome: Outcome::Measured(m(mutex)) },
                AnchorResult { anchor: Anchor::FutexPingPongCrossCpu, outcome: cross },
                AnchorResult { anchor: Anchor::YieldPingPongSameCpu, outcome: yield_ },
            ]
        };
        let missing = || Outcome::Missing { reason: "needs 2 host CPUs".into() };
        let runs = [
            run(7.0, missing(), Outcome::Measured(m(900.0))),
            run(9.0, Outcome::Measured(m(1.0)), Outcome::Failed { reason: "timed out".into() }),
            run(6.0, missing(), Outcome::Measured(m(950.0))),
        ];
        let anchors = [
            Anchor::PthreadMutexPair,
            Anchor::FutexPingPongCrossCpu,
            Anchor::YieldPingPongSameCpu,
            Anchor::UrcuQsbrRead,
        ];
        let r = repeated(&anchors, &runs);
        assert_eq!(
            r[0].outcome,
            RepeatedOutcome::Measured { ns: 7.0, cycles: Some(14.0), min_ns: 6.0, max_ns: 9.0, runs: 3 }
        );
        assert_eq!(r[1].outcome, RepeatedOutcome::Missing("needs 2 host CPUs".into()));
        assert_eq!(r[2].outcome, RepeatedOutcome::Failed("timed out".into()));
        // Asked for, never run: failed, not dropped.
        assert_eq!(r[3].outcome, RepeatedOutcome::Failed("no run measured it".into()));
        assert_eq!(r.iter().map(|p| p.anchor).collect::<Vec<_>>(), anchors);
    }

    #[test]
    fn the_stamp_hash_is_stable_and_separates_parts() {
        assert_eq!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"ab", b"c"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }
}

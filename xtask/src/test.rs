//! `cargo xtask test`: host unit tests of every crate, then every in-guest
//! test, each under a timeout, and one closing `N passed, N failed, N skipped`
//! line.
//!
//! Two phases. First the host tests and lints (`cargo test --workspace`,
//! fmt, clippy, the loom models) run in a thread while every guest image is
//! built in another: the two use different target directories, so neither
//! waits for the other's cargo lock. Then, once the host side is done, the
//! guests boot one after the other on an otherwise idle machine: several
//! guest checks measure rates against the clock (APIC timer ticks), and a
//! vCPU that competes with compilers for the host's cores loses ticks.
//!
//! Progress: each host step, image build and guest run prints a line when
//! it ends, numbered out of the total; what runs now is shown as it runs
//! (see [`crate::progress`]). A guest's passing test cases are counted but
//! only listed with `--verbose`; failures and skips are always listed.
//!
//! Honest counts: a check that cannot run here (KVM unusable, a CPU feature
//! missing, a guest test that calls `ut_skip!`) is counted as skipped with
//! its reason, never as passed. For every guest that runs uktest, the
//! totals it prints must equal the per-case lines xtask parsed.

use crate::guest::Guest;
use crate::image::{self, BuildOptions};
use crate::progress::Console;
use crate::qemu::{self, Outcome};
use crate::setup;
use anyhow::{Context, Result};
use kconfig::Workspace;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Only run guest checks whose name contains this text (host tests always run).
    #[arg(long)]
    pub filter: Option<String>,
    /// Skip the host unit tests.
    #[arg(long)]
    pub guest_only: bool,
    /// Timeout of each guest run, in seconds.
    #[arg(long, default_value_t = 120)]
    pub guest_timeout: u64,
    /// List every passing guest test case too (failures and skips are always listed).
    #[arg(long)]
    pub verbose: bool,
}

/// Counted results, printed through the console as they come.
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<String>,
    console: Arc<Console>,
    verbose: bool,
}

impl Tally {
    fn new(console: Arc<Console>, verbose: bool) -> Tally {
        Tally { passed: 0, failed: 0, skipped: 0, failures: Vec::new(), console, verbose }
    }

    /// Counts one check and prints its line.
    fn add(&mut self, name: &str, ok: bool, detail: &str) {
        self.record(name, ok, detail, true);
    }

    /// Counts one check; a passing one is printed only with `--verbose`.
    fn record(&mut self, name: &str, ok: bool, detail: &str, print_ok: bool) {
        let line = if ok {
            self.passed += 1;
            format!("{name} ... ok{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })
        } else {
            self.failed += 1;
            self.failures.push(name.to_string());
            format!(
                "{name} ... FAILED{}",
                if detail.is_empty() { String::new() } else { format!(": {detail}") }
            )
        };
        if !ok || print_ok || self.verbose {
            self.console.line(&line);
        }
    }

    /// Counts a check that cannot run here, with the reason.
    fn skip(&mut self, name: &str, why: &str) {
        self.skipped += 1;
        self.console.line(&format!("{name} ... skipped: {why}"));
    }

    /// Adds another tally's counts.
    fn merge(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
    }
}

/// What a guest check expects.
struct Expect {
    /// The guest's status; `None`: the guest must hang and be killed at the timeout.
    status: Option<u8>,
    serial: &'static [&'static str],
    /// Parse uktest's per-case lines and count them.
    uktest: bool,
    /// The `smp` app's per-CPU lines: exactly this many `cpu N: APIC id`
    /// lines, for N = 0, 1, ... in order.
    cpu_lines: Option<usize>,
}

/// One guest run.
struct GuestCheck {
    name: String,
    app: &'static str,
    sets: Vec<String>,
    config: Option<PathBuf>,
    release: bool,
    expect: Expect,
    timeout: Option<Duration>,
    /// Typed into the serial console after the guest printed a prompt:
    /// (prompt, text).
    input: Option<(&'static str, &'static str)>,
    /// Built with full debug info and run under gdb: see [`run_gdb_check`].
    gdb: bool,
    /// Why this check cannot run here; it is counted as skipped.
    skip: Option<String>,
    /// Text the serial log must not contain.
    absent: &'static [&'static str],
    /// Statuses accepted besides `expect.status` (a deliberately broken
    /// build that may fail in more than one way).
    also_status: &'static [u8],
    /// Boot it twice: these lines of the serial log must be there and the
    /// same in both boots (instruction counts under `platform.icount`).
    same_twice: Option<fn(&str) -> Vec<String>>,
    /// At most this many instructions from the image's first one to `main`
    /// (ukboot's `first instruction to main` line, printed with
    /// `platform.icount` and `ukboot.init_times`).
    max_to_main: Option<u64>,
}

fn check(name: &str, app: &'static str, sets: &[&str], expect: Expect) -> GuestCheck {
    GuestCheck {
        name: name.to_string(),
        app,
        sets: sets.iter().map(|s| s.to_string()).collect(),
        config: None,
        release: false,
        expect,
        timeout: None,
        input: None,
        gdb: false,
        skip: None,
        absent: &[],
        also_status: &[],
        same_twice: None,
        max_to_main: None,
    }
}

impl GuestCheck {
    /// This check, skipped with `why` when `why` is `Some`.
    fn unless(self, why: Option<String>) -> GuestCheck {
        GuestCheck { skip: why, ..self }
    }
}

const EXCEPTION: u8 = 111;
const PANIC: u8 = 110;

/// The guest checks. The main list runs under `auto`; `other` is the
/// accelerator `auto` did not pick, and gets variants of the essential
/// checks so that both accelerators are exercised wherever KVM works;
/// `kvm` says whether it does (and why not), and the checks that need it
/// are skipped with that reason otherwise.
fn guest_checks(auto: qemu::Accel, kvm: &Result<(), String>) -> Vec<GuestCheck> {
    let ok =
        |serial: &'static [&'static str]| Expect { status: Some(0), serial, uktest: false, cpu_lines: None };
    let mut checks = vec![
        check(
            "helloworld (microvm)",
            "helloworld",
            &[],
            ok(&["Hello, world!", "CPU: ", "Memory: ", "Boot: "]),
        ),
        check("helloworld (q35)", "helloworld", &["platform.machine=q35"], ok(&["Hello, world!"])),
        GuestCheck {
            release: true,
            ..check("helloworld (release)", "helloworld", &[], ok(&["Hello, world!"]))
        },
        check("exit (smallest image)", "exit", &[], ok(&[])),
        check(
            "tests (talc)",
            "tests",
            &[],
            Expect { status: Some(0), serial: &[], uktest: true, cpu_lines: None },
        ),
        check(
            "tests (linked-list backend)",
            "tests",
            &["ukalloc.backend=linked-list", "platform.cmdline=tests.expect_backend=linked-list"],
            Expect { status: Some(0), serial: &[], uktest: true, cpu_lines: None },
        ),
        check(
            "faults: #UD report",
            "faults",
            &["platform.cmdline=ud"],
            Expect {
                status: Some(EXCEPTION),
                serial: &["*** CPU EXCEPTION #UD (vector 6", "RIP: 0x", "RAX: 0x", "on CPU 0"],
                uktest: false,
                cpu_lines: None,
            },
        ),
        check(
            "faults: #PF report",
            "faults",
            &["platform.cmdline=pf"],
            Expect {
                status: Some(EXCEPTION),
                serial: &["*** CPU EXCEPTION #PF (vector 14", "CR2: 0x0000001000000000", "RIP: 0x"],
                uktest: false,
                cpu_lines: None,
            },
        ),
        check(
            "faults: null pointer #PF",
            "faults",
            &["platform.cmdline=null"],
            Expect {
                status: Some(EXCEPTION),
                serial: &["*** CPU EXCEPTION #PF (vector 14", "CR2: 0x0000000000000000"],
                uktest: false,
                cpu_lines: None,
            },
        ),
        check(
            "faults: stack overflow into a guard page (#DF, explained)",
            "faults",
            &["platform.cmdline=stack-overflow"],
            Expect {
                status: Some(EXCEPTION),
                serial: &[
                    "*** CPU EXCEPTION #DF (vector 8",
                    "CR2: 0x00000100",
                    "stack overflow: 0x",
                    " is in the guard page below the stack 0x",
                ],
                uktest: false,
                cpu_lines: None,
            },
        ),
        check(
            "faults: heap exhaustion report",
            "faults",
            &["platform.cmdline=oom"],
            Expect {
                status: Some(PANIC),
                serial: &["ukalloc: out of memory: allocation of", "*** PANIC"],
                uktest: false,
                cpu_lines: None,
            },
        ),
        check(
            "faults: panic report",
            "faults",
            &["platform.cmdline=panic"],
            Expect {
                status: Some(PANIC),
                serial: &["*** PANIC on CPU 0 at ", "apps/faults/src/lib.rs:"],
                uktest: false,
                cpu_lines: None,
            },
        ),
        GuestCheck {
            timeout: Some(Duration::from_secs(5)),
            ..check(
                "faults: a hung guest times out with its serial log",
                "faults",
                &["platform.cmdline=hang"],
                Expect {
                    status: None,
                    serial: &["faults: hanging on purpose"],
                    uktest: false,
                    cpu_lines: None,
                },
            )
        },
        GuestCheck {
            gdb: true,
            timeout: Some(Duration::from_secs(60)),
            ..check(
                "gdb: attaches with symbols, stops at helloworld::main, the guest then finishes (tcg)",
                "helloworld",
                &["platform.accel=tcg"],
                ok(&["Hello, world!"]),
            )
        },
    ];
    let no_kvm = kvm.as_ref().err().map(|why| format!("KVM is not usable here ({why})"));
    checks.extend(smp_checks(&no_kvm));
    checks.extend(sched_checks(&no_kvm));
    checks.extend(rcu_checks());
    checks.extend(futex_checks());
    checks.extend(linuxu_checks());
    let other = match auto {
        qemu::Accel::Kvm => qemu::Accel::Tcg,
        qemu::Accel::Tcg => qemu::Accel::Kvm,
    };
    let unusable = if other == qemu::Accel::Kvm { no_kvm } else { None };
    let (set, hello): (&str, &'static [&'static str]) = match other {
        qemu::Accel::Kvm => ("platform.accel=kvm", &["Hello, world!", "Accelerator: KVM"]),
        qemu::Accel::Tcg => ("platform.accel=tcg", &["Hello, world!", "Accelerator: TCG"]),
    };
    let name = |what: &str| format!("{what} ({})", other.name());
    checks.push(check(&name("helloworld"), "helloworld", &[set], ok(hello)).unless(unusable.clone()));
    // Instruction counting: QEMU's -icount and ukboot's per-stage report,
    // on the image `bench boot --icount` counts (release), with its goal.
    for machine in ["microvm", "q35"] {
        let set = format!("platform.machine={machine}");
        checks.push(GuestCheck {
            release: true,
            max_to_main: Some(crate::bench::BOOT_ICOUNT_GOAL),
            ..check(
                &format!(
                    "helloworld: instructions per boot stage, at most {} to main (tcg, icount, {machine})",
                    crate::bench::BOOT_ICOUNT_GOAL
                ),
                "helloworld",
                &[&set, "platform.accel=tcg", "platform.icount=true", "ukboot.init_times=true"],
                ok(&[
                    "ukboot: boot stage platform ",
                    "ukboot: boot stage init:",
                    "ukboot: first instruction to main ",
                ]),
            )
        });
    }
    // The same counts in two boots: a same-CPU context switch, yield_now
    // and the loop around them (apps/schedbench with icount=1).
    checks.push(GuestCheck {
        same_twice: Some(crate::bench::icount_lines),
        ..check(
            "schedbench: instruction counts (yield, context switch) the same in two boots (tcg, icount)",
            "schedbench",
            &[
                "platform.accel=tcg",
                "platform.icount=true",
                "platform.cpus=2",
                "uksched.policy=preempt",
                "platform.cmdline=icount=1",
            ],
            ok(&["bench: metric=icount kind=switch "]),
        )
    });
    checks.push(
        check(
            &name("tests"),
            "tests",
            &[set],
            Expect { status: Some(0), serial: &[], uktest: true, cpu_lines: None },
        )
        .unless(unusable.clone()),
    );
    checks.push(
        check(
            &name("faults: #UD report"),
            "faults",
            &["platform.cmdline=ud", set],
            Expect {
                status: Some(EXCEPTION),
                serial: &["*** CPU EXCEPTION #UD (vector 6"],
                uktest: false,
                cpu_lines: None,
            },
        )
        .unless(unusable),
    );
    checks
}

/// The `smp` app: under TCG with 1, 2, 4 and 8 CPUs (microvm) and 2 (q35),
/// both APIC modes' handling under TCG (xAPIC runs; a forced x2APIC is a
/// clear boot error, TCG having none), and, when KVM is usable, 2 CPUs
/// under KVM in x2APIC mode (when the host CPU has it) and in xAPIC mode;
/// `no_kvm` is why KVM cannot be used, if it cannot.
fn smp_checks(no_kvm: &Option<String>) -> Vec<GuestCheck> {
    let tests = |cpus: usize, mode: &'static [&'static str]| Expect {
        status: Some(0),
        serial: mode,
        uktest: true,
        cpu_lines: Some(cpus),
    };
    const XAPIC: &[&str] = &["local APIC in xAPIC mode"];
    const X2APIC: &[&str] = &["local APIC in x2APIC mode"];
    let mut checks = Vec::new();
    for cpus in [1, 2, 4, 8] {
        let sets = [format!("platform.cpus={cpus}"), "platform.accel=tcg".to_string()];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        checks.push(check(&format!("smp (tcg, {cpus} CPUs)"), "smp", &sets, tests(cpus, XAPIC)));
    }
    checks.push(GuestCheck {
        input: Some(("smp: type 1 line(s)", "typed-into-the-serial-port\n")),
        ..check(
            "smp: a line typed on the serial port arrives by IRQ 4 through the I/O APIC (tcg)",
            "smp",
            &["platform.cpus=2", "platform.accel=tcg", "platform.cmdline=echo=1"],
            Expect {
                status: Some(0),
                serial: &["echo: typed-into-the-serial-port (interrupt-driven: vector 0x24, "],
                uktest: true,
                cpu_lines: Some(2),
            },
        )
    });
    checks.push(check(
        "smp: #UD on CPU 2 is reported as CPU 2's (tcg)",
        "smp",
        &["platform.cpus=4", "platform.accel=tcg", "platform.cmdline=ud-on-cpu=2"],
        Expect {
            status: Some(EXCEPTION),
            serial: &["*** CPU EXCEPTION #UD (vector 6, invalid opcode) on CPU 2 (APIC id 2)", "RIP: 0x"],
            uktest: false,
            cpu_lines: Some(4),
        },
    ));
    checks.push(check(
        "smp (tcg, q35, 2 CPUs)",
        "smp",
        &["platform.cpus=2", "platform.accel=tcg", "platform.machine=q35"],
        tests(2, XAPIC),
    ));
    checks.push(check(
        "smp: apic.mode=x2apic without x2APIC is a boot error (tcg)",
        "smp",
        &["platform.cpus=2", "platform.accel=tcg", "apic.mode=x2apic"],
        Expect {
            status: Some(1),
            serial: &["kvm: boot failed: apic: apic.mode = \"x2apic\" but this CPU does not offer x2APIC"],
            uktest: false,
            cpu_lines: None,
        },
    ));
    let no_x2apic = no_kvm.clone().or_else(|| {
        (!host_has_x2apic())
            .then(|| "the host CPU has no x2APIC (/proc/cpuinfo), so -cpu host has none".into())
    });
    checks.push(
        check(
            "smp (kvm, 2 CPUs, x2APIC)",
            "smp",
            &["platform.cpus=2", "platform.accel=kvm", "apic.mode=x2apic"],
            tests(2, X2APIC),
        )
        .unless(no_x2apic),
    );
    checks.push(
        check(
            "smp (kvm, 2 CPUs, xAPIC)",
            "smp",
            &["platform.cpus=2", "platform.accel=kvm", "apic.mode=xapic"],
            tests(2, XAPIC),
        )
        .unless(no_kvm.clone()),
    );
    checks
}

/// Strings built at run time where an [`Expect`] wants `'static` ones
/// (the check list is built once per run, so this leaks a few lines).
fn leaked(lines: Vec<String>) -> &'static [&'static str] {
    Vec::leak(lines.into_iter().map(|l| &*String::leak(l)).collect())
}

/// The TCG configurations of the apps above the scheduler: both policies
/// on 1, 2 and 4 CPUs, as (policy, CPUs, `--set`s).
fn policy_matrix() -> Vec<(&'static str, usize, Vec<String>)> {
    let mut out = Vec::new();
    for policy in ["coop", "preempt"] {
        for cpus in [1, 2, 4] {
            let sets = vec![
                format!("platform.cpus={cpus}"),
                "platform.accel=tcg".into(),
                format!("uksched.policy={policy}"),
            ];
            out.push((policy, cpus, sets));
        }
    }
    out
}

/// The `sched` app (`apps/sched`): its tests (uksched's, uklock's and
/// the app's own) under both policies on 1, 2 and 4 CPUs
/// (TCG), and with `preempt` on 2 CPUs under KVM when it is usable; the
/// serial must show the policy the scheduler started with. Then its fault
/// modes: a thread's stack overflow named in the exception report, and the
/// sleeping mutex's owner checks as panics.
fn sched_checks(no_kvm: &Option<String>) -> Vec<GuestCheck> {
    let tests = |policy: &str, cpus: usize| {
        let started = match policy {
            "coop" => format!("uksched: coop scheduler on {cpus} CPU(s)"),
            _ => format!("uksched: {policy} scheduler on {cpus} CPU(s), "),
        };
        let mut serial = vec![started, format!("sched: {policy} policy on {cpus} CPU(s)")];
        if policy == "preempt" {
            serial.push(" us time slices".into());
        }
        Expect { status: Some(0), serial: leaked(serial), uktest: true, cpu_lines: None }
    };
    let mut checks = Vec::new();
    for (policy, cpus, sets) in policy_matrix() {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        checks.push(check(
            &format!("sched (tcg, {policy}, {cpus} CPUs)"),
            "sched",
            &sets,
            tests(policy, cpus),
        ));
    }
    // uklock.mutex = "futex": the same tests against the futex Mutex and
    // Condvar, on several CPUs.
    for (policy, cpus, mut sets) in policy_matrix().into_iter().filter(|(_, cpus, _)| *cpus > 1) {
        sets.push("uklock.mutex=futex".into());
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let mut expect = tests(policy, cpus);
        let mut serial = expect.serial.to_vec();
        serial.push("uklock: Mutex and Condvar are the futex implementation");
        expect.serial = Vec::leak(serial);
        checks.push(check(
            &format!("sched (tcg, {policy}, {cpus} CPUs, uklock.mutex=futex)"),
            "sched",
            &sets,
            expect,
        ));
    }
    checks.push(
        GuestCheck {
            // kvm_pvm emulates every instruction: minutes, not seconds.
            timeout: Some(Duration::from_secs(600)),
            ..check(
                "sched (kvm, preempt, 2 CPUs)",
                "sched",
                &["platform.cpus=2", "platform.accel=kvm", "uksched.policy=preempt"],
                tests("preempt", 2),
            )
        }
        .unless(no_kvm.clone()),
    );
    let fault = |mode: &str, status: u8, serial: &'static [&'static str]| {
        let cmdline = format!("platform.cmdline={mode}");
        check(
            &format!("sched: {mode} (tcg, 2 CPUs)"),
            "sched",
            &["platform.cpus=2", "platform.accel=tcg", &cmdline],
            Expect { status: Some(status), serial, uktest: false, cpu_lines: None },
        )
    };
    // The futex mutex keeps the owner checks.
    let futex_fault = |mode: &str, serial: &'static [&'static str]| {
        let cmdline = format!("platform.cmdline={mode}");
        check(
            &format!("sched: {mode} (tcg, 2 CPUs, uklock.mutex=futex)"),
            "sched",
            &["platform.cpus=2", "platform.accel=tcg", "uklock.mutex=futex", &cmdline],
            Expect { status: Some(PANIC), serial, uktest: false, cpu_lines: None },
        )
    };
    checks.push(futex_fault(
        "mutex-relock",
        &["*** PANIC on CPU ", "uklock: thread `relocker` (id ", ") locks a Mutex it already holds"],
    ));
    checks.push(futex_fault(
        "mutex-foreign-unlock",
        &["*** PANIC on CPU ", "uklock: thread `intruder` (id ", ") unlocks a Mutex held by thread id "],
    ));
    checks.push(fault(
        "overflow",
        EXCEPTION,
        &["sched: thread `deep` recurses", "*** CPU EXCEPTION #", "STACK OVERFLOW in thread `deep` (id "],
    ));
    checks.push(fault(
        "mutex-relock",
        PANIC,
        &["*** PANIC on CPU ", "uklock: thread `relocker` (id ", ") locks a Mutex it already holds"],
    ));
    checks.push(fault(
        "mutex-foreign-unlock",
        PANIC,
        &["*** PANIC on CPU ", "uklock: thread `intruder` (id ", ") unlocks a Mutex held by thread id "],
    ));
    checks.push(fault(
        "rcu-block",
        PANIC,
        &[
            "ukrcu: a thread blocks, sleeps or yields inside 1 RCU read-side critical section(s)",
            "*** PANIC on CPU ",
            "uksched: thread `reader` tried to block, sleep or yield with preemption disabled",
            "\nin thread `reader` (id ",
        ],
    ));
    // The stall report of each flavour: the CPUs and their threads under
    // qsbr, the open sections under refcount.
    let rcu_stall = |name: &str, flavor: &'static str, report: &'static [&'static str]| {
        let mut serial = vec!["ukrcu: INFO: grace period ", " stalled for "];
        serial.extend_from_slice(report);
        serial.push("sched: rcu-stall: synchronize returned after ");
        check(
            name,
            "sched",
            &[
                "platform.cpus=2",
                "platform.accel=tcg",
                "uksched.policy=coop",
                flavor,
                "ukrcu.stall_timeout_ms=100",
                "platform.cmdline=rcu-stall",
            ],
            Expect { status: Some(0), serial: Vec::leak(serial), uktest: false, cpu_lines: None },
        )
    };
    checks.push(rcu_stall(
        "sched: rcu-stall: a CPU that holds a grace period up is reported with its thread (tcg, coop, 2 CPUs)",
        "ukrcu.flavor=qsbr",
        &[
            " by CPU(s) 1 (no quiescent state",
            "ukrcu: INFO: rcu_qsbr self-detected stall on CPU 1: thread `hog` (id ",
        ],
    ));
    checks.push(rcu_stall(
        "sched: rcu-stall: an open read-side section that holds a grace period up is reported (tcg, refcount, coop, 2 CPUs)",
        "ukrcu.flavor=refcount",
        &[" by 1 read-side section(s) begun before it (refcount flavour"],
    ));
    checks
}

/// The `rcu` app (`apps/rcu`, rcutorture for `ukrcu`) under TCG on 1, 2
/// and 4 CPUs with both flavours and both policies, 1.5 s of torture each:
/// status 0 and a summary line with no error; and in the same twelve
/// configurations its `tests` mode (ukrcu's own in-guest tests, the list's,
/// the searchable stack's and the hash map's). Then, for each flavour, the
/// torture built with `ukrcu.broken_grace_periods=true` (grace periods
/// that wait for nobody) on 2 CPUs under `preempt`: it must notice, with
/// status 1 and a summary line whose error count is not 0.
fn rcu_checks() -> Vec<GuestCheck> {
    const DURATION: &str = "platform.cmdline=duration_ms=1500";
    let mut checks = Vec::new();
    for flavor in ["qsbr", "refcount"] {
        for policy in ["coop", "preempt"] {
            for cpus in [1, 2, 4] {
                let sets = [
                    format!("platform.cpus={cpus}"),
                    "platform.accel=tcg".into(),
                    format!("uksched.policy={policy}"),
                    format!("ukrcu.flavor={flavor}"),
                    DURATION.into(),
                ];
                let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
                let serial = leaked(vec![
                    format!("rcu: rcutorture on {cpus} CPU(s), {policy} policy, {flavor} flavour, "),
                    "broken_grace_periods=false broken_refcount=false".into(),
                    "rcutorture: reads=".into(),
                    " errors=0 barrier_errors=0".into(),
                ]);
                checks.push(GuestCheck {
                    // A grace period that never ends hangs the guest: fail
                    // sooner than the default timeout.
                    timeout: Some(Duration::from_secs(60)),
                    ..check(
                        &format!("rcu: rcutorture (tcg, {flavor}, {policy}, {cpus} CPUs)"),
                        "rcu",
                        &sets,
                        Expect { status: Some(0), serial, uktest: false, cpu_lines: None },
                    )
                });
                // ukrcu's tests and the data structures built on RCU: the
                // searchable stack and the hash map (uktest cases).
                let sets = [
                    format!("platform.cpus={cpus}"),
                    "platform.accel=tcg".into(),
                    format!("uksched.policy={policy}"),
                    format!("ukrcu.flavor={flavor}"),
                    "platform.cmdline=tests".into(),
                ];
                let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
                checks.push(GuestCheck {
                    timeout: Some(Duration::from_secs(90)),
                    ..check(
                        &format!(
                            "rcu: ukrcu, stack and hash map tests (tcg, {flavor}, {policy}, {cpus} CPUs)"
                        ),
                        "rcu",
                        &sets,
                        Expect { status: Some(0), serial: &[], uktest: true, cpu_lines: None },
                    )
                });
            }
        }
        let flavor_set = leaked(vec![format!("ukrcu.flavor={flavor}")]);
        checks.push(GuestCheck {
            timeout: Some(Duration::from_secs(60)),
            absent: &[" errors=0 "],
            ..check(
                &format!("rcu: rcutorture catches broken grace periods (tcg, {flavor}, preempt, 2 CPUs)"),
                "rcu",
                &[
                    "platform.cpus=2",
                    "platform.accel=tcg",
                    "uksched.policy=preempt",
                    "ukrcu.broken_grace_periods=true",
                    flavor_set[0],
                    DURATION,
                ],
                Expect {
                    status: Some(1),
                    serial: &[
                        "broken_grace_periods=true",
                        "rcutorture: reads=",
                        "rcutorture: FAILED: errors > 0",
                    ],
                    uktest: false,
                    cpu_lines: None,
                },
            )
        });
    }
    // The refcount flavour's own hard part: readers that load an address
    // and count their reference in a second step (after a pause) must be
    // caught — by the torture (a freed handle, status 1), by the heap's
    // double-free check when the late reference goes (a panic), or by a
    // fault when the freed memory was reused (a CPU exception report: a
    // late reference written into a reallocated block can corrupt the
    // heap's free list). Which comes first depends on timing; a clean
    // exit never passes.
    checks.push(GuestCheck {
        timeout: Some(Duration::from_secs(60)),
        absent: &[" errors=0 "],
        also_status: &[PANIC, EXCEPTION],
        ..check(
            "rcu: rcutorture catches a load-then-count refcount (tcg, refcount, preempt, 2 CPUs)",
            "rcu",
            &[
                "platform.cpus=2",
                "platform.accel=tcg",
                "uksched.policy=preempt",
                "ukrcu.flavor=refcount",
                "ukrcu.broken_refcount=true",
                DURATION,
            ],
            Expect {
                status: Some(1),
                serial: &["refcount flavour, ", "broken_refcount=true"],
                uktest: false,
                cpu_lines: None,
            },
        )
    });
    checks
}

/// The `futex` app (`apps/futex`): LTP's futex scenarios, robust lists
/// and the lost-wake-up stress under both policies on 1, 2 and 4 CPUs;
/// then the stress must catch a futex that reads its word before taking
/// the bucket lock (`posix-futex.broken_unlocked_check`).
fn futex_checks() -> Vec<GuestCheck> {
    let mut checks = Vec::new();
    for (policy, cpus, sets) in policy_matrix() {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let serial = leaked(vec![
            format!("futex: {policy} policy on {cpus} CPU(s), "),
            "broken_unlocked_check=false".into(),
            " 0 lost wake-ups".into(),
        ]);
        checks.push(GuestCheck {
            timeout: Some(Duration::from_secs(90)),
            ..check(
                &format!("futex (tcg, {policy}, {cpus} CPUs)"),
                "futex",
                &sets,
                Expect { status: Some(0), serial, uktest: true, cpu_lines: None },
            )
        });
    }
    checks.push(GuestCheck {
        timeout: Some(Duration::from_secs(120)),
        ..check(
            "futex: the stress catches a word checked outside the bucket lock (tcg, preempt, 2 CPUs)",
            "futex",
            &[
                "platform.cpus=2",
                "platform.accel=tcg",
                "uksched.policy=preempt",
                "posix-futex.broken_unlocked_check=true",
                "uktest.filter=futex::stress::",
            ],
            Expect {
                status: Some(1),
                serial: &[
                    "broken_unlocked_check=true",
                    "test futex::stress::ping_pong_loses_no_wake_up ... FAILED",
                    "lost wake-ups",
                ],
                uktest: false,
                cpu_lines: None,
            },
        )
    });
    checks
}

/// The apps that need no devices, run as Linux processes (`--set
/// platform.name=linuxu`, each CPU a host thread): helloworld on 1 and 4
/// CPUs; sched, futex and rcu (torture and tests) under both policies on
/// 1, 2 and 4 CPUs; tests on 1; smp on 1, 2 and 4. The same expectations
/// as under QEMU, less what is
/// about QEMU's devices. No accelerator is involved: none of these is
/// skipped for want of KVM.
fn linuxu_checks() -> Vec<GuestCheck> {
    let unsupported = (!cfg!(all(target_os = "linux", target_arch = "x86_64")))
        .then(|| "linuxu images are Linux x86_64 executables; this host is not one".to_string());
    // A check of `app` on linuxu with `cpus` CPUs and more `--set`s.
    let on = |name: String, app: &'static str, cpus: usize, more: &[&str], expect: Expect| {
        let cpus = format!("platform.cpus={cpus}");
        let sets: Vec<&str> =
            ["platform.name=linuxu", cpus.as_str()].into_iter().chain(more.iter().copied()).collect();
        check(&name, app, &sets, expect)
    };
    let expect = |serial: Vec<String>, uktest: bool, cpu_lines: Option<usize>| Expect {
        status: Some(0),
        serial: leaked(serial),
        uktest,
        cpu_lines,
    };
    let policies = || ["coop", "preempt"].into_iter().flat_map(|policy| [1, 2, 4].map(|cpus| (policy, cpus)));
    let mut checks = Vec::new();
    for cpus in [1, 4] {
        let serial =
            ["Hello, world! ukrs on linuxu", "CPU: ", "Memory: ", "Boot: "].map(String::from).to_vec();
        checks.push(on(
            format!("helloworld (linuxu, {})", n_cpus(cpus)),
            "helloworld",
            cpus,
            &[],
            expect(serial, false, None),
        ));
    }
    for (policy, cpus) in policies() {
        let set = format!("uksched.policy={policy}");
        let started = match policy {
            "coop" => format!("uksched: coop scheduler on {cpus} CPU(s)"),
            _ => format!("uksched: {policy} scheduler on {cpus} CPU(s), "),
        };
        checks.push(on(
            format!("sched (linuxu, {policy}, {})", n_cpus(cpus)),
            "sched",
            cpus,
            &[&set],
            expect(vec![started, format!("sched: {policy} policy on {cpus} CPU(s)")], true, None),
        ));
        let serial = vec![
            format!("futex: {policy} policy on {cpus} CPU(s), "),
            "broken_unlocked_check=false".into(),
            " 0 lost wake-ups".into(),
        ];
        checks.push(GuestCheck {
            timeout: Some(Duration::from_secs(90)),
            ..on(
                format!("futex (linuxu, {policy}, {})", n_cpus(cpus)),
                "futex",
                cpus,
                &[&set],
                expect(serial, true, None),
            )
        });
        let serial = vec![
            format!("rcu: rcutorture on {cpus} CPU(s), {policy} policy, qsbr flavour, "),
            "rcutorture: reads=".into(),
            " errors=0 barrier_errors=0".into(),
        ];
        checks.push(GuestCheck {
            timeout: Some(Duration::from_secs(60)),
            ..on(
                format!("rcu: rcutorture (linuxu, {policy}, {})", n_cpus(cpus)),
                "rcu",
                cpus,
                &[&set, "platform.cmdline=duration_ms=1500"],
                expect(serial, false, None),
            )
        });
        checks.push(GuestCheck {
            timeout: Some(Duration::from_secs(90)),
            ..on(
                format!("rcu: ukrcu, stack and hash map tests (linuxu, {policy}, {})", n_cpus(cpus)),
                "rcu",
                cpus,
                &[&set, "platform.cmdline=tests"],
                expect(Vec::new(), true, None),
            )
        });
    }
    // The command line of config/tests.toml is built in: the image runs
    // with no arguments.
    checks.push(on(
        format!("tests (linuxu, {})", n_cpus(1)),
        "tests",
        1,
        &[],
        expect(Vec::new(), true, None),
    ));
    for cpus in [1, 2, 4] {
        let serial = vec!["on platform linuxu".into(), format!("smp: {cpus} CPU")];
        checks.push(on(
            format!("smp (linuxu, {})", n_cpus(cpus)),
            "smp",
            cpus,
            &[],
            expect(serial, true, Some(cpus)),
        ));
    }
    // The fault reports: a thread's stack overflow (SIGSEGV on an unmapped
    // guard page, caught on the CPU's signal stack) named like on kvm, and
    // a panic naming its thread; and the pinned CPUs of benchmarks.
    let fault = |mode: &str, status: u8, serial: &[&'static str]| {
        let mut c = on(
            format!("sched: {mode} (linuxu, preempt, 2 CPUs)"),
            "sched",
            2,
            &["uksched.policy=preempt"],
            Expect {
                status: Some(status),
                serial: Vec::leak(serial.to_vec()),
                uktest: false,
                cpu_lines: None,
            },
        );
        c.sets.push(format!("platform.cmdline={mode}"));
        c
    };
    checks.push(fault(
        "overflow",
        EXCEPTION,
        &[
            "sched: thread `deep` recurses",
            "*** CPU EXCEPTION #PF (vector 14, page fault) on CPU ",
            "signal: SIGSEGV (11)",
            "STACK OVERFLOW in thread `deep` (id ",
        ],
    ));
    checks.push(fault(
        "mutex-relock",
        PANIC,
        &["*** PANIC on CPU ", "uklock: thread `relocker` (id ", ") locks a Mutex it already holds"],
    ));
    checks.push(on(
        "sched (linuxu, preempt, 4 CPUs, pinned)".into(),
        "sched",
        4,
        &["uksched.policy=preempt", "platform.pin=true"],
        expect(vec!["sched: preempt policy on 4 CPU(s)".into()], true, None),
    ));
    checks.into_iter().map(|c| c.unless(unsupported.clone())).collect()
}

/// `1 CPU`, `N CPUs`.
fn n_cpus(n: usize) -> String {
    if n == 1 { "1 CPU".into() } else { format!("{n} CPUs") }
}

/// Whether the host CPU (and so `-cpu host` under KVM) has x2APIC.
fn host_has_x2apic() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "x2apic"))
    })
}

/// Checks the `smp` app's per-CPU lines: exactly `n`, numbered 0..n in
/// order, with distinct APIC ids.
fn check_cpu_lines(serial: &str, n: usize) -> Result<(), String> {
    let lines: Vec<&str> =
        serial.lines().filter(|l| l.starts_with("cpu ") && l.contains(": APIC id ")).collect();
    if lines.len() != n {
        return Err(format!("{} per-CPU lines, expected {n}", lines.len()));
    }
    let mut ids = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(&format!("cpu {i}: ")) {
            return Err(format!("per-CPU line {i} is {line:?}"));
        }
        let id = line.split(": APIC id ").nth(1).and_then(|rest| rest.split(',').next()).unwrap_or("");
        if ids.contains(&id) {
            return Err(format!("APIC id {id} reported twice"));
        }
        ids.push(id);
    }
    Ok(())
}

/// A variant name for the image directory: the app plus a short hash of the
/// overrides, so variants don't overwrite each other's generated crate.
fn variant_name(app: &str, sets: &[String], config: Option<&Path>) -> String {
    let key = format!("{sets:?}{config:?}");
    if sets.is_empty() && config.is_none() {
        return app.to_string();
    }
    let hash =
        key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{app}-{:08x}", hash as u32)
}

/// A guest check whose image is built.
struct Built {
    check: GuestCheck,
    image: image::Image,
    guest: Guest,
}

/// Builds the image of a guest check; a failed build is counted as a failed
/// check (and `None` returned).
fn build_guest_check(ws: &Workspace, c: GuestCheck, tally: &mut Tally) -> Result<Option<Built>> {
    let resolved = ws.resolve(c.app, c.config.as_deref(), &c.sets)?;
    let opts = BuildOptions {
        release: c.release,
        name: Some(variant_name(c.app, &c.sets, c.config.as_deref())),
        quiet: true,
        debug_info: c.gdb,
    };
    match image::build(ws, &resolved, &opts) {
        Ok(image) => {
            let (guest, _) = Guest::from_resolved(&resolved, None)?;
            for note in &resolved.notes {
                tally.console.line(&format!("note: guest {}: {note}", c.name));
            }
            Ok(Some(Built { check: c, image, guest }))
        }
        Err(e) => {
            tally.add(&format!("guest {}", c.name), false, &format!("build failed: {e:#}"));
            Ok(None)
        }
    }
}

/// uktest's closing line, `N passed, N failed, N skipped`, as numbers.
fn uktest_totals(line: &str) -> Option<(usize, usize, usize)> {
    let mut parts = line.trim().split(", ");
    let mut count = |suffix: &str| parts.next()?.strip_suffix(suffix)?.parse::<usize>().ok();
    let totals = (count(" passed")?, count(" failed")?, count(" skipped")?);
    parts.next().is_none().then_some(totals)
}

/// One uktest case line: `test NAME ... ok (N cycles)`, `test NAME ...
/// FAILED at FILE:LINE: message` or `test NAME ... skipped: REASON`.
#[derive(Debug, PartialEq, Eq)]
enum Case<'a> {
    Passed(&'a str),
    Failed(&'a str, &'a str),
    Skipped(&'a str, &'a str),
}

fn uktest_case(line: &str) -> Option<Case<'_>> {
    let (name, rest) = line.strip_prefix("test ")?.split_once(" ... ")?;
    if rest.starts_with("ok") {
        Some(Case::Passed(name))
    } else if let Some(why) = rest.strip_prefix("skipped: ") {
        Some(Case::Skipped(name, why))
    } else {
        Some(Case::Failed(name, rest))
    }
}

/// Counts uktest's per-case lines in `serial` into `tally` and checks them
/// against the guest's closing totals; returns the problems found.
fn count_uktest(serial: &str, run: &str, tally: &mut Tally) -> (Vec<String>, (usize, usize, usize)) {
    let mut problems = Vec::new();
    let mut seen = (0, 0, 0);
    for case in serial.lines().filter_map(uktest_case) {
        match case {
            Case::Passed(name) => {
                seen.0 += 1;
                tally.record(&format!("guest {run} :: {name}"), true, "", false);
            }
            Case::Failed(name, detail) => {
                seen.1 += 1;
                tally.add(&format!("guest {run} :: {name}"), false, detail);
            }
            Case::Skipped(name, why) => {
                seen.2 += 1;
                tally.skip(&format!("guest {run} :: {name}"), why);
            }
        }
    }
    match serial.lines().filter_map(uktest_totals).next_back() {
        None => problems.push(format!(
            "uktest printed {} case lines and no closing `N passed, N failed, N skipped` line",
            seen.0 + seen.1 + seen.2
        )),
        Some(totals) if totals != seen => problems.push(format!(
            "the guest's totals ({} passed, {} failed, {} skipped) differ from its case lines \
             ({} passed, {} failed, {} skipped)",
            totals.0, totals.1, totals.2, seen.0, seen.1, seen.2
        )),
        Some(_) if seen == (0, 0, 0) => problems.push("uktest ran no test case".into()),
        Some(_) => {}
    }
    (problems, seen)
}

/// Boots one built guest check and counts its results.
fn run_guest_check(
    built: &Built,
    tally: &mut Tally,
    default_timeout: Duration,
    gdb: &Result<()>,
) -> Result<()> {
    let Built { check: c, image: img, guest } = built;
    let timeout = c.timeout.unwrap_or(default_timeout);
    let (result, mut problems) = if c.gdb {
        match gdb {
            Ok(()) => run_gdb_check(built, timeout)?,
            Err(e) => {
                tally.add(&format!("guest {}", c.name), false, &format!("{e:#}"));
                return Ok(());
            }
        }
    } else {
        let input = c.input.map(|(after, text)| qemu::Typing { after, bytes: text.as_bytes() });
        (guest.run(&img.path, Some(timeout), false, input)?, Vec::new())
    };
    match (c.expect.status, &result.outcome) {
        (Some(want), Outcome::Status(got)) if want == *got || c.also_status.contains(got) => {}
        (None, Outcome::TimedOut) => {}
        (Some(want), other) => problems.push(format!(
            "expected status {want}{}, got: {}",
            c.also_status.iter().map(|s| format!(" or {s}")).collect::<String>(),
            other.describe()
        )),
        (None, other) => problems.push(format!("expected a timeout, got: {}", other.describe())),
    }
    for needle in c.expect.serial {
        if !result.serial.contains(needle) {
            problems.push(format!("serial log lacks {needle:?}"));
        }
    }
    for needle in c.absent {
        if result.serial.contains(needle) {
            problems.push(format!("serial log contains {needle:?}"));
        }
    }
    if let Some(n) = c.expect.cpu_lines
        && let Err(problem) = check_cpu_lines(&result.serial, n)
    {
        problems.push(problem);
    }
    if let Some(lines) = c.same_twice
        && !c.gdb
    {
        let again = guest.run(&img.path, Some(timeout), false, None)?;
        let (first, second) = (lines(&result.serial), lines(&again.serial));
        if first.is_empty() {
            problems.push("no line to compare between boots".into());
        } else if first != second {
            problems.push(format!("differ between two boots: {first:?} then {second:?}"));
        }
    }
    let mut cases = String::new();
    if c.expect.uktest {
        let (more, (passed, failed, skipped)) = count_uktest(&result.serial, &c.name, tally);
        problems.extend(more);
        cases = format!("; cases: {passed} passed, {failed} failed, {skipped} skipped");
    }
    if let Some(max) = c.max_to_main {
        match crate::bench::boot_stages(&result.serial).1 {
            Some(n) if n <= max => cases.push_str(&format!("; {n} instructions to main, at most {max}")),
            Some(n) => problems.push(format!("{n} instructions from the first one to main, more than {max}")),
            None => problems.push("no `ukboot: first instruction to main` line".into()),
        }
    }
    let detail = format!(
        "{}, {} CPU(s), {:.1} s{}{cases}",
        guest.describe(),
        guest.cpus(),
        result.wall.as_secs_f64(),
        if c.same_twice.is_some() { " (the first of 2 boots)" } else { "" }
    );
    if problems.is_empty() {
        tally.add(&format!("guest {}", c.name), true, &detail);
    } else {
        tally.add(&format!("guest {}", c.name), false, &format!("{detail}: {}", problems.join("; ")));
        let mut log = format!("----- serial log of {} ({} bytes) -----\n", c.name, result.serial.len());
        log.push_str(result.serial.trim_end());
        if !result.stderr.trim().is_empty() {
            log.push_str(&format!("\n----- {} -----\n{}", guest.stderr_name(), result.stderr.trim_end()));
        }
        log.push_str("\n----- end -----");
        tally.console.line(&log);
    }
    Ok(())
}

/// The gdb check: QEMU starts with its gdb stub and the guest stopped;
/// gdb, in batch mode with the image's symbols, attaches, sets a breakpoint
/// on the app's `main`, continues, must stop there, and detaches; the guest
/// must then run to its normal end. Returns QEMU's result and the problems
/// seen on gdb's side.
fn run_gdb_check(built: &Built, timeout: Duration) -> Result<(qemu::RunResult, Vec<String>)> {
    let Built { check: c, image: img, guest } = built;
    let Guest::Qemu(vm) = guest else {
        anyhow::bail!("the gdb check runs under QEMU; {} does not", guest.describe());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for QEMU's gdb stub")?
        .port();
    let vm = qemu::VmConfig { gdb: Some(port), ..vm.clone() };
    let qemu_cmd = qemu::command(&img.path, &vm);
    let qemu = std::thread::spawn(move || qemu::run(qemu_cmd, Some(timeout), false));
    let main = format!("{}::main", c.app);
    let mut gdb = Command::new(setup::Program::Gdb.binary());
    gdb.args(["-nx", "-batch", "-ex", "set confirm off", "-ex", "set tcp connect-timeout 20"])
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")])
        .args(["-ex", &format!("break {main}"), "-ex", "continue", "-ex", "info symbol $pc", "-ex", "detach"])
        .arg(&img.path);
    let (gdb_status, gdb_output) = run_with_timeout(gdb, timeout)?;
    let result = qemu.join().map_err(|_| anyhow::anyhow!("QEMU thread panicked"))??;
    let mut problems = Vec::new();
    // The breakpoint line names the innermost (maybe inlined) function;
    // `info symbol $pc` names the function the stop is in.
    let stopped = gdb_output.lines().any(|l| l.starts_with("Breakpoint 1, "));
    let symbol = gdb_output.lines().any(|l| l.starts_with(&main) && l.contains(" in section .text"));
    if !(stopped && symbol && gdb_status.is_some_and(|s| s.success())) {
        problems.push(format!(
            "gdb ({}) did not stop at {main} with symbols; its output:\n{}",
            gdb_status.map_or("timed out".into(), |s| s.to_string()),
            gdb_output.trim_end()
        ));
    }
    Ok((result, problems))
}

/// The symbols of `app` built with `key=value` (an image of its own,
/// named after the variant).
fn variant_symbols(ws: &Workspace, app: &str, key: &str, value: &str) -> Result<Vec<String>> {
    let resolved = ws.resolve(app, None, &[format!("{key}={value}")])?;
    let img = image::build(
        ws,
        &resolved,
        &BuildOptions { name: Some(format!("{app}-linking-{value}")), quiet: true, ..Default::default() },
    )?;
    elf_symbols(&std::fs::read(&img.path)?)
}

/// The `names` whose symbol (`symbol(name)`, a substring) is in `syms`.
fn linked_names<'a>(syms: &[String], names: &[&'a str], symbol: impl Fn(&str) -> String) -> Vec<&'a str> {
    names.iter().copied().filter(|n| syms.iter().any(|s| s.contains(&symbol(n)))).collect()
}

/// Symbol names of an ELF64 little-endian file (`.symtab`).
pub fn elf_symbols(bytes: &[u8]) -> Result<Vec<String>> {
    let u16_at = |o: usize| -> Result<u16> {
        Ok(u16::from_le_bytes(bytes.get(o..o + 2).context("truncated ELF")?.try_into()?))
    };
    let u32_at = |o: usize| -> Result<u32> {
        Ok(u32::from_le_bytes(bytes.get(o..o + 4).context("truncated ELF")?.try_into()?))
    };
    let u64_at = |o: usize| -> Result<u64> {
        Ok(u64::from_le_bytes(bytes.get(o..o + 8).context("truncated ELF")?.try_into()?))
    };
    anyhow::ensure!(bytes.starts_with(b"\x7fELF\x02\x01"), "not an ELF64 little-endian file");
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let section = |i: usize| -> Result<(u32, usize, usize, u32)> {
        let base = shoff + i * shentsize;
        Ok((
            u32_at(base + 4)?,
            u64_at(base + 0x18)? as usize,
            u64_at(base + 0x20)? as usize,
            u32_at(base + 0x28)?,
        ))
    };
    let mut names = Vec::new();
    for i in 0..shnum {
        let (kind, offset, size, link) = section(i)?;
        if kind != 2 {
            continue; // SHT_SYMTAB
        }
        let (_, str_off, str_size, _) = section(link as usize)?;
        let strtab = bytes.get(str_off..str_off + str_size).context("truncated string table")?;
        for sym in (offset..offset + size).step_by(24) {
            let name = u32_at(sym)? as usize;
            if name == 0 || name >= strtab.len() {
                continue;
            }
            let end = strtab[name..].iter().position(|&b| b == 0).map_or(strtab.len(), |p| name + p);
            names.push(String::from_utf8_lossy(&strtab[name..end]).into_owned());
        }
    }
    Ok(names)
}

/// Config-linking checks: removing a library removes it from the image, and
/// an app missing a library it uses fails with a clear error.
fn linking_checks(ws: &Workspace, tally: &mut Tally) -> Result<()> {
    let dir = image::work_dir(ws).join("linking");
    std::fs::create_dir_all(&dir)?;
    let base = std::fs::read_to_string(ws.root.join("config/helloworld.toml"))?;
    let without_alloc: String = {
        // Drop the [libraries.ukalloc] table (up to the next table or the end).
        let mut out = String::new();
        let mut skipping = false;
        for line in base.lines() {
            if line.trim_start().starts_with('[') {
                skipping = line.trim() == "[libraries.ukalloc]";
            }
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    };
    let path = dir.join("helloworld-without-ukalloc.toml");
    std::fs::write(&path, &without_alloc)?;

    let with = ws.resolve("helloworld", None, &[])?;
    let without = ws.resolve("helloworld", Some(&path), &[])?;
    let symbols_of = |resolved: &kconfig::Resolved, name: &str| -> Result<(u64, bool)> {
        let img = image::build(
            ws,
            resolved,
            &BuildOptions { name: Some(name.into()), quiet: true, ..Default::default() },
        )?;
        let syms = elf_symbols(&std::fs::read(&img.path)?)?;
        Ok((img.size, syms.iter().any(|s| s.contains("ukalloc"))))
    };
    let (size_with, has_with) = symbols_of(&with, "helloworld")?;
    let (size_without, has_without) = symbols_of(&without, "helloworld-without-ukalloc")?;
    tally.add(
        "config: removing [libraries.ukalloc] removes ukalloc from the image",
        has_with && !has_without && size_without < size_with,
        &format!("ukalloc symbols {has_with} -> {has_without}, size {size_with} -> {size_without} bytes"),
    );

    // apic.mode decides which register accessors are linked.
    let mut linked = Vec::new();
    for mode in ["x2apic", "xapic"] {
        let syms = variant_symbols(ws, "smp", "apic.mode", mode)?;
        let has = |name: &str| syms.iter().any(|s| s.contains(name));
        linked.push((mode, has("x2apic_write"), has("xapic_write")));
    }
    tally.add(
        "config: apic.mode=x2apic / xapic links only that mode's register access",
        linked == [("x2apic", true, false), ("xapic", false, true)],
        &format!("(mode, x2apic_write linked, xapic_write linked): {linked:?}"),
    );

    // The platform interface costs nothing in release images: every
    // `ukplat::platform` operation inlines into its callers (fat LTO), so
    // no `__ukplat_<operation>` symbol is left to call. The debug build
    // of the same app keeps them as calls, which shows the check sees them.
    for platform in ["kvm", "linuxu"] {
        let resolved = ws.resolve("smp", None, &[format!("platform.name={platform}")])?;
        let mut out_of_line = Vec::new();
        for release in [true, false] {
            let name = format!("smp-platform-calls-{platform}");
            let img = image::build(
                ws,
                &resolved,
                &BuildOptions { release, name: Some(name), quiet: true, ..Default::default() },
            )?;
            let syms = elf_symbols(&std::fs::read(&img.path)?)?;
            let mut calls: Vec<String> =
                syms.into_iter().filter(|s| s.starts_with("__ukplat_") && s != "__ukplat_main").collect();
            calls.sort();
            calls.dedup();
            out_of_line.push(calls);
        }
        tally.add(
            &format!(
                "platform: ukplat operations inline into the libraries in release images ({platform}; none left as calls, the debug build calls them)"
            ),
            out_of_line[0].is_empty() && out_of_line[1].iter().any(|s| s == "__ukplat_irq_disable"),
            &format!("out-of-line __ukplat_* symbols: release {:?}, debug {:?}", out_of_line[0], out_of_line[1]),
        );
    }

    // ukspin.kind decides which algorithm is behind `SpinLock`: the
    // selector links exactly one marker named after it (the tests app also
    // names every kind explicitly in ukspin's own tests, so all three
    // algorithms' code is present there).
    let kinds = ["tas", "ticket", "mcs"];
    let mut markers = Vec::new();
    for kind in kinds {
        let syms = variant_symbols(ws, "tests", "ukspin.kind", kind)?;
        markers.push((kind, linked_names(&syms, &kinds, |k| format!("ukspin_configured_kind_is_{k}"))));
    }
    tally.add(
        "config: ukspin.kind=tas / ticket / mcs links that kind behind SpinLock",
        markers.iter().all(|(kind, linked)| linked == &[*kind]),
        &format!("(configured, selector markers linked): {markers:?}"),
    );

    // uksched.policy decides which policy's code is linked: each links
    // one marker named after it.
    let policy_names = ["coop", "preempt"];
    let mut policies = Vec::new();
    for policy in policy_names {
        let syms = variant_symbols(ws, "sched", "uksched.policy", policy)?;
        policies.push((policy, linked_names(&syms, &policy_names, |p| format!("uksched_policy_is_{p}"))));
    }
    tally.add(
        "config: uksched.policy=coop / preempt links only that policy's marker",
        policies.iter().all(|(policy, linked)| linked == &[*policy]),
        &format!("(configured, policy markers linked): {policies:?}"),
    );

    // ukrcu.flavor decides which flavour's code is linked: its marker, and
    // no function of the other flavour's module (legacy mangling:
    // `_ZN5ukrcu4qsbr...`, `_ZN5ukrcu8refcount...`).
    let flavors = ["qsbr", "refcount"];
    let mut linked_flavors = Vec::new();
    for flavor in flavors {
        let syms = variant_symbols(ws, "rcu", "ukrcu.flavor", flavor)?;
        let markers = linked_names(&syms, &flavors, |f| format!("ukrcu_flavor_is_{f}"));
        let modules = linked_names(&syms, &flavors, |f| format!("5ukrcu{}{f}", f.len()));
        linked_flavors.push((flavor, markers, modules));
    }
    tally.add(
        "config: ukrcu.flavor=qsbr / refcount links only that flavour's code",
        linked_flavors.iter().all(|(f, markers, modules)| markers == &[*f] && modules == &[*f]),
        &format!("(configured, markers linked, flavour modules with symbols): {linked_flavors:?}"),
    );

    let without_console =
        base.replace("[libraries.ukconsole]", "# no ukconsole").replace("log_level = \"info\"", "");
    let path = dir.join("helloworld-without-ukconsole.toml");
    std::fs::write(&path, without_console)?;
    match ws.resolve("helloworld", Some(&path), &[]) {
        Err(e) => {
            let msg = e.to_string();
            tally.add(
                "config: an app using an unselected library fails with a clear error",
                msg.contains("ukconsole")
                    && msg.contains("apps/helloworld/Cargo.toml")
                    && !msg.contains('\n'),
                &msg,
            );
        }
        Ok(_) => tally.add(
            "config: an app using an unselected library fails with a clear error",
            false,
            "resolved",
        ),
    }
    Ok(())
}

/// Runs cargo with `args` in `root` under `timeout`; returns whether it
/// succeeded and its output (stderr, then stdout).
fn run_cargo(root: &Path, args: &[&str], timeout: Duration) -> Result<(bool, String)> {
    run_cargo_with_env(root, args, &[], timeout)
}

/// [`run_cargo`] with extra environment variables.
fn run_cargo_with_env(
    root: &Path,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<(bool, String)> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let (status, mut output) =
        run_with_timeout(cmd, timeout).with_context(|| format!("running cargo {}", args.join(" ")))?;
    if status.is_none() {
        output.push_str(&format!("\ncargo {} timed out after {} s", args.join(" "), timeout.as_secs()));
    }
    Ok((status.is_some_and(|s| s.success()), output))
}

/// Runs `cmd` with no input, killing it after `timeout`; returns its exit
/// status (`None` when it was killed) and its output (stderr, then stdout).
fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(Option<std::process::ExitStatus>, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    let start = Instant::now();
    let out_pipe = child.stdout.take().context("stdout")?;
    let err_pipe = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || std::io::read_to_string(out_pipe).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(err_pipe).unwrap_or_default());
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((status, format!("{}{}", err.join().unwrap_or_default(), out.join().unwrap_or_default())))
}

/// Sums cargo test's `test result: ok. N passed; M failed; K ignored; ...`
/// lines: (passed, failed, ignored).
fn count_cargo_tests(output: &str) -> (usize, usize, usize) {
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    for rest in output.lines().filter_map(|l| l.strip_prefix("test result: ")) {
        for part in rest.split(['.', ';']).map(str::trim) {
            let count = |suffix: &str, total: &mut usize| {
                if let Some(n) = part.strip_suffix(suffix) {
                    *total += n.trim().parse::<usize>().unwrap_or(0);
                }
            };
            count(" passed", &mut passed);
            count(" failed", &mut failed);
            count(" ignored", &mut ignored);
        }
    }
    (passed, failed, ignored)
}

/// The host side: unit tests of every crate, then formatting and clippy
/// (host and guest target), then the loom models. Each lint and each loom
/// test target counts as one check; each step prints its line as it ends.
fn host_side(root: &Path, guest_test_features: &str, mut tally: Tally) -> Result<Tally> {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let console = Arc::clone(&tally.console);
    let timed =
        |what: &str, started: Instant| format!("host: {what} ({:.0} s)", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let (ok, output) = run_cargo(root, &["test", "--workspace", "--color", "never"], minutes(15))?;
    let (passed, failed, ignored) = count_cargo_tests(&output);
    tally.passed += passed;
    tally.failed += failed;
    tally.skipped += ignored;
    console.line(&timed(
        &format!("unit tests (cargo test --workspace): {passed} passed, {failed} failed, {ignored} ignored (skipped)"),
        started,
    ));
    if !ok || failed > 0 {
        if failed == 0 {
            tally.failed += 1;
        }
        tally.failures.push("host unit tests (cargo test --workspace)".into());
        console.line(&output);
    }
    if passed == 0 {
        tally.add("host unit tests ran", false, "cargo test --workspace reported no test at all");
    }
    let lints: [(&str, &[&str]); 3] = [
        ("host: lint: cargo fmt --check", &["fmt", "--all", "--", "--check"]),
        (
            "host: lint: clippy (host)",
            &["clippy", "--workspace", "--all-targets", "--color", "never", "--", "-D", "warnings"],
        ),
        (
            "host: lint: clippy (x86_64-unknown-none)",
            &[
                "clippy",
                "--workspace",
                "--exclude",
                "xtask",
                "--exclude",
                "kconfig",
                "--target",
                image::TARGET,
                "--features",
                guest_test_features,
                "--color",
                "never",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    for (name, args) in lints {
        let started = Instant::now();
        let (ok, output) = run_cargo(root, args, minutes(10))?;
        tally.add(name, ok, &format!("{:.0} s", started.elapsed().as_secs_f64()));
        if !ok {
            console.line(&output);
        }
    }
    // The loom model checks: a build of their own
    // (`--cfg loom` swaps the atomics), in its own target directory so it
    // does not invalidate the normal one.
    let loom_env = [
        ("RUSTFLAGS", "--cfg loom".to_string()),
        ("CARGO_TARGET_DIR", root.join("target").join("loom").display().to_string()),
    ];
    // The lock algorithms, then the scheduler's wake/sleep protocol
    // (uksched's state word and wait-queue core), in the same build.
    for (package, test, name) in [
        ("ukspin", "loom", "host: loom: ukspin models (ticket, MCS, TAS, rwlock)"),
        (
            "uksched",
            "loom",
            "host: loom: uksched models (wake/sleep: lost wake-up, timeout race, stale wake-up; wait-queue core: futex check under the lock, requeue vs timeout vs wake, opposite requeues)",
        ),
        (
            "uklock",
            "loom_futex",
            "host: loom: uklock futex models (mutex exclusion and wake-ups, timed lock, condvar requeue chain, two mutexes, Once; lost wake-ups are caught)",
        ),
        (
            "ukrcu",
            "loom",
            "host: loom: ukrcu models (a grace period outlasts every reader; a lax detector is caught)",
        ),
        (
            "ukrcu",
            "loom_split",
            "host: loom: ukrcu split counts (load/count vs unlink and free, overflow, CAS; load-then-count is caught)",
        ),
    ] {
        let started = Instant::now();
        let (ok, output) = run_cargo_with_env(
            root,
            &["test", "-p", package, "--release", "--test", test, "--color", "never"],
            &loom_env,
            minutes(15),
        )?;
        let (passed, failed, ignored) = count_cargo_tests(&output);
        tally.add(
            name,
            ok && failed == 0 && ignored == 0 && passed > 0,
            &format!(
                "{passed} models passed, {failed} failed, {ignored} ignored; {:.0} s",
                started.elapsed().as_secs_f64()
            ),
        );
        if !ok || failed > 0 {
            console.line(&output);
        }
    }
    Ok(tally)
}

/// `cargo xtask test`.
pub fn run(args: &TestArgs) -> Result<ExitCode> {
    let ws = crate::load()?;
    let root = ws.root.clone();
    let started = Instant::now();
    // Set-up first, before anything runs in parallel: the toolchain's
    // target and components, QEMU, and gdb for the debugger check (its
    // absence fails that check alone).
    setup::toolchain(&root)?;
    setup::program(setup::Program::Qemu)?;
    let gdb = setup::program(setup::Program::Gdb);
    let console = Console::stdout();
    // Every library's (and platform's) in-guest tests are linted too:
    // `LIB/uktest` for each one that has the feature.
    let guest_test_features: Vec<String> = ws
        .libraries
        .values()
        .chain(ws.platforms.values())
        .filter(|l| l.features.iter().any(|f| f == "uktest"))
        .map(|l| format!("{}/uktest", l.crate_name))
        .collect();
    let guest_test_features = guest_test_features.join(",");
    let host_tally = Tally::new(Arc::clone(&console), args.verbose);
    let host = (!args.guest_only).then(|| {
        console.line("host: unit tests, fmt, clippy and loom models run beside the guest builds");
        std::thread::spawn(move || host_side(&root, &guest_test_features, host_tally))
    });

    let mut tally = Tally::new(Arc::clone(&console), args.verbose);
    let (auto, why) = qemu::choose_accel("auto")?;
    console.line(&format!("accelerator for `auto`: {} ({why})", auto.name()));
    let timeout = Duration::from_secs(args.guest_timeout);
    let selected = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    let checks: Vec<GuestCheck> =
        guest_checks(auto, &qemu::kvm_usable()).into_iter().filter(|c| selected(&c.name)).collect();
    let (skipped, checks): (Vec<_>, Vec<_>) = checks.into_iter().partition(|c| c.skip.is_some());
    for c in &skipped {
        tally.skip(&format!("guest {}", c.name), c.skip.as_deref().unwrap_or_default());
    }

    // Phase 1, beside the host tests: build every image (and the linking
    // checks, which only build).
    let total = checks.len();
    let mut built = Vec::new();
    for (i, c) in checks.into_iter().enumerate() {
        let name = c.name.clone();
        let step = format!("build [{}/{total}] {name}", i + 1);
        let begun = Instant::now();
        console.begin(step.clone());
        let outcome = build_guest_check(&ws, c, &mut tally);
        console.end();
        match outcome {
            Ok(Some(b)) => {
                console.line(&format!("{step} ({:.1} s)", begun.elapsed().as_secs_f64()));
                built.push(b);
            }
            Ok(None) => {}
            Err(e) => tally.add(&format!("guest {name}"), false, &format!("{e:#}")),
        }
    }
    if selected("config") {
        console.begin("config: linking checks (building variant images)".into());
        let outcome = linking_checks(&ws, &mut tally);
        console.end();
        if let Err(e) = outcome {
            tally.add("config: linking checks", false, &format!("{e:#}"));
        }
    }

    // Phase 2, once the host side is done: boot the guests on a quiet
    // machine. Their timer and IPI checks measure rates against the clock,
    // and a vCPU starved of host CPU (two cores, shared with compilers)
    // loses timer ticks.
    if let Some(host) = host {
        console.begin("waiting for the host tests and lints to finish".into());
        let joined = host.join();
        console.end();
        tally.merge(joined.map_err(|_| anyhow::anyhow!("host test thread panicked"))??);
    }
    let runs = built.len();
    for (i, b) in built.iter().enumerate() {
        console.begin(format!(
            "[{}/{runs}] guest {} (timeout {} s)",
            i + 1,
            b.check.name,
            b.check.timeout.unwrap_or(timeout).as_secs()
        ));
        let outcome = run_guest_check(b, &mut tally, timeout, &gdb);
        console.end();
        if let Err(e) = outcome {
            tally.add(&format!("guest {}", b.check.name), false, &format!("{e:#}"));
        }
    }

    let mut summary = format!("== summary ({:.0} s) ==\n", started.elapsed().as_secs_f64());
    for f in &tally.failures {
        summary.push_str(&format!("failed: {f}\n"));
    }
    summary.push_str(&format!("{} passed, {} failed, {} skipped", tally.passed, tally.failed, tally.skipped));
    console.line(&summary);
    console.finish();
    Ok(if tally.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linuxu_checks_need_no_accelerator() {
        let checks = guest_checks(qemu::Accel::Tcg, &Err("no /dev/kvm".into()));
        let linuxu: Vec<&GuestCheck> = checks.iter().filter(|c| c.name.contains("(linuxu, ")).collect();
        let names: Vec<&str> = linuxu.iter().map(|c| c.name.as_str()).collect();
        for name in ["helloworld (linuxu, 1 CPU)", "sched (linuxu, preempt, 2 CPUs)", "smp (linuxu, 4 CPUs)"]
        {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        for c in &linuxu {
            assert!(c.skip.is_none(), "{} is skipped: {:?}", c.name, c.skip);
            assert!(c.sets.iter().any(|s| s == "platform.name=linuxu"), "{}: {:?}", c.name, c.sets);
            assert!(!c.sets.iter().any(|s| s.starts_with("platform.accel=")), "{}: {:?}", c.name, c.sets);
            // Each builds: the configuration resolves.
            crate::load()
                .unwrap()
                .resolve(c.app, None, &c.sets)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "names are unique");
    }

    #[test]
    fn variant_names_differ_by_overrides() {
        assert_eq!(variant_name("tests", &[], None), "tests");
        let a = variant_name("tests", &["a=1".into()], None);
        let b = variant_name("tests", &["a=2".into()], None);
        assert_ne!(a, b);
        assert!(a.starts_with("tests-"));
    }

    #[test]
    fn cargo_test_summaries_are_summed() {
        let out =
            "test result: ok. 5 passed; 0 failed; 0 ignored\nnoise\ntest result: FAILED. 2 passed; 1 failed;";
        assert_eq!(count_cargo_tests(out), (7, 1, 0));
        assert_eq!(count_cargo_tests("nothing"), (0, 0, 0));
        assert_eq!(
            count_cargo_tests("test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured"),
            (3, 0, 2)
        );
    }

    #[test]
    fn uktest_lines_are_parsed() {
        assert_eq!(uktest_totals("12 passed, 1 failed, 3 skipped"), Some((12, 1, 3)));
        assert_eq!(uktest_totals("12 passed, 1 failed"), None, "the old format lacks the skip count");
        assert_eq!(uktest_totals("x passed, 1 failed, 3 skipped"), None);
        assert_eq!(uktest_totals("1 passed, 1 failed, 3 skipped, 4 more"), None);
        assert_eq!(uktest_case("test a::b ... ok (12 cycles)"), Some(Case::Passed("a::b")));
        assert_eq!(
            uktest_case("test a::b ... FAILED at x.rs:3: no"),
            Some(Case::Failed("a::b", "FAILED at x.rs:3: no"))
        );
        assert_eq!(uktest_case("test a::b ... skipped: one CPU"), Some(Case::Skipped("a::b", "one CPU")));
        assert_eq!(uktest_case("sched: test ... ok"), None);
    }

    fn quiet_tally() -> Tally {
        Tally::new(Arc::new(Console::captured()), false)
    }

    #[test]
    fn guest_totals_must_match_the_case_lines() {
        let serial = "boot\ntest a ... ok (1 cycles)\ntest b ... skipped: why\ntest c ... FAILED at f:1: m\n";
        let mut tally = quiet_tally();
        let (problems, seen) =
            count_uktest(&format!("{serial}1 passed, 1 failed, 1 skipped\n"), "r", &mut tally);
        assert_eq!((problems.len(), seen), (0, (1, 1, 1)));
        assert_eq!((tally.passed, tally.failed, tally.skipped), (1, 1, 1));
        // A skip counted as a pass by the guest is a mismatch.
        let (problems, _) =
            count_uktest(&format!("{serial}2 passed, 1 failed, 0 skipped\n"), "r", &mut quiet_tally());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("differ"), "{problems:?}");
        // So is a lost case line, and a missing closing line.
        let (problems, _) =
            count_uktest(&format!("{serial}1 passed, 2 failed, 1 skipped\n"), "r", &mut quiet_tally());
        assert_eq!(problems.len(), 1);
        let (problems, _) = count_uktest(serial, "r", &mut quiet_tally());
        assert!(problems[0].contains("no closing"), "{problems:?}");
        let (problems, _) = count_uktest("0 passed, 0 failed, 0 skipped\n", "r", &mut quiet_tally());
        assert!(problems[0].contains("no test case"), "{problems:?}");
    }

    #[test]
    fn elf_symbols_reads_our_own_binary() {
        let exe = std::env::current_exe().unwrap();
        let syms = elf_symbols(&std::fs::read(exe).unwrap()).unwrap();
        assert!(syms.iter().any(|s| s.contains("elf_symbols_reads_our_own_binary")));
        assert!(elf_symbols(b"not an elf").is_err());
    }
}

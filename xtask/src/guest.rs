//! Running a built image on its platform, whichever it is: under QEMU
//! (`kvm`) or directly as a Linux process (`linuxu`). One watcher runs
//! either (timeout, output captured and optionally echoed, typing into the
//! console after a prompt); only the command and the decoding of the exit
//! status differ. `cargo xtask run` and `cargo xtask test` use it.

use crate::qemu::{self, Outcome, RunResult, Typing};
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How an image runs.
#[derive(Debug, Clone)]
pub enum Guest {
    /// Under QEMU (platform `kvm`).
    Qemu(qemu::VmConfig),
    /// As a Linux process (platform `linuxu`): the executable itself, each
    /// CPU a host thread. Its command line is the one built in
    /// (`platform.cmdline`): no arguments are passed.
    Process {
        /// CPUs (`platform.cpus`), for messages: the image starts them.
        cpus: u32,
        /// Heap in MiB (`platform.memory`), for messages.
        memory_mib: u64,
    },
}

/// The platforms that run as a Linux process.
pub const PROCESS_PLATFORMS: &[&str] = &["linuxu"];

impl Guest {
    /// How `resolved`'s image runs, and a line on the choice (for QEMU,
    /// why this accelerator); `gdb`: QEMU's gdb stub on that port.
    pub fn from_resolved(resolved: &kconfig::Resolved, gdb: Option<u16>) -> Result<(Guest, String)> {
        match resolved.platform.as_str() {
            "kvm" => {
                let (vm, why) = crate::vm_config(resolved, gdb)?;
                Ok((Guest::Qemu(vm), why))
            }
            name if PROCESS_PLATFORMS.contains(&name) => {
                let int = |option: &str| match resolved.option("platform", option) {
                    Some(kconfig::Value::Int(v)) => Ok(*v),
                    _ => bail!("platform {name} has no int option `{option}`"),
                };
                let guest = Guest::Process {
                    cpus: u32::try_from(int("cpus")?)?,
                    memory_mib: u64::try_from(int("memory")?)?,
                };
                Ok((guest, "a Linux process, no QEMU".into()))
            }
            other => bail!(
                "xtask cannot run images of platform {other} (it runs kvm under QEMU and linuxu as a process)"
            ),
        }
    }

    /// The command that runs `image`.
    pub fn command(&self, image: &Path) -> Command {
        match self {
            Guest::Qemu(vm) => qemu::command(image, vm),
            Guest::Process { .. } => Command::new(image),
        }
    }

    /// CPUs it runs with.
    pub fn cpus(&self) -> u32 {
        match self {
            Guest::Qemu(vm) => vm.cpus,
            Guest::Process { cpus, .. } => *cpus,
        }
    }

    /// Where it runs, for result lines: `tcg, microvm` or `linuxu`.
    pub fn describe(&self) -> String {
        match self {
            Guest::Qemu(vm) => format!("{}, {}", vm.accel.name(), vm.machine),
            Guest::Process { .. } => "linuxu".into(),
        }
    }

    /// What its standard error is, for logs: `QEMU stderr` or `stderr`.
    pub fn stderr_name(&self) -> &'static str {
        match self {
            Guest::Qemu(_) => "QEMU stderr",
            Guest::Process { .. } => "stderr",
        }
    }

    /// How a run ended, from the exit status: QEMU's code decoded
    /// (`isa-debug-exit`), or the process's own status.
    pub fn decode(&self, status: ExitStatus) -> Outcome {
        match (self, status.signal()) {
            (Guest::Qemu(_), _) => qemu::decode(status),
            (Guest::Process { .. }, Some(signal)) => Outcome::Signal(signal),
            (Guest::Process { .. }, None) => Outcome::from_process_code(status.code().unwrap_or(-1)),
        }
    }

    /// Runs `image` with a timeout, capturing its console (standard
    /// output) and copying it to ours as it arrives with `echo`; `input`
    /// is typed into the console once the image printed its prompt.
    pub fn run(
        &self,
        image: &Path,
        timeout: Option<Duration>,
        echo: bool,
        input: Option<Typing<'_>>,
    ) -> Result<RunResult> {
        let mut cmd = self.command(image);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        self.watch(cmd, timeout, echo, input)
    }

    /// [`Guest::run`] with our standard input connected to the console,
    /// so a person can type to the image (`cargo xtask run`), echoing.
    pub fn run_interactive(&self, image: &Path, timeout: Option<Duration>) -> Result<RunResult> {
        let mut cmd = self.command(image);
        cmd.stdin(Stdio::inherit());
        self.watch(cmd, timeout, true, None)
    }

    /// Runs `cmd` (standard input already set) as this kind of guest.
    pub fn watch(
        &self,
        cmd: Command,
        timeout: Option<Duration>,
        echo: bool,
        input: Option<Typing<'_>>,
    ) -> Result<RunResult> {
        if matches!(self, Guest::Qemu(_)) {
            crate::setup::program(crate::setup::Program::Qemu)?;
        }
        watch(cmd, timeout, echo, input, |status| self.decode(status))
    }
}

/// Runs `cmd` (standard input already set) under `timeout`: standard
/// output captured (and echoed with `echo`), standard error captured,
/// `input` typed after its prompt; `decode` turns the exit status into an
/// outcome. A run past the timeout is killed (`Outcome::TimedOut`).
pub fn watch(
    mut cmd: Command,
    timeout: Option<Duration>,
    echo: bool,
    input: Option<Typing<'_>>,
    decode: impl Fn(ExitStatus) -> Outcome,
) -> Result<RunResult> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    // Kept open until the guest exits: an early EOF is not what a terminal gives.
    let mut stdin = child.stdin.take();
    let mut pending = input;
    let serial = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().context("the guest's stdout")?;
    let sink = Arc::clone(&serial);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if echo {
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    sink.lock().expect("serial buffer").extend_from_slice(&buf[..n]);
                }
            }
        }
    });
    let mut stderr = child.stderr.take().context("the guest's stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for {program}"))? {
            break Some(status);
        }
        if let (Some(typing), Some(pipe)) = (pending, stdin.as_mut()) {
            let prompted = {
                let serial = serial.lock().expect("serial buffer");
                serial.windows(typing.after.len().max(1)).any(|w| w == typing.after.as_bytes())
            };
            if prompted {
                use std::io::Write;
                pipe.write_all(typing.bytes)
                    .with_context(|| format!("writing to {program}'s standard input"))?;
                pipe.flush().with_context(|| format!("writing to {program}'s standard input"))?;
                pending = None;
            }
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = start.elapsed();
    drop(stdin);
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let serial = String::from_utf8_lossy(&serial.lock().expect("serial buffer")).into_owned();
    let outcome = status.map_or(Outcome::TimedOut, decode);
    Ok(RunResult { outcome, serial, stderr, wall })
}

/// The name of Linux x86_64 signal `n`: `SIGSEGV`, `SIGRTMIN+3`, or
/// `signal N` for a number outside them.
pub fn signal_name(n: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match n {
        1..=31 => NAMES[(n - 1) as usize].to_string(),
        34 => "SIGRTMIN".into(),
        35..=64 => format!("SIGRTMIN+{}", n - 34),
        _ => format!("signal {n}"),
    }
}

/// Runs `image` (a linuxu executable) under gdb, interactively, with
/// `--args` so that `run` starts it; the signals the platform uses for
/// interrupts (`SIGUSR1` IPIs, `SIGUSR2` timer ticks) pass without
/// stopping. Returns gdb's exit status.
pub fn gdb_process(image: &Path) -> Result<ExitStatus> {
    crate::setup::program(crate::setup::Program::Gdb)?;
    Command::new(crate::setup::Program::Gdb.binary())
        .args(gdb_process_args(image))
        .status()
        .context("starting gdb")
}

/// The arguments of [`gdb_process`].
pub fn gdb_process_args(image: &Path) -> Vec<String> {
    vec![
        "-q".into(),
        "-ex".into(),
        "handle SIGUSR1 SIGUSR2 nostop noprint pass".into(),
        "--args".into(),
        image.display().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stdin(Stdio::null());
        cmd
    }

    const PROCESS: Guest = Guest::Process { cpus: 1, memory_mib: 64 };

    #[test]
    fn a_process_status_is_the_image_status() {
        let r = PROCESS.watch(sh("echo hello; echo oops >&2; exit 110"), None, false, None).unwrap();
        assert_eq!(r.outcome, Outcome::Status(110));
        assert_eq!(r.outcome.describe(), "guest exited with status 110 (panic)");
        assert_eq!((r.serial.as_str(), r.stderr.as_str()), ("hello\n", "oops\n"));
        let r = PROCESS.watch(sh("exit 0"), None, false, None).unwrap();
        assert_eq!((r.outcome.clone(), r.outcome.exit_code()), (Outcome::Status(0), 0));
    }

    #[test]
    fn a_killed_process_is_reported_with_its_signal() {
        let r = PROCESS.watch(sh("echo before; kill -SEGV $$"), None, false, None).unwrap();
        assert_eq!(r.outcome, Outcome::Signal(11));
        assert_eq!(r.outcome.describe(), "guest killed by signal SIGSEGV (11)");
        assert_eq!(r.outcome.exit_code(), 1);
        assert_eq!(r.serial, "before\n");
    }

    #[test]
    fn a_hung_process_times_out_with_its_output() {
        let r = PROCESS
            .watch(sh("echo waiting; exec sleep 30"), Some(Duration::from_millis(300)), false, None)
            .unwrap();
        assert_eq!(r.outcome, Outcome::TimedOut);
        assert_eq!(r.serial, "waiting\n");
        assert!(r.wall < Duration::from_secs(10), "{:?}", r.wall);
    }

    #[test]
    fn typing_waits_for_the_prompt() {
        let mut cmd = sh("echo 'say:'; read line; echo \"got $line\"");
        cmd.stdin(Stdio::piped());
        let r = PROCESS
            .watch(cmd, Some(Duration::from_secs(10)), false, Some(Typing { after: "say:", bytes: b"hi\n" }))
            .unwrap();
        assert_eq!(r.outcome, Outcome::Status(0));
        assert_eq!(r.serial, "say:\ngot hi\n");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(36), "SIGRTMIN+2");
        assert_eq!(signal_name(0), "signal 0");
    }

    #[test]
    fn processes_run_without_qemu() {
        let args: Vec<String> = PROCESS
            .command(Path::new("/x/img"))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.is_empty(), "{args:?}");
        assert_eq!(PROCESS.command(Path::new("/x/img")).get_program(), "/x/img");
        assert_eq!(PROCESS.describe(), "linuxu");
        let gdb = gdb_process_args(Path::new("/x/img"));
        assert_eq!(gdb[gdb.len() - 2..], ["--args", "/x/img"]);
    }
}

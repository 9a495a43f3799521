//! Running an image under QEMU: accelerator choice, command line, timeout,
//! serial capture and the guest's exit status.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Added by the kvm platform to the status it writes to `isa-debug-exit`
/// (`platforms/kvm/src/shutdown.rs`).
const STATUS_OFFSET: i32 = 16;

/// QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's name.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Whether `/dev/kvm` really works: it opens read-write, speaks API version
/// 12 and creates a VM. Returns why not otherwise.
pub fn kvm_usable() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
    const KVM_CREATE_VM: libc::c_ulong = 0xae01;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    // SAFETY: plain ioctls on a file descriptor we own; no pointers passed.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != 12 {
        return Err(format!("/dev/kvm: API version {version}, expected 12"));
    }
    // SAFETY: as above; the returned descriptor is closed right away.
    let vm = unsafe { libc::ioctl(file.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(format!("/dev/kvm: KVM_CREATE_VM failed: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `vm` is a descriptor the kernel just gave us.
    unsafe { libc::close(vm) };
    Ok(())
}

/// What provides `/dev/kvm` on this host, from the loaded kernel modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmKind {
    /// `kvm_intel` or `kvm_amd`: hardware virtualisation (VMX/SVM).
    Hardware,
    /// `kvm_pvm` alone: the PVM hypervisor ("pagetable-based virtual
    /// machine"), which runs only paravirtualised PVM guests natively, at
    /// hardware CPL 3. A guest that is not PVM-aware, like ours, stays in
    /// PVM's bootstrap mode and is emulated instruction by instruction.
    Pvm,
    /// Neither module is visible (e.g. no /sys): assume hardware.
    Unknown,
}

/// Which KVM implementation backs `/dev/kvm`, from `/sys/module`.
pub fn kvm_kind() -> KvmKind {
    kvm_kind_from(|module| Path::new("/sys/module").join(module).exists())
}

/// [`kvm_kind`] over a predicate "is this module loaded" (host-testable).
pub fn kvm_kind_from(loaded: impl Fn(&str) -> bool) -> KvmKind {
    if loaded("kvm_intel") || loaded("kvm_amd") {
        KvmKind::Hardware
    } else if loaded("kvm_pvm") {
        KvmKind::Pvm
    } else {
        KvmKind::Unknown
    }
}

/// Why `auto` does not pick a PVM-backed KVM (printed with the choice).
pub const PVM_REASON: &str = "/dev/kvm is kvm_pvm, which emulates a guest that is not PVM-aware \
     instruction by instruction (~2 us per instruction here, ~1000x slower than TCG); --accel kvm forces it";

/// Resolves `auto`/`kvm`/`tcg` to an accelerator, with the reason for the choice.
///
/// `auto` takes KVM when `/dev/kvm` works and is hardware-backed; on a
/// PVM-backed `/dev/kvm` it takes TCG and says why (see [`KvmKind::Pvm`]).
/// `kvm` takes KVM whenever `/dev/kvm` works, PVM included.
pub fn choose_accel(requested: &str) -> Result<(Accel, String)> {
    match requested {
        "tcg" => Ok((Accel::Tcg, "requested".into())),
        "kvm" => match kvm_usable() {
            Ok(()) if kvm_kind() == KvmKind::Pvm => {
                Ok((Accel::Kvm, "requested; kvm_pvm emulates this guest, expect it to be slow".into()))
            }
            Ok(()) => Ok((Accel::Kvm, "requested".into())),
            Err(why) => bail!("--accel kvm requested but KVM is not usable: {why}"),
        },
        "auto" => Ok(match (kvm_usable(), kvm_kind()) {
            (Ok(()), KvmKind::Pvm) => (Accel::Tcg, format!("auto: {PVM_REASON}")),
            (Ok(()), _) => (Accel::Kvm, "auto: /dev/kvm works".into()),
            (Err(why), _) => (Accel::Tcg, format!("auto: KVM not usable ({why})")),
        }),
        other => bail!("unknown accelerator {other:?}; allowed: auto, kvm, tcg"),
    }
}

/// Everything needed to start QEMU.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `microvm` or `q35`.
    pub machine: String,
    /// CPUs.
    pub cpus: u32,
    /// MiB.
    pub memory_mib: u64,
    /// Accelerator.
    pub accel: Accel,
    /// Guest command line.
    pub cmdline: String,
    /// Start QEMU's gdb stub on this local TCP port and keep the guest
    /// stopped until a debugger continues it.
    pub gdb: Option<u16>,
    /// TCG's instruction counting (`platform.icount`): the guest's TSC
    /// counts instructions, the same on every run.
    pub icount: bool,
    /// Extra QEMU arguments (`--qemu-arg`), appended last.
    pub extra_args: Vec<String>,
}

/// The QEMU command for `image`.
pub fn command(image: &Path, vm: &VmConfig) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    let machine = match vm.machine.as_str() {
        // No option ROMs (nothing the platform uses; they cost boot time).
        // The RTC is on: uktime reads the time of day from it at boot (the
        // realtime clock, for FUTEX_CLOCK_REALTIME deadlines).
        "microvm" => "microvm,x-option-roms=off,rtc=on".to_string(),
        other => other.to_string(),
    };
    cmd.args(["-M", &machine]);
    match vm.accel {
        // `-cpu host` alone aborts under this nested KVM ("failed to set MSR 0x10a").
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
        Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    if vm.icount {
        // One instruction per virtual nanosecond, not slowed to real time,
        // no sleeping: the TSC (derived from it) counts instructions.
        cmd.args(["-icount", "shift=0,align=off,sleep=off"]);
    }
    cmd.args(["-m", &format!("{}M", vm.memory_mib), "-smp", &vm.cpus.to_string()])
        .args(["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(image);
    if !vm.cmdline.is_empty() {
        cmd.args(["-append", &vm.cmdline]);
    }
    if let Some(port) = vm.gdb {
        cmd.args(["-gdb", &format!("tcp:127.0.0.1:{port}"), "-S"]);
    }
    cmd.args(&vm.extra_args);
    cmd
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported a status through `isa-debug-exit`.
    Status(u8),
    /// QEMU exited 0: the guest stopped without reporting (reset, triple fault).
    NoStatus,
    /// QEMU itself failed.
    QemuFailed(i32),
    /// Killed after the timeout.
    TimedOut,
}

impl Outcome {
    /// Decodes QEMU's exit code.
    pub fn from_exit_code(code: i32) -> Outcome {
        if code == 0 {
            Outcome::NoStatus
        } else if code & 1 == 1 && code > 2 * STATUS_OFFSET {
            Outcome::Status(((code >> 1) - STATUS_OFFSET) as u8)
        } else {
            Outcome::QemuFailed(code)
        }
    }

    /// The exit code xtask passes on: the guest's status, or 1 for other failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Status(s) => i32::from(*s),
            _ => 1,
        }
    }

    /// A description for humans.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Status(0) => "guest exited with status 0 (success)".into(),
            Outcome::Status(110) => "guest exited with status 110 (panic)".into(),
            Outcome::Status(111) => "guest exited with status 111 (CPU exception)".into(),
            Outcome::Status(s) => format!("guest exited with status {s} (failure)"),
            Outcome::NoStatus => "guest stopped without reporting a status (reset or triple fault)".into(),
            Outcome::QemuFailed(code) => format!("QEMU failed with exit code {code}"),
            Outcome::TimedOut => "guest timed out".into(),
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Everything the guest wrote to the serial console.
    pub serial: String,
    /// QEMU's own stderr.
    pub qemu_stderr: String,
    /// Wall time from spawning QEMU to its exit.
    pub wall: Duration,
}

/// Runs `cmd` with a timeout, capturing the serial console (QEMU's stdout);
/// with `echo` the console is also copied to our stdout as it arrives.
pub fn run(cmd: Command, timeout: Option<Duration>, echo: bool) -> Result<RunResult> {
    run_with_input(cmd, timeout, echo, None)
}

/// [`run`] with our own standard input connected to the serial console, so
/// a person can type to the guest (`cargo xtask run`).
pub fn run_interactive(mut cmd: Command, timeout: Option<Duration>) -> Result<RunResult> {
    cmd.stdin(Stdio::inherit());
    run_with_stdin(cmd, timeout, true, None, false)
}

/// What to type into the serial console, and when.
#[derive(Clone, Copy, Debug)]
pub struct Typing<'a> {
    /// Type once the guest has printed this (as a person waits for a
    /// prompt: bytes sent before the guest set its UART up are lost, since
    /// enabling the UART's FIFOs clears them).
    pub after: &'a str,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// [`run`], typing into the serial console (QEMU's standard input) once the
/// guest printed the prompt.
pub fn run_with_input(
    cmd: Command,
    timeout: Option<Duration>,
    echo: bool,
    input: Option<Typing<'_>>,
) -> Result<RunResult> {
    run_with_stdin(cmd, timeout, echo, input, true)
}

fn run_with_stdin(
    mut cmd: Command,
    timeout: Option<Duration>,
    echo: bool,
    input: Option<Typing<'_>>,
    set_stdin: bool,
) -> Result<RunResult> {
    if set_stdin {
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    crate::setup::program(crate::setup::Program::Qemu)?;
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    // Kept open until QEMU exits: an early EOF is not what a terminal gives.
    let mut stdin = child.stdin.take();
    let mut pending = input;
    let serial = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().context("qemu stdout")?;
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
    let mut stderr = child.stderr.take().context("qemu stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break Some(status);
        }
        if let (Some(typing), Some(pipe)) = (pending, stdin.as_mut()) {
            let prompted = {
                let serial = serial.lock().expect("serial buffer");
                serial.windows(typing.after.len().max(1)).any(|w| w == typing.after.as_bytes())
            };
            if prompted {
                use std::io::Write;
                pipe.write_all(typing.bytes).context("writing to QEMU's standard input")?;
                pipe.flush().context("writing to QEMU's standard input")?;
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
    let qemu_stderr = err_reader.join().unwrap_or_default();
    let serial = String::from_utf8_lossy(&serial.lock().expect("serial buffer")).into_owned();
    let outcome = match status {
        None => Outcome::TimedOut,
        Some(status) => Outcome::from_exit_code(status.code().unwrap_or(-1)),
    };
    Ok(RunResult { outcome, serial, qemu_stderr, wall })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_decode() {
        assert_eq!(Outcome::from_exit_code(33), Outcome::Status(0));
        assert_eq!(Outcome::from_exit_code(2 * (16 + 111) + 1), Outcome::Status(111));
        assert_eq!(Outcome::from_exit_code(0), Outcome::NoStatus);
        assert_eq!(Outcome::from_exit_code(1), Outcome::QemuFailed(1));
        assert_eq!(Outcome::from_exit_code(-1), Outcome::QemuFailed(-1));
        assert_eq!(Outcome::Status(3).exit_code(), 3);
        assert_eq!(Outcome::TimedOut.exit_code(), 1);
    }

    #[test]
    fn kvm_kind_from_modules() {
        assert_eq!(kvm_kind_from(|m| m == "kvm_intel"), KvmKind::Hardware);
        assert_eq!(kvm_kind_from(|m| m == "kvm_amd" || m == "kvm_pvm"), KvmKind::Hardware);
        assert_eq!(kvm_kind_from(|m| m == "kvm_pvm"), KvmKind::Pvm);
        assert_eq!(kvm_kind_from(|_| false), KvmKind::Unknown);
    }

    #[test]
    fn command_line_per_accelerator() {
        let vm = VmConfig {
            machine: "microvm".into(),
            cpus: 1,
            memory_mib: 64,
            accel: Accel::Kvm,
            cmdline: "a b".into(),
            gdb: None,
            icount: false,
            extra_args: vec!["-d".into(), "int".into()],
        };
        let args: Vec<String> =
            command(Path::new("img"), &vm).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["-cpu", "host,-arch-capabilities"]));
        assert!(args.windows(2).any(|w| w == ["-append", "a b"]));
        assert_eq!(args[args.len() - 2..], ["-d", "int"], "extra arguments come last");
        assert!(!args.iter().any(|a| a == "-S" || a == "-gdb" || a == "-icount"));
        let tcg = VmConfig { accel: Accel::Tcg, machine: "q35".into(), ..vm };
        let args: Vec<String> =
            command(Path::new("img"), &tcg).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["-cpu", "max"]));
        assert!(args.windows(2).any(|w| w == ["-M", "q35"]));
        let debug = VmConfig { gdb: Some(4321), extra_args: vec![], ..tcg };
        let args: Vec<String> =
            command(Path::new("img"), &debug).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(3).any(|w| w == ["-gdb", "tcp:127.0.0.1:4321", "-S"]));
        let counted = VmConfig { icount: true, ..debug };
        let args: Vec<String> = command(Path::new("img"), &counted)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-icount", "shift=0,align=off,sleep=off"]));
    }
}

//! # xtask — the ukrs build driver
//!
//! `cargo xtask <command>` (an alias in `.cargo/config.toml`):
//!
//! | command | does |
//! |---|---|
//! | `build --app NAME [--config FILE] [--set LIB.OPTION=VALUE]... [--release]` | resolves the config, links the image, prints its path and size |
//! | `run --app NAME [build options] [--smp N] [--machine microvm\|q35] [--accel auto\|kvm\|tcg] [--timeout SECS] [--gdb [--gdb-port P]] [--qemu-arg ARG]...` | builds and boots it under QEMU (or, with `--set platform.name=linuxu`, runs the executable directly), exits with the guest's status |
//! | `test [--filter TEXT] [--guest-only] [--verbose]` | host unit tests of every crate and every in-guest test, with progress, then `N passed, N failed, N skipped` |
//! | `config --app NAME [--config FILE] [--set ...]` | the resolved configuration with values, help and sources |
//! | `list` | apps, platforms, libraries and their options |
//! | `bench boot` | boot-time benchmark against a minimal baseline image |
//! | `bench smp`, `bench sched`, `bench rcu`, `bench futex` | SMP, scheduler, RCU and futex benchmarks: medians over boots against baselines measured in the same boot |
//!
//! The first command that needs them sets up what is missing (module
//! [`setup`]): the guest target and the components of `rust-toolchain.toml`
//! through rustup, QEMU and gdb through the distribution's package manager.
//!
//! Bad configuration exits with status 2 and one line naming the file, the key
//! and what is allowed; other failures exit with 1 (or the guest's status).
//!
//! Crates: `clap` (argument parsing with generated help), `anyhow` (error
//! context chains), `kconfig` (this workspace's config resolver, shared with
//! `libs/ukconfig`'s build script), `libc` (the `/dev/kvm` probe).

mod anchors;
mod bench;
mod cmd_config;
mod guest;
mod image;
mod progress;
mod qemu;
mod setup;
mod test;

use anyhow::Result;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark ukrs images", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an app's image and print its path and size.
    Build(BuildArgs),
    /// Build and boot an app's image under QEMU, or run it as a Linux
    /// process (platform linuxu); exit with the guest's status.
    Run(RunArgs),
    /// Run the host unit tests and every in-guest test app.
    Test(test::TestArgs),
    /// Show an app's resolved configuration.
    Config(ConfigArgs),
    /// List apps, platforms, libraries and their options.
    List,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCmd,
    },
}

/// Which configuration to resolve.
#[derive(Args, Clone, Debug)]
struct ConfigArgs {
    /// The app (a directory under apps/).
    #[arg(long)]
    app: String,
    /// Config file instead of config/<app>.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override an option: LIB.OPTION=VALUE or platform.OPTION=VALUE;
    /// platform.name=NAME chooses the platform (e.g. linuxu).
    #[arg(long = "set", value_name = "LIB.OPTION=VALUE")]
    sets: Vec<String>,
}

#[derive(Args, Clone, Debug)]
struct BuildArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Optimised, size-reduced build (LTO).
    #[arg(long)]
    release: bool,
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Number of CPUs (platform.cpus).
    #[arg(long)]
    smp: Option<u32>,
    /// QEMU machine (platform.machine).
    #[arg(long)]
    machine: Option<String>,
    /// Accelerator (platform.accel).
    #[arg(long)]
    accel: Option<String>,
    /// Kill the guest after this many seconds (not with --gdb).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Build with full debug info, start QEMU's gdb stub and keep the guest
    /// stopped until gdb attaches and continues; prints the gdb command.
    /// On linuxu: runs the executable under gdb (`gdb --args IMAGE`).
    #[arg(long)]
    gdb: bool,
    /// The local TCP port of QEMU's gdb stub (with --gdb; default 1234).
    #[arg(long, requires = "gdb")]
    gdb_port: Option<u16>,
    /// An extra argument for QEMU, appended to its command line (repeat for
    /// several, e.g. `--qemu-arg=-d --qemu-arg=int`).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Count instructions (platform.icount=true, with TCG): the guest's TSC
    /// deltas are then instruction counts, the same on every run; with
    /// `--set ukboot.init_times=true` the boot prints them per init stage.
    #[arg(long)]
    icount: bool,
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent directory").to_path_buf()
}

fn load() -> Result<kconfig::Workspace> {
    Ok(kconfig::Workspace::load(&root())?)
}

fn resolve(ws: &kconfig::Workspace, args: &ConfigArgs) -> Result<kconfig::Resolved> {
    Ok(ws.resolve(&args.app, args.config.as_deref(), &args.sets)?)
}

/// The VM settings of a resolved configuration (with the gdb stub on that
/// port, if any), and why the accelerator was chosen.
pub fn vm_config(resolved: &kconfig::Resolved, gdb: Option<u16>) -> Result<(qemu::VmConfig, String)> {
    use kconfig::Value;
    let get = |name: &str| {
        resolved
            .option("platform", name)
            .ok_or_else(|| anyhow::anyhow!("platform {} has no option `{name}`", resolved.platform))
    };
    let (
        Value::Choice(machine),
        Value::Int(cpus),
        Value::Int(memory),
        Value::Choice(accel),
        Value::Str(cmdline),
    ) = (get("machine")?, get("cpus")?, get("memory")?, get("accel")?, get("cmdline")?)
    else {
        anyhow::bail!("platform {} options have unexpected types", resolved.platform);
    };
    let (accel, why) = qemu::choose_accel(accel)?;
    let icount = matches!(resolved.option("platform", "icount"), Some(Value::Bool(true)));
    if icount && accel != qemu::Accel::Tcg {
        anyhow::bail!(
            "platform.icount = true needs TCG (QEMU counts instructions only when it translates them), but the accelerator is {} ({why}); set platform.accel=tcg",
            accel.name()
        );
    }
    let vm = qemu::VmConfig {
        machine: machine.clone(),
        cpus: u32::try_from(*cpus)?,
        memory_mib: u64::try_from(*memory)?,
        accel,
        cmdline: cmdline.clone(),
        gdb,
        icount,
        extra_args: Vec::new(),
    };
    Ok((vm, why))
}

/// Prints the resolution's notes (what it left out on purpose), one
/// `note: ...` line each, on stderr.
fn print_notes(resolved: &kconfig::Resolved) {
    for note in &resolved.notes {
        eprintln!("note: {note}");
    }
}

fn cmd_build(args: &BuildArgs) -> Result<ExitCode> {
    let ws = load()?;
    let resolved = resolve(&ws, &args.config)?;
    print_notes(&resolved);
    let opts = image::BuildOptions { release: args.release, ..Default::default() };
    let img = image::build(&ws, &resolved, &opts)?;
    println!("{} ({} bytes, {:.1} KiB)", img.path.display(), img.size, img.size as f64 / 1024.0);
    Ok(ExitCode::SUCCESS)
}

/// `run`'s options that only QEMU understands, with what each is, given
/// in `args`: an error for a platform that runs as a Linux process.
fn qemu_only_options(args: &RunArgs) -> Vec<(&'static str, &'static str)> {
    [
        ("--machine", "QEMU's machine type", args.machine.is_some()),
        ("--accel", "QEMU's accelerator", args.accel.is_some()),
        ("--icount", "QEMU's instruction counting (TCG)", args.icount),
        ("--qemu-arg", "an argument for QEMU", !args.qemu_args.is_empty()),
        ("--gdb-port", "the port of QEMU's gdb stub", args.gdb_port.is_some()),
    ]
    .into_iter()
    .filter(|(_, _, given)| *given)
    .map(|(flag, what, _)| (flag, what))
    .collect()
}

/// QEMU's gdb stub port when `--gdb-port` is not given.
const DEFAULT_GDB_PORT: u16 = 1234;

fn cmd_run(args: &RunArgs) -> Result<ExitCode> {
    let ws = load()?;
    let mut config = args.build.config.clone();
    if let Some(n) = args.smp {
        config.sets.push(format!("platform.cpus={n}"));
    }
    // The platform decides how the image runs; QEMU's options need QEMU.
    let base = resolve(&ws, &config)?;
    let process = guest::PROCESS_PLATFORMS.contains(&base.platform.as_str());
    if process && let Some((flag, what)) = qemu_only_options(args).first() {
        return Err(kconfig::ConfigError::new(
            *flag,
            "",
            format!(
                "{what}; platform {} runs the image as a Linux process, not under QEMU: drop {flag}, or run under QEMU with --set platform.name=kvm",
                base.platform
            ),
        )
        .into());
    }
    if let Some(m) = &args.machine {
        config.sets.push(format!("platform.machine={m}"));
    }
    if let Some(a) = &args.accel {
        config.sets.push(format!("platform.accel={a}"));
    }
    if args.icount {
        config.sets.push("platform.icount=true".into());
        if args.accel.is_none() {
            config.sets.push("platform.accel=tcg".into());
        }
    }
    let resolved = if process { base } else { resolve(&ws, &config)? };
    print_notes(&resolved);
    let opts =
        image::BuildOptions { release: args.build.release, debug_info: args.gdb, ..Default::default() };
    let img = image::build(&ws, &resolved, &opts)?;
    eprintln!("xtask: image {} ({} bytes)", img.path.display(), img.size);
    let (mut guest, why) = guest::Guest::from_resolved(
        &resolved,
        args.gdb.then_some(args.gdb_port.unwrap_or(DEFAULT_GDB_PORT)),
    )?;
    match &mut guest {
        guest::Guest::Qemu(vm) => {
            vm.extra_args.clone_from(&args.qemu_args);
            eprintln!("xtask: accelerator {} ({why})", vm.accel.name());
            eprintln!(
                "xtask: booting {} on {} with {} CPU(s), {} MiB, accelerator {}",
                resolved.app,
                vm.machine,
                vm.cpus,
                vm.memory_mib,
                vm.accel.name()
            );
        }
        guest::Guest::Process { cpus, memory_mib } => eprintln!(
            "xtask: running {} as a Linux process (platform {}, no QEMU) with {cpus} CPU(s) (host threads), {memory_mib} MiB",
            resolved.app, resolved.platform
        ),
    }
    let app = ws.apps.get(&resolved.app).map_or(resolved.app.clone(), |a| a.crate_name.replace('-', "_"));
    if args.gdb {
        if let guest::Guest::Process { .. } = guest {
            // gdb runs the process itself: interactive, no timeout.
            eprintln!("xtask: starting gdb; e.g. `break {app}::main`, then `run`");
            let status = guest::gdb_process(&img.path)?;
            return Ok(ExitCode::from(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)));
        }
        setup::program(setup::Program::Gdb)?;
        eprintln!("xtask: the guest is stopped until gdb attaches; in another terminal run:");
        eprintln!("    {}", gdb_command(&img.path, args.gdb_port.unwrap_or(DEFAULT_GDB_PORT)));
        eprintln!("xtask: then e.g. `break {app}::main` and `continue`");
    }
    let timeout = if args.gdb { None } else { Some(Duration::from_secs(args.timeout)) };
    let result = guest.run_interactive(&img.path, timeout)?;
    if !result.stderr.trim().is_empty() {
        let who = match guest {
            guest::Guest::Qemu(_) => "QEMU said",
            guest::Guest::Process { .. } => "the image's stderr",
        };
        eprintln!("xtask: {who}:\n{}", result.stderr.trim_end());
    }
    if result.outcome == qemu::Outcome::TimedOut {
        let log = match guest {
            guest::Guest::Qemu(_) => "serial log",
            guest::Guest::Process { .. } => "output",
        };
        eprintln!("xtask: guest timed out after {} s and was killed; {log}:", args.timeout);
        eprintln!("----- {log} ({} bytes) -----", result.serial.len());
        eprintln!("{}", result.serial.trim_end());
        eprintln!("----- end of {log} -----");
    }
    eprintln!("xtask: {} after {:.0} ms", result.outcome.describe(), result.wall.as_secs_f64() * 1000.0);
    Ok(ExitCode::from(u8::try_from(result.outcome.exit_code()).unwrap_or(1)))
}

/// The gdb command line that attaches to the stub with the image's symbols.
pub fn gdb_command(image: &Path, port: u16) -> String {
    format!("gdb {} -ex 'target remote 127.0.0.1:{port}'", image.display())
}

fn cmd_config(args: &ConfigArgs) -> Result<ExitCode> {
    let ws = load()?;
    let resolved = resolve(&ws, args)?;
    print_notes(&resolved);
    print!("{}", cmd_config::config(&ws, &resolved));
    Ok(ExitCode::SUCCESS)
}

fn cmd_list() -> Result<ExitCode> {
    let ws = load()?;
    print!("{}", cmd_config::list(&ws));
    Ok(ExitCode::SUCCESS)
}

/// The allowed values and default of a platform option, for `--help`.
fn platform_option_help(ws: &kconfig::Workspace, option: &str) -> Option<String> {
    let per_platform: Vec<String> = ws
        .platforms
        .values()
        .filter_map(|p| {
            let decl = p.options.iter().find(|o| o.name == option)?;
            let allowed = decl.ty.allowed().map(|a| a.replace('"', "")).unwrap_or_else(|| "any".into());
            Some(format!(
                "{allowed}; default {} (platform {})",
                decl.default.to_string().replace('"', ""),
                p.name
            ))
        })
        .collect();
    (!per_platform.is_empty()).then(|| per_platform.join("; "))
}

/// The command-line parser, with the choices of `run --machine`, `--accel`
/// and `--smp` taken from the platforms' Kconfig files (one source of truth).
fn cli_command() -> clap::Command {
    let mut command = Cli::command();
    if let Ok(ws) = load() {
        for (flag, option) in [("machine", "machine"), ("accel", "accel"), ("smp", "cpus")] {
            if let Some(allowed) = platform_option_help(&ws, option) {
                command = command.mut_subcommand("run", |run| {
                    run.mut_arg(flag, |arg| {
                        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                        arg.help(format!("{help} [allowed: {allowed}]"))
                    })
                });
            }
        }
    }
    command
}

fn main() -> ExitCode {
    let matches = cli_command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match &cli.command {
        Cmd::Build(args) => cmd_build(args),
        Cmd::Run(args) => cmd_run(args),
        Cmd::Test(args) => test::run(args),
        Cmd::Config(args) => cmd_config(args),
        Cmd::List => cmd_list(),
        Cmd::Bench { which } => bench::run(which),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(config_error) = err.downcast_ref::<kconfig::ConfigError>() {
                eprintln!("error: {config_error}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_help_lists_the_platform_choices() {
        let mut command = cli_command();
        let run = command.find_subcommand_mut("run").expect("run subcommand");
        let help = run.render_long_help().to_string();
        assert!(help.contains("[allowed: microvm, q35; default microvm (platform kvm)]"), "{help}");
        assert!(help.contains("[allowed: auto, kvm, tcg; default auto (platform kvm)]"), "{help}");
        assert!(help.contains("--qemu-arg <ARG>"), "{help}");
    }

    /// `run`'s arguments from a command line.
    fn run_args(args: &[&str]) -> RunArgs {
        let matches = cli_command().try_get_matches_from(args).expect("parses");
        let Cmd::Run(args) = Cli::from_arg_matches(&matches).expect("valid").command else {
            panic!("not run")
        };
        args
    }

    #[test]
    fn qemu_options_are_an_error_on_linuxu() {
        let linuxu = ["xtask", "run", "--app", "helloworld", "--set", "platform.name=linuxu"];
        for (flag, value) in [
            ("--machine", Some("q35")),
            ("--accel", Some("tcg")),
            ("--icount", None),
            ("--qemu-arg", Some("-d")),
        ] {
            let mut line: Vec<&str> = linuxu.to_vec();
            line.push(flag);
            line.extend(value);
            // Refused before anything is built.
            let err = cmd_run(&run_args(&line)).expect_err(flag);
            let err = err.downcast_ref::<kconfig::ConfigError>().expect("a configuration error (status 2)");
            let text = err.to_string();
            assert!(text.starts_with(&format!("{flag}: ")), "{text}");
            assert!(
                text.contains("platform linuxu runs the image as a Linux process, not under QEMU"),
                "{text}"
            );
        }
        let args = run_args(&["xtask", "run", "--app", "a", "--machine", "q35", "--icount"]);
        let flags: Vec<&str> = qemu_only_options(&args).into_iter().map(|(flag, _)| flag).collect();
        assert_eq!(flags, ["--machine", "--icount"]);
        assert!(
            qemu_only_options(&run_args(&["xtask", "run", "--app", "a", "--smp", "2", "--gdb"])).is_empty()
        );
    }

    #[test]
    fn qemu_args_take_values_that_start_with_a_dash() {
        let matches = cli_command()
            .try_get_matches_from(["xtask", "run", "--app", "a", "--qemu-arg", "-d", "--qemu-arg=int"])
            .expect("parses");
        let Cmd::Run(args) = Cli::from_arg_matches(&matches).expect("valid").command else {
            panic!("not run")
        };
        assert_eq!(args.qemu_args, ["-d", "int"]);
        assert!(
            cli_command().try_get_matches_from(["xtask", "run", "--app", "a", "--gdb-port", "1"]).is_err()
        );
    }
}

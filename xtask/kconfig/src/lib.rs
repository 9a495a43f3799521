//! A Kconfig-like configuration system for the ukrs unikernel, used on the
//! host by the `xtask` build driver and by the build script of the guest
//! crate `ukconfig`.
//!
//! Three kinds of input are read:
//!
//! * **Declarations**: every `libs/NAME/Kconfig.toml` and
//!   `platforms/NAME/Kconfig.toml` declares a library (or platform), the
//!   libraries it needs and the options it has:
//!
//!   ```toml
//!   [library]
//!   name = "ukalloc"              # the directory name
//!   kind = "library"              # or "platform" (required under platforms/)
//!   help = "Global heap allocator"
//!   depends = ["ukplat", "ukboot"] # must be selected too, else an error
//!   selects = []                  # selected automatically (transitively)
//!
//!   [options.backend]
//!   type = "choice"               # "bool", "int", "string" or "choice"
//!   default = "talc"              # required and valid
//!   choices = ["talc", "linked-list"] # choice only
//!   help = "Allocator behind the global heap"
//!
//!   [options.heap_limit_kib]
//!   type = "int"
//!   default = 0
//!   range = [0, 4194304]          # int only, optional, inclusive
//!   # at_most = "max_heap_kib"    # int only, optional: <= that int option of this library
//!   help = "Largest heap in KiB (0: all free RAM)"
//!   ```
//!
//!   The directory's `Cargo.toml` is read too: its package name, its features
//!   and its non-optional path dependencies on other declared libraries, each
//!   of which must appear in `depends` or `selects`.
//!
//! * **App configurations**: every `apps/NAME/` with a `Cargo.toml` is an
//!   app, configured by `config/NAME.toml`:
//!
//!   ```toml
//!   [platform]
//!   name = "kvm"            # required: a declared platform
//!   machine = "microvm"     # any option of that platform
//!
//!   [libraries.ukconsole]   # selecting a library = having its table
//!   log_level = "info"
//!
//!   [libraries.ukalloc]     # may be empty: selected with its defaults
//!   ```
//!
//! * **Command-line overrides** (`--set`): `LIB.OPTION=VALUE`, or
//!   `platform.OPTION=VALUE`, where VALUE is read according to the option's
//!   type (`true`/`false`, a decimal or `0x` hexadecimal integer, a string as
//!   is, or one of the choices). `platform.name=NAME` chooses the platform
//!   instead of the file's `[platform] name` (the last one wins, wherever it
//!   is): the file's `[platform]` options that NAME declares keep their
//!   values; those only the file's platform declares are dropped, each with
//!   a line in [`Resolved::notes`]; any other is still an error.
//!
//! [`Workspace::resolve`] selects the libraries named by the config file, the
//! platform's `selects` and everything those select in turn; checks every
//! `depends` and that the app's own library dependencies are selected; and
//! gives every option of the platform and of the selected libraries a value:
//! its default, overridden by the config file, overridden by `--set`; then
//! checks every `at_most` bound between int options.
//! [`Resolved::to_rust`] turns the result into the source of the `ukconfig`
//! crate: typed constants, one module per library.
//!
//! Every mistake is a [`ConfigError`] whose `Display` is a single line naming
//! the file, the key and what is allowed, for example
//! `config/x.toml: libraries.ukalloc.backend: "foo" is not one of "talc", "linked-list"`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod error;
mod load;
mod render;
mod resolve;
mod value;

#[cfg(test)]
mod tests;

pub use error::ConfigError;

/// Every library, platform and app of a ukrs workspace, with their
/// declarations.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    /// The workspace root (canonical), holding `Cargo.toml`, `libs/`,
    /// `platforms/`, `apps/` and `config/`.
    pub root: PathBuf,
    /// The libraries declared by `libs/*/Kconfig.toml`, by name.
    pub libraries: BTreeMap<String, Library>,
    /// The platforms declared by `platforms/*/Kconfig.toml`, by name.
    pub platforms: BTreeMap<String, Library>,
    /// The apps (`apps/*/Cargo.toml`), by name.
    pub apps: BTreeMap<String, App>,
}

/// A declared library or platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Library {
    /// Its name, equal to its directory name.
    pub name: String,
    /// Library or platform.
    pub kind: Kind,
    /// Its directory (absolute).
    pub dir: PathBuf,
    /// The package name in its `Cargo.toml`.
    pub crate_name: String,
    /// What it is, from `library.help`.
    pub help: String,
    /// Libraries that must be selected when this one is.
    pub depends: Vec<String>,
    /// Libraries selected automatically when this one is.
    pub selects: Vec<String>,
    /// Its options, in declaration order.
    pub options: Vec<OptionDecl>,
    /// Its Cargo features (declared and implicit ones of optional
    /// dependencies), sorted.
    pub features: Vec<String>,
    /// The declared libraries its `Cargo.toml` depends on (non-optional path
    /// dependencies), by library name, sorted.
    pub lib_deps: Vec<String>,
}

/// Whether a declaration is a library or a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A library under `libs/`.
    Library,
    /// A platform under `platforms/`.
    Platform,
}

/// An app: a crate under `apps/` with its configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Its name, the directory name.
    pub name: String,
    /// Its directory (absolute).
    pub dir: PathBuf,
    /// The package name in its `Cargo.toml`.
    pub crate_name: String,
    /// `config/NAME.toml` (absolute; it may not exist).
    pub config_file: PathBuf,
    /// The declared libraries its `Cargo.toml` depends on (non-optional path
    /// dependencies), by library name, sorted.
    pub lib_deps: Vec<String>,
}

/// The declaration of one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDecl {
    /// Its name (a lowercase identifier).
    pub name: String,
    /// Its type and allowed values.
    pub ty: OptionType,
    /// Its default value (valid for `ty`).
    pub default: Value,
    /// What it does.
    pub help: String,
}

/// The type of an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionType {
    /// `true` or `false`.
    Bool,
    /// A 64-bit signed integer, optionally within an inclusive range and at
    /// most another int option of the same library.
    Int {
        /// The inclusive range `(min, max)`, if any.
        range: Option<(i64, i64)>,
        /// `at_most = "OTHER"`: the name of another int option of the same
        /// library (or platform) whose resolved value this one's must not
        /// exceed, if any.
        at_most: Option<String>,
    },
    /// Any string.
    Str,
    /// One of a list of strings.
    Choice {
        /// The allowed values, in declaration order.
        choices: Vec<String>,
    },
}

impl OptionType {
    /// The allowed values in words, for types that restrict them:
    /// `1..=256` for an int with a range (`1..=256, at most max_cpus` with
    /// `at_most`, `at most max_cpus` without a range), `"talc",
    /// "linked-list"` for a choice, `true, false` for a bool; `None`
    /// otherwise.
    pub fn allowed(&self) -> Option<String> {
        match self {
            OptionType::Bool => Some("true, false".to_string()),
            OptionType::Int { range, at_most } => {
                let range = range.map(|(min, max)| format!("{min}..={max}"));
                let bound = at_most.as_ref().map(|other| format!("at most {other}"));
                let parts: Vec<String> = range.into_iter().chain(bound).collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            }
            OptionType::Str => None,
            OptionType::Choice { choices } => Some(value::quote_list(choices)),
        }
    }
}

/// Displays the type's keyword: `bool`, `int`, `string` or `choice`.
impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptionType::Bool => "bool",
            OptionType::Int { .. } => "int",
            OptionType::Str => "string",
            OptionType::Choice { .. } => "choice",
        })
    }
}

/// The value of an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A bool option's value.
    Bool(bool),
    /// An int option's value.
    Int(i64),
    /// A string option's value.
    Str(String),
    /// A choice option's value (one of its choices).
    Choice(String),
}

/// Displays the value as TOML would write it: `true`, `42`, `"text"`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) | Value::Choice(s) => f.write_str(&value::quote(s)),
        }
    }
}

/// Where a resolved option's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The declaration's default.
    Default,
    /// The app's configuration file.
    AppFile,
    /// A `--set` on the command line.
    CommandLine,
}

/// Displays `default`, `config file` or `--set`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::AppFile => "config file",
            Source::CommandLine => "--set",
        })
    }
}

/// The configuration of one app, resolved: selected libraries and the value
/// of every option of the platform and of the selected libraries.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The app's name.
    pub app: String,
    /// The configuration file read (as given, or `ROOT/config/APP.toml`).
    pub config_file: PathBuf,
    /// The platform's name.
    pub platform: String,
    /// The selected libraries (not the platform), sorted.
    pub libraries: Vec<String>,
    /// The platform's options (owner `"platform"`), then the selected
    /// libraries' options, libraries sorted, options in declaration order.
    pub options: Vec<ResolvedOption>,
    /// What the resolution left out on purpose, one line each, for the
    /// user to see (`note: ...`): options of the config file's platform
    /// that the platform chosen by `--set platform.name=NAME` does not
    /// have, e.g. `config/helloworld.toml: platform.machine = "microvm" is
    /// an option of kvm, not of linuxu: not used (--set platform.name=linuxu)`.
    pub notes: Vec<String>,
}

/// One option with its resolved value.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedOption {
    /// The library's name, or `"platform"` for an option of the platform.
    pub owner: String,
    /// The option's declaration.
    pub decl: OptionDecl,
    /// Its value.
    pub value: Value,
    /// Where the value comes from.
    pub source: Source,
}

impl Workspace {
    /// Reads the declarations of the workspace at `root`: the root
    /// `Cargo.toml`, every `libs/*/Kconfig.toml` and `platforms/*/Kconfig.toml`
    /// with the `Cargo.toml` beside it, and every `apps/*/Cargo.toml`.
    pub fn load(root: &Path) -> Result<Workspace, ConfigError> {
        load::load(root)
    }

    /// Resolves the configuration of `app`.
    ///
    /// `config`: `None` = `config/<app>.toml`; `sets` = raw `--set` strings
    /// (`LIB.OPTION=VALUE` or `platform.OPTION=VALUE`), applied in order.
    pub fn resolve(
        &self,
        app: &str,
        config: Option<&Path>,
        sets: &[String],
    ) -> Result<Resolved, ConfigError> {
        resolve::resolve(self, app, config, sets)
    }

    /// Rust source of the `ukconfig` crate for host builds not driven by
    /// xtask: every library with its defaults and `SELECTED = true`, `APP =
    /// ""`, and the first platform (by name) with its defaults.
    pub fn defaults_rust(&self) -> String {
        render::defaults(self)
    }

    /// Every file [`Workspace::load`] read, plus the apps' configuration
    /// files that exist (for a build script's `rerun-if-changed`), sorted.
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.root.join("Cargo.toml")];
        for lib in self.libraries.values().chain(self.platforms.values()) {
            files.push(lib.dir.join("Kconfig.toml"));
            files.push(lib.dir.join("Cargo.toml"));
        }
        for app in self.apps.values() {
            files.push(app.dir.join("Cargo.toml"));
            if app.config_file.is_file() {
                files.push(app.config_file.clone());
            }
        }
        files.sort();
        files.dedup();
        files
    }

    /// `path` relative to the workspace root when it is inside it (as shown
    /// in error messages), else `path` unchanged.
    pub fn relative(&self, path: &Path) -> PathBuf {
        error::relative(&self.root, path)
    }

    /// The library or platform called `name`.
    pub fn library(&self, name: &str) -> Option<&Library> {
        self.libraries.get(name).or_else(|| self.platforms.get(name))
    }
}

impl Resolved {
    /// The value of option `name` of `owner` (a library name, or
    /// `"platform"`), if it is resolved.
    pub fn option(&self, owner: &str, name: &str) -> Option<&Value> {
        self.options.iter().find(|o| o.owner == owner && o.decl.name == name).map(|o| &o.value)
    }

    /// Rust source of the `ukconfig` crate for this configuration: `APP`,
    /// `LIBRARIES`, a `platform` module and a module for every declared
    /// library (unselected ones with `SELECTED = false` and their defaults).
    pub fn to_rust(&self, ws: &Workspace) -> String {
        render::resolved(ws, self)
    }
}

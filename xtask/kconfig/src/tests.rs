//! Unit tests: a small workspace built in a temporary directory, and the
//! real workspace this crate lives in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::value::{camel_case, parse_int, quote};
use crate::{ConfigError, Kind, OptionType, Resolved, Source, Value, Workspace};

/// A workspace in a temporary directory, removed on drop.
struct TempWs {
    /// Its root.
    root: PathBuf,
}

impl TempWs {
    /// An empty temporary directory named after `name`.
    fn empty(name: &str) -> TempWs {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("kconfig-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        TempWs { root }
    }

    /// The small workspace below, in a temporary directory.
    fn mini(name: &str) -> TempWs {
        let ws = TempWs::empty(name);
        for (path, text) in MINI {
            ws.write(path, text);
        }
        std::fs::create_dir_all(ws.root.join("apps/notanapp/src")).unwrap();
        std::fs::create_dir_all(ws.root.join("libs/infra/src")).unwrap();
        ws
    }

    /// Writes `text` to `rel` (creating directories).
    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Loads it.
    fn load(&self) -> Result<Workspace, ConfigError> {
        Workspace::load(&self.root)
    }

    /// Loads it, which must succeed.
    fn ws(&self) -> Workspace {
        self.load().unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    /// Writes `config/case.toml` and resolves app `demo` with it.
    fn resolve_text(&self, config: &str, sets: &[&str]) -> Result<Resolved, ConfigError> {
        self.write("config/case.toml", config);
        let ws = self.ws();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        ws.resolve("demo", Some(&self.root.join("config/case.toml")), &sets)
    }
}

impl Drop for TempWs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The files of the small workspace: libraries `base` (no options), `alpha`
/// (an option of each type), `beta` (a negative int without range), `gamma`
/// (depends on alpha), platform `virt`, app `demo` (uses alpha).
const MINI: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        r#"[workspace]
members = ["libs/*", "platforms/*", "apps/*"]

[workspace.dependencies]
ukconfig = { path = "libs/infra" }
base = { path = "libs/base" }
alpha = { path = "libs/alpha" }
beta = { path = "libs/beta" }
gamma = { path = "libs/gamma" }
virt = { path = "platforms/virt", package = "ukplat-virt" }
log = "0.4"
spin = { version = "0.9", default-features = false }
"#,
    ),
    ("libs/base/Kconfig.toml", "[library]\nname = \"base\"\nhelp = \"The base library\"\n"),
    (
        "libs/base/Cargo.toml",
        "[package]\nname = \"base\"\n\n[dependencies]\nlog.workspace = true\nspin.workspace = true\nukconfig.workspace = true\n",
    ),
    (
        "libs/alpha/Kconfig.toml",
        r#"[library]
name = "alpha"
help = "Alpha: one option of each type"
depends = ["base"]

[options.enabled]
type = "bool"
default = true
help = "Whether alpha does its thing"

[options.count]
type = "int"
default = 4
range = [1, 8]
help = "How many"

[options.label]
type = "string"
default = "a \"quoted\" \\ label"
help = "A label"

[options.mode]
type = "choice"
default = "fast"
choices = ["fast", "slow-path"]
help = "How it goes"
"#,
    ),
    (
        "libs/alpha/Cargo.toml",
        r#"[package]
name = "alpha"

[dependencies]
base = { path = "../base" }
serde = { version = "1", optional = true }
beta = { workspace = true, optional = true }

[features]
std = []
fancy = ["dep:beta"]
"#,
    ),
    (
        "libs/beta/Kconfig.toml",
        r#"[library]
name = "beta"
help = "Beta selects base"
selects = ["base"]

[options.offset]
type = "int"
default = -5
help = "An offset"
"#,
    ),
    ("libs/beta/Cargo.toml", "[package]\nname = \"beta\"\n\n[dependencies]\nbase.workspace = true\n"),
    (
        "libs/gamma/Kconfig.toml",
        "[library]\nname = \"gamma\"\nhelp = \"Gamma needs alpha\"\ndepends = [\"alpha\"]\n",
    ),
    ("libs/gamma/Cargo.toml", "[package]\nname = \"gamma\"\n\n[dependencies]\nalpha.workspace = true\n"),
    (
        "platforms/virt/Kconfig.toml",
        r#"[library]
name = "virt"
kind = "platform"
help = "A virtual platform"
selects = ["base"]

[options.mem]
type = "int"
default = 32
range = [16, 64]
help = "Memory in MiB"

[options.cmdline]
type = "string"
default = ""
help = "Command line"
"#,
    ),
    (
        "platforms/virt/Cargo.toml",
        "[package]\nname = \"ukplat-virt\"\n\n[dependencies]\nbase.workspace = true\nukconfig.workspace = true\n",
    ),
    (
        "apps/demo/Cargo.toml",
        r#"[package]
name = "demo-app"

[dependencies]
alpha.workspace = true
ukconfig.workspace = true
beta = { workspace = true, optional = true }
log.workspace = true
"#,
    ),
    ("config/demo.toml", "[platform]\nname = \"virt\"\nmem = 48\n\n[libraries.alpha]\ncount = 2\n"),
];

/// The text of mini workspace file `rel`.
fn mini_file(rel: &str) -> &'static str {
    MINI.iter().find(|(p, _)| *p == rel).unwrap().1
}

/// The error's one line, checked to be one line.
fn one_line<T: std::fmt::Debug>(r: Result<T, ConfigError>) -> String {
    let text = r.expect_err("expected an error").to_string();
    assert!(!text.contains('\n') && !text.contains('\r'), "not one line: {text:?}");
    text
}

/// Resolves `config` in a fresh mini workspace and returns the error line.
fn mini_err(config: &str, sets: &[&str]) -> String {
    one_line(TempWs::mini("err").resolve_text(config, sets))
}

/// The minimal valid config of the mini workspace.
const DEMO: &str = "[platform]\nname = \"virt\"\n[libraries.alpha]\n";

/// Replaces `from` by `to` in the mini workspace file `rel` and returns the
/// load error line.
fn decl_err(rel: &str, from: &str, to: &str) -> String {
    let ws = TempWs::mini("decl");
    let text = mini_file(rel);
    assert!(text.contains(from), "{rel} has no {from:?}");
    ws.write(rel, &text.replacen(from, to, 1));
    one_line(ws.load())
}

// ---------------------------------------------------------------- values

#[test]
fn parse_int_forms() {
    assert_eq!(parse_int("42"), Some(42));
    assert_eq!(parse_int("-42"), Some(-42));
    assert_eq!(parse_int("0x10"), Some(16));
    assert_eq!(parse_int("0XfF"), Some(255));
    assert_eq!(parse_int("-0x10"), Some(-16));
    assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_int("9223372036854775808"), None);
    for bad in ["", "-", "0x", "1_000", "+1", " 1", "1.0", "abc", "0x1g"] {
        assert_eq!(parse_int(bad), None, "{bad:?}");
    }
}

#[test]
fn quoting_and_names() {
    assert_eq!(quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    assert_eq!(Value::Str("x".into()).to_string(), "\"x\"");
    assert_eq!(Value::Choice("talc".into()).to_string(), "\"talc\"");
    assert_eq!(Value::Int(-3).to_string(), "-3");
    assert_eq!(Value::Bool(true).to_string(), "true");
    assert_eq!(camel_case("linked-list"), "LinkedList");
    assert_eq!(camel_case("log_level"), "LogLevel");
    assert_eq!(camel_case("q35"), "Q35");
    assert_eq!(Source::Default.to_string(), "default");
    assert_eq!(Source::CommandLine.to_string(), "--set");
    assert_eq!(OptionType::Int { range: Some((1, 2)), at_most: None }.allowed().unwrap(), "1..=2");
    assert_eq!(
        OptionType::Int { range: Some((1, 256)), at_most: Some("max_cpus".into()) }.allowed().unwrap(),
        "1..=256, at most max_cpus"
    );
    assert_eq!(OptionType::Int { range: None, at_most: Some("b".into()) }.allowed().unwrap(), "at most b");
    assert_eq!(OptionType::Int { range: None, at_most: None }.allowed(), None);
    assert_eq!(
        OptionType::Choice { choices: vec!["a".into(), "b".into()] }.allowed().unwrap(),
        "\"a\", \"b\""
    );
}

#[test]
fn error_display() {
    let e = ConfigError::new("config/x.toml", "libraries.a", "bad");
    assert_eq!(e.to_string(), "config/x.toml: libraries.a: bad");
    let e = ConfigError::new("config/x.toml", "", "cannot read: gone");
    assert_eq!(e.to_string(), "config/x.toml: cannot read: gone");
    let e = ConfigError::new("f", "k", "two\nlines");
    assert_eq!(e.to_string(), "f: k: two lines");
}

// ------------------------------------------------------- mini: loading

#[test]
fn mini_loads() {
    let t = TempWs::mini("load");
    let ws = t.ws();
    assert_eq!(ws.root, t.root.canonicalize().unwrap());
    assert_eq!(ws.libraries.keys().collect::<Vec<_>>(), ["alpha", "base", "beta", "gamma"]);
    assert_eq!(ws.platforms.keys().collect::<Vec<_>>(), ["virt"]);
    assert_eq!(ws.apps.keys().collect::<Vec<_>>(), ["demo"]);

    let alpha = &ws.libraries["alpha"];
    assert_eq!(alpha.kind, Kind::Library);
    assert_eq!(alpha.crate_name, "alpha");
    assert_eq!(alpha.dir, ws.root.join("libs/alpha"));
    assert_eq!(alpha.depends, ["base"]);
    assert_eq!(alpha.lib_deps, ["base"]);
    assert_eq!(alpha.features, ["fancy", "serde", "std"]);
    let names: Vec<&str> = alpha.options.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["enabled", "count", "label", "mode"], "declaration order");
    assert_eq!(alpha.options[1].ty, OptionType::Int { range: Some((1, 8)), at_most: None });
    assert_eq!(alpha.options[2].default, Value::Str("a \"quoted\" \\ label".into()));
    assert_eq!(alpha.options[3].ty, OptionType::Choice { choices: vec!["fast".into(), "slow-path".into()] });
    assert_eq!(
        ws.libraries["base"].lib_deps,
        Vec::<String>::new(),
        "registry and infrastructure deps ignored"
    );
    assert_eq!(ws.libraries["beta"].options[0].ty, OptionType::Int { range: None, at_most: None });
    assert_eq!(ws.libraries["beta"].options[0].default, Value::Int(-5));

    let virt = &ws.platforms["virt"];
    assert_eq!(virt.kind, Kind::Platform);
    assert_eq!(virt.crate_name, "ukplat-virt");
    assert_eq!(virt.selects, ["base"]);

    let demo = &ws.apps["demo"];
    assert_eq!(demo.crate_name, "demo-app");
    assert_eq!(demo.lib_deps, ["alpha"], "optional beta is not a dependency");
    assert_eq!(demo.config_file, ws.root.join("config/demo.toml"));

    let files = ws.input_files();
    for rel in
        ["Cargo.toml", "libs/alpha/Kconfig.toml", "libs/alpha/Cargo.toml", "platforms/virt/Kconfig.toml"]
    {
        assert!(files.contains(&ws.root.join(rel)), "{rel} in {files:?}");
    }
    assert!(files.contains(&ws.root.join("apps/demo/Cargo.toml")));
    assert!(files.contains(&ws.root.join("config/demo.toml")));
    assert!(!files.iter().any(|f| f.starts_with(ws.root.join("libs/infra"))));
}

#[test]
fn decl_unknown_keys() {
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "depends =", "dependz = [\"base\"]\ndepends ="),
        "libs/alpha/Kconfig.toml: library.dependz: unknown key; allowed: name, kind, help, depends, selects"
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "range = [1, 8]", "range = [1, 8]\nmax = 3"),
        "libs/alpha/Kconfig.toml: options.count.max: unknown key; allowed: type, default, choices, range, at_most, help"
    );
    assert_eq!(
        decl_err("libs/base/Kconfig.toml", "[library]", "[lib]\nx = 1\n[library]"),
        "libs/base/Kconfig.toml: lib: unknown key; allowed: library, options"
    );
}

#[test]
fn decl_malformed() {
    assert_eq!(
        decl_err("libs/base/Kconfig.toml", "name = \"base\"", "name = \"bass\""),
        "libs/base/Kconfig.toml: library.name: \"bass\" must equal the directory name, \"base\""
    );
    assert_eq!(
        decl_err("libs/base/Kconfig.toml", "help = \"The base library\"", ""),
        "libs/base/Kconfig.toml: library.help: missing; expected a string saying what it is"
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "default = 4", "default = 9"),
        "libs/alpha/Kconfig.toml: options.count.default: 9 is outside the range 1..=8"
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "default = \"fast\"", "default = \"quick\""),
        "libs/alpha/Kconfig.toml: options.mode.default: \"quick\" is not one of \"fast\", \"slow-path\""
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "default = true", ""),
        "libs/alpha/Kconfig.toml: options.enabled.default: missing; expected true or false"
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "type = \"bool\"", "type = \"boolean\""),
        "libs/alpha/Kconfig.toml: options.enabled.type: \"boolean\" is not one of \"bool\", \"int\", \"string\", \"choice\""
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "default = true", "default = true\nchoices = [\"a\"]"),
        "libs/alpha/Kconfig.toml: options.enabled.choices: only allowed with type = \"choice\""
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "default = true", "default = true\nrange = [0, 1]"),
        "libs/alpha/Kconfig.toml: options.enabled.range: only allowed with type = \"int\""
    );
    assert!(decl_err("libs/alpha/Kconfig.toml", "range = [1, 8]", "range = [8, 1]").starts_with(
        "libs/alpha/Kconfig.toml: options.count.range: expected [MIN, MAX], two integers with MIN <= MAX"
    ));
    assert!(
        decl_err("libs/alpha/Kconfig.toml", "choices = [\"fast\", \"slow-path\"]", "")
            .starts_with("libs/alpha/Kconfig.toml: options.mode.choices: missing;")
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "\"slow-path\"]", "\"slow-path\", \"slow_path\"]"),
        "libs/alpha/Kconfig.toml: options.mode.choices: \"slow-path\" and \"slow_path\" both become the Rust name SlowPath"
    );
    assert!(
        decl_err("libs/alpha/Kconfig.toml", "[options.count]", "[options.Count]")
            .starts_with("libs/alpha/Kconfig.toml: options.Count: option names are lowercase identifiers")
    );
    assert!(
        decl_err("libs/alpha/Kconfig.toml", "[options.count]", "[options.selected]")
            .starts_with("libs/alpha/Kconfig.toml: options.selected: ")
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "depends = [\"base\"]", "depends = [\"bse\"]"),
        "libs/alpha/Kconfig.toml: library.depends: unknown library \"bse\"; known: alpha, base, beta, gamma"
    );
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "depends = [\"base\"]", "depends = \"base\""),
        "libs/alpha/Kconfig.toml: library.depends: expected an array of strings, found string \"base\""
    );
    assert_eq!(
        decl_err("platforms/virt/Kconfig.toml", "kind = \"platform\"\n", ""),
        "platforms/virt/Kconfig.toml: library.kind: a declaration under platforms/ must have kind = \"platform\""
    );
    assert_eq!(
        decl_err("libs/base/Kconfig.toml", "name = \"base\"", "name = \"base\"\nkind = \"platform\""),
        "libs/base/Kconfig.toml: library.kind: a platform must live under platforms/; under libs/ kind is \"library\" (the default)"
    );
    assert_eq!(
        decl_err("libs/base/Kconfig.toml", "name = \"base\"", "name = \"base\"\nkind = \"driver\""),
        "libs/base/Kconfig.toml: library.kind: \"driver\" is not one of \"library\", \"platform\""
    );
}

#[test]
fn decl_toml_syntax_error() {
    let e = decl_err("libs/alpha/Kconfig.toml", "type = \"int\"", "type = int");
    assert!(e.starts_with("libs/alpha/Kconfig.toml: line 12, column 8: invalid TOML: "), "{e}");
}

#[test]
fn decl_cargo_dependency_must_be_declared() {
    assert_eq!(
        decl_err("libs/alpha/Kconfig.toml", "depends = [\"base\"]", ""),
        "libs/alpha/Kconfig.toml: library.depends: its Cargo.toml (libs/alpha/Cargo.toml) depends on library 'base', \
         which is neither in depends nor in selects; add \"base\" to depends"
    );
    // Through [workspace.dependencies] too, and a `selects` is enough.
    assert!(decl_err("libs/gamma/Kconfig.toml", "depends = [\"alpha\"]", "").contains("library 'alpha'"));
    let t = TempWs::mini("selects");
    t.write("libs/gamma/Kconfig.toml", "[library]\nname = \"gamma\"\nhelp = \"g\"\nselects = [\"alpha\"]\n");
    assert_eq!(t.ws().libraries["gamma"].lib_deps, ["alpha"]);
}

#[test]
fn decl_missing_manifest() {
    let t = TempWs::mini("manifest");
    std::fs::remove_file(t.root.join("libs/beta/Cargo.toml")).unwrap();
    assert_eq!(one_line(t.load()), "libs/beta/Cargo.toml: cannot read: No such file or directory");
    let t = TempWs::mini("pkgname");
    t.write("libs/beta/Cargo.toml", "[dependencies]\n");
    assert!(one_line(t.load()).starts_with("libs/beta/Cargo.toml: package.name: missing"));
}

// ----------------------------------------------------- mini: resolving

#[test]
fn mini_resolves() {
    let t = TempWs::mini("resolve");
    let ws = t.ws();
    let r = ws.resolve("demo", None, &[]).unwrap();
    assert_eq!(r.app, "demo");
    assert_eq!(r.platform, "virt");
    assert_eq!(r.config_file, ws.root.join("config/demo.toml"));
    assert_eq!(r.libraries, ["alpha", "base"]);
    assert_eq!(r.option("platform", "mem"), Some(&Value::Int(48)));
    assert_eq!(r.option("platform", "cmdline"), Some(&Value::Str(String::new())));
    assert_eq!(r.option("alpha", "count"), Some(&Value::Int(2)));
    assert_eq!(r.option("alpha", "mode"), Some(&Value::Choice("fast".into())));
    assert_eq!(r.option("beta", "offset"), None, "beta is not selected");
    let owners: Vec<(&str, &str, Source)> =
        r.options.iter().map(|o| (o.owner.as_str(), o.decl.name.as_str(), o.source)).collect();
    assert_eq!(
        owners,
        [
            ("platform", "mem", Source::AppFile),
            ("platform", "cmdline", Source::Default),
            ("alpha", "enabled", Source::Default),
            ("alpha", "count", Source::AppFile),
            ("alpha", "label", Source::Default),
            ("alpha", "mode", Source::Default),
        ]
    );
}

#[test]
fn set_overrides_with_source_command_line() {
    let t = TempWs::mini("set");
    let ws = t.ws();
    let sets: Vec<String> =
        ["alpha.count=0x3", "alpha.mode=slow-path", "platform.cmdline=a=b c", "alpha.count=5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let r = ws.resolve("demo", None, &sets).unwrap();
    let get =
        |owner: &str, name: &str| r.options.iter().find(|o| o.owner == owner && o.decl.name == name).unwrap();
    assert_eq!(get("alpha", "count").value, Value::Int(5), "the last --set wins");
    assert_eq!(get("alpha", "count").source, Source::CommandLine);
    assert_eq!(get("alpha", "mode").value, Value::Choice("slow-path".into()));
    assert_eq!(get("platform", "cmdline").value, Value::Str("a=b c".into()));
    assert_eq!(get("platform", "cmdline").source, Source::CommandLine);
    assert_eq!(get("platform", "mem").source, Source::AppFile);
    assert_eq!(get("alpha", "enabled").source, Source::Default);

    // beta's negative int without range; base is selected by the platform.
    let r = t.resolve_text(
        "[platform]\nname = \"virt\"\n[libraries.alpha]\n[libraries.beta]\n",
        &["beta.offset=-0x10"],
    );
    assert_eq!(r.unwrap().option("beta", "offset"), Some(&Value::Int(-16)));
}

#[test]
fn selects_are_transitive() {
    let t = TempWs::mini("selects");
    t.write(
        "libs/gamma/Kconfig.toml",
        "[library]\nname = \"gamma\"\nhelp = \"g\"\nselects = [\"alpha\", \"beta\"]\n",
    );
    t.write(
        "platforms/virt/Kconfig.toml",
        &mini_file("platforms/virt/Kconfig.toml")
            .replace("selects = [\"base\"]", "selects = [\"gamma\", \"base\"]"),
    );
    let r = t.resolve_text("[platform]\nname = \"virt\"\n", &[]).unwrap();
    assert_eq!(r.libraries, ["alpha", "base", "beta", "gamma"]);
}

#[test]
fn err_unknown_library() {
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\n[libraries.delta]\n", &[]),
        "config/case.toml: libraries.delta: unknown library; known: alpha, base, beta, gamma"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.virt]\n", &[]),
        "config/case.toml: libraries.virt: virt is a platform, not a library; choose it with [platform] name = \"virt\""
    );
}

#[test]
fn err_unknown_option() {
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\ncont = 1\n", &[]),
        "config/case.toml: libraries.alpha.cont: unknown option; alpha has: enabled, count, label, mode"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\n[libraries.gamma]\nx = 1\n", &[]),
        "config/case.toml: libraries.gamma.x: unknown option; gamma has no options"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\nmemory = 1\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.memory: unknown option; virt has: name, mem, cmdline"
    );
}

#[test]
fn err_wrong_type_in_file() {
    let case =
        |line: &str| mini_err(&format!("[platform]\nname = \"virt\"\n[libraries.alpha]\n{line}\n"), &[]);
    assert_eq!(
        case("enabled = \"yes\""),
        "config/case.toml: libraries.alpha.enabled: expected a boolean (true or false), found string \"yes\""
    );
    assert_eq!(
        case("count = \"x\""),
        "config/case.toml: libraries.alpha.count: expected an integer, found string \"x\" (allowed: 1..=8)"
    );
    assert_eq!(
        case("label = 3"),
        "config/case.toml: libraries.alpha.label: expected a string, found integer 3"
    );
    assert_eq!(
        case("mode = true"),
        "config/case.toml: libraries.alpha.mode: expected one of \"fast\", \"slow-path\", found boolean true"
    );
    assert_eq!(
        case("count = 1.5"),
        "config/case.toml: libraries.alpha.count: expected an integer, found float 1.5 (allowed: 1..=8)"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\n[libraries.beta]\noffset = [1]\n", &[]),
        "config/case.toml: libraries.beta.offset: expected an integer, found an array"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries]\nalpha = 1\n", &[]),
        "config/case.toml: libraries.alpha: expected a table ([libraries.alpha]), found integer 1"
    );
}

#[test]
fn err_outside_choices_and_range() {
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\nmode = \"slow\"\n", &[]),
        "config/case.toml: libraries.alpha.mode: \"slow\" is not one of \"fast\", \"slow-path\""
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\ncount = 9\n", &[]),
        "config/case.toml: libraries.alpha.count: 9 is outside the range 1..=8"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\nmem = 8\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.mem: 8 is outside the range 16..=64"
    );
}

#[test]
fn err_platform_section() {
    assert_eq!(
        mini_err("[libraries.alpha]\n", &[]),
        "config/case.toml: platform: missing; add [platform] with name = one of: virt"
    );
    assert_eq!(
        mini_err("[platform]\nname = \"xen\"\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.name: unknown platform \"xen\"; known: virt"
    );
    assert_eq!(
        mini_err("[platform]\nmem = 20\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.name: missing; platforms: virt"
    );
    assert_eq!(
        mini_err("platform = \"virt\"\n", &[]),
        "config/case.toml: platform: expected a table ([platform]), found string \"virt\""
    );
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[app]\nx = 1\n", &[]),
        "config/case.toml: app: unknown key; allowed: platform, libraries"
    );
}

#[test]
fn err_unmet_dependency() {
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.gamma]\n", &[]),
        "config/case.toml: libraries.alpha: library 'gamma' depends on library 'alpha' (libs/gamma/Kconfig.toml) \
         but the configuration does not select it; add [libraries.alpha]"
    );
    // A dependency of a library that the platform does not select.
    let t = TempWs::mini("dep");
    t.write(
        "platforms/virt/Kconfig.toml",
        &mini_file("platforms/virt/Kconfig.toml").replace("selects = [\"base\"]\n", ""),
    );
    t.write("platforms/virt/Cargo.toml", "[package]\nname = \"ukplat-virt\"\n");
    assert_eq!(
        one_line(t.resolve_text(DEMO, &[])),
        "config/case.toml: libraries.base: library 'alpha' depends on library 'base' (libs/alpha/Kconfig.toml) \
         but the configuration does not select it; add [libraries.base]"
    );
}

#[test]
fn err_app_uses_unselected_library() {
    assert_eq!(
        mini_err("[platform]\nname = \"virt\"\n[libraries.beta]\n", &[]),
        "config/case.toml: libraries: app 'demo' uses library 'alpha' (apps/demo/Cargo.toml) \
         but the configuration does not select it; add [libraries.alpha]"
    );
}

#[test]
fn err_toml_syntax() {
    let e = mini_err("[platform]\nname = \"virt\"\n[libraries.alpha]\ncount = = 3\n", &[]);
    assert!(e.starts_with("config/case.toml: line 4, column 9: invalid TOML: "), "{e}");
    let e = mini_err("[platform]\nname = \"virt\nx", &[]);
    assert!(e.starts_with("config/case.toml: line 2, column "), "{e}");
}

#[test]
fn err_missing_file_and_unknown_app() {
    let t = TempWs::mini("missing");
    let ws = t.ws();
    assert_eq!(
        one_line(ws.resolve("demo", Some(&ws.root.join("config/nope.toml")), &[])),
        "config/nope.toml: cannot read: No such file or directory"
    );
    assert_eq!(
        one_line(ws.resolve("nope", None, &[])),
        "config/nope.toml: cannot read: No such file or directory; there is no app 'nope' either (apps: demo)"
    );
    // A config file without an app.
    t.write("config/lonely.toml", DEMO);
    assert_eq!(
        one_line(ws.resolve("lonely", None, &[])),
        "config/lonely.toml: unknown app 'lonely' (no apps/lonely/Cargo.toml); apps: demo"
    );
    // Outside the workspace the path is shown as given.
    let outside = std::env::temp_dir().join(format!("kconfig-test-{}-absent.toml", std::process::id()));
    let e = one_line(ws.resolve("demo", Some(&outside), &[]));
    assert_eq!(e, format!("{}: cannot read: No such file or directory", outside.display()));
    // A missing workspace.
    let e = one_line(Workspace::load(&t.root.join("nowhere")));
    assert!(e.ends_with("nowhere: cannot read: No such file or directory"), "{e}");
}

#[test]
fn err_bad_set_forms() {
    for bad in ["nope", "alpha=1", ".count=1", "alpha.=1", "alpha.count", "alpha.count.x=1", "=1"] {
        let e = mini_err(DEMO, &[bad]);
        assert_eq!(
            e,
            format!(
                "--set: {bad}: expected LIB.OPTION=VALUE or platform.OPTION=VALUE, e.g. ukconsole.log_level=debug \
                 (libraries: alpha, base)"
            )
        );
    }
}

#[test]
fn err_set_values() {
    assert_eq!(
        mini_err(DEMO, &["alpha.enabled=yes"]),
        "--set: alpha.enabled: expected true or false, found \"yes\""
    );
    assert_eq!(
        mini_err(DEMO, &["alpha.count=x"]),
        "--set: alpha.count: expected an integer (decimal or 0x hex), found \"x\" (allowed: 1..=8)"
    );
    assert_eq!(mini_err(DEMO, &["alpha.count=0x20"]), "--set: alpha.count: 32 is outside the range 1..=8");
    assert_eq!(
        mini_err(DEMO, &["alpha.mode=slow"]),
        "--set: alpha.mode: \"slow\" is not one of \"fast\", \"slow-path\""
    );
    assert_eq!(
        mini_err(DEMO, &["platform.mem=100"]),
        "--set: platform.mem: 100 is outside the range 16..=64"
    );
    assert_eq!(
        mini_err(DEMO, &["alpha.cont=1"]),
        "--set: alpha.cont: unknown option; alpha has: enabled, count, label, mode"
    );
    assert_eq!(
        mini_err(DEMO, &["platform.memory=1"]),
        "--set: platform.memory: unknown option; virt has: mem, cmdline"
    );
    assert_eq!(
        mini_err(DEMO, &["delta.x=1"]),
        "--set: delta.x: unknown library; known: alpha, base, beta, gamma (and platform for the platform's options)"
    );
    assert_eq!(
        mini_err(DEMO, &["virt.mem=20"]),
        "--set: virt.mem: 'virt' is a platform; set its options with platform.mem=VALUE"
    );
    assert_eq!(
        mini_err(DEMO, &["platform.name=xen"]),
        "--set: platform.name: unknown platform \"xen\"; known: virt"
    );
}

#[test]
fn err_set_on_unselected_library() {
    assert_eq!(
        mini_err(DEMO, &["beta.offset=1"]),
        "--set: beta.offset: library 'beta' is not selected by config/case.toml; \
         add [libraries.beta] to config/case.toml to select it (selected: alpha, base)"
    );
}

// ------------------------------------------ --set platform.name=NAME

/// The mini workspace with a second platform, `bare` (options `mem` with a
/// wider range, `cmdline` and `pins`; selects `base`), and `virt` with an
/// extra option `machine` that `bare` lacks and selecting `beta` too, which
/// app `demo` then uses.
fn two_platforms(name: &str) -> TempWs {
    let t = TempWs::mini(name);
    let virt = mini_file("platforms/virt/Kconfig.toml")
        .replace("selects = [\"base\"]\n", "selects = [\"base\", \"beta\"]\n");
    t.write(
        "platforms/virt/Kconfig.toml",
        &format!(
            "{virt}\n[options.machine]\ntype = \"choice\"\ndefault = \"small\"\nchoices = [\"small\", \"big\"]\nhelp = \"Machine\"\n"
        ),
    );
    t.write(
        "platforms/virt/Cargo.toml",
        "[package]\nname = \"ukplat-virt\"\n\n[dependencies]\nbase.workspace = true\nbeta.workspace = true\nukconfig.workspace = true\n",
    );
    t.write(
        "platforms/bare/Kconfig.toml",
        r#"[library]
name = "bare"
kind = "platform"
help = "A bare platform"
selects = ["base"]

[options.mem]
type = "int"
default = 64
range = [16, 1024]
help = "Memory in MiB"

[options.cmdline]
type = "string"
default = ""
help = "Command line"

[options.pins]
type = "bool"
default = false
help = "Pinning"
"#,
    );
    t.write(
        "platforms/bare/Cargo.toml",
        "[package]\nname = \"ukplat-bare\"\n\n[dependencies]\nbase.workspace = true\nukconfig.workspace = true\n",
    );
    t
}

/// A `virt` config with an option of each kind: shared with `bare` (`mem`,
/// `cmdline`) and `virt`'s alone (`machine`).
const VIRT_FULL: &str =
    "[platform]\nname = \"virt\"\nmem = 48\ncmdline = \"a b\"\nmachine = \"big\"\n[libraries.alpha]\n";

#[test]
fn set_platform_name_chooses_the_platform() {
    let t = two_platforms("choose");
    // Without it: the file's platform, no notes.
    let r = t.resolve_text(VIRT_FULL, &[]).unwrap();
    assert_eq!(r.platform, "virt");
    assert_eq!(r.option("platform", "machine"), Some(&Value::Choice("big".into())));
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert!(r.libraries.contains(&"beta".to_string()));

    // With it: the shared options keep the file's values, virt's own is
    // dropped with a note, bare's own get their defaults or --set values
    // (set before or after the name: the order does not matter).
    for sets in
        [&["platform.name=bare", "platform.pins=true"][..], &["platform.pins=true", "platform.name=bare"]]
    {
        let r = t.resolve_text(VIRT_FULL, sets).unwrap();
        assert_eq!(r.platform, "bare");
        let source = |name: &str| {
            r.options
                .iter()
                .find(|o| o.owner == "platform" && o.decl.name == name)
                .map(|o| (o.value.clone(), o.source))
        };
        assert_eq!(source("mem"), Some((Value::Int(48), Source::AppFile)));
        assert_eq!(source("cmdline"), Some((Value::Str("a b".into()), Source::AppFile)));
        assert_eq!(source("pins"), Some((Value::Bool(true), Source::CommandLine)));
        assert_eq!(source("machine"), None);
        assert_eq!(
            r.notes,
            [
                "config/case.toml: platform.machine = \"big\" is an option of virt, not of bare: not used (--set platform.name=bare)"
            ]
        );
        assert_eq!(r.libraries, ["alpha", "base"], "bare's selects, not virt's");
        let ws = t.ws();
        let rs = r.to_rust(&ws);
        assert!(rs.contains("    pub const NAME: &str = \"bare\";\n"), "{rs}");
        assert!(rs.contains("    pub const MEM: usize = 48;\n"), "{rs}");
    }

    // The last one wins; naming the file's platform changes nothing.
    let r = t.resolve_text(VIRT_FULL, &["platform.name=bare", "platform.name=virt"]).unwrap();
    assert_eq!((r.platform.as_str(), r.notes.len()), ("virt", 0));
    assert_eq!(r.option("platform", "machine"), Some(&Value::Choice("big".into())));
    // The other way round: bare's own option is dropped with a note.
    let r = t
        .resolve_text(
            "[platform]\nname = \"bare\"\npins = true\nmem = 20\n[libraries.alpha]\n[libraries.beta]\n",
            &["platform.name=virt"],
        )
        .unwrap();
    assert_eq!(r.platform, "virt");
    assert_eq!(r.option("platform", "mem"), Some(&Value::Int(20)));
    assert_eq!(
        r.notes,
        [
            "config/case.toml: platform.pins = true is an option of bare, not of virt: not used (--set platform.name=virt)"
        ]
    );
}

#[test]
fn set_platform_name_errors() {
    let t = two_platforms("chooseerr");
    let err = |config: &str, sets: &[&str]| one_line(t.resolve_text(config, sets));
    assert_eq!(
        err(VIRT_FULL, &["platform.name=nosuch"]),
        "--set: platform.name: unknown platform \"nosuch\"; known: bare, virt"
    );
    assert_eq!(
        err(VIRT_FULL, &["platform.name="]),
        "--set: platform.name: unknown platform \"\"; known: bare, virt"
    );
    // An option neither platform declares is still an error.
    assert_eq!(
        err("[platform]\nname = \"virt\"\nbogus = 1\n[libraries.alpha]\n", &["platform.name=bare"]),
        "config/case.toml: platform.bogus: unknown option; virt has: name, mem, cmdline, machine; \
         bare has: mem, cmdline, pins (chosen by --set platform.name=bare)"
    );
    // A shared option must be valid for the chosen platform.
    assert_eq!(
        err("[platform]\nname = \"bare\"\nmem = 100\n[libraries.alpha]\n", &["platform.name=virt"]),
        "config/case.toml: platform.mem: 100 is outside the range 16..=64 \
         (platform virt, chosen by --set platform.name=virt)"
    );
    // --set of an option the chosen platform lacks.
    assert_eq!(
        err(VIRT_FULL, &["platform.machine=small", "platform.name=bare"]),
        "--set: platform.machine: unknown option; bare has: mem, cmdline, pins"
    );
    // The app uses a library that only the file's platform selects.
    let t = two_platforms("chooseapp");
    t.write(
        "apps/demo/Cargo.toml",
        &mini_file("apps/demo/Cargo.toml")
            .replace("beta = { workspace = true, optional = true }", "beta.workspace = true"),
    );
    assert!(t.resolve_text(VIRT_FULL, &[]).is_ok());
    assert_eq!(
        one_line(t.resolve_text(VIRT_FULL, &["platform.name=bare"])),
        "config/case.toml: libraries: app 'demo' uses library 'beta' (apps/demo/Cargo.toml) \
         but the configuration does not select it; add [libraries.beta]"
    );
}

// ------------------------------------------------------- at_most bounds

/// Options appended to platform `virt` by [`bounded`]: `cpus` (default 2)
/// is at most `max_cpus` (declared after it, default 64).
const VIRT_SMP: &str = r#"
[options.cpus]
type = "int"
default = 2
range = [1, 256]
at_most = "max_cpus"
help = "CPUs started"

[options.max_cpus]
type = "int"
default = 64
range = [1, 256]
help = "Most CPUs (sizes per-CPU arrays)"
"#;

/// The option appended to library `alpha` by [`bounded`]; `count` (default
/// 4) gets `at_most = "limit"`.
const ALPHA_LIMIT: &str = r#"
[options.limit]
type = "int"
default = 6
range = [1, 8]
help = "Largest count"
"#;

/// The mini workspace with int bounds: `virt` gets [`VIRT_SMP`], `alpha`
/// gets [`ALPHA_LIMIT`] and `count` at most `limit`.
fn bounded(name: &str) -> TempWs {
    let t = TempWs::mini(name);
    t.write(
        "platforms/virt/Kconfig.toml",
        &format!("{}{VIRT_SMP}", mini_file("platforms/virt/Kconfig.toml")),
    );
    let alpha = mini_file("libs/alpha/Kconfig.toml").replacen(
        "range = [1, 8]\n",
        "range = [1, 8]\nat_most = \"limit\"\n",
        1,
    );
    t.write("libs/alpha/Kconfig.toml", &format!("{alpha}{ALPHA_LIMIT}"));
    t
}

/// Resolves `config` with `sets` in a fresh [`bounded`] workspace; the error
/// line.
fn bounded_err(config: &str, sets: &[&str]) -> String {
    one_line(bounded("bounderr").resolve_text(config, sets))
}

/// Replaces `from` by `to` in file `rel` of a [`bounded`] workspace and
/// returns the load error line.
fn bounded_decl_err(rel: &str, from: &str, to: &str) -> String {
    let t = bounded("bounddecl");
    let text = std::fs::read_to_string(t.root.join(rel)).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}");
    t.write(rel, &text.replacen(from, to, 1));
    one_line(t.load())
}

#[test]
fn bound_loads_and_resolves() {
    let t = bounded("bound");
    let ws = t.ws();
    let cpus = &ws.platforms["virt"].options[2];
    assert_eq!(cpus.name, "cpus");
    assert_eq!(cpus.ty, OptionType::Int { range: Some((1, 256)), at_most: Some("max_cpus".into()) });
    assert_eq!(cpus.ty.allowed().unwrap(), "1..=256, at most max_cpus");
    assert_eq!(ws.libraries["alpha"].options[1].ty.allowed().unwrap(), "1..=8, at most limit");

    // Defaults satisfy their bounds.
    let r = t.resolve_text(DEMO, &[]).unwrap();
    assert_eq!(r.option("platform", "cpus"), Some(&Value::Int(2)));
    assert_eq!(r.option("platform", "max_cpus"), Some(&Value::Int(64)));
    assert_eq!(r.option("alpha", "count"), Some(&Value::Int(4)));

    // Equal values are allowed; --set may fix what the file alone breaks.
    let config = "[platform]\nname = \"virt\"\ncpus = 80\nmax_cpus = 80\n[libraries.alpha]\ncount = 8\n";
    let r = t.resolve_text(config, &["alpha.limit=8"]).unwrap();
    assert_eq!(r.option("platform", "cpus"), Some(&Value::Int(80)));
    assert_eq!(r.option("alpha", "count"), Some(&Value::Int(8)));
    let config = "[platform]\nname = \"virt\"\ncpus = 80\n[libraries.alpha]\n";
    let r = t.resolve_text(config, &["platform.max_cpus=128"]).unwrap();
    assert_eq!(r.option("platform", "max_cpus"), Some(&Value::Int(128)));
    let r = t.resolve_text(config, &["platform.cpus=64"]).unwrap();
    assert_eq!(r.option("platform", "cpus"), Some(&Value::Int(64)));

    // The generated Rust is unchanged in type; its doc names the bound.
    let rs = r.to_rust(&t.ws());
    for piece in [
        "    /// `platform.cpus`: int in 1..=256, at most `platform.max_cpus`; default `2`.\n",
        "    pub const CPUS: usize = 64;\n",
        "    pub const MAX_CPUS: usize = 64;\n",
        "    /// `alpha.count`: int in 1..=8, at most `alpha.limit`; default `4`.\n",
        "    pub const LIMIT: usize = 6;\n",
    ] {
        assert!(rs.contains(piece), "missing {piece:?} in:\n{rs}");
    }
    compile("bounded", &rs);
}

#[test]
fn bound_violated_in_config_file() {
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\ncpus = 80\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.cpus: 80 is more than platform.max_cpus = 64 (default); \
         lower platform.cpus or raise platform.max_cpus"
    );
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\ncpus = 8\nmax_cpus = 4\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.cpus: 8 is more than platform.max_cpus = 4 (config/case.toml); \
         lower platform.cpus or raise platform.max_cpus"
    );
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\n[libraries.alpha]\ncount = 7\n", &[]),
        "config/case.toml: libraries.alpha.count: 7 is more than libraries.alpha.limit = 6 (default); \
         lower libraries.alpha.count or raise libraries.alpha.limit"
    );
}

#[test]
fn bound_violated_by_set() {
    assert_eq!(
        bounded_err(DEMO, &["platform.cpus=80"]),
        "--set: platform.cpus: 80 is more than platform.max_cpus = 64 (default); \
         lower platform.cpus or raise platform.max_cpus"
    );
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\nmax_cpus = 4\n[libraries.alpha]\n", &["platform.cpus=8"]),
        "--set: platform.cpus: 8 is more than platform.max_cpus = 4 (config/case.toml); \
         lower platform.cpus or raise platform.max_cpus"
    );
    assert_eq!(
        bounded_err(DEMO, &["platform.max_cpus=4", "platform.cpus=8"]),
        "--set: platform.cpus: 8 is more than platform.max_cpus = 4 (--set); \
         lower platform.cpus or raise platform.max_cpus"
    );
    assert_eq!(
        bounded_err(DEMO, &["alpha.count=7"]),
        "--set: alpha.count: 7 is more than alpha.limit = 6 (default); lower alpha.count or raise alpha.limit"
    );
}

#[test]
fn bound_violated_by_lowering_the_other_option() {
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\nmax_cpus = 1\n[libraries.alpha]\n", &[]),
        "config/case.toml: platform.max_cpus: 1 is less than platform.cpus = 2 (default), \
         which must be at most platform.max_cpus; raise platform.max_cpus or lower platform.cpus"
    );
    assert_eq!(
        bounded_err(DEMO, &["platform.max_cpus=1"]),
        "--set: platform.max_cpus: 1 is less than platform.cpus = 2 (default), \
         which must be at most platform.max_cpus; raise platform.max_cpus or lower platform.cpus"
    );
    // The later override is blamed: the file's cpus fits until --set lowers max_cpus.
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\ncpus = 8\n[libraries.alpha]\n", &["platform.max_cpus=4"]),
        "--set: platform.max_cpus: 4 is less than platform.cpus = 8 (config/case.toml), \
         which must be at most platform.max_cpus; raise platform.max_cpus or lower platform.cpus"
    );
    assert_eq!(
        bounded_err("[platform]\nname = \"virt\"\n[libraries.alpha]\nlimit = 3\n", &[]),
        "config/case.toml: libraries.alpha.limit: 3 is less than libraries.alpha.count = 4 (default), \
         which must be at most libraries.alpha.limit; raise libraries.alpha.limit or lower libraries.alpha.count"
    );
    assert_eq!(
        bounded_err(DEMO, &["alpha.limit=3"]),
        "--set: alpha.limit: 3 is less than alpha.count = 4 (default), \
         which must be at most alpha.limit; raise alpha.limit or lower alpha.count"
    );
}

#[test]
fn bound_between_defaults_of_a_hand_built_workspace() {
    let t = bounded("boundhand");
    t.write("config/case.toml", DEMO);
    let mut ws = t.ws();
    ws.platforms.get_mut("virt").unwrap().options[2].default = Value::Int(100);
    assert_eq!(
        one_line(ws.resolve("demo", Some(&t.root.join("config/case.toml")), &[])),
        "platforms/virt/Kconfig.toml: options.cpus.default: 100 is more than platform.max_cpus = 64 (default); \
         lower platform.cpus or raise platform.max_cpus"
    );
}

#[test]
fn bound_declaration_errors() {
    let alpha = "libs/alpha/Kconfig.toml";
    assert_eq!(
        bounded_decl_err(alpha, "default = 6", "default = 3"),
        "libs/alpha/Kconfig.toml: options.count.default: 4 is more than options.limit.default = 3 (at_most = \"limit\")"
    );
    assert_eq!(
        bounded_decl_err("platforms/virt/Kconfig.toml", "default = 2", "default = 65"),
        "platforms/virt/Kconfig.toml: options.cpus.default: 65 is more than options.max_cpus.default = 64 \
         (at_most = \"max_cpus\")"
    );
    assert_eq!(
        bounded_decl_err(alpha, "default = true", "default = true\nat_most = \"limit\""),
        "libs/alpha/Kconfig.toml: options.enabled.at_most: only allowed with type = \"int\""
    );
    assert_eq!(
        bounded_decl_err(alpha, "at_most = \"limit\"", "at_most = \"limt\""),
        "libs/alpha/Kconfig.toml: options.count.at_most: unknown option \"limt\"; int options: limit"
    );
    assert_eq!(
        decl_err(alpha, "range = [1, 8]", "range = [1, 8]\nat_most = \"limit\""),
        "libs/alpha/Kconfig.toml: options.count.at_most: unknown option \"limit\"; int options: (none)"
    );
    assert_eq!(
        bounded_decl_err(alpha, "at_most = \"limit\"", "at_most = \"label\""),
        "libs/alpha/Kconfig.toml: options.count.at_most: option \"label\" is a string, not an int; int options: limit"
    );
    assert_eq!(
        bounded_decl_err(alpha, "at_most = \"limit\"", "at_most = \"mode\""),
        "libs/alpha/Kconfig.toml: options.count.at_most: option \"mode\" is a choice, not an int; int options: limit"
    );
    assert_eq!(
        bounded_decl_err(alpha, "at_most = \"limit\"", "at_most = \"count\""),
        "libs/alpha/Kconfig.toml: options.count.at_most: \"count\" is this option itself; name another int option: limit"
    );
    assert_eq!(
        bounded_decl_err(alpha, "at_most = \"limit\"", "at_most = 6"),
        "libs/alpha/Kconfig.toml: options.count.at_most: expected a string, found integer 6"
    );
    // Another library's option is unknown here.
    assert_eq!(
        bounded_decl_err(alpha, "at_most = \"limit\"", "at_most = \"offset\""),
        "libs/alpha/Kconfig.toml: options.count.at_most: unknown option \"offset\"; int options: limit"
    );
}

// ------------------------------------------------------ generated Rust

#[test]
fn mini_rust() {
    let t = TempWs::mini("rust");
    let ws = t.ws();
    let r = ws.resolve("demo", None, &["alpha.mode=slow-path".to_string()]).unwrap();
    let rs = r.to_rust(&ws);
    assert_eq!(rs, r.to_rust(&ws), "deterministic");
    for piece in [
        "// Generated by kconfig for app `demo` from config/demo.toml; do not edit.\n",
        "pub const APP: &str = \"demo\";\n",
        "pub const LIBRARIES: &[&str] = &[\"alpha\", \"base\"];\n",
        "pub mod platform {\n",
        "    pub const NAME: &str = \"virt\";\n",
        "    pub const MEM: usize = 48;\n",
        "    pub const CMDLINE: &str = \"\";\n",
        "pub mod alpha {\n",
        "    pub const SELECTED: bool = true;\n",
        "    pub const ENABLED: bool = true;\n",
        "    pub const COUNT: usize = 2;\n",
        "    pub const LABEL: &str = \"a \\\"quoted\\\" \\\\ label\";\n",
        "    pub const MODE: Mode = Mode::SlowPath;\n",
        "    pub enum Mode {\n",
        "        /// `slow-path`\n        SlowPath,\n",
        "                Mode::SlowPath => \"slow-path\",\n",
        "pub mod beta {\n    /// Whether the library is selected (linked) in this image.\n    pub const SELECTED: bool = false;\n",
        "    pub const OFFSET: i64 = -5;\n",
        "pub mod gamma {\n",
        "    /// How many\n",
    ] {
        assert!(rs.contains(piece), "missing {piece:?} in:\n{rs}");
    }
    let defaults = ws.defaults_rust();
    for piece in [
        "pub const APP: &str = \"\";\n",
        "pub const LIBRARIES: &[&str] = &[\"alpha\", \"base\", \"beta\", \"gamma\"];\n",
        "    pub const NAME: &str = \"virt\";\n",
        "    pub const MEM: usize = 32;\n",
        "    pub const MODE: Mode = Mode::Fast;\n",
    ] {
        assert!(defaults.contains(piece), "missing {piece:?} in:\n{defaults}");
    }
    assert!(!defaults.contains("SELECTED: bool = false"));
}

/// Compiles `source` as a `no_std` library that denies missing docs and
/// warnings, with the `rustc` that runs the tests.
fn compile(name: &str, source: &str) {
    let dir = TempWs::empty(name);
    let file = dir.root.join("lib.rs");
    std::fs::write(&file, format!("#![no_std]\n#![deny(missing_docs, warnings)]\n//! Generated.\n{source}"))
        .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = std::process::Command::new(rustc)
        .args(["--edition", "2024", "--crate-type", "lib", "--emit", "metadata", "--crate-name", "gen"])
        .arg("--out-dir")
        .arg(&dir.root)
        .arg(&file)
        .output()
        .expect("run rustc");
    assert!(
        out.status.success(),
        "generated code does not compile:\n{}\n{source}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_rust_compiles() {
    let t = TempWs::mini("compile");
    t.write("libs/base/Kconfig.toml", "[library]\nname = \"base\"\nhelp = \"Multi\\nline */ help\"\n");
    let ws = t.ws();
    let sets = ["platform.cmdline=x\"y\\z\n\u{7}".to_string(), "alpha.enabled=false".to_string()];
    compile("resolved", &ws.resolve("demo", None, &sets).unwrap().to_rust(&ws));
    compile("defaults", &ws.defaults_rust());
    compile("real", &real().resolve("tests", None, &[]).unwrap().to_rust(&real()));
    compile("realdefaults", &real().defaults_rust());
}

// ------------------------------------------------------ real workspace

/// The workspace this crate lives in.
fn real() -> Workspace {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Workspace::load(&root).unwrap_or_else(|e| panic!("the real workspace does not load: {e}"))
}

/// Resolves app `app` of the real workspace.
fn real_resolve(app: &str, sets: &[&str]) -> Resolved {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    real().resolve(app, None, &sets).unwrap_or_else(|e| panic!("{app}: {e}"))
}

/// Writes `config` to a file outside the workspace and resolves app
/// `helloworld` of the real workspace with it; the error line.
fn real_err(config: &str, sets: &[&str]) -> String {
    let dir = TempWs::empty("realcfg");
    let file = dir.root.join("x.toml");
    std::fs::write(&file, config).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let e = one_line(real().resolve("helloworld", Some(&file), &sets));
    if !e.starts_with("--set") {
        let prefix = format!("{}: ", file.display());
        assert!(e.starts_with(&prefix), "{e}");
        return format!("x.toml: {}", &e[prefix.len()..]);
    }
    e
}

#[test]
fn real_loads() {
    let ws = real();
    for lib in ["ukalloc", "ukarch", "ukboot", "ukconsole", "ukplat", "uktest"] {
        assert!(ws.libraries.contains_key(lib), "{lib}");
    }
    assert!(!ws.libraries.contains_key("ukconfig"), "ukconfig is infrastructure");
    let kvm = &ws.platforms["kvm"];
    assert_eq!(kvm.kind, Kind::Platform);
    assert_eq!(kvm.crate_name, "ukplat-kvm");
    let ukalloc = &ws.libraries["ukalloc"];
    assert!(ukalloc.features.contains(&"uktest".to_string()), "{:?}", ukalloc.features);
    assert!(ukalloc.lib_deps.contains(&"ukplat".to_string()));
    assert!(!ukalloc.lib_deps.contains(&"uktest".to_string()), "optional");
    for app in ["helloworld", "tests", "faults", "exit"] {
        assert!(ws.apps.contains_key(app), "{app}");
    }
    let files = ws.input_files();
    assert!(files.contains(&ws.root.join("libs/ukalloc/Kconfig.toml")));
    assert!(files.contains(&ws.root.join("platforms/kvm/Kconfig.toml")));
    assert!(files.contains(&ws.root.join("config/helloworld.toml")));
}

#[test]
fn real_helloworld() {
    let r = real_resolve("helloworld", &[]);
    assert_eq!(r.platform, "kvm");
    for lib in ["ukalloc", "ukarch", "ukboot", "ukconsole", "ukplat"] {
        assert!(r.libraries.contains(&lib.to_string()), "{lib} in {:?}", r.libraries);
    }
    assert_eq!(r.option("platform", "machine"), Some(&Value::Choice("microvm".into())));
    assert_eq!(r.option("platform", "memory"), Some(&Value::Int(64)));
    assert_eq!(r.option("ukconsole", "log_level"), Some(&Value::Choice("info".into())));
    assert_eq!(r.option("ukalloc", "backend"), Some(&Value::Choice("talc".into())));
    let mut sorted = r.libraries.clone();
    sorted.sort();
    assert_eq!(sorted, r.libraries);
}

#[test]
fn real_tests_faults_exit() {
    let r = real_resolve("tests", &[]);
    assert!(r.libraries.contains(&"uktest".to_string()));
    assert_eq!(r.option("platform", "memory"), Some(&Value::Int(128)));
    assert_eq!(r.option("ukconsole", "log_level"), Some(&Value::Choice("debug".into())));
    assert_eq!(r.option("ukconsole", "log_prefix"), Some(&Value::Str("[guest] ".into())));
    assert_eq!(r.option("ukboot", "max_args"), Some(&Value::Int(48)));

    let r = real_resolve("faults", &[]);
    assert_eq!(r.option("platform", "memory"), Some(&Value::Int(32)));
    assert_eq!(r.option("ukalloc", "heap_limit_kib"), Some(&Value::Int(256)));

    let r = real_resolve("exit", &[]);
    assert_eq!(r.option("ukboot", "banner"), Some(&Value::Bool(false)));
    for lib in ["ukarch", "ukboot", "ukplat"] {
        assert!(r.libraries.contains(&lib.to_string()), "selected by kvm: {lib}");
    }
}

#[test]
fn real_set_overrides() {
    let r = real_resolve(
        "helloworld",
        &["ukalloc.backend=linked-list", "platform.cpus=1", "ukboot.banner=false"],
    );
    let o = r.options.iter().find(|o| o.owner == "ukalloc" && o.decl.name == "backend").unwrap();
    assert_eq!((o.value.clone(), o.source), (Value::Choice("linked-list".into()), Source::CommandLine));
    assert_eq!(r.option("ukboot", "banner"), Some(&Value::Bool(false)));
    let ws = real();
    assert!(r.to_rust(&ws).contains("    pub const BACKEND: Backend = Backend::LinkedList;\n"));
}

#[test]
fn real_errors() {
    let hello = "[platform]\nname = \"kvm\"\n[libraries.ukconsole]\n[libraries.ukalloc]\n";
    assert_eq!(
        real_err(&format!("{hello}backend = \"foo\"\n"), &[]),
        "x.toml: libraries.ukalloc.backend: \"foo\" is not one of \"talc\", \"linked-list\""
    );
    assert_eq!(
        real_err(&format!("{hello}backnd = \"talc\"\n"), &[]),
        "x.toml: libraries.ukalloc.backnd: unknown option; ukalloc has: backend, heap_limit_kib, report_failures"
    );
    assert_eq!(
        real_err("[platform]\nname = \"kvm\"\ncpus = 300\n", &[]),
        "x.toml: platform.cpus: 300 is outside the range 1..=256"
    );
    assert_eq!(
        real_err("[platform]\nname = \"kvm\"\ncpus = 80\n[libraries.ukconsole]\n[libraries.ukalloc]\n", &[]),
        "x.toml: platform.cpus: 80 is more than platform.max_cpus = 64 (default); lower platform.cpus or raise platform.max_cpus"
    );
    let e = real_err(&format!("{hello}[libraries.ukfoo]\n"), &[]);
    assert!(e.starts_with("x.toml: libraries.ukfoo: unknown library; known: "), "{e}");
    assert!(
        e.contains("apic, posix-futex, ukalloc, ukarch, ukbench, ukboot, ukconsole, uklock, ukplat, ukrcu, uksched, uksmp, ukspin"),
        "{e}"
    );
    assert_eq!(
        real_err(&format!("{hello}heap_limit_kib = \"x\"\n"), &[]),
        "x.toml: libraries.ukalloc.heap_limit_kib: expected an integer, found string \"x\" (allowed: 0..=4194304)"
    );
    let e = real_err(hello, &["uktest.fail_fast=true"]);
    assert!(e.starts_with("--set: uktest.fail_fast: library 'uktest' is not selected by "), "{e}");
    assert!(e.contains("add [libraries.uktest] to "), "{e}");
    let e = one_line(real().resolve("nope", None, &[]));
    assert!(
        e.starts_with(
            "config/nope.toml: cannot read: No such file or directory; there is no app 'nope' either (apps: "
        ),
        "{e}"
    );
    for app in ["exit", "faults", "helloworld", "tests"] {
        assert!(e.contains(app), "{e}");
    }
    let ws = real();
    assert_eq!(
        one_line(ws.resolve("helloworld", Some(&ws.root.join("config/nope.toml")), &[])),
        "config/nope.toml: cannot read: No such file or directory"
    );
}

#[test]
fn real_helloworld_on_linuxu() {
    let r = real_resolve("helloworld", &["platform.name=linuxu", "platform.cpus=2"]);
    assert_eq!(r.platform, "linuxu");
    assert_eq!(
        r.notes,
        [
            "config/helloworld.toml: platform.machine = \"microvm\" is an option of kvm, not of linuxu: not used (--set platform.name=linuxu)"
        ]
    );
    assert_eq!(r.option("platform", "memory"), Some(&Value::Int(64)));
    assert_eq!(r.option("platform", "cpus"), Some(&Value::Int(2)));
    assert_eq!(r.option("platform", "machine"), None);
    assert!(!r.libraries.contains(&"apic".to_string()), "kvm selects apic, linuxu does not");
    assert!(r.to_rust(&real()).contains("    pub const NAME: &str = \"linuxu\";\n"));
    assert!(real_resolve("helloworld", &[]).notes.is_empty());
    let e = one_line(real().resolve("helloworld", None, &["platform.name=nosuch".to_string()]));
    assert_eq!(e, "--set: platform.name: unknown platform \"nosuch\"; known: kvm, linuxu");
    let e = one_line(real().resolve(
        "helloworld",
        None,
        &["platform.name=linuxu".to_string(), "platform.accel=tcg".to_string()],
    ));
    assert!(e.starts_with("--set: platform.accel: unknown option; linuxu has: cpus, "), "{e}");
}

#[test]
fn real_rust() {
    let ws = real();
    let r = real_resolve("helloworld", &[]);
    let rs = r.to_rust(&ws);
    for piece in [
        "// Generated by kconfig for app `helloworld` from config/helloworld.toml; do not edit.\n",
        "pub const APP: &str = \"helloworld\";\n",
        "pub mod platform {\n",
        "    pub const NAME: &str = \"kvm\";\n",
        "    pub const MACHINE: Machine = Machine::Microvm;\n",
        "        Q35,\n",
        "    pub const CPUS: usize = 1;\n",
        "    pub const MAX_CPUS: usize = 64;\n",
        "    pub const CMDLINE: &str = \"\";\n",
        "pub mod ukalloc {\n",
        "    pub const SELECTED: bool = true;\n",
        "    pub const BACKEND: Backend = Backend::Talc;\n",
        "        LinkedList,\n",
        "    pub const HEAP_LIMIT_KIB: usize = 0;\n",
        "    pub const REPORT_FAILURES: bool = true;\n",
        "pub mod ukconsole {\n",
        "    pub const LOG_LEVEL: LogLevel = LogLevel::Info;\n",
        "pub mod uktest {\n",
        "pub mod ukarch {\n",
    ] {
        assert!(rs.contains(piece), "missing {piece:?} in:\n{rs}");
    }
    let defaults = ws.defaults_rust();
    assert!(defaults.contains("pub const APP: &str = \"\";\n"));
    assert!(defaults.contains("pub mod uktest {\n    /// Whether the library is selected (linked) in this image.\n    pub const SELECTED: bool = true;\n"));
    assert!(defaults.contains("    pub const NAME: &str = \"kvm\";\n"));
}

#[test]
fn hyphenated_library_names_become_underscored_modules() {
    let t = TempWs::mini("hyphen");
    t.write(
        "libs/two-words/Kconfig.toml",
        "[library]\nname = \"two-words\"\nhelp = \"Hyphenated\"\n[options.depth]\ntype = \"int\"\ndefault = 3\nhelp = \"x\"\n",
    );
    t.write("libs/two-words/Cargo.toml", "[package]\nname = \"two-words\"\nversion = \"0.1.0\"\n");
    let ws = t.ws();
    assert!(ws.library("two-words").is_some());
    let rs = ws.defaults_rust();
    assert!(rs.contains("pub mod two_words {\n"), "{rs}");
    assert!(rs.contains("pub const DEPTH"), "{rs}");
    compile("hyphenated", &rs);
    // `two_words` would be the same module.
    t.write("libs/two_words/Kconfig.toml", "[library]\nname = \"two_words\"\nhelp = \"Underscored\"\n");
    t.write("libs/two_words/Cargo.toml", "[package]\nname = \"two_words\"\nversion = \"0.1.0\"\n");
    let e = t.load().unwrap_err().to_string();
    assert!(e.contains("is declared twice"), "{e}");
    assert!(e.contains("two_words") || e.contains("two-words"), "{e}");
    std::fs::remove_dir_all(t.root.join("libs/two_words")).unwrap();
    // Hyphens join words: no doubled, leading or trailing one.
    for bad in ["two--words", "two-words-", "two-_words"] {
        t.write(&format!("libs/{bad}/Kconfig.toml"), &format!("[library]\nname = \"{bad}\"\nhelp = \"x\"\n"));
        t.write(
            &format!("libs/{bad}/Cargo.toml"),
            &format!("[package]\nname = \"x{bad}\"\nversion = \"0.1.0\"\n"),
        );
        let e = t.load().unwrap_err().to_string();
        assert!(e.contains("is not allowed; names are lowercase words"), "{bad}: {e}");
        std::fs::remove_dir_all(t.root.join(format!("libs/{bad}"))).unwrap();
    }
}

//! `cargo xtask config` and `cargo xtask list`: the resolved configuration
//! of an app, and everything that can be configured.

use std::fmt::Write;

use kconfig::{Library, OptionDecl, Resolved, Source, Workspace};

/// Where a value comes from, in words: `default`, the config file's path or
/// `--set`.
fn source(ws: &Workspace, resolved: &Resolved, source: Source) -> String {
    match source {
        Source::AppFile => ws.relative(&resolved.config_file).display().to_string(),
        other => other.to_string(),
    }
}

/// `a, b, c`, or `(none)`.
fn names(items: &[String]) -> String {
    if items.is_empty() { "(none)".to_string() } else { items.join(", ") }
}

/// Writes `text` indented by `indent`, one line per line of `text`.
fn indented(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

/// The text of `cargo xtask config`: the app, its config file, platform and
/// selected libraries, then for the platform and every selected library each
/// option as `name = value   (source)` with its help and allowed values.
pub fn config(ws: &Workspace, resolved: &Resolved) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "app:        {}", resolved.app);
    let _ = writeln!(out, "config:     {}", ws.relative(&resolved.config_file).display());
    let _ = writeln!(out, "platform:   {}", resolved.platform);
    let _ = writeln!(out, "libraries:  {}", names(&resolved.libraries));
    let unselected: Vec<String> =
        ws.libraries.keys().filter(|l| !resolved.libraries.contains(l)).cloned().collect();
    let _ = writeln!(out, "not selected: {}", names(&unselected));

    let owners = std::iter::once(("platform", ws.platforms.get(&resolved.platform)))
        .chain(resolved.libraries.iter().map(|l| (l.as_str(), ws.libraries.get(l))));
    for (owner, lib) in owners {
        let _ = writeln!(out);
        match (owner, lib) {
            ("platform", Some(lib)) => {
                let _ = writeln!(out, "[platform] {}: {}", lib.name, lib.help);
            }
            (_, Some(lib)) => {
                let _ = writeln!(out, "[{owner}] {}", lib.help);
            }
            (_, None) => {
                let _ = writeln!(out, "[{owner}]");
            }
        }
        let options: Vec<_> = resolved.options.iter().filter(|o| o.owner == owner).collect();
        if options.is_empty() {
            let _ = writeln!(out, "  (no options)");
            continue;
        }
        let assignments: Vec<String> =
            options.iter().map(|o| format!("{} = {}", o.decl.name, o.value)).collect();
        let width = assignments.iter().map(|a| a.chars().count()).max().unwrap_or(0);
        for (option, assignment) in options.iter().zip(&assignments) {
            let _ = writeln!(out, "  {assignment:<width$}   ({})", source(ws, resolved, option.source));
            indented(&mut out, "      ", &option.decl.help);
            if let Some(allowed) = option.decl.ty.allowed()
                && !matches!(option.decl.ty, kconfig::OptionType::Bool)
            {
                let _ = writeln!(out, "      allowed: {allowed}");
            }
        }
    }
    out
}

/// One option of `cargo xtask list`: `name: type = default; allowed: ...`
/// and its help.
fn list_option(out: &mut String, decl: &OptionDecl) {
    let mut line = format!("    {}: {} = {}", decl.name, decl.ty, decl.default);
    if let Some(allowed) = decl.ty.allowed() {
        let _ = write!(line, "; allowed: {allowed}");
    }
    let _ = writeln!(out, "{line}");
    indented(out, "        ", &decl.help);
}

/// One library or platform of `cargo xtask list`.
fn list_library(out: &mut String, ws: &Workspace, lib: &Library) {
    let _ = writeln!(out, "  {}: {}", lib.name, lib.help);
    let _ = writeln!(out, "    crate {} in {}", lib.crate_name, ws.relative(&lib.dir).display());
    if !lib.depends.is_empty() {
        let _ = writeln!(out, "    depends: {}", lib.depends.join(", "));
    }
    if !lib.selects.is_empty() {
        let _ = writeln!(out, "    selects: {}", lib.selects.join(", "));
    }
    if lib.options.is_empty() {
        let _ = writeln!(out, "    (no options)");
    }
    for decl in &lib.options {
        list_option(out, decl);
    }
}

/// The text of `cargo xtask list`: the apps with their config file and
/// library dependencies; the platforms and libraries with their help,
/// depends/selects and options (type, default, allowed values, help).
pub fn list(ws: &Workspace) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Apps:");
    if ws.apps.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let width = ws.apps.keys().map(|a| a.chars().count()).max().unwrap_or(0);
    for app in ws.apps.values() {
        let config = ws.relative(&app.config_file).display().to_string();
        let missing = if app.config_file.is_file() { "" } else { " (missing)" };
        let _ = writeln!(out, "  {:<width$}  {config}{missing}; uses: {}", app.name, names(&app.lib_deps));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Platforms (choose one with [platform] name = \"...\"):");
    for lib in ws.platforms.values() {
        list_library(&mut out, ws, lib);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Libraries (select one with [libraries.NAME]):");
    for lib in ws.libraries.values() {
        list_library(&mut out, ws, lib);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use kconfig::{
        App, Kind, Library, OptionDecl, OptionType, Resolved, ResolvedOption, Source, Value, Workspace,
    };

    /// A workspace in memory (nothing is read from disk).
    fn workspace() -> Workspace {
        let root = PathBuf::from("/nonexistent/ws");
        let lib = |name: &str, kind, options: Vec<OptionDecl>| Library {
            name: name.to_string(),
            kind,
            dir: root.join(if kind == Kind::Platform { "platforms" } else { "libs" }).join(name),
            crate_name: format!("crate-{name}"),
            help: format!("Help of {name}"),
            depends: if name == "alloc" { vec!["base".to_string()] } else { Vec::new() },
            selects: if name == "virt" { vec!["base".to_string()] } else { Vec::new() },
            options,
            features: Vec::new(),
            lib_deps: Vec::new(),
        };
        let backend = OptionDecl {
            name: "backend".to_string(),
            ty: OptionType::Choice { choices: vec!["talc".to_string(), "linked-list".to_string()] },
            default: Value::Choice("talc".to_string()),
            help: "Allocator behind the heap".to_string(),
        };
        let stats = OptionDecl {
            name: "stats".to_string(),
            ty: OptionType::Bool,
            default: Value::Bool(false),
            help: "Count allocations".to_string(),
        };
        let mem = OptionDecl {
            name: "mem".to_string(),
            ty: OptionType::Int { range: Some((16, 64)), at_most: None },
            default: Value::Int(32),
            help: "Memory in MiB".to_string(),
        };
        let libraries = BTreeMap::from([
            ("alloc".to_string(), lib("alloc", Kind::Library, vec![backend, stats])),
            ("base".to_string(), lib("base", Kind::Library, Vec::new())),
            ("extra".to_string(), lib("extra", Kind::Library, Vec::new())),
        ]);
        let platforms = BTreeMap::from([("virt".to_string(), lib("virt", Kind::Platform, vec![mem]))]);
        let apps = BTreeMap::from([(
            "demo".to_string(),
            App {
                name: "demo".to_string(),
                dir: root.join("apps/demo"),
                crate_name: "demo".to_string(),
                config_file: root.join("config/demo.toml"),
                lib_deps: vec!["alloc".to_string()],
            },
        )]);
        Workspace { root, libraries, platforms, apps }
    }

    /// A resolved configuration of `workspace()`.
    fn resolved(ws: &Workspace) -> Resolved {
        let option = |owner: &str, lib: &Library, i: usize, value: Value, source| ResolvedOption {
            owner: owner.to_string(),
            decl: lib.options[i].clone(),
            value,
            source,
        };
        let alloc = &ws.libraries["alloc"];
        Resolved {
            app: "demo".to_string(),
            config_file: ws.root.join("config/demo.toml"),
            platform: "virt".to_string(),
            libraries: vec!["alloc".to_string(), "base".to_string()],
            options: vec![
                option("platform", &ws.platforms["virt"], 0, Value::Int(48), Source::AppFile),
                option("alloc", alloc, 0, Value::Choice("linked-list".to_string()), Source::CommandLine),
                option("alloc", alloc, 1, Value::Bool(false), Source::Default),
            ],
            notes: Vec::new(),
        }
    }

    #[test]
    fn config_shows_values_sources_help_and_allowed() {
        let ws = workspace();
        let text = super::config(&ws, &resolved(&ws));
        for piece in [
            "app:        demo\n",
            "config:     config/demo.toml\n",
            "platform:   virt\n",
            "libraries:  alloc, base\n",
            "not selected: extra\n",
            "[platform] virt: Help of virt\n",
            "  mem = 48   (config/demo.toml)\n      Memory in MiB\n      allowed: 16..=64\n",
            "[alloc] Help of alloc\n",
            "  backend = \"linked-list\"   (--set)\n      Allocator behind the heap\n      allowed: \"talc\", \"linked-list\"\n",
            "  stats = false             (default)\n      Count allocations\n",
            "[base] Help of base\n  (no options)\n",
        ] {
            assert!(text.contains(piece), "missing {piece:?} in:\n{text}");
        }
        assert!(!text.contains("[extra]"));
        assert!(!text.contains("allowed: true, false"));
    }

    #[test]
    fn list_shows_apps_platforms_libraries_and_options() {
        let ws = workspace();
        let text = super::list(&ws);
        for piece in [
            "Apps:\n  demo  config/demo.toml (missing); uses: alloc\n",
            "Platforms (choose one with [platform] name = \"...\"):\n  virt: Help of virt\n",
            "    crate crate-virt in platforms/virt\n    selects: base\n",
            "    mem: int = 32; allowed: 16..=64\n        Memory in MiB\n",
            "Libraries (select one with [libraries.NAME]):\n  alloc: Help of alloc\n",
            "    depends: base\n",
            "    backend: choice = \"talc\"; allowed: \"talc\", \"linked-list\"\n        Allocator behind the heap\n",
            "    stats: bool = false; allowed: true, false\n        Count allocations\n",
            "  base: Help of base\n    crate crate-base in libs/base\n    (no options)\n",
        ] {
            assert!(text.contains(piece), "missing {piece:?} in:\n{text}");
        }
    }

    #[test]
    fn real_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let ws = Workspace::load(&root).unwrap_or_else(|e| panic!("{e}"));
        let resolved = ws
            .resolve("helloworld", None, &["ukconsole.log_level=debug".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let text = super::config(&ws, &resolved);
        assert!(text.contains("config:     config/helloworld.toml\n"), "{text}");
        assert!(text.contains("log_level = \"debug\""), "{text}");
        assert!(text.contains("(--set)"), "{text}");
        assert!(text.contains("allowed: \"talc\", \"linked-list\""), "{text}");
        let text = super::list(&ws);
        assert!(text.contains("  helloworld"), "{text}");
        assert!(text.contains("  ukalloc: "), "{text}");
        assert!(
            text.contains("    backend: choice = \"talc\"; allowed: \"talc\", \"linked-list\"\n"),
            "{text}"
        );
    }
}

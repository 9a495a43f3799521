//! Loading a workspace: `Kconfig.toml` declarations, `Cargo.toml`
//! manifests and the apps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Ctx, io_message};
use crate::value::{self, camel_case, describe, is_choice_word, is_lower_ident, quote, quote_list};
use crate::{App, ConfigError, Kind, Library, OptionDecl, OptionType, Value, Workspace};

/// The parts of a `Cargo.toml` that matter here.
#[derive(Deserialize)]
struct Manifest {
    /// `[package]`.
    package: Option<Package>,
    /// `[dependencies]`.
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
    /// `[features]`.
    #[serde(default)]
    features: BTreeMap<String, toml::Value>,
    /// `[workspace]` (root manifest only).
    workspace: Option<WorkspaceSection>,
}

/// `[package]` of a manifest.
#[derive(Deserialize)]
struct Package {
    /// The crate's name.
    name: Option<toml::Value>,
}

/// `[workspace]` of the root manifest.
#[derive(Deserialize)]
struct WorkspaceSection {
    /// `[workspace.dependencies]`.
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
}

/// A manifest with what was learnt from it.
struct CrateInfo {
    /// The package name.
    crate_name: String,
    /// Declared and implicit features, sorted.
    features: Vec<String>,
    /// Crate names of the non-optional path dependencies.
    path_deps: Vec<String>,
}

/// A declaration read from a `Kconfig.toml`, before cross-checks.
struct Raw {
    /// The library so far (`lib_deps` not filled in).
    lib: Library,
    /// Its `Kconfig.toml`.
    kconfig: PathBuf,
    /// Crate names of its non-optional path dependencies.
    path_deps: Vec<String>,
}

/// Loads the workspace at `root`.
pub(crate) fn load(root: &Path) -> Result<Workspace, ConfigError> {
    let root = root
        .canonicalize()
        .map_err(|e| ConfigError::new(root, "", format!("cannot read: {}", io_message(&e))))?;
    let ctx = Ctx { root: &root };
    let root_manifest = root.join("Cargo.toml");
    let ws_deps = read_manifest(ctx, &root_manifest)?.workspace.map(|w| w.dependencies).unwrap_or_default();

    let mut raws = Vec::new();
    for (sub, kind) in [("libs", Kind::Library), ("platforms", Kind::Platform)] {
        for dir in subdirs(ctx, &root.join(sub))? {
            let kconfig = dir.join("Kconfig.toml");
            if !kconfig.is_file() {
                continue;
            }
            let dir_name = dir_name(ctx, &dir)?;
            let mut lib = parse_kconfig(ctx, &kconfig, &dir_name, kind)?;
            let info = crate_info(ctx, &dir.join("Cargo.toml"), &ws_deps)?;
            lib.dir = dir;
            lib.crate_name = info.crate_name;
            lib.features = info.features;
            raws.push(Raw { lib, kconfig, path_deps: info.path_deps });
        }
    }

    // Names are unique across libraries and platforms, also as the config
    // modules they become (`a-b` and `a_b` are both `ukconfig::a_b`).
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    for raw in &raws {
        if let Some(other) = seen.insert(raw.lib.name.replace('-', "_"), &raw.kconfig) {
            return Err(ctx.err(
                &raw.kconfig,
                "library.name",
                format!(
                    "{} is declared twice (also by {}); names must be unique across libs/ and platforms/",
                    quote(&raw.lib.name),
                    ctx.rel(other).display()
                ),
            ));
        }
    }
    let library_names: Vec<String> =
        raws.iter().filter(|r| r.lib.kind == Kind::Library).map(|r| r.lib.name.clone()).collect();
    let by_crate: BTreeMap<String, String> =
        raws.iter().map(|r| (r.lib.crate_name.clone(), r.lib.name.clone())).collect();

    let mut libraries = BTreeMap::new();
    let mut platforms = BTreeMap::new();
    for raw in raws {
        let Raw { mut lib, kconfig, path_deps } = raw;
        for (key, names) in [("library.depends", &lib.depends), ("library.selects", &lib.selects)] {
            for name in names {
                if !library_names.contains(name) {
                    return Err(ctx.err(
                        &kconfig,
                        key,
                        format!("unknown library {}; known: {}", quote(name), library_names.join(", ")),
                    ));
                }
            }
        }
        lib.lib_deps = lib_deps(&path_deps, &by_crate, &lib.name);
        for dep in &lib.lib_deps {
            if !lib.depends.contains(dep) && !lib.selects.contains(dep) {
                return Err(ctx.err(
                    &kconfig,
                    "library.depends",
                    format!(
                        "its Cargo.toml ({}) depends on library '{dep}', which is neither in depends nor in selects; add {} to depends",
                        ctx.rel(&lib.dir.join("Cargo.toml")).display(),
                        quote(dep)
                    ),
                ));
            }
        }
        match lib.kind {
            Kind::Library => libraries.insert(lib.name.clone(), lib),
            Kind::Platform => platforms.insert(lib.name.clone(), lib),
        };
    }

    let mut apps = BTreeMap::new();
    for dir in subdirs(ctx, &root.join("apps"))? {
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let name = dir_name(ctx, &dir)?;
        let info = crate_info(ctx, &manifest, &ws_deps)?;
        let app = App {
            lib_deps: lib_deps(&info.path_deps, &by_crate, ""),
            config_file: root.join("config").join(format!("{name}.toml")),
            crate_name: info.crate_name,
            name: name.clone(),
            dir,
        };
        apps.insert(name, app);
    }

    Ok(Workspace { root, libraries, platforms, apps })
}

/// The declared libraries among `path_deps` (crate names), by library name,
/// sorted, without `own`.
fn lib_deps(path_deps: &[String], by_crate: &BTreeMap<String, String>, own: &str) -> Vec<String> {
    let set: BTreeSet<String> =
        path_deps.iter().filter_map(|c| by_crate.get(c)).filter(|n| *n != own).cloned().collect();
    set.into_iter().collect()
}

/// The subdirectories of `dir`, sorted; none when `dir` does not exist.
fn subdirs(ctx: Ctx<'_>, dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ctx.err(dir, "", format!("cannot read: {}", io_message(&e)))),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ctx.err(dir, "", format!("cannot read: {}", io_message(&e))))?;
        let path = entry.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The last component of `dir` as UTF-8.
fn dir_name(ctx: Ctx<'_>, dir: &Path) -> Result<String, ConfigError> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| ctx.err(dir, "", "directory name is not valid UTF-8"))
}

/// Reads a `Cargo.toml`.
fn read_manifest(ctx: Ctx<'_>, file: &Path) -> Result<Manifest, ConfigError> {
    let text = ctx.read(file)?;
    toml::from_str(&text).map_err(|e| ctx.toml_error(file, &text, &e))
}

/// Reads a library's or app's `Cargo.toml`: crate name, features and
/// non-optional path dependencies (through `[workspace.dependencies]` for
/// `workspace = true`).
fn crate_info(
    ctx: Ctx<'_>,
    file: &Path,
    ws_deps: &BTreeMap<String, toml::Value>,
) -> Result<CrateInfo, ConfigError> {
    let manifest = read_manifest(ctx, file)?;
    let crate_name = match manifest.package.and_then(|p| p.name) {
        Some(toml::Value::String(name)) => name,
        Some(other) => {
            return Err(ctx.err(
                file,
                "package.name",
                format!("expected a string, found {}", describe(&other)),
            ));
        }
        None => {
            return Err(ctx.err(file, "package.name", "missing; a library or app must be a package"));
        }
    };

    let mut features: BTreeSet<String> = manifest.features.keys().cloned().collect();
    let explicit_dep_features: BTreeSet<String> = manifest
        .features
        .values()
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|v| v.as_str())
        .filter_map(|s| s.strip_prefix("dep:"))
        .map(str::to_string)
        .collect();
    let mut path_deps = Vec::new();
    for (key, spec) in &manifest.dependencies {
        let table = spec.as_table();
        let optional = table.and_then(|t| t.get("optional")).and_then(toml::Value::as_bool) == Some(true);
        if optional && !explicit_dep_features.contains(key) {
            features.insert(key.clone());
        }
        let Some(table) = table else { continue };
        let source = if table.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
            ws_deps.get(key).and_then(toml::Value::as_table)
        } else {
            Some(table)
        };
        let Some(source) = source else { continue };
        if optional || !source.contains_key("path") {
            continue;
        }
        let package = table.get("package").or_else(|| source.get("package")).and_then(toml::Value::as_str);
        path_deps.push(package.unwrap_or(key).to_string());
    }
    Ok(CrateInfo { crate_name, features: features.into_iter().collect(), path_deps })
}

/// `prefix.key`, or `key` when `prefix` is empty.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// Fails on a key of `table` that is not in `allowed`.
fn check_keys(
    ctx: Ctx<'_>,
    file: &Path,
    prefix: &str,
    table: &toml::Table,
    allowed: &[&str],
) -> Result<(), ConfigError> {
    match table.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            Err(ctx.err(file, join(prefix, k), format!("unknown key; allowed: {}", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

/// A string entry of `table`; `what` says what a missing one should be.
fn get_str(
    ctx: Ctx<'_>,
    file: &Path,
    table: &toml::Table,
    prefix: &str,
    key: &str,
    what: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match table.get(key) {
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ctx.err(file, join(prefix, key), format!("expected a string, found {}", describe(v)))),
        None => match what {
            Some(what) => Err(ctx.err(file, join(prefix, key), format!("missing; expected {what}"))),
            None => Ok(None),
        },
    }
}

/// An optional list of strings.
fn get_str_list(
    ctx: Ctx<'_>,
    file: &Path,
    table: &toml::Table,
    prefix: &str,
    key: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(v) = table.get(key) else {
        return Ok(None);
    };
    let err =
        || ctx.err(file, join(prefix, key), format!("expected an array of strings, found {}", describe(v)));
    let array = v.as_array().ok_or_else(err)?;
    let mut out = Vec::new();
    for item in array {
        match item {
            toml::Value::String(s) => out.push(s.clone()),
            other => {
                return Err(ctx.err(
                    file,
                    join(prefix, key),
                    format!("expected an array of strings, found {} in it", describe(other)),
                ));
            }
        }
    }
    Ok(Some(out))
}

/// Parses a `Kconfig.toml` in directory `dir_name` under `libs/` (`kind`
/// Library) or `platforms/` (`kind` Platform).
fn parse_kconfig(ctx: Ctx<'_>, file: &Path, dir_name: &str, kind: Kind) -> Result<Library, ConfigError> {
    let table = ctx.read_toml(file)?;
    check_keys(ctx, file, "", &table, &["library", "options"])?;
    let library = match table.get("library") {
        Some(toml::Value::Table(t)) => t,
        Some(v) => {
            return Err(ctx.err(
                file,
                "library",
                format!("expected a table ([library]), found {}", describe(v)),
            ));
        }
        None => {
            return Err(ctx.err(file, "library", "missing; expected a [library] table with name and help"));
        }
    };
    check_keys(ctx, file, "library", library, &["name", "kind", "help", "depends", "selects"])?;

    let name = get_str(
        ctx,
        file,
        library,
        "library",
        "name",
        Some(&format!("the directory name, {}", quote(dir_name))),
    )?
    .unwrap_or_default();
    if name != dir_name {
        return Err(ctx.err(
            file,
            "library.name",
            format!("{} must equal the directory name, {}", quote(&name), quote(dir_name)),
        ));
    }
    if !is_lower_ident(&name.replace('-', "_")) || name == "platform" {
        return Err(ctx.err(
            file,
            "library.name",
            format!(
                "{} is not allowed; names are lowercase words (a-z, 0-9) joined by single `_` or `-` (the config module is the name with `-` as `_`), not Rust keywords and not \"platform\"",
                quote(&name)
            ),
        ));
    }

    let declared_kind = match get_str(ctx, file, library, "library", "kind", None)?.as_deref() {
        None | Some("library") => Kind::Library,
        Some("platform") => Kind::Platform,
        Some(other) => {
            return Err(ctx.err(
                file,
                "library.kind",
                format!("{} is not one of \"library\", \"platform\"", quote(other)),
            ));
        }
    };
    if declared_kind != kind {
        let message = match kind {
            Kind::Library => {
                "a platform must live under platforms/; under libs/ kind is \"library\" (the default)"
            }
            Kind::Platform => "a declaration under platforms/ must have kind = \"platform\"",
        };
        return Err(ctx.err(file, "library.kind", message));
    }

    let help = get_str(ctx, file, library, "library", "help", Some("a string saying what it is"))?
        .unwrap_or_default();
    if help.trim().is_empty() {
        return Err(ctx.err(file, "library.help", "is empty; say what the library is"));
    }
    let depends = get_str_list(ctx, file, library, "library", "depends")?.unwrap_or_default();
    let selects = get_str_list(ctx, file, library, "library", "selects")?.unwrap_or_default();

    let mut options = Vec::new();
    match table.get("options") {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (opt_name, v) in t {
                options.push(parse_option(ctx, file, opt_name, v)?);
            }
        }
        Some(v) => {
            return Err(ctx.err(
                file,
                "options",
                format!("expected a table ([options.NAME]), found {}", describe(v)),
            ));
        }
    }
    check_bounds(ctx, file, &options)?;
    // Enum type names generated for choice options must not clash.
    let mut type_names: BTreeMap<String, &str> = BTreeMap::new();
    for opt in &options {
        if matches!(opt.ty, OptionType::Choice { .. })
            && let Some(other) = type_names.insert(camel_case(&opt.name), &opt.name)
        {
            return Err(ctx.err(
                file,
                format!("options.{}", opt.name),
                format!(
                    "its Rust type name {} is also that of option {other}; rename one",
                    camel_case(&opt.name)
                ),
            ));
        }
    }

    Ok(Library {
        name,
        kind,
        dir: PathBuf::new(),
        crate_name: String::new(),
        help,
        depends,
        selects,
        options,
        features: Vec::new(),
        lib_deps: Vec::new(),
    })
}

/// Parses `[options.NAME]`.
fn parse_option(ctx: Ctx<'_>, file: &Path, name: &str, v: &toml::Value) -> Result<OptionDecl, ConfigError> {
    let prefix = format!("options.{name}");
    if !is_lower_ident(name) || name == "selected" || name == "name" {
        return Err(ctx.err(
            file,
            &prefix,
            "option names are lowercase identifiers (a-z, 0-9, _), not Rust keywords, not \"selected\" or \"name\"",
        ));
    }
    let table = v.as_table().ok_or_else(|| {
        ctx.err(file, &prefix, format!("expected a table ([options.{name}]), found {}", describe(v)))
    })?;
    check_keys(ctx, file, &prefix, table, &["type", "default", "choices", "range", "at_most", "help"])?;
    let type_word =
        get_str(ctx, file, table, &prefix, "type", Some("\"bool\", \"int\", \"string\" or \"choice\""))?
            .unwrap_or_default();
    if type_word != "choice" && table.contains_key("choices") {
        return Err(ctx.err(file, join(&prefix, "choices"), "only allowed with type = \"choice\""));
    }
    for key in ["range", "at_most"] {
        if type_word != "int" && table.contains_key(key) {
            return Err(ctx.err(file, join(&prefix, key), "only allowed with type = \"int\""));
        }
    }
    let ty = match type_word.as_str() {
        "bool" => OptionType::Bool,
        "int" => OptionType::Int {
            range: parse_range(ctx, file, &prefix, table)?,
            // Checked against the other options in `check_bounds`.
            at_most: get_str(ctx, file, table, &prefix, "at_most", None)?,
        },
        "string" => OptionType::Str,
        "choice" => OptionType::Choice { choices: parse_choices(ctx, file, &prefix, table)? },
        other => {
            return Err(ctx.err(
                file,
                join(&prefix, "type"),
                format!("{} is not one of \"bool\", \"int\", \"string\", \"choice\"", quote(other)),
            ));
        }
    };
    let default = match table.get("default") {
        Some(v) => value::from_toml(&ty, v).map_err(|m| ctx.err(file, join(&prefix, "default"), m))?,
        None => {
            let what = match &ty {
                OptionType::Bool => "true or false".to_string(),
                OptionType::Int { range: Some((min, max)), .. } => format!("an integer in {min}..={max}"),
                OptionType::Int { range: None, .. } => "an integer".to_string(),
                OptionType::Str => "a string".to_string(),
                OptionType::Choice { choices } => format!("one of {}", quote_list(choices)),
            };
            return Err(ctx.err(file, join(&prefix, "default"), format!("missing; expected {what}")));
        }
    };
    let help = get_str(ctx, file, table, &prefix, "help", Some("a string saying what the option does"))?
        .unwrap_or_default();
    if help.trim().is_empty() {
        return Err(ctx.err(file, join(&prefix, "help"), "is empty; say what the option does"));
    }
    Ok(OptionDecl { name: name.to_string(), ty, default, help })
}

/// Checks every `at_most = "OTHER"` of `options` (one library's): OTHER is
/// another int option of them, and the option's default is at most OTHER's.
fn check_bounds(ctx: Ctx<'_>, file: &Path, options: &[OptionDecl]) -> Result<(), ConfigError> {
    for opt in options {
        let (OptionType::Int { at_most: Some(other), .. }, Value::Int(default)) = (&opt.ty, &opt.default)
        else {
            continue;
        };
        let key = format!("options.{}.at_most", opt.name);
        let ints: Vec<&str> = options
            .iter()
            .filter(|o| o.name != opt.name && matches!(o.ty, OptionType::Int { .. }))
            .map(|o| o.name.as_str())
            .collect();
        let ints = if ints.is_empty() { "(none)".to_string() } else { ints.join(", ") };
        if *other == opt.name {
            return Err(ctx.err(
                file,
                key,
                format!("{} is this option itself; name another int option: {ints}", quote(other)),
            ));
        }
        let Some(bound) = options.iter().find(|o| o.name == *other) else {
            return Err(ctx.err(file, key, format!("unknown option {}; int options: {ints}", quote(other))));
        };
        let Value::Int(bound_default) = bound.default else {
            return Err(ctx.err(
                file,
                key,
                format!("option {} is a {}, not an int; int options: {ints}", quote(other), bound.ty),
            ));
        };
        if *default > bound_default {
            return Err(ctx.err(
                file,
                format!("options.{}.default", opt.name),
                format!(
                    "{default} is more than options.{other}.default = {bound_default} (at_most = {})",
                    quote(other)
                ),
            ));
        }
    }
    Ok(())
}

/// Parses `range = [MIN, MAX]`.
fn parse_range(
    ctx: Ctx<'_>,
    file: &Path,
    prefix: &str,
    table: &toml::Table,
) -> Result<Option<(i64, i64)>, ConfigError> {
    let Some(v) = table.get("range") else {
        return Ok(None);
    };
    match v.as_array().map(Vec::as_slice) {
        Some([toml::Value::Integer(min), toml::Value::Integer(max)]) if min <= max => Ok(Some((*min, *max))),
        _ => Err(ctx.err(
            file,
            join(prefix, "range"),
            format!("expected [MIN, MAX], two integers with MIN <= MAX, found {}", v),
        )),
    }
}

/// Parses `choices = ["a", "b"]`.
fn parse_choices(
    ctx: Ctx<'_>,
    file: &Path,
    prefix: &str,
    table: &toml::Table,
) -> Result<Vec<String>, ConfigError> {
    let key = join(prefix, "choices");
    let choices = get_str_list(ctx, file, table, prefix, "choices")?
        .ok_or_else(|| ctx.err(file, &key, "missing; a choice option needs choices = [\"a\", \"b\", ...]"))?;
    if choices.is_empty() {
        return Err(ctx.err(file, &key, "is empty; list at least one choice"));
    }
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for choice in &choices {
        if !is_choice_word(choice) {
            return Err(ctx.err(
                file,
                &key,
                format!(
                    "{} is not allowed; a choice starts with a letter and has only letters, digits, '-', '_' and '.'",
                    quote(choice)
                ),
            ));
        }
        if let Some(other) = names.insert(camel_case(choice), choice) {
            let message = if other == choice {
                format!("{} appears twice", quote(choice))
            } else {
                format!(
                    "{} and {} both become the Rust name {}",
                    quote(other),
                    quote(choice),
                    camel_case(choice)
                )
            };
            return Err(ctx.err(file, &key, message));
        }
    }
    Ok(choices)
}

//! Resolving an app's configuration: selection, dependency checks and
//! option values (default < config file < `--set`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Ctx, io_message};
use crate::value::{self, describe, quote};
use crate::{
    ConfigError, Library, OptionDecl, OptionType, Resolved, ResolvedOption, Source, Value, Workspace,
};

/// `a, b, c`, or `(none)`.
fn list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.into_iter().map(String::as_str).collect();
    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
}

/// `ukalloc has: a, b, c` / `ukarch has no options`, for unknown options.
fn has_options(name: &str, extra: Option<&str>, options: &[OptionDecl]) -> String {
    let names: Vec<&str> = extra.into_iter().chain(options.iter().map(|o| o.name.as_str())).collect();
    if names.is_empty() {
        format!("{name} has no options")
    } else {
        format!("{name} has: {}", names.join(", "))
    }
}

/// A TOML value as written in a config file, on one line.
fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => quote(s),
        other => other.to_string().replace('\n', " "),
    }
}

/// Values set so far, by (owner, option).
type Values = BTreeMap<(String, String), (Value, Source)>;

/// Resolves the configuration of `app`; see [`Workspace::resolve`].
pub(crate) fn resolve(
    ws: &Workspace,
    app: &str,
    config: Option<&Path>,
    sets: &[String],
) -> Result<Resolved, ConfigError> {
    let ctx = Ctx { root: &ws.root };
    let config_file = match config {
        Some(path) => path.to_path_buf(),
        None => ws.root.join("config").join(format!("{app}.toml")),
    };
    let file = config_file.as_path();
    let shown = ctx.rel(file).display().to_string();
    let apps = list(ws.apps.keys());
    let app_decl = ws.apps.get(app);
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            let mut message = format!("cannot read: {}", io_message(&e));
            if app_decl.is_none() {
                message.push_str(&format!("; there is no app '{app}' either (apps: {apps})"));
            }
            return Err(ctx.err(file, "", message));
        }
    };
    let Some(app_decl) = app_decl else {
        return Err(ctx.err(
            file,
            "",
            format!("unknown app '{app}' (no apps/{app}/Cargo.toml); apps: {apps}"),
        ));
    };

    let table = ctx.parse_toml(file, &text)?;
    if let Some(k) = table.keys().find(|k| *k != "platform" && *k != "libraries") {
        return Err(ctx.err(file, k.as_str(), "unknown key; allowed: platform, libraries"));
    }
    let platforms = list(ws.platforms.keys());

    // [platform]
    let platform_table = match table.get("platform") {
        Some(toml::Value::Table(t)) => t,
        Some(v) => {
            return Err(ctx.err(
                file,
                "platform",
                format!("expected a table ([platform]), found {}", describe(v)),
            ));
        }
        None => {
            return Err(ctx.err(
                file,
                "platform",
                format!("missing; add [platform] with name = one of: {platforms}"),
            ));
        }
    };
    let platform_name = match platform_table.get("name") {
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(ctx.err(
                file,
                "platform.name",
                format!("expected a string, found {}; platforms: {platforms}", describe(v)),
            ));
        }
        None => {
            return Err(ctx.err(file, "platform.name", format!("missing; platforms: {platforms}")));
        }
    };
    let file_platform: &Library = ws.platforms.get(platform_name).ok_or_else(|| {
        ctx.err(
            file,
            "platform.name",
            format!("unknown platform {}; known: {platforms}", quote(platform_name)),
        )
    })?;

    // `--set platform.name=NAME` chooses the platform instead of the file
    // (the last one wins, wherever it is among the other `--set`s).
    let chosen = sets.iter().filter_map(|s| s.strip_prefix("platform.name=")).next_back();
    let platform: &Library = match chosen {
        None => file_platform,
        Some(name) => ws.platforms.get(name).ok_or_else(|| {
            ConfigError::new(
                "--set",
                "platform.name",
                format!("unknown platform {}; known: {platforms}", quote(name)),
            )
        })?,
    };
    let switched = !std::ptr::eq(platform, file_platform);
    let platform_name = &platform.name;
    let by_set = format!("--set platform.name={platform_name}");
    let mut notes = Vec::new();

    let mut values = Values::new();
    for (key, v) in platform_table.iter().filter(|(k, _)| *k != "name") {
        let full = format!("platform.{key}");
        let Some(decl) = platform.options.iter().find(|o| &o.name == key) else {
            if switched && file_platform.options.iter().any(|o| &o.name == key) {
                // An option of the file's platform that the chosen one lacks.
                notes.push(format!(
                    "{shown}: {full} = {} is an option of {}, not of {platform_name}: not used ({by_set})",
                    toml_text(v),
                    file_platform.name
                ));
                continue;
            }
            let mut message = format!(
                "unknown option; {}",
                has_options(&file_platform.name, Some("name"), &file_platform.options)
            );
            if switched {
                message.push_str(&format!(
                    "; {} (chosen by {by_set})",
                    has_options(platform_name, None, &platform.options)
                ));
            }
            return Err(ctx.err(file, &full, message));
        };
        let value = value::from_toml(&decl.ty, v).map_err(|m| {
            let m = if switched { format!("{m} (platform {platform_name}, chosen by {by_set})") } else { m };
            ctx.err(file, &full, m)
        })?;
        values.insert(("platform".to_string(), key.clone()), (value, Source::AppFile));
    }

    // [libraries.*]
    let known = list(ws.libraries.keys());
    let mut listed = Vec::new();
    match table.get("libraries") {
        None => {}
        Some(toml::Value::Table(libs)) => {
            for (name, v) in libs {
                let key = format!("libraries.{name}");
                let Some(lib) = ws.libraries.get(name) else {
                    let message = if ws.platforms.contains_key(name) {
                        format!(
                            "{name} is a platform, not a library; choose it with [platform] name = {}",
                            quote(name)
                        )
                    } else {
                        format!("unknown library; known: {known}")
                    };
                    return Err(ctx.err(file, key, message));
                };
                let t = v.as_table().ok_or_else(|| {
                    ctx.err(file, &key, format!("expected a table ([{key}]), found {}", describe(v)))
                })?;
                for (opt, ov) in t {
                    let full = format!("{key}.{opt}");
                    let decl = lib.options.iter().find(|o| &o.name == opt).ok_or_else(|| {
                        ctx.err(
                            file,
                            &full,
                            format!("unknown option; {}", has_options(name, None, &lib.options)),
                        )
                    })?;
                    let value = value::from_toml(&decl.ty, ov).map_err(|m| ctx.err(file, &full, m))?;
                    values.insert((name.clone(), opt.clone()), (value, Source::AppFile));
                }
                listed.push(name.clone());
            }
        }
        Some(v) => {
            return Err(ctx.err(
                file,
                "libraries",
                format!("expected a table ([libraries.NAME] sections), found {}", describe(v)),
            ));
        }
    }

    // Selection: listed + the platform's selects, closed under selects.
    let mut selected = BTreeSet::new();
    let mut queue: Vec<String> = listed.iter().chain(&platform.selects).cloned().collect();
    while let Some(name) = queue.pop() {
        if let Some(lib) = ws.libraries.get(&name)
            && selected.insert(name)
        {
            queue.extend(lib.selects.iter().cloned());
        }
    }

    // Every `depends` of the platform and of the selected libraries.
    let owners = std::iter::once(platform).chain(selected.iter().filter_map(|n| ws.libraries.get(n)));
    for owner in owners {
        if let Some(dep) = owner.depends.iter().find(|d| !selected.contains(*d)) {
            let what = if owner.kind == crate::Kind::Platform { "platform" } else { "library" };
            return Err(ctx.err(
                file,
                format!("libraries.{dep}"),
                format!(
                    "{what} '{}' depends on library '{dep}' ({}) but the configuration does not select it; add [libraries.{dep}]",
                    owner.name,
                    ctx.rel(&owner.dir.join("Kconfig.toml")).display()
                ),
            ));
        }
    }

    // The app's own library dependencies.
    let app_manifest = ctx.rel(&app_decl.dir.join("Cargo.toml")).display().to_string();
    for dep in &app_decl.lib_deps {
        if ws.platforms.contains_key(dep) {
            if dep != platform_name {
                let fix = if switched {
                    format!(" (by {by_set}); choose {}", quote(dep))
                } else {
                    format!("; set name = {}", quote(dep))
                };
                return Err(ctx.err(
                    file,
                    "platform.name",
                    format!(
                        "app '{app}' uses platform '{dep}' ({app_manifest}) but the configuration chooses {}{fix}",
                        quote(platform_name),
                    ),
                ));
            }
        } else if !selected.contains(dep) {
            return Err(ctx.err(
                file,
                "libraries",
                format!(
                    "app '{app}' uses library '{dep}' ({app_manifest}) but the configuration does not select it; add [libraries.{dep}]"
                ),
            ));
        }
    }

    // --set overrides (`platform.name` chose the platform above).
    for set in sets.iter().filter(|s| !s.starts_with("platform.name=")) {
        apply_set(ws, platform, &selected, &shown, set, &mut values)?;
    }

    let mut options = Vec::new();
    let owners = std::iter::once(("platform", platform))
        .chain(selected.iter().map(|n| (n.as_str(), &ws.libraries[n])));
    for (owner, lib) in owners {
        for decl in &lib.options {
            let (value, source) = values
                .remove(&(owner.to_string(), decl.name.clone()))
                .unwrap_or_else(|| (decl.default.clone(), Source::Default));
            options.push(ResolvedOption { owner: owner.to_string(), decl: decl.clone(), value, source });
        }
    }
    check_bounds(ws, platform, &shown, &options)?;

    Ok(Resolved {
        app: app.to_string(),
        config_file,
        platform: platform_name.clone(),
        libraries: selected.into_iter().collect(),
        options,
        notes,
    })
}

/// How the key of option `name` of `owner` (a library or `"platform"`) is
/// written where a value from `source` comes from: `LIB.NAME` or
/// `platform.NAME` for `--set`, `libraries.LIB.NAME` or `platform.NAME` in a
/// config file (and for a default).
fn key_for(source: Source, owner: &str, name: &str) -> String {
    if source == Source::CommandLine || owner == "platform" {
        format!("{owner}.{name}")
    } else {
        format!("libraries.{owner}.{name}")
    }
}

/// Checks every `at_most` bound among the resolved `options`. A violation is
/// blamed on whichever of the two values has the stronger source (`--set` >
/// config file > default), the bounded option on a tie; `config_shown` is
/// the config file as shown in messages.
fn check_bounds(
    ws: &Workspace,
    platform: &Library,
    config_shown: &str,
    options: &[ResolvedOption],
) -> Result<(), ConfigError> {
    let shown_source = |source: Source| match source {
        Source::AppFile => config_shown.to_string(),
        other => other.to_string(),
    };
    for opt in options {
        let OptionType::Int { at_most: Some(other), .. } = &opt.decl.ty else {
            continue;
        };
        let Some(bound) = options.iter().find(|o| o.owner == opt.owner && o.decl.name == *other) else {
            continue; // Load checks that it exists.
        };
        let (Value::Int(value), Value::Int(limit)) = (&opt.value, &bound.value) else {
            continue;
        };
        if value <= limit {
            continue;
        }
        let blame_bounded = opt.source >= bound.source;
        let source = if blame_bounded { opt.source } else { bound.source };
        let opt_key = key_for(source, &opt.owner, &opt.decl.name);
        let bound_key = key_for(source, &bound.owner, &bound.decl.name);
        let (blamed, key, message) = if blame_bounded {
            let message = format!(
                "{value} is more than {bound_key} = {limit} ({}); lower {opt_key} or raise {bound_key}",
                shown_source(bound.source)
            );
            (&opt.decl.name, opt_key, message)
        } else {
            let message = format!(
                "{limit} is less than {opt_key} = {value} ({}), which must be at most {bound_key}; \
                 raise {bound_key} or lower {opt_key}",
                shown_source(opt.source)
            );
            (&bound.decl.name, bound_key, message)
        };
        return Err(match source {
            Source::CommandLine => ConfigError::new("--set", key, message),
            Source::AppFile => ConfigError::new(config_shown, key, message),
            // Both values are defaults, which load checks; only a workspace
            // built by hand gets here.
            Source::Default => {
                let lib = if opt.owner == "platform" { Some(platform) } else { ws.libraries.get(&opt.owner) };
                let file = lib.map_or_else(|| PathBuf::from(&opt.owner), |l| l.dir.join("Kconfig.toml"));
                ConfigError::new(ws.relative(&file), format!("options.{blamed}.default"), message)
            }
        });
    }
    Ok(())
}

/// Applies one `--set LIB.OPTION=VALUE` (or `platform.OPTION=VALUE`).
fn apply_set(
    ws: &Workspace,
    platform: &Library,
    selected: &BTreeSet<String>,
    config_shown: &str,
    set: &str,
    values: &mut Values,
) -> Result<(), ConfigError> {
    let err = |key: &str, message: String| ConfigError::new("--set", key, message);
    let malformed = || {
        err(
            set,
            format!(
                "expected LIB.OPTION=VALUE or platform.OPTION=VALUE, e.g. ukconsole.log_level=debug (libraries: {})",
                list(selected)
            ),
        )
    };
    let (lhs, text) = set.split_once('=').ok_or_else(malformed)?;
    let (owner, opt) = lhs.split_once('.').ok_or_else(malformed)?;
    if owner.is_empty() || opt.is_empty() || opt.contains('.') {
        return Err(malformed());
    }
    let lib = if owner == "platform" {
        if opt == "name" {
            return Err(err(
                lhs,
                format!("the platform is chosen by [platform] name in {config_shown}, not by --set"),
            ));
        }
        platform
    } else if let Some(lib) = ws.libraries.get(owner) {
        if !selected.contains(owner) {
            return Err(err(
                lhs,
                format!(
                    "library '{owner}' is not selected by {config_shown}; add [libraries.{owner}] to {config_shown} to select it (selected: {})",
                    list(selected)
                ),
            ));
        }
        lib
    } else if ws.platforms.contains_key(owner) {
        return Err(err(lhs, format!("'{owner}' is a platform; set its options with platform.{opt}=VALUE")));
    } else {
        return Err(err(
            lhs,
            format!(
                "unknown library; known: {} (and platform for the platform's options)",
                list(ws.libraries.keys())
            ),
        ));
    };
    let decl =
        lib.options.iter().find(|o| o.name == opt).ok_or_else(|| {
            err(lhs, format!("unknown option; {}", has_options(&lib.name, None, &lib.options)))
        })?;
    let value = value::from_text(&decl.ty, text).map_err(|m| err(lhs, m))?;
    values.insert((owner.to_string(), opt.to_string()), (value, Source::CommandLine));
    Ok(())
}

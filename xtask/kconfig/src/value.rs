//! Option values: reading them from TOML and from `--set` text, checking
//! them against their type, and quoting them in messages.

use crate::{OptionType, Value};

/// `s` as a TOML basic string: `"text"` with `\`, `"` and control
/// characters escaped (so never more than one line).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"a", "b", "c"`.
pub(crate) fn quote_list(items: &[String]) -> String {
    items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
}

/// A TOML value in words, for "found ..." in messages: `string "x"`,
/// `integer 3`, `boolean true`, `float 1.5`, `array`, `table`, `datetime ...`.
pub(crate) fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("string {}", quote(s)),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(x) => format!("float {x}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("datetime {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// ` (allowed: MIN..=MAX)` for an int with a range, else nothing.
fn range_hint(range: Option<(i64, i64)>) -> String {
    match range {
        Some((min, max)) => format!(" (allowed: {min}..={max})"),
        None => String::new(),
    }
}

/// Checks `i` against an int option's range.
fn check_int(range: Option<(i64, i64)>, i: i64) -> Result<Value, String> {
    match range {
        Some((min, max)) if i < min || i > max => Err(format!("{i} is outside the range {min}..={max}")),
        _ => Ok(Value::Int(i)),
    }
}

/// Checks `s` against a choice option's choices.
fn check_choice(choices: &[String], s: &str) -> Result<Value, String> {
    if choices.iter().any(|c| c == s) {
        Ok(Value::Choice(s.to_string()))
    } else {
        Err(format!("{} is not one of {}", quote(s), quote_list(choices)))
    }
}

/// Reads a value of type `ty` from TOML; the error says what is expected
/// and what was found.
pub(crate) fn from_toml(ty: &OptionType, v: &toml::Value) -> Result<Value, String> {
    match (ty, v) {
        (OptionType::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (OptionType::Bool, v) => Err(format!("expected a boolean (true or false), found {}", describe(v))),
        (OptionType::Int { range, .. }, toml::Value::Integer(i)) => check_int(*range, *i),
        (OptionType::Int { range, .. }, v) => {
            Err(format!("expected an integer, found {}{}", describe(v), range_hint(*range)))
        }
        (OptionType::Str, toml::Value::String(s)) => Ok(Value::Str(s.clone())),
        (OptionType::Str, v) => Err(format!("expected a string, found {}", describe(v))),
        (OptionType::Choice { choices }, toml::Value::String(s)) => check_choice(choices, s),
        (OptionType::Choice { choices }, v) => {
            Err(format!("expected one of {}, found {}", quote_list(choices), describe(v)))
        }
    }
}

/// Reads a value of type `ty` from `--set` text: `true`/`false`, a decimal
/// or `0x` hexadecimal integer (optionally negative), a string as is, or one
/// of the choices.
pub(crate) fn from_text(ty: &OptionType, s: &str) -> Result<Value, String> {
    match ty {
        OptionType::Bool => match s {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, found {}", quote(s))),
        },
        OptionType::Int { range, .. } => match parse_int(s) {
            Some(i) => check_int(*range, i),
            None => Err(format!(
                "expected an integer (decimal or 0x hex), found {}{}",
                quote(s),
                range_hint(*range)
            )),
        },
        OptionType::Str => Ok(Value::Str(s.to_string())),
        OptionType::Choice { choices } => check_choice(choices, s),
    }
}

/// Parses `[-]DIGITS` or `[-]0xHEX` into an `i64`.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (radix, digits) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None => (10, digits),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// `log_level` -> `LogLevel`, `linked-list` -> `LinkedList`, `q35` -> `Q35`.
pub(crate) fn camel_case(s: &str) -> String {
    let mut out = String::new();
    for part in s.split(['_', '-', '.']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(&chars.as_str().to_lowercase());
        }
    }
    out
}

/// Rust keywords (strict and reserved), which cannot name a module.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static",
    "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual",
    "where", "while", "yield",
];

/// Whether `s` is a lowercase identifier (`[a-z][a-z0-9_]*`, no doubled or
/// trailing `_`) that is not a Rust keyword.
pub(crate) fn is_lower_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && !s.contains("__")
        && !s.ends_with('_')
        && !KEYWORDS.contains(&s)
}

/// Whether `s` can be a choice: it starts with a letter and has only ASCII
/// letters, digits, `-`, `_` and `.`.
pub(crate) fn is_choice_word(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

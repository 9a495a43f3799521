//! The error type and helpers that build one-line messages.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration mistake: which file, which key, what is wrong and what
/// is allowed.
///
/// `Display` is exactly one line, `{file}: {key}: {message}` (or
/// `{file}: {message}` when `key` is empty, for mistakes about the whole
/// file). Errors made by this crate hold `file` relative to the workspace
/// root when it is inside it; `--set` mistakes have the file `--set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file at fault (relative to the workspace root when inside it), or
    /// `--set`.
    pub file: PathBuf,
    /// The dotted key at fault, e.g. `libraries.ukalloc.backend`; empty when
    /// the file as a whole is at fault.
    pub key: String,
    /// What is wrong, naming what is allowed.
    pub message: String,
}

impl ConfigError {
    /// A new error; `file` is kept as given.
    pub fn new(file: impl Into<PathBuf>, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { file: file.into(), key: key.into(), message: message.into() }
    }
}

/// Replaces line breaks by spaces so that the text stays on one line.
fn one_line(s: &str) -> String {
    s.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = one_line(&self.file.display().to_string());
        if self.key.is_empty() {
            write!(f, "{file}: {}", one_line(&self.message))
        } else {
            write!(f, "{file}: {}: {}", one_line(&self.key), one_line(&self.message))
        }
    }
}

impl std::error::Error for ConfigError {}

/// `path` relative to `root` when inside it (looking through symbolic links
/// and `..` where the path exists), else unchanged.
pub(crate) fn relative(root: &Path, path: &Path) -> PathBuf {
    if let Ok(rel) = path.strip_prefix(root) {
        return rel.to_path_buf();
    }
    if let Ok(canonical) = path.canonicalize()
        && let Ok(rel) = canonical.strip_prefix(root)
    {
        return rel.to_path_buf();
    }
    if path.is_relative()
        && let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = cwd.join(path).strip_prefix(root)
    {
        return rel.to_path_buf();
    }
    path.to_path_buf()
}

/// Builds errors with file names relative to the workspace root.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The canonical workspace root.
    pub root: &'a Path,
}

impl Ctx<'_> {
    /// `path` relative to the root when inside it.
    pub fn rel(&self, path: &Path) -> PathBuf {
        relative(self.root, path)
    }

    /// An error about `file` (shown relative to the root).
    pub fn err(&self, file: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::new(relative(self.root, file), key, message)
    }

    /// Reads `file` as text.
    pub fn read(&self, file: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(file)
            .map_err(|e| self.err(file, "", format!("cannot read: {}", io_message(&e))))
    }

    /// Parses `text`, the contents of `file`, as a TOML table.
    pub fn parse_toml(&self, file: &Path, text: &str) -> Result<toml::Table, ConfigError> {
        text.parse::<toml::Table>().map_err(|e| self.toml_error(file, text, &e))
    }

    /// Reads and parses `file` as a TOML table.
    pub fn read_toml(&self, file: &Path) -> Result<toml::Table, ConfigError> {
        let text = self.read(file)?;
        self.parse_toml(file, &text)
    }

    /// A TOML syntax (or deserialization) error as one line, with the line
    /// and column of its span.
    pub fn toml_error(&self, file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        let key = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("line {line}, column {column}")
            }
            None => String::new(),
        };
        self.err(file, key, format!("invalid TOML: {message}"))
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// An I/O error's text without the ` (os error N)` suffix.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

//! The template sets: the built-in templates compiled into the binary, and the
//! `--templates-dir` files that replace or extend them.
//!
//! Each format has a tera instance of its own because each needs its own
//! autoescaping: html escapes for the browser, markdown escapes table and inline
//! syntax, text strips terminal control characters. Tera autoescapes by the name
//! of the template being rendered, so every top-level template name ends with its
//! format's suffix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use guestkit_job_spec::{OutputFormat, OutputTemplate};
use tera::Tera;

use super::error::RenderError;
use super::filters;

/// Largest override file read; templates are a few kilobytes.
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;
/// Most files looked at in a templates directory, and deepest nesting.
const MAX_FILES: usize = 512;
const MAX_DEPTH: usize = 4;

/// Where a templated format's templates live and how its values are escaped.
pub struct FormatDir {
    pub format: OutputFormat,
    /// Directory under `templates/` (and under `--templates-dir`).
    pub dir: &'static str,
    /// Suffix of its template files; tera autoescapes by it.
    pub suffix: &'static str,
    pub escape: fn(&str) -> String,
}

/// The templated formats.
pub const FORMATS: [FormatDir; 3] = [
    FormatDir {
        format: OutputFormat::Text,
        dir: "text",
        suffix: ".txt.tera",
        escape: filters::escape_text,
    },
    FormatDir {
        format: OutputFormat::Markdown,
        dir: "markdown",
        suffix: ".md.tera",
        escape: filters::escape_markdown,
    },
    FormatDir {
        format: OutputFormat::Html,
        dir: "html",
        suffix: ".html.tera",
        escape: filters::escape_html,
    },
];

fn format_dir(format: OutputFormat) -> Option<&'static FormatDir> {
    FORMATS.iter().find(|f| f.format == format)
}

macro_rules! builtin {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $path)))),*]
    };
}

/// Every built-in template: its name (path under `templates/`) and source. Compiled
/// in, so an image or a package can never ship without them.
pub const BUILTIN: &[(&str, &str)] = builtin!(
    "text/base.txt.tera",
    "text/macros.txt.tera",
    "text/minimal.txt.tera",
    "text/standard.txt.tera",
    "text/detailed.txt.tera",
    "markdown/base.md.tera",
    "markdown/macros.md.tera",
    "markdown/minimal.md.tera",
    "markdown/standard.md.tera",
    "markdown/detailed.md.tera",
    "html/base.html.tera",
    "html/macros.html.tera",
    "html/minimal.html.tera",
    "html/standard.html.tera",
    "html/detailed.html.tera",
);

/// The template rendered for `format` and `template`, e.g. `html/standard.html.tera`;
/// `None` for the serde formats.
pub fn template_name(format: OutputFormat, template: OutputTemplate) -> Option<String> {
    format_dir(format).map(|f| format!("{}/{}{}", f.dir, template.as_str(), f.suffix))
}

/// Compiles the set of one format: the built-ins of its directory with `overrides`
/// (name -> source) laid over them. The error is the message published in
/// `x-guestkit-render-error` whenever this format is asked for.
pub fn compile(format: OutputFormat, overrides: &BTreeMap<String, String>) -> Result<Tera, String> {
    let fd = format_dir(format).ok_or_else(|| format!("format {format} has no templates"))?;
    let prefix = format!("{}/", fd.dir);
    let mut sources: BTreeMap<&str, &str> = BUILTIN
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, src)| (*name, *src))
        .collect();
    for (name, src) in overrides
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
    {
        sources.insert(name, src);
    }
    let mut tera = Tera::default();
    tera.autoescape_on(vec![fd.suffix]);
    tera.set_escape_fn(fd.escape);
    filters::register(&mut tera);
    tera.add_raw_templates(sources)
        .map_err(|e| error_chain(&e))?;
    Ok(tera)
}

/// Reads the override templates under `dir`: every `*.tera` file below `text/`,
/// `markdown/` or `html/`, named by its path relative to `dir` (so
/// `dir/html/standard.html.tera` replaces the built-in `html/standard.html.tera`).
/// Other files are skipped with a warning.
pub fn read_overrides(dir: &Path) -> Result<BTreeMap<String, String>, RenderError> {
    let meta = std::fs::metadata(dir).map_err(|source| RenderError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(RenderError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    walk(dir, dir, 0, &mut files)?;
    let mut out = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let known_dir = FORMATS
            .iter()
            .any(|f| name.starts_with(&format!("{}/", f.dir)));
        if !known_dir || !name.ends_with(".tera") {
            tracing::warn!(file = %path.display(), "ignoring file in --templates-dir: templates are <text|markdown|html>/<name>.tera");
            continue;
        }
        let size = std::fs::metadata(&path)
            .map_err(|source| RenderError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if size > MAX_TEMPLATE_BYTES {
            return Err(RenderError::TooLarge {
                path,
                size,
                limit: MAX_TEMPLATE_BYTES,
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| RenderError::Io {
            path: path.clone(),
            source,
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| RenderError::NotUtf8 { path: path.clone() })?;
        out.insert(name, text);
    }
    Ok(out)
}

/// Collects the regular files below `dir` (following symlinks), bounded in count and depth.
fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let too_many = || RenderError::TooMany {
        path: root.to_path_buf(),
        limit: MAX_FILES,
        depth: MAX_DEPTH,
    };
    if depth > MAX_DEPTH {
        return Err(too_many());
    }
    let io = |source| RenderError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if files.len() >= MAX_FILES {
            return Err(too_many());
        }
        let meta = std::fs::metadata(&path).map_err(|source| RenderError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(root, &path, depth + 1, files)?;
        } else if meta.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// A tera error with its causes, `outer: inner: ...`: tera's own message only names
/// the template, the cause says what is wrong and where.
pub fn error_chain(err: &tera::Error) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    msg
}

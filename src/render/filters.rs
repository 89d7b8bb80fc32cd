//! The tera filters and escape functions the templates rely on.
//!
//! They exist so templates stay declarative: sizes, versions and durations are shown
//! the same way in every format, text tables can be aligned without arithmetic in
//! tera, and strings that come from a hostile disk image (hostnames, package
//! summaries) stay inert in markdown and on a terminal, as html autoescaping keeps
//! them inert in a browser.

use std::collections::HashMap;

use serde_json::Value;
use tera::{Filter, Tera};

/// What `show` prints for "nothing": null, an empty string, an empty list.
const NONE: &str = "-";

/// Widest column `pad` and `max_len` will produce, so one absurd value cannot
/// make a text report megabytes wide.
const MAX_WIDTH: usize = 200;

/// Registers every filter below on `tera`.
pub fn register(tera: &mut Tera) {
    tera.register_filter("present", present);
    tera.register_filter("head", head);
    tera.register_filter("count", count);
    tera.register_filter("show", show);
    tera.register_filter("bytes", bytes);
    tera.register_filter("duration", duration);
    tera.register_filter("evr", evr);
    tera.register_filter("pad", pad);
    tera.register_filter("max_len", max_len);
    tera.register_filter("underline", underline);
    tera.register_filter("part_type", part_type);
    tera.register_filter("md_cell", Safe(md_cell));
    tera.register_filter("md_code", Safe(md_code));
}

/// A filter whose output is already escaped for its format (markdown), so
/// autoescaping must not escape it twice.
struct Safe<F>(F);

impl<F> Filter for Safe<F>
where
    F: Fn(&Value, &HashMap<String, Value>) -> tera::Result<Value> + Send + Sync,
{
    fn filter(&self, value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
        (self.0)(value, args)
    }

    fn is_safe(&self) -> bool {
        true
    }
}

/// `{% if os.applications | present %}`: whether the value is not null, i.e. the
/// section is in this report (a profile's subset leaves some out). A filter and not
/// tera's `is iterable` test because tera clones the tested value first, and that
/// value may be 3,000 applications.
fn present(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::Bool(!value.is_null()))
}

/// `{% set shown = list | head(n=25) %}`: the first `n` items. Not tera's `slice`,
/// which copies the whole list before cutting it.
fn head(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let n = args
        .get("n")
        .and_then(Value::as_u64)
        .ok_or_else(|| tera::Error::msg("head needs a numeric `n` argument"))?;
    match value {
        Value::Array(items) => Ok(Value::Array(
            items.iter().take(n as usize).cloned().collect(),
        )),
        Value::Null => Ok(Value::Array(Vec::new())),
        _ => Err(tera::Error::msg("head applies to a list")),
    }
}

/// `{{ users | count(attribute="locked", value=false) }}`: how many items have that
/// value. Not tera's `filter | length`, which copies the list twice.
fn count(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let key = args
        .get("attribute")
        .and_then(Value::as_str)
        .ok_or_else(|| tera::Error::msg("count needs an `attribute` argument"))?;
    let want = args.get("value").unwrap_or(&Value::Null);
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Null => &[],
        _ => return Err(tera::Error::msg("count applies to a list")),
    };
    Ok(Value::from(
        items
            .iter()
            .filter(|item| item.get(key) == Some(want))
            .count(),
    ))
}

/// Any value as a person reads it: null and empty as `-`, booleans as yes/no,
/// lists joined with commas, objects as compact JSON.
pub fn display(value: &Value) -> String {
    match value {
        Value::Null => NONE.to_string(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => NONE.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => NONE.to_string(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(", "),
        Value::Object(_) => serde_json::to_string(value).unwrap_or_default(),
    }
}

/// `{{ v | show }}`: see [`display`]. `none="..."` replaces the `-` for nothing.
fn show(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let nothing = match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    match args.get("none").and_then(Value::as_str) {
        Some(none) if nothing => Ok(Value::String(none.to_string())),
        _ => Ok(Value::String(display(value))),
    }
}

/// A byte count with binary units: `10.0 GiB`; `-` when unknown.
pub fn human_bytes(value: &Value) -> String {
    let Some(n) = value.as_u64() else {
        return display(value);
    };
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut size = n as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// `{{ size | bytes }}`: see [`human_bytes`].
fn bytes(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(human_bytes(value)))
}

/// `{{ duration_ms | duration }}`: `850 ms`, `1.50 s`, `2 min 05 s`, `1 h 02 min`.
fn duration(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let Some(ms) = value.as_u64() else {
        return Ok(Value::String(display(value)));
    };
    let text = match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.2} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    };
    Ok(Value::String(text))
}

/// A package's version as its package manager prints it: `[epoch:]version[-release]`.
/// Epoch 0 (reported for a version without one in formats that have epochs) is not
/// printed, as dpkg, rpm and pacman do not print it.
pub fn version_string(app: &Value) -> String {
    let Some(obj) = app.as_object() else {
        return display(app);
    };
    let mut out = String::new();
    if let Some(epoch) = obj
        .get("epoch")
        .filter(|e| !e.is_null() && e.as_u64() != Some(0))
    {
        out.push_str(&display(epoch));
        out.push(':');
    }
    out.push_str(&display(obj.get("version").unwrap_or(&Value::Null)));
    if let Some(release) = obj
        .get("release")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        out.push('-');
        out.push_str(release);
    }
    out
}

/// `{{ app | evr }}`: see [`version_string`].
fn evr(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(version_string(value)))
}

/// `{{ p.type | part_type }}`: the name of a well-known partition type, else the
/// type as the table holds it.
fn part_type(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let shown = value
        .as_str()
        .and_then(super::partition_types::name)
        .map_or_else(|| display(value), str::to_string);
    Ok(Value::String(shown))
}

/// `{{ v | pad(width=12) }}` (or `align="right"`): the shown value padded with
/// spaces to `width` characters, for aligned text tables. Longer values are kept
/// whole: a misaligned row reads better than a cut hostname.
fn pad(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let width = args
        .get("width")
        .and_then(Value::as_u64)
        .ok_or_else(|| tera::Error::msg("pad needs a numeric `width` argument"))?
        .min(MAX_WIDTH as u64) as usize;
    let text = display(value);
    let len = text.chars().count();
    if len >= width {
        return Ok(Value::String(text));
    }
    let fill = " ".repeat(width - len);
    let right = args.get("align").and_then(Value::as_str) == Some("right");
    Ok(Value::String(if right {
        fill + &text
    } else {
        text + &fill
    }))
}

/// `{{ list | max_len(attribute="name", as="show", min=4) }}`: the width in characters
/// of the widest item as it will be displayed (`as` is `show`, `bytes`, `evr` or
/// `part_type`),
/// at least `min`, at most [`MAX_WIDTH`]. `attribute` may be a dotted path; without
/// it, the items themselves are measured. On an object, its keys are measured.
fn max_len(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let keys: Vec<Value>;
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Object(map) => {
            keys = map.keys().map(|k| Value::String(k.clone())).collect();
            keys.as_slice()
        }
        Value::Null => &[],
        _ => return Err(tera::Error::msg("max_len applies to a list or an object")),
    };
    let path: Vec<&str> = match args.get("attribute").and_then(Value::as_str) {
        Some(p) => p.split('.').collect(),
        None => Vec::new(),
    };
    let as_fn: fn(&Value) -> String = match args.get("as").and_then(Value::as_str) {
        None | Some("show") => display,
        Some("bytes") => human_bytes,
        Some("evr") => version_string,
        Some("part_type") => |v: &Value| {
            v.as_str()
                .and_then(super::partition_types::name)
                .map_or_else(|| display(v), str::to_string)
        },
        Some(other) => return Err(tera::Error::msg(format!("max_len: unknown as=\"{other}\""))),
    };
    let min = args.get("min").and_then(Value::as_u64).unwrap_or(0) as usize;
    let widest = items
        .iter()
        .map(|item| {
            let field = path
                .iter()
                .try_fold(item, |v, key| v.get(key))
                .unwrap_or(&Value::Null);
            as_fn(field).chars().count()
        })
        .max()
        .unwrap_or(0);
    Ok(Value::from(widest.max(min).min(MAX_WIDTH)))
}

/// `{{ title | underline(char="=") }}`: `char` repeated as many times as `title`
/// has characters, to underline a heading in text and setext markdown.
fn underline(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let ch = args.get("char").and_then(Value::as_str).unwrap_or("-");
    let len = display(value).chars().count().min(MAX_WIDTH);
    Ok(Value::String(ch.repeat(len)))
}

/// Whether `c` must never reach a terminal or a markdown file as is: control
/// characters (terminal escape sequences start with one) and the bidirectional
/// overrides that make text display in another order than it reads.
fn is_hazard(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The autoescape function of text templates: every control character becomes a
/// space (tab, newline) or U+FFFD, one character for one so column widths hold.
pub fn escape_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if is_hazard(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// The autoescape function of markdown templates (and `md_cell`), so no value can
/// split a table cell, start a new block or inject HTML: backslash-escapes the characters that split table cells
/// or start emphasis, code, links and strikethrough (`_` only where it could),
/// writes `<`, `>` and `&` as entities so no raw HTML gets through, and replaces
/// line breaks with spaces.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        match c {
            // Between two alphanumerics `_` cannot start or end emphasis: leave
            // `x86_64` readable.
            '_' if prev.is_alphanumeric() && next.is_alphanumeric() => out.push(c),
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' | '\t' => out.push(' '),
            c if is_hazard(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
        prev = c;
    }
    out
}

/// The autoescape function of html templates: the five characters that matter in
/// text and quoted attributes become entities, and control characters other than
/// whitespace (parse errors in HTML) become U+FFFD. Unlike tera's default it leaves
/// `/` alone, so paths stay readable in the source.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if is_hazard(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `{{ v | md_cell }}`: the shown value (see [`display`]) escaped for a markdown
/// table cell. Line breaks become spaces: `<br>` would be dropped by renderers that
/// strip raw HTML, gluing the words together.
fn md_cell(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(escape_markdown(&display(value))))
}

/// `{{ text | md_code(lang="json") }}`: a fenced code block holding `text` verbatim,
/// fenced with more backticks than any run inside it so nothing can close it early.
fn md_code(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let lang = args.get("lang").and_then(Value::as_str).unwrap_or("");
    if !lang
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(tera::Error::msg("md_code: `lang` must be a plain word"));
    }
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    // Control characters other than line breaks have no business in a code block.
    let body: String = text
        .chars()
        .map(|c| {
            if c != '\n' && c != '\t' && is_hazard(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    Ok(Value::String(format!("{fence}{lang}\n{body}\n{fence}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(
        f: fn(&Value, &HashMap<String, Value>) -> tera::Result<Value>,
        v: Value,
        args: Value,
    ) -> Value {
        let args: HashMap<String, Value> = serde_json::from_value(args).unwrap();
        f(&v, &args).unwrap()
    }

    #[test]
    fn show_values() {
        assert_eq!(display(&Value::Null), "-");
        assert_eq!(display(&json!("")), "-");
        assert_eq!(display(&json!([])), "-");
        assert_eq!(display(&json!(true)), "yes");
        assert_eq!(display(&json!(false)), "no");
        assert_eq!(display(&json!(["a", 1, null])), "a, 1, -");
        assert_eq!(display(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(
            call(show, Value::Null, json!({"none": "none"})),
            json!("none")
        );
        assert_eq!(call(show, json!("-"), json!({"none": "none"})), json!("-"));
        assert_eq!(call(present, Value::Null, json!({})), json!(false));
        assert_eq!(call(present, json!([]), json!({})), json!(true));
        assert_eq!(call(head, json!([1, 2, 3]), json!({"n": 2})), json!([1, 2]));
        assert_eq!(call(head, json!([1]), json!({"n": 5})), json!([1]));
        let users = json!([{"locked": true}, {"locked": false}, {"locked": false}, {}]);
        assert_eq!(
            call(
                count,
                users.clone(),
                json!({"attribute": "locked", "value": false})
            ),
            json!(2)
        );
        assert_eq!(
            call(count, users, json!({"attribute": "locked", "value": true})),
            json!(1)
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(&json!(0)), "0 B");
        assert_eq!(human_bytes(&json!(1023)), "1023 B");
        assert_eq!(human_bytes(&json!(1024)), "1.0 KiB");
        assert_eq!(human_bytes(&json!(10u64 << 30)), "10.0 GiB");
        assert_eq!(human_bytes(&json!(u64::MAX)), "16.0 EiB");
        assert_eq!(human_bytes(&Value::Null), "-");
        assert_eq!(call(duration, json!(850), json!({})), json!("850 ms"));
        assert_eq!(call(duration, json!(1500), json!({})), json!("1.50 s"));
        assert_eq!(
            call(duration, json!(125_000), json!({})),
            json!("2 min 05 s")
        );
        assert_eq!(
            call(duration, json!(3_720_000), json!({})),
            json!("1 h 02 min")
        );
    }

    #[test]
    fn versions() {
        let app = json!({"name": "bash", "epoch": null, "version": "5.2.15", "release": "2+b7"});
        assert_eq!(version_string(&app), "5.2.15-2+b7");
        let app = json!({"epoch": 1, "version": "3.0.7", "release": "27.el9"});
        assert_eq!(version_string(&app), "1:3.0.7-27.el9");
        let app = json!({"epoch": null, "version": "1.36", "release": null});
        assert_eq!(version_string(&app), "1.36");
        let app = json!({"epoch": 0, "version": "1.36", "release": null});
        assert_eq!(version_string(&app), "1.36");
    }

    #[test]
    fn padding_and_widths() {
        assert_eq!(call(pad, json!("ab"), json!({"width": 4})), json!("ab  "));
        assert_eq!(
            call(pad, json!(7), json!({"width": 3, "align": "right"})),
            json!("  7")
        );
        assert_eq!(
            call(pad, json!("abcdef"), json!({"width": 3})),
            json!("abcdef")
        );
        assert_eq!(call(pad, json!("é"), json!({"width": 2})), json!("é "));
        let list = json!([{"n": "a", "s": {"x": 1024}}, {"n": "abc", "s": {"x": null}}]);
        assert_eq!(
            call(max_len, list.clone(), json!({"attribute": "n"})),
            json!(3)
        );
        assert_eq!(
            call(max_len, list.clone(), json!({"attribute": "n", "min": 5})),
            json!(5)
        );
        assert_eq!(
            call(
                max_len,
                list.clone(),
                json!({"attribute": "s.x", "as": "bytes"})
            ),
            json!(7)
        );
        assert_eq!(call(max_len, json!([]), json!({"min": 2})), json!(2));
        assert_eq!(
            call(max_len, json!({"/boot/efi": "x", "/": "y"}), json!({})),
            json!(9)
        );
        let apps = json!([{"epoch": 1, "version": "2.0", "release": "3.el9"}]);
        assert_eq!(call(max_len, apps, json!({"as": "evr"})), json!(11));
        let parts = json!([{"type": "0x8e"}, {"type": "0x99"}]);
        assert_eq!(
            call(
                max_len,
                parts,
                json!({"attribute": "type", "as": "part_type"})
            ),
            json!(9)
        );
        let long = json!(["x".repeat(10_000)]);
        assert_eq!(call(max_len, long, json!({})), json!(MAX_WIDTH));
    }

    #[test]
    fn markdown_escaping() {
        assert_eq!(escape_markdown(r"a|b\|c"), r"a\|b\\\|c");
        assert_eq!(escape_markdown("x\r\ny\nz"), "x y z");
        assert_eq!(escape_markdown("<script>&"), "&lt;script&gt;&amp;");
        assert_eq!(
            escape_markdown("[a](javascript:x) *b* `c` ~d~ _e_"),
            r"\[a\](javascript:x) \*b\* \`c\` \~d\~ \_e\_"
        );
        assert_eq!(escape_markdown("bell\u{7}\u{202E}"), "bell\u{FFFD}\u{FFFD}");
        assert_eq!(
            escape_markdown("x86_64 _apt a_ __b__ LVM2_member"),
            r"x86_64 \_apt a\_ \_\_b\_\_ LVM2_member"
        );
    }

    #[test]
    fn code_fences_outlast_the_content() {
        let v = call(md_code, json!("a ``` b ```` c"), json!({"lang": "json"}));
        assert_eq!(v, json!("`````json\na ``` b ```` c\n`````"));
        let v = call(md_code, json!({"k": 1}), json!({}));
        assert_eq!(v, json!("```\n{\n  \"k\": 1\n}\n```"));
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
        assert_eq!(
            escape_html("/dev/sda1\n\u{0}\u{1b}"),
            "/dev/sda1\n\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn text_escaping() {
        assert_eq!(escape_text("a\tb\nc\u{1b}[31m"), "a b c\u{FFFD}[31m");
        assert_eq!(escape_text("ok"), "ok");
    }
}

//! Result document -> message body and content type.
//!
//! `json` is the canonical document (serde) and `yaml` its serde twin. `text`,
//! `markdown` and `html` render the same document through the tera templates of
//! `templates/` (compiled in; `--templates-dir` may replace them). A render failure
//! never loses the result: the json document goes out instead, with the failure in
//! `render_error` (header `x-guestkit-render-error`).

mod context;
mod error;
mod filters;
mod partition_types;
mod templates;

use std::path::Path;

use guestkit_job_spec::{OutputFormat, OutputSpec, ResultDocument};
use tera::Tera;

pub use error::RenderError;
pub use templates::{template_name, BUILTIN};

/// Longest `render_error` message: it travels in a message header.
const MAX_ERROR_CHARS: usize = 1024;

/// A rendered result, ready to publish.
pub struct Rendered {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// The format actually used (json after a fallback).
    pub format: OutputFormat,
    /// Why the requested format could not be rendered, when it could not.
    pub render_error: Option<String>,
}

/// Renders results. Holds one compiled template set per templated format, or why
/// that set does not compile (then every render in that format falls back to json).
pub struct Renderer {
    sets: Vec<(OutputFormat, Result<Tera, String>)>,
    shapes: context::Shapes,
}

impl Renderer {
    /// The built-in templates.
    pub fn new() -> Renderer {
        Renderer::build(&Default::default())
    }

    /// The built-in templates with the files of `dir` laid over them (see
    /// `templates/README.md`). Fails only when `dir` cannot be read; a template
    /// that does not compile is logged now and reported by every render in its
    /// format, so a bad override degrades to json results instead of stopping
    /// the worker.
    pub fn with_overrides(dir: &Path) -> Result<Renderer, RenderError> {
        let overrides = templates::read_overrides(dir)?;
        tracing::info!(dir = %dir.display(), templates = ?overrides.keys().collect::<Vec<_>>(), "template overrides loaded");
        Ok(Renderer::build(&overrides))
    }

    fn build(overrides: &std::collections::BTreeMap<String, String>) -> Renderer {
        let sets = templates::FORMATS
            .iter()
            .map(|templates::FormatDir { format, .. }| {
                let set = templates::compile(*format, overrides);
                if let Err(err) = &set {
                    tracing::warn!(format = format.as_str(), error = %err, "templates do not compile; this format will fall back to json");
                }
                (*format, set)
            })
            .collect();
        Renderer {
            sets,
            shapes: context::Shapes::new(),
        }
    }

    /// Renders `result` as `spec` asks, falling back to json on any failure.
    pub fn render(&self, result: &ResultDocument, spec: OutputSpec) -> Rendered {
        let attempt = match spec.format {
            OutputFormat::Json => return json(result, None),
            OutputFormat::Yaml => serde_norway::to_string(result)
                .map(String::into_bytes)
                .map_err(|e| format!("yaml: {e}")),
            _ => self.render_template(result, spec).map(String::into_bytes),
        };
        match attempt {
            Ok(body) => Rendered {
                body,
                content_type: spec.format.content_type(),
                format: spec.format,
                render_error: None,
            },
            Err(err) => {
                let err = bounded(err);
                tracing::warn!(error = %err, format = spec.format.as_str(), template = spec.template.as_str(), job_id = ?result.job_id, "render failed, publishing json");
                json(result, Some(err))
            }
        }
    }

    fn render_template(&self, result: &ResultDocument, spec: OutputSpec) -> Result<String, String> {
        let name = template_name(spec.format, spec.template)
            .ok_or_else(|| format!("format {} has no templates", spec.format))?;
        let tera = self
            .sets
            .iter()
            .find(|(f, _)| *f == spec.format)
            .map(|(_, set)| set.as_ref())
            .ok_or_else(|| format!("format {} has no templates", spec.format))?
            .map_err(|e| format!("{} templates do not compile: {e}", spec.format))?;
        let ctx = context::build(result, spec, &self.shapes)?;
        tera.render(&name, &ctx)
            .map_err(|e| templates::error_chain(&e))
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

/// `msg` cut to [`MAX_ERROR_CHARS`] characters.
fn bounded(msg: String) -> String {
    match msg.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &msg[..at]),
        None => msg,
    }
}

fn json(result: &ResultDocument, render_error: Option<String>) -> Rendered {
    Rendered {
        // Serializing our own types to JSON cannot fail (string keys only).
        body: serde_json::to_vec(result).unwrap_or_default(),
        content_type: OutputFormat::Json.content_type(),
        format: OutputFormat::Json,
        render_error,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::{TimeZone, Utc};
    use guestkit_job_spec::{ErrorKind, JobError, JobStatus, OutputTemplate};
    use serde_json::json;

    use super::*;
    use crate::inspect::report::{Application, OperatingSystem, Report, Service, User};

    fn doc(output: Option<serde_json::Value>) -> ResultDocument {
        let t = Utc.with_ymd_and_hms(2026, 1, 30, 10, 0, 0).unwrap();
        ResultDocument {
            job_id: Some("job-1".into()),
            status: JobStatus::Completed,
            worker_id: "w".into(),
            pool: "default".into(),
            operation: Some("guestkit.inspect".into()),
            attempt: 1,
            started_at: t,
            finished_at: t,
            duration_ms: 0,
            output,
            error: None,
        }
    }

    /// Every tera expression (`{{ ... }}`) of `line`.
    fn expressions(line: &str) -> Vec<&str> {
        line.split("{{")
            .skip(1)
            .filter_map(|s| s.split("}}").next())
            .map(str::trim)
            .collect()
    }

    #[test]
    fn every_builtin_set_compiles_and_has_every_template() {
        let r = Renderer::new();
        for (format, set) in &r.sets {
            let tera = set.as_ref().unwrap_or_else(|e| panic!("{format}: {e}"));
            for template in OutputTemplate::ALL {
                let name = template_name(*format, template).unwrap();
                assert!(tera.get_template_names().any(|n| n == name), "{name}");
            }
        }
        assert_eq!(
            template_name(OutputFormat::Json, OutputTemplate::Standard),
            None
        );
    }

    /// Every template file under `templates/` is compiled in, and nothing else is.
    #[test]
    fn builtin_list_matches_the_templates_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk = Vec::new();
        for templates::FormatDir { dir, .. } in templates::FORMATS {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".tera") {
                    on_disk.push(format!("{dir}/{name}"));
                }
            }
        }
        on_disk.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        builtin.sort();
        assert_eq!(on_disk, builtin);
    }

    /// Every value in a markdown table cell goes through `md_cell`: autoescaping
    /// already keeps cells whole, this keeps the templates saying so explicitly.
    #[test]
    fn markdown_table_cells_use_md_cell() {
        for (name, src) in BUILTIN.iter().filter(|(n, _)| n.starts_with("markdown/")) {
            for line in src.lines().filter(|l| l.starts_with('|')) {
                for expr in expressions(line) {
                    assert!(
                        expr.ends_with("md_cell"),
                        "{name}: `{{{{ {expr} }}}}` in a table cell without md_cell"
                    );
                }
            }
        }
    }

    /// The html page needs nothing from outside and runs nothing: no script, no
    /// external reference, every value escaped, every interpolated attribute quoted.
    #[test]
    fn html_templates_are_self_contained_and_escaped() {
        for (name, src) in BUILTIN.iter().filter(|(n, _)| n.starts_with("html/")) {
            let lower = src.to_lowercase();
            for banned in [
                "<script",
                "http:",
                "https:",
                "src=",
                "<link",
                "url(",
                "@import",
                "| safe",
                "|safe",
                "javascript:",
                " on",
            ] {
                let hit = match banned {
                    // Event-handler attributes (onclick=...), not words like "one".
                    " on" => lower.match_indices(" on").any(|(i, _)| {
                        lower[i + 3..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphabetic())
                            .count()
                            > 2
                            && lower[i + 3..]
                                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                                .starts_with('=')
                    }),
                    _ => lower.contains(banned),
                };
                assert!(!hit, "{name} contains {banned:?}");
            }
            assert!(!src.contains("={{"), "{name}: unquoted attribute value");
        }
    }

    #[test]
    fn yaml_is_serde_and_content_types_follow_the_format() {
        let r = Renderer::new();
        let d = doc(Some(json!({"k": [1, 2]})));
        for format in OutputFormat::ALL {
            let out = r.render(
                &d,
                OutputSpec {
                    format,
                    template: OutputTemplate::Minimal,
                },
            );
            assert_eq!(out.render_error, None, "{format}");
            assert_eq!(out.format, format);
            assert_eq!(out.content_type, format.content_type());
        }
        let yaml = r.render(
            &d,
            OutputSpec {
                format: OutputFormat::Yaml,
                template: OutputTemplate::Standard,
            },
        );
        assert_eq!(
            serde_norway::from_slice::<ResultDocument>(&yaml.body).unwrap(),
            d
        );
    }

    #[test]
    fn failed_and_rejected_results_render_their_error() {
        let r = Renderer::new();
        let mut d = doc(None);
        d.status = JobStatus::Rejected;
        d.error = Some(JobError::new(
            ErrorKind::Invalid,
            "payload.data.image.path: must be absolute",
            false,
        ));
        for format in [
            OutputFormat::Text,
            OutputFormat::Markdown,
            OutputFormat::Html,
        ] {
            for template in OutputTemplate::ALL {
                let out = r.render(&d, OutputSpec { format, template });
                let body = String::from_utf8(out.body).unwrap();
                assert!(
                    body.contains("payload.data.image.path: must be absolute"),
                    "{format}/{template}"
                );
                assert!(
                    body.contains("invalid") && body.contains("rejected"),
                    "{format}/{template}"
                );
            }
        }
    }

    #[test]
    fn error_messages_are_bounded() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(5000);
        let b = bounded(long);
        assert_eq!(b.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(b.ends_with('…'));
    }

    /// Rendering time of a report with 3,000 applications, printed, not asserted:
    /// `cargo test --release --lib render::tests::large -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn large_report_timing() {
        let os = OperatingSystem {
            hostname: Some("big".into()),
            applications: (0..3000)
                .map(|i| Application {
                    name: format!("package-{i}"),
                    epoch: (i % 7 == 0).then_some(1),
                    version: format!("{}.{}.{}", i % 10, i % 13, i % 17),
                    release: Some(format!("{}.el9", i % 5)),
                    arch: Some("x86_64".into()),
                    summary: Some(format!("summary of package {i} with <markup> & a | pipe")),
                    ..Default::default()
                })
                .collect(),
            users: (0..500)
                .map(|i| User {
                    name: format!("user{i}"),
                    uid: 1000 + i,
                    ..User::default()
                })
                .collect(),
            services: (0..500)
                .map(|i| Service {
                    name: format!("svc{i}.service"),
                    enabled: i % 2 == 0,
                    kind: "systemd".into(),
                    ..Default::default()
                })
                .collect(),
            ..OperatingSystem::default()
        };
        let report = Report {
            operating_systems: vec![os],
            ..Report::default()
        };
        let d = doc(Some(serde_json::to_value(report).unwrap()));
        let r = Renderer::new();
        let mut best = std::time::Duration::MAX;
        for _ in 0..20 {
            let start = Instant::now();
            let _ = context::build(&d, OutputSpec::default(), &r.shapes).unwrap();
            best = best.min(start.elapsed());
        }
        eprintln!("context only {best:>9.2?} (best of 20)");
        for format in OutputFormat::ALL {
            for template in OutputTemplate::ALL {
                let spec = OutputSpec { format, template };
                // The fastest of several runs: the machine is shared, the minimum is
                // the least disturbed measurement.
                let mut best = std::time::Duration::MAX;
                let mut len = 0;
                for _ in 0..20 {
                    let start = Instant::now();
                    let out = r.render(&d, spec);
                    best = best.min(start.elapsed());
                    assert_eq!(out.render_error, None);
                    len = out.body.len();
                }
                eprintln!("{format:>8}/{template:<8} {best:>9.2?} (best of 20), {len} bytes");
            }
        }
    }
}

//! Result document -> message body and content type.
//!
//! `json` is the canonical document (serde). Other formats are rendered from the same
//! document; a render failure never loses the result: the json document goes out
//! instead, with the failure in `render_error` (header `x-guestkit-render-error`).

use guestkit_job_spec::{OutputFormat, OutputSpec, ResultDocument};

/// A rendered result, ready to publish.
pub struct Rendered {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// The format actually used (json after a fallback).
    pub format: OutputFormat,
    /// Why the requested format could not be rendered, when it could not.
    pub render_error: Option<String>,
}

/// Renders results. Holds the compiled templates (issue 4 adds text/markdown/html).
pub struct Renderer {}

impl Renderer {
    /// The built-in renderer.
    pub fn new() -> Renderer {
        Renderer {}
    }

    /// Renders `result` as `spec` asks, falling back to json on any failure.
    pub fn render(&self, result: &ResultDocument, spec: OutputSpec) -> Rendered {
        let attempt = match spec.format {
            OutputFormat::Json => return json(result, None),
            OutputFormat::Yaml => serde_norway::to_string(result).map(String::into_bytes).map_err(|e| e.to_string()),
            other => Err(format!("format {} is not available in this build", other.as_str())),
        };
        match attempt {
            Ok(body) => Rendered { body, content_type: spec.format.content_type(), format: spec.format, render_error: None },
            Err(err) => {
                tracing::warn!(error = %err, format = spec.format.as_str(), "render failed, publishing json");
                json(result, Some(err))
            }
        }
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
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

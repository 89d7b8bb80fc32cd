//! The output selection a job makes in `payload.data.output`.
//!
//! Lives in the protocol crate because publishers choose the format, and the
//! `content_type` of the result depends on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::quote;

/// The serialization of a result body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// The result document as JSON (the default).
    #[default]
    Json,
    /// The result document as YAML.
    Yaml,
    /// A plain-text rendering.
    Text,
    /// A Markdown rendering.
    Markdown,
    /// An HTML rendering.
    Html,
}

impl OutputFormat {
    /// Every format, in documentation order.
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Json,
        OutputFormat::Yaml,
        OutputFormat::Text,
        OutputFormat::Markdown,
        OutputFormat::Html,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Yaml => "yaml",
            OutputFormat::Text => "text",
            OutputFormat::Markdown => "markdown",
            OutputFormat::Html => "html",
        }
    }

    /// The AMQP `content_type` of a result in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Yaml => "application/yaml",
            OutputFormat::Text => "text/plain",
            OutputFormat::Markdown => "text/markdown",
            OutputFormat::Html => "text/html",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown output format {}; expected one of json, yaml, text, markdown, html",
                    quote(s)
                )
            })
    }
}

/// How much of the result a rendering shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputTemplate {
    /// The essentials only.
    Minimal,
    /// The usual view (the default).
    #[default]
    Standard,
    /// Everything.
    Detailed,
}

impl OutputTemplate {
    /// Every template, in documentation order.
    pub const ALL: [OutputTemplate; 3] = [
        OutputTemplate::Minimal,
        OutputTemplate::Standard,
        OutputTemplate::Detailed,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputTemplate::Minimal => "minimal",
            OutputTemplate::Standard => "standard",
            OutputTemplate::Detailed => "detailed",
        }
    }
}

impl fmt::Display for OutputTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputTemplate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputTemplate::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown output template {}; expected one of minimal, standard, detailed",
                    quote(s)
                )
            })
    }
}

/// The format and template a job asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Result serialization.
    pub format: OutputFormat,
    /// Level of detail.
    pub template: OutputTemplate,
}

impl OutputSpec {
    /// Read `output.format` and `output.template` from a job's `payload.data`.
    ///
    /// Missing or `null` values take the defaults (`json`, `standard`), as
    /// does data without `output` (or `null` data). Other keys of `output`
    /// (the original protocol's `destination`, `compression`, ...) are
    /// ignored. An unknown value, or a value of the wrong JSON type, is an
    /// error naming the field.
    pub fn from_data(data: &Value) -> Result<OutputSpec, String> {
        let output = match data.get("output") {
            None | Some(Value::Null) => return Ok(OutputSpec::default()),
            Some(Value::Object(o)) => o,
            Some(_) => return Err("payload.data.output must be a JSON object".to_string()),
        };
        let format = match output.get("format") {
            None | Some(Value::Null) => OutputFormat::default(),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|e| format!("payload.data.output.format: {e}"))?,
            Some(_) => return Err("payload.data.output.format must be a string".to_string()),
        };
        let template = match output.get("template") {
            None | Some(Value::Null) => OutputTemplate::default(),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|e| format!("payload.data.output.template: {e}"))?,
            Some(_) => return Err("payload.data.output.template must be a string".to_string()),
        };
        Ok(OutputSpec { format, template })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_when_absent() {
        let default = OutputSpec {
            format: OutputFormat::Json,
            template: OutputTemplate::Standard,
        };
        assert_eq!(OutputSpec::default(), default);
        for data in [
            json!({}),
            Value::Null,
            json!({"image": {"path": "/x"}}),
            json!({"output": null}),
            json!({"output": {}}),
            json!({"output": {"format": null, "template": null}}),
            // The original protocol's output options are ignored.
            json!({"output": {"destination": "/out.json", "compression": null}}),
        ] {
            assert_eq!(OutputSpec::from_data(&data), Ok(default), "{data}");
        }
    }

    #[test]
    fn reads_every_value() {
        for f in OutputFormat::ALL {
            for t in OutputTemplate::ALL {
                let data = json!({"output": {"format": f.as_str(), "template": t.as_str()}});
                assert_eq!(
                    OutputSpec::from_data(&data),
                    Ok(OutputSpec {
                        format: f,
                        template: t
                    })
                );
            }
        }
    }

    #[test]
    fn unknown_or_mistyped_values_are_errors() {
        let err = OutputSpec::from_data(&json!({"output": {"format": "pdf"}})).unwrap_err();
        assert_eq!(
            err,
            r#"payload.data.output.format: unknown output format "pdf"; expected one of json, yaml, text, markdown, html"#
        );
        let err = OutputSpec::from_data(&json!({"output": {"template": "JSON"}})).unwrap_err();
        assert!(
            err.starts_with("payload.data.output.template: unknown output template \"JSON\""),
            "{err}"
        );
        assert_eq!(
            OutputSpec::from_data(&json!({"output": "json"})).unwrap_err(),
            "payload.data.output must be a JSON object"
        );
        assert_eq!(
            OutputSpec::from_data(&json!({"output": {"format": 1}})).unwrap_err(),
            "payload.data.output.format must be a string"
        );
        assert_eq!(
            OutputSpec::from_data(&json!({"output": {"template": ["minimal"]}})).unwrap_err(),
            "payload.data.output.template must be a string"
        );
    }

    #[test]
    fn content_types() {
        let got: Vec<_> = OutputFormat::ALL.iter().map(|f| f.content_type()).collect();
        assert_eq!(
            got,
            [
                "application/json",
                "application/yaml",
                "text/plain",
                "text/markdown",
                "text/html"
            ]
        );
    }

    #[test]
    fn text_and_serde_spellings_agree() {
        for f in OutputFormat::ALL {
            assert_eq!(f.to_string().parse::<OutputFormat>(), Ok(f));
            assert_eq!(serde_json::to_value(f).unwrap(), json!(f.as_str()));
            assert_eq!(
                serde_json::from_value::<OutputFormat>(json!(f.as_str())).unwrap(),
                f
            );
        }
        for t in OutputTemplate::ALL {
            assert_eq!(t.to_string().parse::<OutputTemplate>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
            assert_eq!(
                serde_json::from_value::<OutputTemplate>(json!(t.as_str())).unwrap(),
                t
            );
        }
        let spec = OutputSpec {
            format: OutputFormat::Html,
            template: OutputTemplate::Detailed,
        };
        assert_eq!(
            serde_json::to_value(spec).unwrap(),
            json!({"format": "html", "template": "detailed"})
        );
    }
}

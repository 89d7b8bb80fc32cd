//! The variables a template sees.
//!
//! Templates get the result document as is (its fields at the top level and as
//! `result`), plus what would be awkward to work out in tera: which shape `output`
//! has (`kind`), and the inspection report and profile findings with every key of
//! `shared/INSPECTION.md` present. Reports are produced by this worker and carry
//! every key already, but a profile's `inspection` may be a subset, and a template
//! that touches a missing key fails: filling the gaps here lets one set of report
//! templates serve both.

use guestkit_job_spec::{OutputSpec, ResultDocument};
use serde_json::{json, Map, Value};
use tera::Context;

use crate::inspect::report::{
    Application, FilesystemInfo, Interface, Kernel, LogicalVolumeInfo, Network, OperatingSystem,
    PartitionInfo, Report, Service, User, VolumeGroupInfo,
};

/// Severities of profile findings, most severe first.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// The shapes templates fill gaps from, built once per renderer. Arrays hold one
/// element: the shape of every element of that array.
pub struct Shapes {
    report: Value,
    profile: Value,
}

impl Shapes {
    pub fn new() -> Shapes {
        let os = OperatingSystem {
            applications: vec![Application::default()],
            users: vec![User::default()],
            services: vec![Service::default()],
            network: Network {
                interfaces: vec![Interface::default()],
                dns_servers: Vec::new(),
            },
            kernels: vec![Kernel::default()],
            ..OperatingSystem::default()
        };
        let report = Report {
            partitions: vec![PartitionInfo::default()],
            volume_groups: vec![VolumeGroupInfo {
                logical_volumes: vec![LogicalVolumeInfo::default()],
                ..VolumeGroupInfo::default()
            }],
            filesystems: vec![FilesystemInfo::default()],
            operating_systems: vec![os],
            ..Report::default()
        };
        let finding = json!({
            "id": null, "severity": null, "title": null,
            "evidence": {"file": null, "line": null}, "remediation": null,
        });
        let summary: Map<String, Value> = SEVERITIES
            .iter()
            .map(|s| (s.to_string(), Value::Null))
            .collect();
        Shapes {
            report: serde_json::to_value(report).unwrap_or_default(),
            profile: json!({"profiles": [], "findings": [finding], "summary": summary}),
        }
    }
}

impl Default for Shapes {
    fn default() -> Self {
        Shapes::new()
    }
}

/// What `output` is, for templates to choose their sections.
fn kind(output: Option<&Value>) -> &'static str {
    let is_array = |key: &str| output.and_then(|o| o.get(key)).is_some_and(Value::is_array);
    match output {
        None | Some(Value::Null) => "none",
        _ if is_array("findings") => "profile",
        _ if is_array("operating_systems") => "inspection",
        _ => "data",
    }
}

/// The tera context for rendering `doc` as `spec` asks:
/// - every field of the result document (`job_id`, `status`, ..., `output`, and
///   `error`, null when absent), and all but `output` again as `job`, one object
///   to hand to macros (which see only their arguments);
/// - `kind`: `inspection`, `profile`, `data` (any other output) or `none`;
/// - `report`: the inspection report (the output, or a profile's `inspection`),
///   with every key present (null where a profile's subset leaves it out); null
///   when there is none;
/// - `profile`: `{profiles, findings, summary}` with every key present, the
///   findings most severe first, and the summary counted from the findings where
///   the output has no count; null unless `output.findings` is a list;
/// - `format`, `template`, `generator`.
pub fn build(doc: &ResultDocument, spec: OutputSpec, shapes: &Shapes) -> Result<Context, String> {
    // Built as one owned map: `Context::insert` would deep-copy every value again,
    // and a report can hold thousands of applications.
    let output = doc.output.as_ref();
    let mut vars = match serde_json::to_value(doc) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("the result document is not a JSON object".into()),
        Err(e) => return Err(format!("cannot serialize the result: {e}")),
    };
    vars.entry("error").or_insert(Value::Null);
    let output_value = vars.remove("output").unwrap_or(Value::Null);
    let job = Value::Object(vars.clone());
    vars.insert("output".into(), output_value);
    vars.insert("job".into(), job);
    let kind = kind(output);
    let (report, profile) = match (kind, output) {
        ("inspection", Some(out)) => (filled(out, &shapes.report), Value::Null),
        ("profile", Some(out)) => {
            let report = match out.get("inspection") {
                Some(inspection @ Value::Object(_)) => filled(inspection, &shapes.report),
                _ => Value::Null,
            };
            (report, profile(out, &shapes.profile))
        }
        _ => (Value::Null, Value::Null),
    };
    vars.insert("kind".into(), kind.into());
    vars.insert("report".into(), report);
    vars.insert("profile".into(), profile);
    vars.insert("format".into(), spec.format.as_str().into());
    vars.insert("template".into(), spec.template.as_str().into());
    vars.insert(
        "generator".into(),
        concat!("guestkit-worker ", env!("CARGO_PKG_VERSION")).into(),
    );
    Context::from_value(Value::Object(vars)).map_err(|e| e.to_string())
}

/// A profile's findings section: the keys the templates use, filled, and the
/// summary's missing counts counted.
fn profile(out: &Value, shape: &Value) -> Value {
    let mut subset = Map::new();
    for key in ["profiles", "findings", "summary"] {
        if let Some(v) = out.get(key) {
            subset.insert(key.to_string(), v.clone());
        }
    }
    let mut profile = filled(&Value::Object(subset), shape);
    // Most severe first (stable: the operation's order within a severity).
    if let Some(findings) = profile["findings"].as_array_mut() {
        let rank = |f: &Value| {
            SEVERITIES
                .iter()
                .position(|s| f["severity"] == *s)
                .unwrap_or(SEVERITIES.len())
        };
        findings.sort_by_key(rank);
    }
    let counts: Vec<usize> = SEVERITIES
        .iter()
        .map(|sev| {
            profile["findings"]
                .as_array()
                .map_or(0, |f| f.iter().filter(|x| x["severity"] == *sev).count())
        })
        .collect();
    if !profile["summary"].is_object() {
        profile["summary"] = Value::Object(Map::new());
    }
    if let Some(summary) = profile["summary"].as_object_mut() {
        for (sev, count) in SEVERITIES.iter().zip(counts) {
            if summary.get(*sev).is_none_or(Value::is_null) {
                summary.insert(sev.to_string(), Value::from(count));
            }
        }
    }
    profile
}

/// `value` with every key of `shape` present: a missing key is added as null,
/// recursively, and every element of a list is filled from the list's one-element
/// shape. Null, not an empty value, so templates can tell "not in this report"
/// (a profile's subset: the section is left out) from "found nothing" (`[]`).
fn filled(value: &Value, shape: &Value) -> Value {
    let mut v = value.clone();
    fill(&mut v, shape);
    v
}

fn fill(value: &mut Value, shape: &Value) {
    match (value, shape) {
        (Value::Object(map), Value::Object(fields)) => {
            for (key, field_shape) in fields {
                match map.get_mut(key) {
                    Some(v) => fill(v, field_shape),
                    None => {
                        map.insert(key.clone(), Value::Null);
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(element)) => {
            if let Some(element_shape) = element.first() {
                for item in items {
                    fill(item, element_shape);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind(None), "none");
        assert_eq!(kind(Some(&Value::Null)), "none");
        assert_eq!(kind(Some(&json!({"operating_systems": []}))), "inspection");
        assert_eq!(
            kind(Some(
                &json!({"findings": [], "inspection": {"operating_systems": []}})
            )),
            "profile"
        );
        assert_eq!(kind(Some(&json!({"operating_systems": "x"}))), "data");
        assert_eq!(kind(Some(&json!([1, 2]))), "data");
    }

    #[test]
    fn a_report_subset_gets_every_key() {
        let shapes = Shapes::new();
        let full = serde_json::to_value(Report::default()).unwrap();
        let subset = json!({"operating_systems": [{"hostname": "h", "security": {"selinux": "enforcing"}, "users": [{"name": "root"}]}]});
        let got = filled(&subset, &shapes.report);
        for key in full.as_object().unwrap().keys() {
            assert!(got.get(key).is_some(), "{key} missing");
        }
        let os = &got["operating_systems"][0];
        assert_eq!(os["hostname"], "h");
        assert_eq!(os["applications"], Value::Null, "absent, not empty");
        assert_eq!(os["security"]["selinux"], "enforcing");
        assert_eq!(os["security"]["ssh"], Value::Null);
        assert_eq!(os["users"][0]["name"], "root");
        assert_eq!(os["users"][0]["uid"], Value::Null);
        assert_eq!(got["image"], Value::Null);
        // A full report is left as it is.
        let report = serde_json::to_value(Report {
            operating_systems: vec![OperatingSystem::default()],
            ..Report::default()
        })
        .unwrap();
        assert_eq!(filled(&report, &shapes.report), report);
    }

    #[test]
    fn profile_summary_counts_what_is_missing() {
        let shapes = Shapes::new();
        let out = json!({
            "profiles": ["security"],
            "findings": [{"id": "a", "severity": "high"}, {"id": "b", "severity": "high"}, {"id": "c", "severity": "low"}],
            "summary": {"critical": 0, "high": 2},
        });
        let p = profile(&out, &shapes.profile);
        assert_eq!(
            p["summary"],
            json!({"critical": 0, "high": 2, "medium": 0, "low": 1, "info": 0})
        );
        assert_eq!(p["findings"][0]["evidence"], Value::Null);
        assert_eq!(p["findings"][2]["remediation"], Value::Null);
        let ids: Vec<_> = p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
        let out = json!({"findings": [{"id": "x", "severity": "low"}, {"id": "y", "severity": "critical"}, {"id": "z"}]});
        let p = profile(&out, &shapes.profile);
        let ids: Vec<_> = p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        assert_eq!(
            ids,
            [json!("y"), json!("x"), json!("z")],
            "most severe first, unknown last"
        );
        assert_eq!(
            p["summary"],
            json!({"critical": 1, "high": 0, "medium": 0, "low": 1, "info": 0})
        );
        assert_eq!(p["profiles"], Value::Null);
    }
}

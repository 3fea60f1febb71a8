//! `GET /metrics`: every counter of every instance in the Prometheus text
//! exposition format (version 0.0.4), so a node's scraper needs no adapter.
//!
//! The JSON shapes of the upstream API are the source: numeric fields become
//! samples named `nydusd_<section>_<field>`, arrays get an `index` label, and
//! each sample carries the instance's `mountpoint`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::Metrics;

/// Renders all metric sets of `metrics`.
pub fn render(metrics: &Metrics) -> String {
    // name -> lines, so each metric family is contiguous with one TYPE line.
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (section, mountpoint, value) in metrics.all_sections() {
        let mut labels = vec![("mountpoint".to_string(), mountpoint)];
        flatten(
            &mut families,
            &format!("nydusd_{section}"),
            &value,
            &mut labels,
        );
    }
    let mut out = String::new();
    for (name, lines) in families {
        let _ = writeln!(out, "# TYPE {name} untyped");
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn flatten(
    families: &mut BTreeMap<String, Vec<String>>,
    name: &str,
    value: &Value,
    labels: &mut Vec<(String, String)>,
) {
    match value {
        Value::Number(n) => {
            let sample = n.as_f64().unwrap_or(0.0);
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            families
                .entry(name.to_string())
                .or_default()
                .push(format!("{name}{{{}}} {sample}", labels.join(",")));
        }
        Value::Bool(b) => flatten(families, name, &Value::from(u8::from(*b)), labels),
        Value::Object(map) => {
            for (key, v) in map {
                flatten(families, &format!("{name}_{}", sanitize(key)), v, labels);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                labels.push((format!("index{}", labels.len()), i.to_string()));
                flatten(families, name, v, labels);
                labels.pop();
            }
        }
        // Strings (ids, paths) are labels of other samples, not samples.
        Value::String(_) | Value::Null => {}
    }
}

fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_json_becomes_labelled_samples() {
        let mut families = BTreeMap::new();
        let v = serde_json::json!({"data_read": 7, "buckets": [1, 2], "id": "x", "ok": true});
        let mut labels = vec![("mountpoint".to_string(), "/a\"b".to_string())];
        flatten(&mut families, "nydusd_fs", &v, &mut labels);
        assert_eq!(
            families["nydusd_fs_data_read"],
            vec![r#"nydusd_fs_data_read{mountpoint="/a\"b"} 7"#]
        );
        assert_eq!(families["nydusd_fs_buckets"].len(), 2);
        assert!(families["nydusd_fs_buckets"][1].contains(r#"index1="1""#));
        assert_eq!(
            families["nydusd_fs_ok"],
            vec![r#"nydusd_fs_ok{mountpoint="/a\"b"} 1"#]
        );
        assert!(!families.contains_key("nydusd_fs_id"));
    }
}

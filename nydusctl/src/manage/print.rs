//! Terminal output of `list` and `stats`.

use nydus_protocol::handoff::MountInfo;
use serde_json::Value;

pub fn table(mounts: &[MountInfo]) -> String {
    let mut out = format!(
        "{:<6} {:<10} {:>8} {:>4} {:>7}  {}\n",
        "ID", "STATUS", "PID", "GEN", "CRASHES", "MOUNTPOINT"
    );
    for m in mounts {
        let status = serde_json::to_value(&m.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<6} {:<10} {:>8} {:>4} {:>7}  {}\n",
            m.id,
            status,
            m.pid.map_or("-".into(), |p| p.to_string()),
            m.generation,
            m.crashes,
            if m.vhost_user {
                format!("{} (virtio-fs)", m.mountpoint)
            } else {
                m.mountpoint.clone()
            }
        ));
        if let Some(e) = &m.last_error {
            out.push_str(&format!("       error: {e}\n"));
        }
    }
    out.trim_end().to_string()
}

pub fn stats(m: &MountInfo, v: &Value, json: bool, prometheus: bool) -> String {
    if json {
        return serde_json::json!({ "id": m.id, "metrics": v }).to_string();
    }
    let mut flat = Vec::new();
    flatten("", v, &mut flat);
    if prometheus {
        return flat
            .iter()
            .map(|(k, n)| format!("nydus_{k}{{id=\"{}\"}} {n}", m.id))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut out = format!("{} ({})\n", m.id, m.mountpoint);
    for (k, n) in flat {
        out.push_str(&format!("  {k:<40} {n}\n"));
    }
    out.trim_end().to_string()
}

/// Numeric leaves as `a_b_c` → value.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let key: String = k
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let p = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}_{key}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        Value::Bool(b) => out.push((prefix.to_string(), u8::from(*b).to_string())),
        _ => {}
    }
}

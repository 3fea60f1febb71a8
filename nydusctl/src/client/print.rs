//! Human-readable renderings of the daemon's replies, in upstream nydusctl's
//! layout (labels, column widths, and JSON-rendered scalars where upstream
//! prints them that way, quotes included) so scripts that scrape it keep
//! working. Missing or mistyped fields print as 0/empty instead of failing.

use std::fmt::Write;

use serde_json::Value;

const SIZES: [&str; 8] = ["<1K", "1K~", "4K~", "16K~", "64K~", "128K~", "512K~", "1M~"];
const PERIODS: [&str; 8] = [
    "<1ms", "~20ms", "~50ms", "~100ms", "~500ms", "~1s", "~2s", "2s~",
];
const FOPS: [&str; 15] = [
    "Getattr",
    "Readlink",
    "Open",
    "Release",
    "Read",
    "Statfs",
    "Getxattr",
    "Listxattr",
    "Opendir",
    "Lookup",
    "Readdir",
    "Readdirplus",
    "Access",
    "Forget",
    "BatchForget",
];

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// `key` as a list of `n` counters, zero-padded.
fn list(v: &Value, key: &str, n: usize) -> Vec<u64> {
    let mut out: Vec<u64> = v[key]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default();
    out.resize(n, 0);
    out
}

/// `a / b`, or 0 when `b` is 0 (upstream prints NaN/inf there).
fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

fn row(out: &mut String, label: &str, width: usize, cells: impl IntoIterator<Item = String>) {
    let _ = write!(out, "{label:<width$}");
    for c in cells {
        let _ = write!(out, "{c:<8}");
    }
    out.push('\n');
}

/// `nydusctl info`.
pub fn info(v: &Value) -> String {
    let ver = &v["version"];
    let mut out = format!(
        "\nVersion:                {}\nStatus:                 {}\nProfile:                {}\nCommit:                 {}\n",
        ver["package_ver"], v["state"], ver["profile"], ver["git_commit"]
    );
    let Some(instances) = v["backend_collection"].as_object() else {
        return out;
    };
    if !instances.is_empty() {
        out.push_str("Instances:\n");
    }
    for (mountpoint, b) in instances {
        let text = |x: &Value| {
            x.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string())
        };
        let _ = writeln!(out, "\tInstance Mountpoint:  {mountpoint}");
        let _ = writeln!(out, "\tType:  {}", text(&b["backend_type"]));
        let _ = writeln!(out, "\tMounted Time:  {}", text(&b["mounted_time"]));
        if b["backend_type"] == "Rafs" {
            let cfg = &b["config"];
            let prefetch = &cfg["cache"]["prefetch"];
            let mode = cfg["rafs"]["mode"].as_str().unwrap_or("direct");
            let _ = writeln!(out, "\tMode:  {mode}");
            let _ = writeln!(
                out,
                "\tPrefetch:  {}",
                prefetch["enable"].as_bool().unwrap_or(false)
            );
            let _ = writeln!(
                out,
                "\tPrefetch Merging Size:  {}",
                u(prefetch, "batch_size")
            );
            out.push('\n');
        }
    }
    out
}

/// `nydusctl metrics backend`.
pub fn backend(m: &Value) -> String {
    let amount = u(m, "read_amount_total");
    let mut out = format!(
        "\nBackend Type:       {}\nRead Amount:        {} Bytes ({} MB)\nRead Count:         {}\nRead Errors:        {}\n",
        m["backend_type"],
        amount,
        amount as f64 / 1024.0 / 1024.0,
        u(m, "read_count"),
        u(m, "read_errors"),
    );
    let lat = list(m, "read_cumulative_latency_millis_dist", 8);
    let hits = list(m, "read_count_block_size_dist", 8);
    let sizes = || SIZES.iter().map(|s| s.to_string());
    out.push('\n');
    row(&mut out, "Block Sizes:", 25, sizes());
    row(
        &mut out,
        "Average Latency(millis):",
        25,
        (0..8).map(|i| lat[i].checked_div(hits[i]).unwrap_or(0).to_string()),
    );
    out.push('\n');
    row(&mut out, "Block Sizes:", 25, sizes());
    row(
        &mut out,
        "Request Count:",
        25,
        hits.iter().map(u64::to_string),
    );
    out
}

/// One `metrics backend --interval` step: the change between two samples
/// taken `secs` apart.
pub fn backend_delta(old: &Value, new: &Value, secs: u64) -> String {
    let d = |k: &str| u(new, k).saturating_sub(u(old, k));
    let dv = |k: &str| {
        let (a, b) = (list(old, k, 8), list(new, k, 8));
        (0..8)
            .map(|i| b[i].saturating_sub(a[i]))
            .collect::<Vec<_>>()
    };
    let (data, reqs, lat) = (
        d("read_amount_total"),
        d("read_count"),
        d("read_cumulative_latency_millis_total"),
    );
    let (lat_dist, hits) = (
        dv("read_cumulative_latency_millis_dist"),
        dv("read_count_block_size_dist"),
    );
    let mut out = format!(
        "\n>>> >>> >>> >>> >>>\nBackend Read Bandwidth:     {} KB/S\nBackend Average IO Size:    {} Bytes\nBackend Average Latency:    {} millis\n\nBlock Sizes/millis:\n",
        data.checked_div(secs.saturating_mul(1024)).unwrap_or(0),
        data.checked_div(reqs).unwrap_or(0),
        lat.checked_div(reqs).unwrap_or(0),
    );
    row(&mut out, "", 0, SIZES.iter().map(|s| s.to_string()));
    row(
        &mut out,
        "",
        0,
        (0..8).map(|i| lat_dist[i].checked_div(hits[i]).unwrap_or(0).to_string()),
    );
    out.push_str("<<< <<< <<< <<< <<<\n");
    out
}

/// `nydusctl metrics cache`.
pub fn cache(m: &Value) -> String {
    let secs = |s: &str, ms: &str| f(m, s) + f(m, ms) / 1000.0;
    let duration = secs("prefetch_end_time_secs", "prefetch_end_time_millis")
        - secs("prefetch_begin_time_secs", "prefetch_begin_time_millis");
    let amount = f(m, "prefetch_data_amount");
    let requests = u(m, "prefetch_requests_count");
    format!(
        "
Partial Hits:               {}
Whole Hits:                 {}
Total Read:                 {}
Directory:                  {}
Files:                      {}
Persister Buffer:           {}

Prefetch Workers:           {}
Prefetch Amount:            {} = {} KB
Prefetch Requests:          {}
Prefetch Average Size:      {} Bytes
Prefetch Duration:          {} Seconds
Prefetch Bandwidth:         {} MB/S
Prefetch Request Latency:   {} Seconds
Prefetch Unmerged:          {}
",
        m["partial_hits"],
        m["whole_hits"],
        m["total"],
        m["store_path"],
        m["underlying_files"],
        m["buffered_backend_size"],
        m["prefetch_workers"],
        amount,
        amount / 1024.0,
        requests,
        u(m, "prefetch_data_amount")
            .checked_div(requests)
            .unwrap_or(0),
        duration,
        div(amount / 1024.0 / 1024.0, duration),
        div(f(m, "prefetch_cumulative_time_millis"), requests as f64) / 1000.0,
        m["prefetch_unmerged_chunks"],
    )
}

/// `nydusctl metrics fsstats`.
pub fn fsstats(m: &Value) -> String {
    let hits = list(m, "fop_hits", FOPS.len());
    let errors = list(m, "fop_errors", FOPS.len());
    let mut out = String::from("\n");
    row(
        &mut out,
        "Read Latency:",
        16,
        PERIODS.iter().map(|s| s.to_string()),
    );
    row(
        &mut out,
        "Reads Count:",
        16,
        list(m, "read_latency_dist", 8).iter().map(u64::to_string),
    );
    let data = u(m, "data_read");
    let _ = write!(
        out,
        "\nRead Errors: {}\nRead Data: {}Bytes ({}MB)\n\nFOP Counters:\n",
        errors[4],
        data,
        data / 1024 / 1024
    );
    let counter = |i: usize| format!("{}({})", FOPS[i], hits[i]);
    let line = |r: std::ops::Range<usize>| r.map(counter).collect::<Vec<_>>().join(" ");
    let _ = writeln!(out, "{}\n{}", line(0..8), line(8..15));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn info_lists_instances() {
        let v = json!({
            "version": {"package_ver": "v1", "profile": "release", "git_commit": "abc"},
            "state": "RUNNING",
            "backend_collection": {"/": {"backend_type": "Rafs", "mounted_time": "t0",
                "config": {"rafs": {"mode": "cached"},
                           "cache": {"prefetch": {"enable": true, "batch_size": 1048576}}}}}
        });
        let s = info(&v);
        assert!(s.contains("Version:                \"v1\"\n"), "{s}");
        assert!(s.contains("Status:                 \"RUNNING\"\n"), "{s}");
        assert!(
            s.contains(
                "Instances:\n\tInstance Mountpoint:  /\n\tType:  Rafs\n\tMounted Time:  t0\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("\tMode:  cached\n\tPrefetch:  true\n\tPrefetch Merging Size:  1048576\n"),
            "{s}"
        );
        // No collection (v2 shape), or garbage: still prints the header.
        assert!(info(&json!({"backend_collection": null})).contains("Status:"));
        assert!(info(&json!("garbage")).contains("Version:"));
    }

    #[test]
    fn backend_table() {
        let m = json!({"backend_type": "registry", "read_amount_total": 2097152, "read_count": 4,
            "read_errors": 1, "read_cumulative_latency_millis_dist": [10, 0, 0, 0, 0, 0, 0, 30],
            "read_count_block_size_dist": [5, 0, 0, 0, 0, 0, 0, 3]});
        let s = backend(&m);
        assert!(s.contains("Backend Type:       \"registry\"\n"), "{s}");
        assert!(
            s.contains("Read Amount:        2097152 Bytes (2 MB)\n"),
            "{s}"
        );
        assert!(
            s.contains("Average Latency(millis): 2       0       "),
            "{s}"
        );
        assert!(s.contains("Request Count:           5       0"), "{s}");
        let d = backend_delta(&json!({"read_amount_total": 0}), &m, 2);
        assert!(d.contains("Backend Read Bandwidth:     1024 KB/S"), "{d}");
        assert!(
            d.contains("Backend Average IO Size:    524288 Bytes"),
            "{d}"
        );
        // Counters going backwards (daemon restarted) must not panic.
        assert!(backend_delta(&m, &json!({}), 0).contains("0 KB/S"));
    }

    #[test]
    fn cache_and_fsstats() {
        let m = json!({"partial_hits": 1, "whole_hits": 2, "total": 3, "store_path": "/c",
            "underlying_files": ["a.blob.data"], "prefetch_data_amount": 2048,
            "prefetch_requests_count": 2, "prefetch_begin_time_secs": 10, "prefetch_begin_time_millis": 0,
            "prefetch_end_time_secs": 12, "prefetch_end_time_millis": 0,
            "prefetch_cumulative_time_millis": 400});
        let s = cache(&m);
        assert!(
            s.contains("Files:                      [\"a.blob.data\"]\n"),
            "{s}"
        );
        assert!(
            s.contains("Prefetch Amount:            2048 = 2 KB\n"),
            "{s}"
        );
        assert!(
            s.contains("Prefetch Average Size:      1024 Bytes\n"),
            "{s}"
        );
        assert!(s.contains("Prefetch Duration:          2 Seconds\n"), "{s}");
        assert!(
            s.contains("Prefetch Request Latency:   0.2 Seconds\n"),
            "{s}"
        );
        assert!(!cache(&json!({})).contains("NaN"));

        let mut hits = vec![0; 15];
        hits[4] = 7;
        let m = json!({"fop_hits": hits, "fop_errors": [0, 0, 0, 0, 2], "data_read": 3145728,
            "read_latency_dist": [1, 2, 3, 4, 5, 6, 7, 8]});
        let s = fsstats(&m);
        assert!(s.contains("Read Latency:   <1ms    ~20ms   "), "{s}");
        assert!(s.contains("Reads Count:    1       2       3"), "{s}");
        assert!(
            s.contains("Read Errors: 2\nRead Data: 3145728Bytes (3MB)\n"),
            "{s}"
        );
        assert!(
            s.contains("Getattr(0) Readlink(0) Open(0) Release(0) Read(7) Statfs(0)"),
            "{s}"
        );
        assert!(s.contains("\nOpendir(0) Lookup(0) Readdir(0) Readdirplus(0) Access(0) Forget(0) BatchForget(0)\n"), "{s}");
    }
}

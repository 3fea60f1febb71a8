//! Human-readable renderings of the daemon's replies, in upstream nydusctl's
//! layout (labels, column widths, and JSON-rendered strings where upstream
//! prints them that way, quotes included) so scripts that scrape it keep
//! working. Replies are read leniently: missing fields print as 0/empty.

use std::fmt::Write;

use nydus_protocol::api::{BackendMetrics, BlobcacheMetrics, DaemonInfo, FsMetrics};
use serde::Serialize;
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

/// A value as JSON text, the way upstream prints strings (quoted).
fn js<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
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
pub fn info(v: &DaemonInfo) -> String {
    let ver = &v.version;
    let mut out = format!(
        "\nVersion:                {}\nStatus:                 {}\nProfile:                {}\nCommit:                 {}\n",
        js(&ver.package_ver),
        js(&v.state),
        js(&ver.profile),
        js(&ver.git_commit)
    );
    let Some(instances) = &v.backend_collection else {
        return out;
    };
    if !instances.is_empty() {
        out.push_str("Instances:\n");
    }
    for (mountpoint, b) in instances {
        let _ = writeln!(out, "\tInstance Mountpoint:  {mountpoint}");
        let _ = writeln!(out, "\tType:  {}", b.backend_type);
        let _ = writeln!(out, "\tMounted Time:  {}", b.mounted_time);
        if b.backend_type == "Rafs" {
            let cfg = b.config.as_ref().unwrap_or(&Value::Null);
            let prefetch = &cfg["cache"]["prefetch"];
            let mode = cfg["rafs"]["mode"].as_str().unwrap_or("direct");
            let _ = writeln!(out, "\tMode:  {mode}");
            let _ = writeln!(
                out,
                "\tPrefetch:  {}",
                prefetch["enable"].as_bool().unwrap_or(false)
            );
            let merging = prefetch["batch_size"].as_u64().unwrap_or(0);
            let _ = writeln!(out, "\tPrefetch Merging Size:  {merging}");
            out.push('\n');
        }
    }
    out
}

/// `nydusctl metrics backend`.
pub fn backend(m: &BackendMetrics) -> String {
    let amount = m.read_amount_total;
    let mut out = format!(
        "\nBackend Type:       {}\nRead Amount:        {} Bytes ({} MB)\nRead Count:         {}\nRead Errors:        {}\n",
        js(&m.backend_type),
        amount,
        amount as f64 / 1024.0 / 1024.0,
        m.read_count,
        m.read_errors,
    );
    let lat = &m.read_cumulative_latency_millis_dist;
    let hits = &m.read_count_block_size_dist;
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
/// taken `secs` apart (counters going backwards, after a restart, give 0).
pub fn backend_delta(old: &BackendMetrics, new: &BackendMetrics, secs: u64) -> String {
    let data = new.read_amount_total.saturating_sub(old.read_amount_total);
    let reqs = new.read_count.saturating_sub(old.read_count);
    let lat = new
        .read_cumulative_latency_millis_total
        .saturating_sub(old.read_cumulative_latency_millis_total);
    let dv = |a: &[u64; 8], b: &[u64; 8]| -> [u64; 8] {
        std::array::from_fn(|i| b[i].saturating_sub(a[i]))
    };
    let lat_dist = dv(
        &old.read_cumulative_latency_millis_dist,
        &new.read_cumulative_latency_millis_dist,
    );
    let hits = dv(
        &old.read_count_block_size_dist,
        &new.read_count_block_size_dist,
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
pub fn cache(m: &BlobcacheMetrics) -> String {
    let secs = |s: u64, ms: u64| s as f64 + ms as f64 / 1000.0;
    let duration = secs(m.prefetch_end_time_secs, m.prefetch_end_time_millis)
        - secs(m.prefetch_begin_time_secs, m.prefetch_begin_time_millis);
    let amount = m.prefetch_data_amount as f64;
    let requests = m.prefetch_requests_count;
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
        m.partial_hits,
        m.whole_hits,
        m.total,
        js(&m.store_path),
        js(&m.underlying_files),
        m.buffered_backend_size,
        m.prefetch_workers,
        amount,
        amount / 1024.0,
        requests,
        m.prefetch_data_amount.checked_div(requests).unwrap_or(0),
        duration,
        div(amount / 1024.0 / 1024.0, duration),
        div(m.prefetch_cumulative_time_millis as f64, requests as f64) / 1000.0,
        m.prefetch_unmerged_chunks,
    )
}

/// `nydusctl metrics fsstats`.
pub fn fsstats(m: &FsMetrics) -> String {
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
        m.read_latency_dist.iter().map(u64::to_string),
    );
    let data = m.data_read;
    let _ = write!(
        out,
        "\nRead Errors: {}\nRead Data: {}Bytes ({}MB)\n\nFOP Counters:\n",
        m.fop_errors[4],
        data,
        data / 1024 / 1024
    );
    let counter = |i: usize| format!("{}({})", FOPS[i], m.fop_hits[i]);
    let line = |r: std::ops::Range<usize>| r.map(counter).collect::<Vec<_>>().join(" ");
    let _ = writeln!(out, "{}\n{}", line(0..8), line(8..15));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    fn t<T: DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn info_lists_instances() {
        let v = json!({
            "version": {"package_ver": "v1", "profile": "release", "git_commit": "abc"},
            "state": "RUNNING",
            "backend_collection": {"/": {"backend_type": "Rafs", "mounted_time": "t0",
                "config": {"rafs": {"mode": "cached"},
                           "cache": {"prefetch": {"enable": true, "batch_size": 1048576}}}}}
        });
        let s = info(&t(v));
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
        // No collection (the v2 shape): just the header.
        let s = info(&t(json!({"backend_collection": null})));
        assert!(
            s.contains("Status:                 \"UNKNOWN\"") && !s.contains("Instances"),
            "{s}"
        );
    }

    #[test]
    fn backend_table() {
        let m: BackendMetrics = t(
            json!({"backend_type": "registry", "read_amount_total": 2097152, "read_count": 4,
            "read_errors": 1, "read_cumulative_latency_millis_dist": [10, 0, 0, 0, 0, 0, 0, 30],
            "read_count_block_size_dist": [5, 0, 0, 0, 0, 0, 0, 3]}),
        );
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
        let d = backend_delta(&BackendMetrics::default(), &m, 2);
        assert!(d.contains("Backend Read Bandwidth:     1024 KB/S"), "{d}");
        assert!(
            d.contains("Backend Average IO Size:    524288 Bytes"),
            "{d}"
        );
        assert!(
            d.contains("\n2       0       0       0       0       0       0       10      \n"),
            "{d}"
        );
        // Counters going backwards (daemon restarted) must not panic.
        assert!(backend_delta(&m, &BackendMetrics::default(), 0).contains("0 KB/S"));
    }

    #[test]
    fn cache_and_fsstats() {
        let m = json!({"partial_hits": 1, "whole_hits": 2, "total": 3, "store_path": "/c",
            "underlying_files": ["a.blob.data"], "prefetch_data_amount": 2048,
            "prefetch_requests_count": 2, "prefetch_begin_time_secs": 10, "prefetch_begin_time_millis": 0,
            "prefetch_end_time_secs": 12, "prefetch_end_time_millis": 0,
            "prefetch_cumulative_time_millis": 400});
        let s = cache(&t(m));
        assert!(s.contains("Directory:                  \"/c\"\n"), "{s}");
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
        assert!(!cache(&BlobcacheMetrics::default()).contains("NaN"));

        let mut m = FsMetrics::default();
        m.fop_hits[4] = 7;
        m.fop_errors[4] = 2;
        m.data_read = 3145728;
        m.read_latency_dist = [1, 2, 3, 4, 5, 6, 7, 8];
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

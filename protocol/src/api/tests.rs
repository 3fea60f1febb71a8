//! The bodies read and write upstream's exact JSON.

use super::*;
use serde_json::json;

#[test]
fn daemon_info_matches_upstream_shape() {
    let text = r#"{
      "version": {"package_ver": "v2.4.4", "git_commit": "4e908d8c", "build_time": "2026-06-24T00:00:00Z",
                  "profile": "release", "rustc": "rustc 1.85.0"},
      "id": "d34lemt8q5fh67iti9b0",
      "supervisor": "/run/supervisor/d34.sock",
      "state": "RUNNING",
      "backend_collection": {
        "/": {"backend_type": "Rafs", "mountpoint": "/",
              "mounted_time": "2026-07-01 10:00:00.123456789 +00:00:00",
              "config": {"version": 2, "overlay": null}}
      }
    }"#;
    let info: DaemonInfo = serde_json::from_str(text).unwrap();
    assert_eq!(info.state, DaemonState::Running);
    assert_eq!(info.version.package_ver, "v2.4.4");
    let root = &info.backend_collection.as_ref().unwrap()["/"];
    assert_eq!(root.backend_type, "Rafs");
    let back = serde_json::to_value(&info).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(text).unwrap()
    );
}

#[test]
fn v2_daemon_info_has_null_collection_and_null_ids() {
    let info = DaemonInfo {
        state: DaemonState::Init,
        ..DaemonInfo::default()
    };
    let v = serde_json::to_value(&info).unwrap();
    assert_eq!(v["backend_collection"], json!(null));
    assert_eq!(v["id"], json!(null));
    assert_eq!(v["supervisor"], json!(null));
    assert_eq!(v["state"], json!("INIT"));
}

#[test]
fn states_spelled_as_upstream_and_unknown_tolerated() {
    for (s, text) in [
        (DaemonState::Init, "INIT"),
        (DaemonState::Ready, "READY"),
        (DaemonState::Running, "RUNNING"),
        (DaemonState::Stopped, "STOPPED"),
        (DaemonState::Unknown, "UNKNOWN"),
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(text));
    }
    let s: DaemonState = serde_json::from_value(json!("UPGRADING")).unwrap();
    assert_eq!(s, DaemonState::Unknown);
}

#[test]
fn mount_cmd_reads_readme_request_and_hides_config() {
    let body = r#"{
        "source":"/path/to/bootstrap",
        "fs_type":"rafs",
        "config":"{\"device\":{\"backend\":{\"type\":\"localfs\",\"config\":{\"dir\":\"blobs\"}},\"cache\":{\"type\":\"blobcache\",\"config\":{\"work_dir\":\"cache\"}}},\"mode\":\"direct\",\"digest_validate\":true}"
	}"#;
    let cmd: MountCmd = serde_json::from_str(body).unwrap();
    assert_eq!(cmd.fs_type, "rafs");
    assert_eq!(cmd.prefetch_files, None);
    let parsed = crate::config::parse_daemon_config(&cmd.config, "mount request").unwrap();
    assert!(parsed.config.rafs.digest_validate);
    let secret = MountCmd {
        config: r#"{"auth": "c2VjcmV0OnB3"}"#.into(),
        ..cmd
    };
    let dbg = format!("{secret:?}");
    assert!(
        !dbg.contains("c2VjcmV0OnB3") && dbg.contains("<redacted>"),
        "{dbg}"
    );
}

#[test]
fn mount_cmd_requires_config_string() {
    assert!(serde_json::from_str::<MountCmd>(r#"{"source": "/b", "fs_type": "rafs"}"#).is_err());
    assert!(serde_json::from_str::<MountCmd>(r#"{"source": "/b", "config": {}}"#).is_err());
    let cmd: MountCmd =
        serde_json::from_str(r#"{"source": "/b", "config": "", "prefetch_files": ["/usr/bin"]}"#)
            .unwrap();
    assert_eq!(cmd.fs_type, "");
    assert_eq!(cmd.prefetch_files, Some(vec!["/usr/bin".to_string()]));
}

#[test]
fn error_body() {
    let v = serde_json::to_value(ErrorBody::new("NoRoute")).unwrap();
    assert_eq!(v, json!({"code": "UNDEFINED", "message": "NoRoute"}));
}

#[test]
fn fs_metrics_keys() {
    let v = serde_json::to_value(FsMetrics::default()).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut expected = vec![
        "files_account_enabled",
        "access_pattern_enabled",
        "record_latest_read_files_enabled",
        "measure_latency",
        "id",
        "nr_opens",
        "data_read",
        "block_count_read",
        "fop_hits",
        "fop_errors",
        "fop_cumulative_latency_total",
        "read_latency_dist",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(v["fop_hits"].as_array().unwrap().len(), FOPS.len());
    assert_eq!(v["block_count_read"].as_array().unwrap().len(), 8);
}

#[test]
fn per_file_pattern_inflight_events() {
    let files: FilesMetrics = serde_json::from_value(json!({"42": {
        "total_fops": 3, "data_read": 100, "block_count_read": [1,0,0,0,0,0,0,0],
        "fop_hits": [0,0,1,0,2,0,0,0,0,0,0,0,0,0,0], "fop_errors": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}))
    .unwrap();
    assert_eq!(files["42"].fop_hits[4], 2);
    let latest: LatestReadFiles = serde_json::from_value(json!([[1, 5], [9]])).unwrap();
    assert_eq!(latest, vec![vec![1, 5], vec![9]]);
    let p = AccessPattern {
        ino: 1,
        nr_read: 2,
        first_access_time_secs: 3,
        first_access_time_nanos: 4,
    };
    assert_eq!(
        serde_json::to_value(p).unwrap(),
        json!({"ino": 1, "nr_read": 2, "first_access_time_secs": 3, "first_access_time_nanos": 4})
    );
    let op = InflightOp {
        inode: 1,
        opcode: 15,
        unique: 7,
        timestamp_secs: 9,
    };
    assert_eq!(
        serde_json::to_value(op).unwrap(),
        json!({"inode": 1, "opcode": 15, "unique": 7, "timestamp_secs": 9})
    );
    let ev = serde_json::to_value(Events::default()).unwrap();
    for k in [
        "max_errors",
        "total_errors",
        "max_size",
        "total_size",
        "errors",
    ] {
        assert!(ev.get(k).is_some(), "{k}");
    }
}

#[test]
fn backend_and_blobcache_metrics_keys() {
    let b = serde_json::to_value(BackendMetrics::default()).unwrap();
    for k in [
        "backend_type",
        "read_count",
        "read_errors",
        "read_amount_total",
        "read_cumulative_latency_millis_total",
        "read_cumulative_latency_millis_dist",
        "read_count_block_size_dist",
        "read_latency_sizes_dist",
    ] {
        assert!(b.get(k).is_some(), "{k}");
    }
    assert_eq!(b["read_latency_sizes_dist"][7].as_array().unwrap().len(), 8);
    let c = serde_json::to_value(BlobcacheMetrics::default()).unwrap();
    assert_eq!(c.as_object().unwrap().len(), 17);
    // Lenient: an upstream reply with extra or missing fields still reads.
    let m: BlobcacheMetrics = serde_json::from_value(
        json!({"id": "/1", "partial_hits": 5, "underlying_files": ["a.blob.data"]}),
    )
    .unwrap();
    assert_eq!(m.partial_hits, 5);
}

#[test]
fn blob_cache_entry_hides_configs() {
    let e: BlobCacheEntry = serde_json::from_value(json!({
        "type": "bootstrap", "id": "abc", "domain_id": "d",
        "config_v2": {"version": 2, "backend": {"type": "registry", "registry": {"auth": "c2VjcmV0OnB3"}}}
    }))
    .unwrap();
    assert_eq!(e.blob_type, "bootstrap");
    let dbg = format!("{e:?}");
    assert!(!dbg.contains("c2VjcmV0OnB3"), "{dbg}");
}

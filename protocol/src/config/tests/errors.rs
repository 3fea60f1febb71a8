//! Every kind of error: one line with file, key, line, column and what is allowed.

use super::*;

fn v1(rest: &str) -> String {
    format!(
        "{{\"device\": {{\"backend\": {{\"type\": \"localfs\", \"config\": {{\"dir\": \"/d\"}}}}}},\n\"mode\": \"direct\",\n{rest}}}"
    )
}

/// Asserts the error is one line naming `key` at `line`, `col` and says `what`.
fn check(text: &str, key: &str, line: u32, col: u32, what: &str) {
    let e = err(text);
    assert!(!e.contains('\n'), "{e}");
    assert!(e.starts_with("config test.json: "), "{e}");
    assert!(e.contains(&format!("`{key}`")), "key {key}: {e}");
    assert!(
        e.contains(&format!("(line {line}, column {col})")),
        "pos {line}:{col}: {e}"
    );
    assert!(e.contains(what), "{what}: {e}");
}

#[test]
fn wrong_types() {
    check(
        &v1("\"enable_xattr\": \"yes\""),
        "enable_xattr",
        3,
        17,
        "expected true or false, found a string",
    );
    check(
        &v1("\"amplify_io\": -1"),
        "amplify_io",
        3,
        15,
        "0..=268435456",
    );
    check(&v1("\"amplify_io\": 1.5"), "amplify_io", 3, 15, "found 1.5");
    check(
        &v1("\"amplify_io\": 268435457"),
        "amplify_io",
        3,
        15,
        "0..=268435456",
    );
    check(
        &v1("\"fs_prefetch\": []"),
        "fs_prefetch",
        3,
        16,
        "must be an object, found an array",
    );
    check(
        &v1("\"fs_prefetch\": {\"bandwidth_rate\": 4294967296}"),
        "fs_prefetch.bandwidth_rate",
        3,
        35,
        "0..=4294967295",
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"registry\", \"config\": {\"host\": \"h\", \"repo\": \"r\",\n \"retry_limit\": 300}}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend.config.retry_limit` (line 2, column 17)")
            && e.contains("0..=255"),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\", \"alt_dirs\": [\"/a\", 3]}}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend.config.alt_dirs[1]`") && e.contains("expected a string"),
        "{e}"
    );
}

#[test]
fn wrong_values() {
    check(
        &v1("\"fs_prefetch\": {\"enable\": true, \"threads_count\": 0}"),
        "fs_prefetch.threads_count",
        3,
        50,
        "1..=1024",
    );
    check(
        &v1("\"fs_prefetch\": {\"enable\": true, \"threads_count\": 1025}"),
        "fs_prefetch.threads_count",
        3,
        50,
        "1..=1024",
    );
    // Disabled prefetch does not care.
    ok(&v1(
        "\"fs_prefetch\": {\"enable\": false, \"threads_count\": 0}",
    ));
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\"}}},\n \"mode\": \"lazy\"}");
    assert!(
        e.contains("`mode` (line 2, column 10)") && e.contains("\"direct\", \"cached\""),
        "{e}"
    );
    let e = err(
        "{\"device\": {\"backend\": {\"type\": \"ftp\", \"config\": {}}}, \"mode\": \"direct\"}",
    );
    assert!(
        e.contains("`device.backend.type` (line 1, column 33)") && e.contains("\"localfs\""),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\"}}, \"cache\": {\"type\": \"memcache\"}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.cache.type`") && e.contains("\"blobcache\", \"filecache\""),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"registry\", \"config\": {\"host\": \"h\", \"repo\": \"r\", \"scheme\": \"ftp\"}}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend.config.scheme`") && e.contains("\"http\", \"https\""),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"http-proxy\", \"config\": {\"addr\": \"p:1\"}}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend.config.addr`") && e.contains("http://"),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\"}}, \"cache\": {\"type\": \"blobcache\", \"config\": {\"encryption_key\": \"abc\"}}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.cache.config.encryption_key`") && e.contains("64 hex digits"),
        "{e}"
    );
}

#[test]
fn missing_required() {
    let e = err("{\"mode\": \"direct\"}");
    assert!(e.contains("`device`") && e.contains("required"), "{e}");
    let e = err("{\"device\": {}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend`") && e.contains("required"),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\"}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend.config`") && e.contains("required"),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"registry\", \"config\": {\"host\": \"h\"}}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.backend.config.repo`") && e.contains("(line 1, column 55)"),
        "{e}"
    );
    let e = err("{\"device\": {\"backend\": {\"type\": \"oss\", \"config\": {\"endpoint\": \"e\"}}}, \"mode\": \"direct\"}");
    assert!(e.contains("`device.backend.config.bucket_name`"), "{e}");
    let e = err("{\"device\": {\"backend\": {\"type\": \"s3\", \"config\": {\"region\": \"r\", \"bucket_name\": \"b\"}}}, \"mode\": \"direct\"}");
    assert!(e.contains("`device.backend.config.endpoint`"), "{e}");
    let e = err("{\"device\": {\"backend\": {\"type\": \"localdisk\", \"config\": {}}}, \"mode\": \"direct\"}");
    assert!(e.contains("`device.backend.config.device_path`"), "{e}");
    let e = err("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/d\"}}, \"cache\": {\"type\": \"blobcache\", \"config\": null}}, \"mode\": \"direct\"}");
    assert!(
        e.contains("`device.cache.config`") && e.contains("required for blobcache"),
        "{e}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    for (text, pos, what) in [
        (
            "{\n  \"device\": tru\n}",
            "(line 2, column 13)",
            "expected a value",
        ),
        ("{\"a\" 1}", "(line 1, column 6)", "`:`"),
        (
            "{\"a\": 1,, }",
            "(line 1, column 9)",
            "key in double quotes",
        ),
        (
            "{\"a\": \"x\n\"}",
            "(line 1, column 7)",
            "unterminated string",
        ),
        ("{\"a\": \"\\q\"}", "(line 1, column 8)", "invalid escape"),
        ("{\"a\": 1} x", "(line 1, column 10)", "after the end"),
        (
            "{/* never closed",
            "(line 1, column 2)",
            "unterminated `/*`",
        ),
        ("{\"a\": 01x}", "(line 1, column 9)", "`,` or `}`"),
        ("{\"a\": \"\\ud800\"}", "(line 1, column 8)", "surrogate"),
    ] {
        let e = err(text);
        assert!(e.contains(pos) && e.contains(what), "{text:?}: {e}");
        assert!(!e.contains('\n'));
    }
    let deep = "[".repeat(100_000);
    assert!(err(&format!("{{\"a\": {deep}")).contains("nested deeper"));
}

#[test]
fn duplicate_keys_warn_and_last_wins() {
    let p = ok(&v1("\"enable_xattr\": false, \"enable_xattr\": true"));
    assert!(p.config.rafs.enable_xattr);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("`enable_xattr` (line 3, column 24): duplicate key")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn known_noise_gets_a_helpful_warning() {
    let p = ok(&v1("\"iostat_files\": true, \"warmup\": 3"));
    assert!(
        p.warnings[0].contains("did you mean `iostats_files`"),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings[1].contains("nydus-snapshotter"),
        "{:?}",
        p.warnings
    );
    assert!(!p.config.rafs.iostats_files);
}

#[test]
fn prefetch_limits_apply_only_when_enabled() {
    ok(&v1(
        "\"fs_prefetch\": {\"enable\": false, \"merging_size\": 268435457}",
    ));
    check(
        &v1("\"fs_prefetch\": {\"enable\": true, \"merging_size\": 268435457}"),
        "fs_prefetch.merging_size",
        3,
        49,
        "0..=268435456",
    );
}

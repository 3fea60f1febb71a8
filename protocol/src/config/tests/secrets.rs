//! Credentials never show in Debug, Display, the API JSON, errors or warnings.

use super::*;

const AUTH: &str = "c2VjcmV0dXNlcjpzM2NyM3RwdzE="; // secretuser:s3cr3tpw1
const TOKEN: &str = "TOKEN-d0ntl00k";
const AK: &str = "AKIDs3cr3t";
const SK: &str = "SKs3cr3tv4lue";
const PROXY_PW: &str = "pr0xypw";
const ENC: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef0";

const ALL: [&str; 6] = [AUTH, TOKEN, AK, SK, PROXY_PW, ENC];

fn assert_clean(what: &str, text: &str) {
    for s in ALL {
        assert!(!text.contains(s), "{what} leaks {s}: {text}");
    }
}

fn registry_config() -> String {
    format!(
        r#"{{"device": {{"backend": {{"type": "registry", "config": {{
        "host": "h", "repo": "r", "auth": "{AUTH}", "registry_token": "{TOKEN}",
        "proxy": {{"url": "http://user:{PROXY_PW}@proxy:4001/p"}},
        "mirrors": [{{"host": "http://m", "headers": {{"Authorization": "Bearer {TOKEN}"}}}}]}}}},
        "cache": {{"type": "blobcache", "config": {{"work_dir": "/c", "encryption_key": "{ENC}"}}}}}},
        "mode": "direct"}}"#
    )
}

fn oss_config(kind: &str) -> String {
    format!(
        r#"{{"device": {{"backend": {{"type": "{kind}", "config": {{
        "endpoint": "e", "region": "r", "bucket_name": "b",
        "access_key_id": "{AK}", "access_key_secret": "{SK}"}}}}}}, "mode": "direct"}}"#
    )
}

#[test]
fn debug_and_redacted_json_hide_secrets() {
    for text in [registry_config(), oss_config("oss"), oss_config("s3")] {
        let p = ok(&text);
        assert_clean("Debug", &format!("{:?}", p.config));
        assert_clean("Debug of Parsed", &format!("{p:?}"));
        let json = p.config.to_redacted_json().to_string();
        assert_clean("redacted JSON", &json);
        assert!(json.contains(REDACTED), "{json}");
        // The exposing form really carries them (for hand-over).
        let full = p.config.to_v2_json_exposing_secrets().to_string();
        assert!(full.contains(AK) || full.contains(AUTH), "{full}");
    }
    let v = ok(&registry_config()).config.to_redacted_json();
    let reg = &v["backend"]["registry"];
    assert_eq!(reg["auth"], REDACTED);
    assert_eq!(reg["registry_token"], REDACTED);
    assert_eq!(reg["proxy"]["url"], "http://<redacted>@proxy:4001/p");
    assert_eq!(v["cache"]["filecache"]["encryption_key"], REDACTED);
}

#[test]
fn secret_type_prints_redacted() {
    let s = Secret::new(SK);
    assert_eq!(format!("{s}"), REDACTED);
    assert_eq!(format!("{s:?}"), REDACTED);
    assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
    assert_eq!(s.expose(), SK);
}

#[test]
fn errors_and_warnings_never_echo_secrets() {
    let cases = [
        // Not base64 / no colon.
        registry_config().replace(AUTH, "s3cr3tpw1!!"),
        registry_config().replace(AUTH, "c2VjcmV0dXNlcnMzY3IzdHB3MQ"),
        // Syntax errors inside a secret.
        registry_config().replace(TOKEN, "TOKEN-d0ntl00k\\x"),
        registry_config().replace(&format!("\"{TOKEN}\""), "\"TOKEN-d0ntl00k"),
        oss_config("oss").replace(&format!("\"{SK}\""), "SKs3cr3tv4lue"),
        // Wrong type.
        registry_config().replace(&format!("\"{AUTH}\""), "[\"c2VjcmV0dXNlcjpzM2NyM3RwdzE=\"]"),
        oss_config("oss").replace(&format!("\"{SK}\""), "{\"v\": \"SKs3cr3tv4lue\"}"),
        // Bad encryption key length.
        registry_config().replace(
            ENC,
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
        ),
    ];
    for text in cases {
        let e = err(&text);
        assert_clean("error", &e);
        assert!(
            !e.contains("s3cr3tpw1") && !e.contains("c2VjcmV0dXNlcnMzY3IzdHB3MQ"),
            "{e}"
        );
    }
    let dup = registry_config().replace(
        "\"host\": \"h\",",
        &format!("\"host\": \"h\", \"auth\": \"{AUTH}\", \"surprise\": \"{SK}\","),
    );
    let p = ok(&dup);
    assert!(p.warnings.len() >= 2, "{:?}", p.warnings);
    for w in &p.warnings {
        assert_clean("warning", w);
    }
}

#[test]
fn image_pull_auth() {
    let mut c = ok(&registry_config()).config;
    let new = "bmV3dXNlcjpuZXdwYXNz"; // newuser:newpass
    assert_eq!(apply_image_pull_auth(&mut c, new), Ok(true));
    let BackendConfig::Registry(r) = &c.backend else {
        panic!()
    };
    assert_eq!(r.auth.as_ref().map(Secret::expose), Some(new));
    assert_eq!(apply_image_pull_auth(&mut c, "  "), Ok(false));
    let e = apply_image_pull_auth(&mut c, "s3cr3tpw1")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("IMAGE_PULL_AUTH") && !e.contains("s3cr3tpw1"),
        "{e}"
    );
    let mut local = localfs_dir_config(std::path::Path::new("/d"));
    assert_eq!(apply_image_pull_auth(&mut local, new), Ok(false));
}

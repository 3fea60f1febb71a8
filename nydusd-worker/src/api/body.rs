//! Request bodies: decoding and validation, with error messages that never
//! echo request content (a mount body carries registry credentials).

use std::str::FromStr;

use hyper::body::Bytes;
use nydus_protocol::api::{ConfigUpdate, DaemonConf};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;

/// Keys `PUT /api/v1/config` accepts; others are refused (500, as upstream).
pub(super) const CONFIG_KEYS: &[&str] =
    &["registry_auth", "dragonfly_scheduler_endpoint", "proxy_url"];
/// Keys whose values are credentials: never sent back.
const SECRET_KEYS: &[&str] = &["registry_auth"];
/// What a masked value reads as.
const REDACTED: &str = nydus_protocol::config::REDACTED;

/// serde_json's message, minus any string value it quotes from the body.
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let text = match msg.find("string \"") {
        Some(start) => {
            let rest = msg[start..]
                .find("\", expected")
                .map(|i| &msg[start + i + 2..]);
            format!(
                "{}string (content hidden){}",
                &msg[..start],
                rest.unwrap_or("")
            )
        }
        None => msg,
    };
    format!("ParseBody: {text}")
}

pub(super) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("BadRequest: a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(json_error(&e)))
}

/// `PUT /api/v1/daemon` `{"log_level": "<trace|debug|info|warn|error|off>"}`.
pub(super) fn log_level(body: &Bytes) -> Result<log::LevelFilter, ApiError> {
    let conf: DaemonConf = parse_json(body)?;
    log::LevelFilter::from_str(&conf.log_level).map_err(|_| {
        ApiError::internal(
            "Configure: log_level must be one of trace, debug, info, warn, error, off",
        )
    })
}

/// `PUT /api/v1/config` body: an object of recognised keys to string values.
pub(super) fn config_items(body: &Bytes) -> Result<ConfigUpdate, ApiError> {
    let map: serde_json::Map<String, Value> = parse_json(body)?;
    let mut items = ConfigUpdate::new();
    for (k, v) in map {
        if !CONFIG_KEYS.contains(&k.as_str()) {
            return Err(ApiError::internal(format!(
                "Configure: unknown key {k:?} (known: {})",
                CONFIG_KEYS.join(", ")
            )));
        }
        let Value::String(v) = v else {
            return Err(ApiError::bad_request(format!(
                "ParseBody: {k} must be a string"
            )));
        };
        items.insert(k, v);
    }
    Ok(items)
}

/// `GET /api/v1/config` body: the stored values, credentials masked
/// (upstream returns them in clear text; reference §11 says not to).
pub(super) fn redacted_config(values: ConfigUpdate) -> Value {
    let map = values
        .into_iter()
        .map(|(k, v)| {
            // A proxy URL may carry `user:pass@`.
            let secret = SECRET_KEYS.contains(&k.as_str()) || (k == "proxy_url" && v.contains('@'));
            let v = if secret { REDACTED.to_string() } else { v };
            (k, Value::String(v))
        })
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nydus_protocol::api::MountCmd;

    #[test]
    fn api_json_error_hides_strings() {
        let body =
            Bytes::from_static(br#"{"source": "s", "config": "c", "prefetch_files": "SECRET"}"#);
        let e = parse_json::<MountCmd>(&body)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(e.contains("expected a sequence"), "{e}");
        let e = parse_json::<MountCmd>(&Bytes::from_static(b"{\"source\": \"s\"}"));
        let msg = e.err().map(|e| e.message).unwrap_or_default();
        assert!(msg.contains("missing field `config`"), "{msg}");
    }

    #[test]
    fn api_log_level_values() {
        for (text, want) in [
            ("trace", log::LevelFilter::Trace),
            ("off", log::LevelFilter::Off),
            ("WARN", log::LevelFilter::Warn),
        ] {
            let body = Bytes::from(format!(r#"{{"log_level": "{text}"}}"#));
            assert_eq!(log_level(&body), Ok(want));
        }
        let e = log_level(&Bytes::from_static(br#"{"log_level": "loud"}"#));
        assert_eq!(e.err().map(|e| e.status), Some(500));
    }

    #[test]
    fn api_config_items_and_redaction() {
        let body =
            Bytes::from_static(br#"{"registry_auth": "dXNlcjpwYXNz", "proxy_url": "http://p"}"#);
        let items = config_items(&body).unwrap_or_default();
        assert_eq!(items.len(), 2);
        let v = redacted_config(items);
        assert_eq!(v["registry_auth"], "<redacted>");
        assert_eq!(v["proxy_url"], "http://p");
        let body = Bytes::from_static(br#"{"proxy_url": "http://u:pw@p:1"}"#);
        let v = redacted_config(config_items(&body).unwrap_or_default());
        assert_eq!(v["proxy_url"], "<redacted>");
        let e = config_items(&Bytes::from_static(br#"{"what": "x"}"#));
        assert_eq!(e.err().map(|e| e.status), Some(500));
        let e = config_items(&Bytes::from_static(br#"{"proxy_url": 1}"#));
        assert_eq!(e.err().map(|e| e.status), Some(400));
    }
}

//! Tests of the config parser, one file per concern.

mod defaults;
mod errors;
mod robustness;
mod secrets;
mod v1_backends;
mod v1_examples;
mod v2;

use super::*;

/// Parses and fails the test with the error text if it does not parse.
pub(super) fn ok(text: &str) -> Parsed {
    match parse_daemon_config(text, "test.json") {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub(super) fn err(text: &str) -> String {
    match parse_daemon_config(text, "test.json") {
        Ok(p) => panic!("expected an error, got {:?}", p.config),
        Err(e) => e.to_string(),
    }
}

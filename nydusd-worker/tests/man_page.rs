//! man/nydusd.8 documents every long flag `nydusd --help` shows.

use std::process::Command;

#[test]
fn man_page_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_nydusd"))
        .arg("--help")
        .output()
        .expect("run nydusd --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../man/nydusd.8"))
        .expect("man/nydusd.8")
        .replace("\\-", "-");
    let missing: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches([',', '.', ']', ')'])
                .split(['=', '<'])
                .next()
                .unwrap_or("")
        })
        .filter(|f| !f.is_empty() && *f != "help" && *f != "version")
        .filter(|f| !page.contains(&format!("--{f}")))
        .collect();
    assert!(
        missing.is_empty(),
        "man/nydusd.8 does not document: {missing:?}"
    );
}

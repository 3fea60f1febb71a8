//! The man page documents every subcommand and long flag `--help` shows, so
//! the two cannot drift apart.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nydusctl"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run nydusctl --help");
    assert!(out.status.success(), "nydusctl {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Subcommand names from the "Commands:" section of a help text.
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Long flags (`--name`) from the "Options:" section of a help text.
fn long_flags(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches([',', '=', '.', ']', ')'])
                .split('=')
                .next()
                .unwrap_or("")
        })
        .map(|w| w.split('<').next().unwrap_or("").to_string())
        .filter(|w| !w.is_empty() && w != "help" && w != "version")
        .collect()
}

#[test]
fn man_page_documents_every_subcommand_and_flag() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../man/nydusctl.1"))
        .expect("man/nydusctl.1");
    let unescaped = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    let mut missing = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        for flag in long_flags(&text) {
            if !unescaped.contains(&format!("--{flag}")) {
                missing.push(format!("nydusctl {} --{flag}", args.join(" ")));
            }
        }
        for sub in subcommands(&text) {
            if !unescaped.contains(&sub) {
                missing.push(format!("nydusctl {} {sub}", args.join(" ")));
            }
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    assert!(
        missing.is_empty(),
        "man/nydusctl.1 does not document: {missing:#?}"
    );
}

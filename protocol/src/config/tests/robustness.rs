//! Any input, however garbled, yields a config or an error: never a panic.

use super::*;

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

const SEEDS: &[&str] = &[
    r#"{"device": {"id": "/1", "backend": {"type": "registry", "config": {"host": "h", "repo": "r",
      "auth": "dXNlcjpwYXNz", "proxy": {"url": "http://p:1", "fallback": false}, "mirrors": [{"host": "m"}]}},
      "cache": {"type": "blobcache", "config": {"work_dir": "/c"}}}, "mode": "direct",
      // comment
      "fs_prefetch": {"enable": true, "threads_count": 4, /* c */ "merging_size": 131072,},}"#,
    "version = 2\n[backend]\ntype = \"oss\"\n[backend.oss]\nendpoint = \"e\"\nbucket_name = \"b\"\n[cache]\ntype = \"fscache\"\n[cache.fscache]\nwork_dir = \"/w\"\n[rafs.prefetch]\nenable = true\n[[external_backends]]\ntype = \"x\"\n[external_backends.config]\nk = \"v\"\n",
    r#"{"version": 2, "backend": {"type": "s3", "s3": {"endpoint": "", "region": "r", "bucket_name": "b"}}, "overlay": {"upper_dir": "/u", "work_dir": "/w"}}"#,
];

const ALPHABET: &[char] = &[
    '{', '}', '[', ']', '"', ':', ',', '/', '*', '\\', 'u', 'd', '8', '0', '\n', ' ', '#', '=',
    '.', '-', 'e', 't', 'é', '\u{feff}', '\0', '1',
];

fn no_panic(text: &str) {
    // The result does not matter; getting one does. Also exercise rendering.
    if let Ok(p) = parse_daemon_config(text, "fuzz") {
        let _ = p.config.to_redacted_json();
        let again = p.config.to_v2_json_exposing_secrets().to_string();
        assert!(
            parse_daemon_config(&again, "fuzz").is_ok(),
            "rendered config must re-parse: {again}"
        );
    }
}

#[test]
fn every_truncation() {
    for seed in SEEDS {
        for (i, _) in seed.char_indices() {
            no_panic(&seed[..i]);
            no_panic(&seed[i..]);
        }
    }
}

#[test]
fn random_mutations() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..6000 {
        let seed = SEEDS[round % SEEDS.len()];
        let mut chars: Vec<char> = seed.chars().collect();
        for _ in 0..=rng.below(4) {
            let at = rng.below(chars.len());
            match rng.below(3) {
                0 if !chars.is_empty() => {
                    chars.remove(at);
                }
                1 => chars.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                _ if !chars.is_empty() => chars[at] = ALPHABET[rng.below(ALPHABET.len())],
                _ => {}
            }
        }
        no_panic(&chars.iter().collect::<String>());
    }
}

#[test]
fn random_bytes_and_pathological_shapes() {
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let len = rng.below(64);
        let s: String = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        no_panic(&s);
    }
    no_panic(&"{\"a\":".repeat(10_000));
    no_panic(&"[".repeat(200_000));
    no_panic(&"a.".repeat(5_000));
    no_panic("version = 2\n".repeat(3).as_str());
    no_panic("{\"version\": 2e400}");
    no_panic("{\"device\": {\"backend\": {\"type\": \"localfs\", \"config\": {\"dir\": \"/\"}}}, \"amplify_io\": 99999999999999999999999}");
    no_panic("\u{feff}");
}

#[test]
fn huge_objects_stay_fast() {
    let members: Vec<String> = (0..50_000).map(|i| format!("\"k{i}\": {i}")).collect();
    let text = format!(
        "{{\"device\": {{{}}}, \"mode\": \"direct\"}}",
        members.join(",")
    );
    let start = std::time::Instant::now();
    assert!(parse_daemon_config(&text, "big").is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

//! Image references as `nydusctl image push` takes them:
//! `[scheme://]host[:port]/repo[:tag]`.

#[derive(Debug, PartialEq)]
pub struct Reference {
    /// `https` or `http`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    pub repo: String,
    pub tag: String,
}

impl Reference {
    /// `scheme://host` with no trailing slash.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// Parses `text`; `plain_http` picks http when no scheme is given.
pub fn parse(text: &str, plain_http: bool) -> Result<Reference, String> {
    let bad = |why: &str| {
        format!("image reference {text:?}: {why} (expected [http[s]://]host[:port]/repo[:tag])")
    };
    let (scheme, rest) = match text.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s.to_string(), rest),
        Some((s, _)) => return Err(bad(&format!("unknown scheme {s:?}"))),
        None if plain_http => ("http".to_string(), text),
        None => ("https".to_string(), text),
    };
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("no repository after the host"))?;
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(bad("bad host"));
    }
    // The tag follows the last ':' of the last path component (a ':' in
    // the host is the port, already split off).
    let last = path.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match path[last..].rfind(':') {
        Some(i) => (&path[..last + i], &path[last + i + 1..]),
        None => (path, "latest"),
    };
    let repo_ok = !repo.is_empty()
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if !repo_ok {
        return Err(bad(&format!(
            "repository {repo:?} must be lowercase path components of [a-z0-9._-]"
        )));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !tag_ok {
        return Err(bad(&format!("tag {tag:?} must be 1-128 of [A-Za-z0-9._-]")));
    }
    Ok(Reference {
        scheme,
        host: host.to_string(),
        repo: repo.to_string(),
        tag: tag.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(scheme: &str, host: &str, repo: &str, tag: &str) -> Reference {
        Reference {
            scheme: scheme.into(),
            host: host.into(),
            repo: repo.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            parse("127.0.0.1:5000/lib/img:v1", false).unwrap(),
            r("https", "127.0.0.1:5000", "lib/img", "v1")
        );
        assert_eq!(
            parse("127.0.0.1:5000/lib/img", true).unwrap(),
            r("http", "127.0.0.1:5000", "lib/img", "latest")
        );
        assert_eq!(
            parse("http://reg.example/a/b/c:1.0", false).unwrap(),
            r("http", "reg.example", "a/b/c", "1.0")
        );
        assert_eq!(
            parse("https://reg:443/x", true).unwrap(),
            r("https", "reg:443", "x", "latest")
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "reg",
            "reg/",
            "ftp://reg/x",
            "reg/Upper",
            "reg/a//b",
            "reg/x:",
            "reg/x:bad tag",
            "/x",
            "user@reg/x",
        ] {
            let e = parse(bad, false).unwrap_err();
            assert!(e.contains("image reference"), "{bad}: {e}");
        }
    }
}

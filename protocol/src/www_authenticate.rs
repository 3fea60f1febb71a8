//! The `WWW-Authenticate` header of a registry's 401 (RFC 7235): the
//! scheme and its `key=value` parameters. Both the daemon's registry
//! backend and `nydusctl image push` follow the challenge it describes.

/// Splits `Scheme k="v",k2=v2` into the lowercase scheme and its params
/// (lowercase keys; values may be quoted, contain commas and `\`-escapes).
pub fn parse(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.push((key.trim().to_ascii_lowercase(), val.trim().to_string()));
    }
    (scheme.to_ascii_lowercase(), params)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn challenges() {
        let (s, p) =
            parse(r#"Bearer realm="https://a/token",service="reg, x",scope="repository:r:pull""#);
        assert_eq!(s, "bearer");
        assert_eq!(p[0], ("realm".into(), "https://a/token".into()));
        assert_eq!(p[1], ("service".into(), "reg, x".into()));
        assert_eq!(p[2], ("scope".into(), "repository:r:pull".into()));
        let (s, p) = parse(r#"Basic realm=Registry"#);
        assert_eq!((s.as_str(), p.len()), ("basic", 1));
        let (_, p) = parse(r#"Bearer realm="a\"b", service=s"#);
        assert_eq!(p[0].1, "a\"b");
        assert_eq!(p[1], ("service".into(), "s".into()));
        assert_eq!(parse("").0, "");
        assert!(parse("Bearer ,,, =x").1.is_empty());
    }
}

//! Object-store origins (reference §4.4): Alibaba OSS with V1 header
//! signatures (virtual-hosted URLs) and S3 with SigV4 (path-style URLs).
//! Empty keys mean anonymous access: requests go unsigned.

use std::time::SystemTime;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use nydus_protocol::config::{OssConfig, S3Config, Secret};
use reqwest::blocking::Response;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, DATE, RANGE};
use reqwest::Url;
use sha2::{Digest, Sha256};

use super::blob::Origin;
use super::conn::{Conn, Req};
use super::range::Bad;
use super::registry::check_id;

/// sha256 of an empty body: reads send none.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails; if it did, the
    // empty signature would be refused by the server, not crash us.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes an object key for a URL path (RFC 3986 unreserved
/// characters and `/` stay), as S3's canonical URI wants it.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn url(text: &str, what: &str) -> Result<Url, Bad> {
    Url::parse(text).map_err(|_| Bad {
        message: format!("{what}: `endpoint`/`bucket_name` do not make a valid URL"),
        retry: false,
    })
}

fn header(v: &str, secret: bool) -> Result<HeaderValue, Bad> {
    let mut h = HeaderValue::from_str(v).map_err(|_| Bad {
        message: "a signed header has characters not allowed in HTTP".into(),
        retry: false,
    })?;
    h.set_sensitive(secret);
    Ok(h)
}

fn refused(kind: &str, resp: &Response) -> Bad {
    Bad {
        message: format!(
            "{kind} refused the credentials (HTTP {}): check access_key_id/access_key_secret",
            resp.status().as_u16()
        ),
        retry: false,
    }
}

/// `endpoint` without a scheme some users write in front of it.
fn bare(endpoint: &str) -> &str {
    let e = endpoint.trim_end_matches('/');
    e.strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"))
        .unwrap_or(e)
}

fn scheme(s: &str) -> &str {
    if s == "http" {
        "http"
    } else {
        "https"
    }
}

pub(crate) struct Oss {
    base: String,
    path_style: bool,
    bucket: String,
    prefix: String,
    ak: Secret,
    sk: Secret,
}

impl Oss {
    pub(crate) fn new(c: &OssConfig) -> Self {
        let endpoint = bare(&c.endpoint);
        let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
        // A bucket cannot be a sub-domain of an IP address: path style.
        let ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
        let base = if ip {
            format!("{}://{endpoint}/{}/", scheme(&c.scheme), c.bucket_name)
        } else {
            format!("{}://{}.{endpoint}/", scheme(&c.scheme), c.bucket_name)
        };
        Oss {
            base,
            path_style: ip,
            bucket: c.bucket_name.clone(),
            prefix: c.object_prefix.clone(),
            ak: c.access_key_id.clone(),
            sk: c.access_key_secret.clone(),
        }
    }

    /// The host every request goes to (for `.localhost` resolution).
    pub(crate) fn host(&self) -> Option<String> {
        Url::parse(&self.base).ok()?.host_str().map(str::to_string)
    }

    fn key(&self, blob_id: &str) -> Result<String, Bad> {
        Ok(format!("{}{}", self.prefix, check_id(blob_id)?))
    }
}

/// OSS V1: base64(HMAC-SHA1(secret, VERB\nMD5\nType\nDate\n/bucket/key)).
pub(crate) fn oss_signature(secret: &str, verb: &str, date: &str, resource: &str) -> String {
    let text = format!("{verb}\n\n\n{date}\n{resource}");
    // As in `hmac_sha256`: cannot fail for any key length.
    match Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut m) => {
            m.update(text.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

impl Origin for Oss {
    fn kind(&self) -> &'static str {
        "oss"
    }

    fn blob_url(&self, blob_id: &str) -> Result<Url, Bad> {
        url(
            &format!("{}{}", self.base, encode_key(&self.key(blob_id)?)),
            "oss",
        )
    }

    fn authorize(&self, _conn: &Conn, req: &mut Req) -> Result<u64, Bad> {
        if self.ak.is_empty() {
            return Ok(0);
        }
        let date = httpdate::fmt_http_date(SystemTime::now());
        // The canonical resource names the object unencoded.
        let path = percent_decode(req.url.path());
        let key = if self.path_style {
            path.strip_prefix(&format!("/{}/", self.bucket))
        } else {
            path.strip_prefix('/')
        }
        .unwrap_or(&path);
        let resource = format!("/{}/{key}", self.bucket);
        let sig = oss_signature(self.sk.expose(), req.method.as_str(), &date, &resource);
        req.headers.insert(DATE, header(&date, false)?);
        let auth = format!("OSS {}:{sig}", self.ak.expose());
        req.headers.insert(AUTHORIZATION, header(&auth, true)?);
        Ok(0)
    }

    fn unauthorized(&self, _conn: &Conn, resp: &Response, _used: u64) -> Result<(), Bad> {
        Err(refused("oss", resp))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) struct S3 {
    base: String,
    region: String,
    prefix: String,
    ak: Secret,
    sk: Secret,
}

impl S3 {
    pub(crate) fn new(c: &S3Config) -> Self {
        let endpoint = match bare(&c.endpoint) {
            "" => "s3.amazonaws.com",
            e => e,
        };
        S3 {
            base: format!("{}://{endpoint}/{}/", scheme(&c.scheme), c.bucket_name),
            region: c.region.clone(),
            prefix: c.object_prefix.clone(),
            ak: c.access_key_id.clone(),
            sk: c.access_key_secret.clone(),
        }
    }

    pub(crate) fn host(&self) -> Option<String> {
        Url::parse(&self.base).ok()?.host_str().map(str::to_string)
    }
}

/// UTC `YYYYMMDDTHHMMSSZ` for `secs` since the epoch.
pub(crate) fn amz_date(secs: u64) -> String {
    let (days, rem) = (secs / 86400, secs % 86400);
    // Howard Hinnant's civil-from-days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The SigV4 `Authorization` value. `headers` are (lower-case name, value)
/// pairs, all of them signed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sigv4(
    method: &str,
    path: &str,
    headers: &mut [(String, String)],
    payload_sha256: &str,
    amz_date: &str,
    region: &str,
    access_key: &str,
    secret: &str,
) -> String {
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let creq = format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\n{payload_sha256}");
    let day = &amz_date[..8];
    let scope = format!("{day}/{region}/s3/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, b"s3");
    let k = hmac_sha256(&k, b"aws4_request");
    let sig = hex(&hmac_sha256(&k, sts.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
}

impl Origin for S3 {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn blob_url(&self, blob_id: &str) -> Result<Url, Bad> {
        let key = format!("{}{}", self.prefix, check_id(blob_id)?);
        url(&format!("{}{}", self.base, encode_key(&key)), "s3")
    }

    fn authorize(&self, _conn: &Conn, req: &mut Req) -> Result<u64, Bad> {
        if self.ak.is_empty() {
            return Ok(0);
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let date = amz_date(now);
        let mut host = req.url.host_str().unwrap_or_default().to_string();
        if let Some(p) = req.url.port() {
            host = format!("{host}:{p}");
        }
        let mut signed = vec![
            ("host".to_string(), host),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), date.clone()),
        ];
        if let Some(r) = req.headers.get(RANGE).and_then(|v| v.to_str().ok()) {
            signed.push(("range".to_string(), r.to_string()));
        }
        let auth = sigv4(
            req.method.as_str(),
            req.url.path(),
            &mut signed,
            EMPTY_SHA256,
            &date,
            &self.region,
            self.ak.expose(),
            self.sk.expose(),
        );
        for name in ["x-amz-content-sha256", "x-amz-date"] {
            let v = signed
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            req.headers.insert(
                HeaderName::from_static(name),
                header(v.unwrap_or_default(), false)?,
            );
        }
        req.headers.insert(AUTHORIZATION, header(&auth, true)?);
        Ok(0)
    }

    fn unauthorized(&self, _conn: &Conn, resp: &Response, _used: u64) -> Result<(), Bad> {
        Err(refused("s3", resp))
    }
}

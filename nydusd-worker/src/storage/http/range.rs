//! Checking a ranged answer and copying its body: a read returns exactly
//! the bytes asked for (fewer only at the end of the blob), or an error.

use std::io::{self, Read};

use reqwest::blocking::Response;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};

/// What went wrong with an answer; `retry` says whether another attempt
/// may help.
#[derive(Debug)]
pub(crate) struct Bad {
    pub(crate) message: String,
    pub(crate) retry: bool,
}

fn bad(message: impl Into<String>) -> Bad {
    Bad {
        message: message.into(),
        retry: true,
    }
}

/// `bytes <start>-<end>/<total or *>`.
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (s, e) = span.split_once('-')?;
    let (s, e): (u64, u64) = (s.trim().parse().ok()?, e.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (e >= s && total.is_none_or(|t| e < t)).then_some((s, e, total))
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads exactly `buf.len()` bytes; a shorter body is an error.
fn fill(resp: &mut Response, buf: &mut [u8]) -> Result<(), Bad> {
    let mut done = 0;
    while done < buf.len() {
        match resp.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(bad(format!(
                    "truncated body: {done} of {} bytes",
                    buf.len()
                )))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(bad(format!("body read failed after {done} bytes: {e}"))),
        }
    }
    Ok(())
}

/// Copies the answer to `Range: bytes=offset-(offset+len-1)` into `buf`.
/// Handles 206 (checked against the asked range), 200 (a server that
/// ignores Range: the prefix is skipped) and 416 (offset at or past the
/// end: 0 bytes). Other statuses are the caller's business.
pub(crate) fn copy_range(mut resp: Response, offset: u64, buf: &mut [u8]) -> Result<usize, Bad> {
    let want = buf.len() as u64;
    match resp.status().as_u16() {
        206 => {
            let cr = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad("206 without Content-Range"))?;
            let (s, e, total) =
                parse_content_range(cr).ok_or_else(|| bad(format!("bad Content-Range {cr:?}")))?;
            let n = e - s + 1;
            if s != offset || n > want {
                return Err(bad(format!(
                    "Content-Range {cr:?} is not the range asked for ({offset}+{want})"
                )));
            }
            if n < want && total != Some(e + 1) {
                return Err(bad(format!(
                    "Content-Range {cr:?} is shorter than asked ({want}) but not at the end of the blob"
                )));
            }
            if let Some(cl) = content_length(&resp) {
                if cl != n {
                    return Err(bad(format!(
                        "Content-Length {cl} disagrees with Content-Range {cr:?}"
                    )));
                }
            }
            fill(&mut resp, &mut buf[..n as usize])?;
            let mut extra = [0u8; 1];
            if matches!(resp.read(&mut extra), Ok(k) if k > 0) {
                return Err(bad("body longer than its Content-Range"));
            }
            Ok(n as usize)
        }
        200 => {
            let size = content_length(&resp);
            if let Some(size) = size {
                if offset >= size {
                    return Ok(0);
                }
            }
            let skipped = io::copy(&mut (&mut resp).take(offset), &mut io::sink())
                .map_err(|e| bad(format!("body read failed: {e}")))?;
            if skipped < offset {
                if size.is_some() {
                    return Err(bad("truncated body (200 answer to a Range request)"));
                }
                return Ok(0);
            }
            let n = match size {
                Some(size) => want.min(size - offset),
                None => want,
            } as usize;
            if size.is_some() {
                fill(&mut resp, &mut buf[..n])?;
                return Ok(n);
            }
            // No length given: the end of the body is the end of the blob.
            let mut done = 0;
            while done < n {
                match resp.read(&mut buf[done..n]) {
                    Ok(0) => break,
                    Ok(k) => done += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(bad(format!("body read failed: {e}"))),
                }
            }
            Ok(done)
        }
        416 => Ok(0),
        s => Err(Bad {
            message: format!("unexpected HTTP {s}"),
            retry: true,
        }),
    }
}

/// `Content-Length` of a HEAD answer.
pub(crate) fn head_size(resp: &Response) -> Result<u64, Bad> {
    content_length(resp).ok_or_else(|| bad("HEAD answer without Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 9, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
    }
}

//! The frame: header, length cap, checksum.

use std::fmt;

pub const MAGIC: [u8; 4] = *b"NYHO";
/// Bumped on an incompatible change of the header or of a message.
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
/// Bodies above this are refused: a state is a few KiB even with many
/// pseudo mounts, so more means a broken or hostile peer.
pub const MAX_BODY: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    BadMagic,
    BadVersion(u16),
    TooLarge(usize),
    Checksum {
        want: u32,
        got: u32,
    },
    /// Not enough bytes yet; more are needed (`need` in total).
    Truncated {
        need: usize,
    },
    Json(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic => write!(f, "handoff frame: bad magic (peer is not a nydus supervisor or worker)"),
            FrameError::BadVersion(v) => write!(f, "handoff frame: version {v} is not supported (this build speaks {VERSION}); upgrade the older side"),
            FrameError::TooLarge(n) => write!(f, "handoff frame: body of {n} bytes exceeds the {MAX_BODY}-byte cap"),
            FrameError::Checksum { want, got } => write!(f, "handoff frame: checksum mismatch (header {want:#010x}, body {got:#010x})"),
            FrameError::Truncated { need } => write!(f, "handoff frame: truncated ({need} bytes needed)"),
            FrameError::Json(e) => write!(f, "handoff frame: bad message body: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Header + body.
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    if body.len() > MAX_BODY {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Parses the frame at the start of `buf`. Returns the body and the number
/// of bytes consumed; `Truncated` when `buf` holds only part of a frame.
/// The header is checked before waiting for the body, so a bad peer is
/// refused without buffering its length.
pub fn decode_frame(buf: &[u8]) -> Result<(&[u8], usize), FrameError> {
    let head_have = buf.len().min(HEADER_LEN);
    if buf[..head_have.min(4)] != MAGIC[..head_have.min(4)] {
        return Err(FrameError::BadMagic);
    }
    if buf.len() < HEADER_LEN {
        return Err(FrameError::Truncated { need: HEADER_LEN });
    }
    let u16_at = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let version = u16_at(4);
    if version != VERSION {
        return Err(FrameError::BadVersion(version));
    }
    let len = u32_at(8) as usize;
    if len > MAX_BODY {
        return Err(FrameError::TooLarge(len));
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Err(FrameError::Truncated { need: total });
    }
    let body = &buf[HEADER_LEN..total];
    let want = u32_at(12);
    let got = crc32c::crc32c(body);
    if want != got {
        return Err(FrameError::Checksum { want, got });
    }
    Ok((body, total))
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces:
/// `push` what was read, then `pop` every complete message. Both ends of a
/// handoff connection use it, so the framing rules live in one place.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` while one is still partial.
    /// A malformed frame is an error; the connection should then be dropped.
    pub fn pop<T: for<'de> serde::Deserialize<'de>>(&mut self) -> Result<Option<T>, FrameError> {
        match decode_frame(&self.buf) {
            Ok((body, used)) => {
                let msg = super::decode_body(body)?;
                self.buf.drain(..used);
                Ok(Some(msg))
            }
            Err(FrameError::Truncated { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

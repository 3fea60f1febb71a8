//! Checked little-endian access to on-disk bytes: every read names the
//! structure it belongs to, so a short or truncated input becomes a
//! `RafsError::Corrupt` with the offset, never a panic.

use super::error::{RafsError, Result};

/// A view of `data` that reports errors against `structure` at absolute
/// offsets (`base` is the absolute offset of `data[0]`).
#[derive(Clone, Copy)]
pub struct Bytes<'a> {
    pub data: &'a [u8],
    pub base: u64,
    pub structure: &'static str,
}

impl<'a> Bytes<'a> {
    /// The `len` bytes at absolute offset `offset` of `file`, as `structure`.
    pub fn at(file: &'a [u8], offset: u64, len: u64, structure: &'static str) -> Result<Self> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| RafsError::corrupt(structure, offset, "offset + length overflows"))?;
        if end > file.len() as u64 {
            return Err(RafsError::corrupt(
                structure,
                offset,
                format!(
                    "needs {len} bytes but the file has only {} bytes",
                    file.len()
                ),
            ));
        }
        Ok(Bytes {
            data: &file[offset as usize..end as usize],
            base: offset,
            structure,
        })
    }

    /// `len` bytes at relative offset `off`.
    pub fn slice(&self, off: usize, len: usize) -> Result<&'a [u8]> {
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or_else(|| {
                RafsError::corrupt(
                    self.structure,
                    self.base + off as u64,
                    format!("field of {len} bytes runs past the end of the structure"),
                )
            })
    }

    pub fn u8(&self, off: usize) -> Result<u8> {
        Ok(self.slice(off, 1)?[0])
    }

    pub fn u16(&self, off: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(off)?))
    }

    pub fn u32(&self, off: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(off)?))
    }

    pub fn u64(&self, off: usize) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(off)?))
    }

    pub fn array<const N: usize>(&self, off: usize) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(off, N)?);
        Ok(out)
    }

    /// A `Corrupt` error for this structure at relative offset `off`.
    pub fn err(&self, off: usize, reason: impl std::fmt::Display) -> RafsError {
        RafsError::corrupt(self.structure, self.base + off as u64, reason)
    }
}

/// Appending little-endian integers to a byte vector (for the writers).
pub trait PutLe {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
}

impl PutLe for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_reads_are_errors_with_offsets() {
        let file = [1u8, 2, 3, 4];
        assert!(Bytes::at(&file, 2, 4, "thing").is_err());
        assert!(Bytes::at(&file, u64::MAX, 2, "thing").is_err());
        let b = Bytes::at(&file, 1, 3, "thing").unwrap();
        assert_eq!(b.u16(0).unwrap(), 0x0302);
        let e = b.u32(0).unwrap_err().to_string();
        assert!(e.contains("thing") && e.contains("0x1"), "{e}");
    }
}

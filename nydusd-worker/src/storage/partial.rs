//! A chunk a read wants only part of, decoded in the spare room of the
//! caller's buffer: the FUSE reply buffer has room for a whole chunk past
//! most replies, so a small or unaligned read costs no chunk-sized buffer
//! of its own (mapped, page-faulted and unmapped again each time).

use std::io;

use nydus_protocol::rafs::ChunkRef;

use super::device::{BlobDevice, Got, Piece};
use super::eio;
use super::fetch::Dest;

impl BlobDevice {
    /// The piece to decode in `room`, if any: the last one that wants part
    /// of a chunk the cache does not have, when `room` holds that chunk.
    /// One only: a second would be decoded over the first one's bytes.
    pub(super) fn part_to_decode_in_room(&self, pieces: &[Piece], room: usize) -> Option<usize> {
        if self.shared_reply_memory {
            return None;
        }
        pieces.iter().rposition(|p| {
            let cached = self
                .blobs
                .get(p.info.blob_index as usize)
                .and_then(|b| b.cache.as_ref())
                .is_some_and(|c| c.is_ready(p.info.chunk_index));
            !p.is_whole() && p.info.uncompressed_size as usize <= room && !cached
        })
    }

    /// Obtains `p`'s chunk decoded into the start of `room`, then moves the
    /// wanted bytes to their place. Runs before anything else is written to
    /// `room`. `rest` are the file's chunks after the read's last one, for
    /// read-ahead when `p` is the last piece. Returns false when the chunk
    /// turned out to be cached meanwhile (the caller reads it from there).
    pub(super) fn decode_part_in_room(
        &self,
        p: &Piece,
        rest: &[ChunkRef],
        last: bool,
        room: &mut [u8],
    ) -> io::Result<bool> {
        let mut keys = vec![(p.info.blob_index, p.info.chunk_index)];
        let mut uniq = vec![p.info];
        if last {
            self.read_ahead(rest, &mut keys, &mut uniq);
        }
        let mut ranges = vec![None; uniq.len()];
        ranges[0] = Some(0..p.info.uncompressed_size as usize);
        let got = self.obtain_on_demand(
            &uniq,
            1,
            &mut Dest {
                out: &mut *room,
                ranges: &ranges,
            },
        );
        let wanted = p.within..p.within + p.dst.len();
        match got.into_iter().next().flatten() {
            Some(Got::Filled) => {
                room.copy_within(wanted, p.dst.start);
                Ok(true)
            }
            Some(Got::Data(d)) => {
                let src = d.get(wanted).ok_or_else(eio)?;
                room[p.dst.clone()].copy_from_slice(src);
                Ok(true)
            }
            Some(Got::Cached) => Ok(false),
            None => Err(eio()),
        }
    }
}

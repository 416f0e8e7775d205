//! Verify's decryption of pack members. Members come up in id order, which is random
//! within a pack; opened in that order, each would decrypt its whole frame again (a frame
//! holds up to hundreds of small files: `verify` of 200,000 small files took 55 s). They
//! are held back instead, a bounded number at a time, and opened sorted by pack and
//! offset, so each frame is decrypted about once per batch (the reader keeps the last frame
//! it opened).

use crate::cas::Cas;
use crate::error::Result;
use crate::hash::Hash;
use crate::maintenance::verify::{lost, VerifyReport};

/// Members held back at most before they are opened: 72 bytes each.
const AT_ONCE: usize = 1 << 16;

/// Pack members whose pack verify found, waiting to be opened: `(pack, offset, id)`.
#[derive(Default)]
pub(super) struct Members(Vec<(Hash, u32, Hash)>);

impl Members {
    /// Queues member `id`, whose frame is at `offset` of pack `pack`.
    pub(super) fn defer(&mut self, pack: Hash, offset: u32, id: Hash) {
        // A
        self.0.push((pack, offset, id));
    }

    /// True once enough wait that they should be opened before the scan goes on.
    pub(super) fn full(&self) -> bool {
        // A
        self.0.len() >= AT_ONCE
    }
}

impl Cas {
    /// Opens every member waiting in `members`, in pack order, counting each as decrypted
    /// and filing those that fail as lost chunks.
    pub(super) fn open_members(
        &self,
        members: &mut Members,
        report: &mut VerifyReport,
        bad_chunks: &mut Vec<Hash>,
    ) -> Result<()> {
        // PA
        members.0.sort_unstable();
        let ids: Vec<Hash> = members.0.drain(..).map(|(_, _, id)| id).collect();
        self.read_chunks(&ids, None, &|_| true, &mut |pos, read| {
            report.decrypted += 1;
            if let (Err(e), Some(id)) = (read, ids.get(pos)) {
                lost(report, bad_chunks, *id, e.to_string());
            }
            true
        })?;
        Ok(())
    }
}

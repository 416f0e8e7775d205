//! Delta frames: a small chunk compressed against its key's previous version of it (zstd with
//! the base's plaintext as prefix), sealed into a pack as a frame of its own. Between two
//! releases of a source tree most changed files differ by a few lines; as deltas they cost
//! a fifth of what they cost compressed in frames of their own.

use crate::crypto::StoreKeys;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::model::chunk::MAX_FRAME;
use crate::model::{ChunkKind, ChunkRecord};
use crate::seal::pack::{frame_bytes, frame_key};
use crate::seal::sealer::check_id;
use crate::seal::{cipher, compress};

/// A chunk compressed against its base, ready to be encrypted into a pack.
pub struct DeltaFrame {
    /// The chunk's id.
    pub id: Hash,
    /// Its plaintext length.
    pub size: u32,
    /// The chunk it was compressed against.
    pub base: Hash,
    /// `[DELTA][zstd frame]`.
    pub body: Vec<u8>,
}

/// Plaintext bytes from which a delta under 1/32 of them is kept without compressing the
/// chunk alone to compare.
const CLEAR_WIN_FROM: usize = 64 << 10;

/// A chunk compressed two ways, and the smaller kept.
pub enum Compressed {
    /// Against its base: less than half of what it takes alone.
    Delta(DeltaFrame),
    /// Alone (`[flag][body]`, as [`compress::compress_into`] writes it): a chunk sealed on
    /// its own is sealed from these bytes rather than compressed a third time.
    Alone(Vec<u8>),
}

/// `plaintext` compressed against `base_plain` when that takes less than half of what it
/// takes alone (a frame shared with other files compresses it somewhat better than alone,
/// and a delta costs a read of its base), or, for a chunk of 64 KiB or more, under 1/32 of
/// its plaintext; else compressed alone.
pub fn delta_frame(
    id: Hash,
    plaintext: &[u8],
    base: Hash,
    base_plain: &[u8],
    level: i32,
) -> Result<Compressed> {
    // A
    let body = compress::compress_against(plaintext, base_plain, level)?;
    // A delta under 1/32 of a large chunk's plaintext wins over anything but the most
    // compressible data; compressing that chunk alone too would cost as much time and room
    // as the delta did.
    let clear_win = plaintext.len() >= CLEAR_WIN_FROM && body.len() * 32 < plaintext.len();
    if !clear_win {
        let mut alone = Vec::new();
        compress::compress_into(plaintext, level, &mut alone)?;
        if body.len() * 2 >= alone.len() {
            return Ok(Compressed::Alone(alone));
        }
    }
    let size = u32::try_from(plaintext.len())
        .ok()
        .filter(|s| *s <= MAX_FRAME)
        .ok_or_else(|| Error::InvalidArgument("a delta larger than a frame".into()))?;
    Ok(Compressed::Delta(DeltaFrame {
        id,
        size,
        base,
        body,
    }))
}

/// Opens delta `id` (record `delta`, in pack record `pack`, whose shards are given) into
/// `plain`, given its base's plaintext, and checks it against its id.
pub fn open_delta_into(
    keys: &StoreKeys,
    id: &Hash,
    delta: &ChunkRecord,
    pack: &ChunkRecord,
    shards: &[Option<&[u8]>],
    base_plain: &[u8],
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    let (_, sealed) = frame_bytes(id, delta, pack, shards)?;
    open_delta_frame(keys, id, delta, sealed, base_plain, plain)
}

/// Opens delta `id` (record `delta`) from its frame's sealed bytes, given its base's
/// plaintext, into `plain`, and checks it against its id.
pub fn open_delta_frame(
    keys: &StoreKeys,
    id: &Hash,
    delta: &ChunkRecord,
    mut sealed: Vec<u8>,
    base_plain: &[u8],
    plain: &mut Vec<u8>,
) -> Result<()> {
    // PA
    if !matches!(delta.kind, ChunkKind::Delta { .. }) {
        return Err(Error::Corrupt(format!(
            "chunk {} is not a delta",
            id.short()
        )));
    }
    if sealed.len() != delta.sealed_len as usize {
        return Err(Error::Corrupt(
            "a frame of another length than its record says".into(),
        ));
    }
    let n = cipher::open_in_place(&frame_key(keys, &delta.nonce), delta.nonce, &mut sealed)?;
    let body = sealed
        .get(..n)
        .ok_or_else(|| Error::Corrupt("a frame shorter than its tag".into()))?;
    compress::decompress_against(body, base_plain, delta.size as usize, plain)?;
    check_id(keys, id, plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::pack::tests::{params, payloads};
    use crate::seal::pack::{open_member_into, seal_pack};
    use proptest::prelude::*;

    fn text(seed: u32, lines: u32) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| {
                format!(
                    "def f{i}(x): return x * {}\n",
                    i.wrapping_mul(2654435761) ^ seed
                )
                .into_bytes()
            })
            .collect()
    }

    proptest! {
        /// Deltas and plain members of one pack read back, from all shards and after losing
        /// up to m of them; given another base a delta never opens to other bytes.
        #[test]
        fn deltas_read_back_beside_members(lines in 100u32..2_000, edit in 0usize..50_000,
                                           others in 0usize..5, lose in prop::collection::vec(any::<u8>(), 0..3)) {
            let keys = StoreKeys::generate();
            let base = text(0, lines);
            let mut new = base.clone();
            let at = edit % new.len();
            new.splice(at..at, b"a line nobody wrote before\n".iter().copied());
            let (base_id, new_id) = (keys.chunk_id(&base), keys.chunk_id(&new));
            let Compressed::Delta(d) = delta_frame(new_id, &new, base_id, &base, 3).unwrap() else {
                panic!("an edit is a delta")
            };
            let files: Vec<Vec<u8>> = (0..others as u32).map(|i| text(i + 1, 30)).collect();
            let chunks: Vec<(Hash, &[u8])> = files.iter().map(|f| (keys.chunk_id(f), f.as_slice())).collect();
            let sealed = seal_pack(&keys, params(), &chunks, std::slice::from_ref(&d)).unwrap();
            let shards = payloads(&sealed);
            let mut view: Vec<Option<&[u8]>> = shards.iter().map(|s| Some(s.as_slice())).collect();
            for l in &lose { let n = view.len(); view[*l as usize % n] = None; }
            let mut plain = Vec::new();
            let (id, record) = sealed.members.last().unwrap();
            prop_assert_eq!(*id, new_id);
            prop_assert_eq!(record.base(), Some(base_id));
            prop_assert!(ChunkRecord::decode(&record.encode().unwrap()).is_ok());
            open_delta_into(&keys, id, record, &sealed.record, &view, &base, &mut plain).unwrap();
            prop_assert_eq!(&plain, &new);
            // Another base opens it to an error, or (the id checked) to the same bytes.
            let other = text(7, lines);
            if open_delta_into(&keys, id, record, &sealed.record, &view, &other, &mut plain).is_ok() {
                prop_assert_eq!(&plain, &new);
            }
            prop_assert!(open_member_into(&keys, id, record, &sealed.record, &view, &mut plain).is_err());
            for ((id, record), f) in sealed.members.iter().zip(&files) {
                open_member_into(&keys, id, record, &sealed.record, &view, &mut plain).unwrap();
                prop_assert_eq!(&plain, f);
            }
        }
    }

    #[test]
    fn unrelated_content_is_no_delta() {
        let keys = StoreKeys::generate();
        let (a, b) = (text(1, 500), text(0xdead_beef, 500).repeat(2));
        let d = delta_frame(keys.chunk_id(&b), &b, keys.chunk_id(&a), &a, 3).unwrap();
        assert!(matches!(d, Compressed::Alone(_)));
    }
}

//! The last frame each thread opened: the members of one frame are usually read one after
//! another (a restore, a directory copied out of the mount), and each would otherwise
//! decompress the whole frame again. [`forget_all`] makes every thread's kept frame stale:
//! verify judges members by what is stored now, not by what a read found earlier.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hash::Hash;

/// Bumped by [`forget_all`]; a frame kept under an older value is not used.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// A kept frame's plaintext and where it came from.
struct Kept {
    generation: u64,
    pack: Hash,
    offset: u32,
    frame: Vec<u8>,
}

thread_local! {
    static LAST_FRAME: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// Keeps `frame`, the plaintext of the frame at `offset` of pack `pack`, as this thread's
/// last frame (unless the thread is inside [`with`]).
pub fn keep(pack: Hash, offset: u32, frame: Vec<u8>) {
    // A
    LAST_FRAME.with(|cell| {
        if let Ok(mut last) = cell.try_borrow_mut() {
            *last = Some(Kept {
                generation: GENERATION.load(Ordering::Acquire),
                pack,
                offset,
                frame,
            });
        }
    });
}

/// Calls `f` with this thread's last frame when it is the frame at `offset` of `pack` and
/// was kept since the last [`forget_all`]; `f` says what to return and whether the frame is
/// still good (false drops it). `None` when that frame is not kept here.
pub fn with<T>(pack: &Hash, offset: u32, f: impl FnOnce(&[u8]) -> (T, bool)) -> Option<T> {
    // A
    LAST_FRAME.with(|cell| {
        let mut last = cell.try_borrow_mut().ok()?;
        let now = GENERATION.load(Ordering::Acquire);
        let kept = last
            .as_ref()
            .filter(|k| k.generation == now && k.pack == *pack && k.offset == offset)?;
        let (out, good) = f(&kept.frame);
        if !good {
            *last = None;
        }
        Some(out)
    })
}

/// Makes every thread's kept frame stale.
pub fn forget_all() {
    // A
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_frame_serves_its_own_place_until_forgotten() {
        let p = Hash([1; 32]);
        keep(p, 8, b"frame".to_vec());
        assert_eq!(with(&p, 8, |f| (f.to_vec(), true)), Some(b"frame".to_vec()));
        assert_eq!(with(&p, 9, |f| (f.to_vec(), true)), None);
        assert_eq!(with(&Hash([2; 32]), 8, |f| (f.to_vec(), true)), None);
        assert_eq!(with(&p, 8, |_| ((), false)), Some(()));
        assert_eq!(with(&p, 8, |_| ((), true)), None, "dropped when not good");
        keep(p, 8, b"frame".to_vec());
        forget_all();
        assert_eq!(with(&p, 8, |_| ((), true)), None, "stale after forget_all");
    }
}

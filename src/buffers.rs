//! Reusable byte buffers. A reader that hands the same buffers round touches memory that
//! is already faulted in; a fresh buffer per chunk costs a page fault per 4 KiB, which on a
//! cluster read was a tenth of the command's CPU time.

/// Empties `out` and makes it hold at least `n` bytes. A buffer too small is replaced
/// rather than grown: growing copies its old capacity for nothing. The new one is rounded
/// up to a power of two, so a reused buffer is replaced a few times at most; pages never
/// written cost nothing.
pub fn make_room(out: &mut Vec<u8>, n: usize) {
    // A
    out.clear();
    if out.capacity() < n {
        *out = Vec::with_capacity(n.checked_next_power_of_two().unwrap_or(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_made_by_replacing_and_kept_when_enough() {
        let mut b = vec![1u8; 10];
        make_room(&mut b, 5);
        assert!(b.is_empty());
        assert!(b.capacity() >= 10);
        make_room(&mut b, 3000);
        assert!(b.is_empty());
        assert!(b.capacity() >= 3000);
    }
}

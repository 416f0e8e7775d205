//! Sealed slices (`model::SealedSlice::decode` and `split`): never panic, agree with each
//! other, and round trip byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::model::SealedSlice;

fuzz_target!(|data: &[u8]| {
    // A
    let split = SealedSlice::split(data);
    match SealedSlice::decode(data) {
        Ok(s) => {
            let (header, payload) = split.expect("split agrees with decode");
            assert_eq!((header, payload), (s.header, &s.payload[..]));
            let h = s.header;
            assert!(h.k > 0 && (h.index as usize) < h.k as usize + h.m as usize);
            assert_eq!(s.encode().unwrap(), data, "non-canonical slice accepted");
        }
        Err(_) => assert!(split.is_err(), "split accepts what decode refuses"),
    }
});

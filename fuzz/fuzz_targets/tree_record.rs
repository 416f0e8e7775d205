//! Directory records of snapshots (`model::TreeRecord::decode`): never panic, whatever
//! decodes re-encodes to the same bytes (tree hashes are hashes of encodings), and every name
//! a decoded record holds is one a restore can create inside its target.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::model::tree::{valid_name, TreeRecord};

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(t) = TreeRecord::decode(data) {
        assert_eq!(t.encode().unwrap(), data, "non-canonical tree record accepted");
        assert!(t.entries.iter().all(|e| valid_name(&e.name)), "a bad name was accepted");
        assert!(t.entries.windows(2).all(|w| w[0].name < w[1].name), "unsorted entries");
    }
});

//! The cluster's records in the store's `cluster` database (`membership`): the cluster
//! identity, member records and invitations. Every input is offered to each decoder (the
//! tag byte picks one); whatever decodes must re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouro_cluster::fuzzing::{
    decode_cluster_info, decode_invite, decode_member, encode_cluster_info, encode_invite,
    encode_member,
};

fuzz_target!(|data: &[u8]| {
    // A
    if let Ok(v) = decode_cluster_info(data) {
        assert_eq!(
            encode_cluster_info(&v).unwrap(),
            data,
            "non-canonical cluster info accepted"
        );
    }
    if let Ok(v) = decode_member(data) {
        assert_eq!(
            encode_member(&v).unwrap(),
            data,
            "non-canonical member record accepted"
        );
    }
    if let Ok(v) = decode_invite(data) {
        assert_eq!(encode_invite(&v).unwrap(), data, "non-canonical invitation accepted");
    }
});

//! What users type: refs (`Ref::parse`, `KEY@hash|~N|time`), times (`parse_time`), keys
//! (`validate_key`), erasure specs (`parse_ec`), hashes (`Hash::from_hex`), and age
//! identities and recipients (`Identity::parse`, `Recipient::parse`). Parsed values must
//! satisfy the rules the parsers promise, and formatting them parses back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ouroboros_db::model::reference::{format_time, parse_time, MIN_PREFIX};
use ouroboros_db::model::{validate_key, Ref, Selector};
use ouroboros_db::{parse_ec, Hash, Identity, Recipient};

fuzz_target!(|data: &[u8]| {
    // A
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Ref::parse(s) {
        assert!(
            validate_key(&r.key).is_ok(),
            "ref with an invalid key: {r:?}"
        );
        if let Selector::HashPrefix(p) = &r.selector {
            assert!(p.len() >= MIN_PREFIX && p.len() <= 64);
            assert!(p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
        // The escaped form `KEY@` always names the head of the same key.
        let head = Ref::parse(&format!("{}@", r.key)).expect("KEY@ parses");
        assert_eq!((head.key, head.selector), (r.key.clone(), Selector::Head));
    }
    if let Some(t) = parse_time(s) {
        // Printed at second precision, a time parses back to the end of that second.
        let printed = format_time(t);
        if let Some(back) = parse_time(&printed) {
            assert_eq!(
                back.div_euclid(1_000_000_000),
                t.div_euclid(1_000_000_000),
                "{printed}"
            );
        }
    }
    let _ = validate_key(s);
    if let Ok((k, m)) = parse_ec(s) {
        assert!((1..=64).contains(&k) && m <= 64);
    }
    if let Some(h) = Hash::from_hex(s) {
        assert_eq!(h.to_hex(), s.to_ascii_lowercase());
    }
    if let Ok(id) = Identity::parse(s) {
        let r = id.recipient().to_string();
        assert_eq!(Recipient::parse(&r).expect("own recipient").to_string(), r);
    }
    if let Ok(r) = Recipient::parse(s) {
        let text = r.to_string();
        assert_eq!(
            Recipient::parse(&text)
                .expect("printed recipient")
                .to_string(),
            text
        );
    }
});

//! Property tests of the SASL message parsers: what a client builds parses back to the same
//! user, password, nonce and token; arbitrary bytes never panic (the `sasl` fuzz target goes
//! further).

use proptest::prelude::*;
use strom_kafka::sasl::wire;

/// RFC 5802's `saslname` escaping, as a client does it.
fn escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

proptest! {
    #[test]
    fn plain_round_trips(user in "[^\u{0}]{1,20}", password in "[^\u{0}]{1,20}", same in any::<bool>()) {
        let authzid = if same { user.clone() } else { String::new() };
        let message = format!("{authzid}\0{user}\0{password}");
        let m = wire::parse_plain(message.as_bytes()).unwrap();
        prop_assert_eq!(m.authzid, authzid.as_str());
        prop_assert_eq!(m.user, user.as_str());
        prop_assert_eq!(m.password, password.as_str());
    }

    #[test]
    fn scram_client_first_round_trips(user in "[^\u{0}]{1,20}", nonce in "[!-+\\--~]{1,40}") {
        let bare = format!("n={},r={nonce}", escape(&user));
        let message = format!("n,,{bare}");
        let m = wire::parse_scram_client_first(message.as_bytes()).unwrap();
        prop_assert_eq!(m.user, user);
        prop_assert_eq!(m.nonce, nonce.as_str());
        prop_assert_eq!(m.bare, bare.as_str());
        prop_assert_eq!(m.gs2_header, "n,,");
    }

    #[test]
    fn scram_client_final_round_trips(nonce in "[!-+\\--~]{1,40}", proof in proptest::collection::vec(any::<u8>(), 32..=64)) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let without_proof = format!("c=biws,r={nonce}");
        let message = format!("{without_proof},p={}", b64.encode(&proof));
        let m = wire::parse_scram_client_final(message.as_bytes()).unwrap();
        prop_assert_eq!(m.nonce, nonce.as_str());
        prop_assert_eq!(m.proof, proof);
        prop_assert_eq!(m.channel_binding, b"n,,".to_vec());
        prop_assert_eq!(m.without_proof, without_proof.as_str());
    }

    #[test]
    fn oauthbearer_round_trips(token in "[!-~]{1,200}", authzid in proptest::option::of("[a-z]{1,10}")) {
        let gs2 = match &authzid {
            Some(a) => format!("n,a={a},"),
            None => "n,,".to_owned(),
        };
        let message = format!("{gs2}\u{1}auth=Bearer {token}\u{1}\u{1}");
        let m = wire::parse_oauthbearer(message.as_bytes()).unwrap();
        prop_assert_eq!(m.token, token.as_str());
        prop_assert_eq!(m.authzid, authzid);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = wire::parse_plain(&bytes);
        let _ = wire::parse_scram_client_first(&bytes);
        let _ = wire::parse_scram_client_final(&bytes);
        let _ = wire::parse_oauthbearer(&bytes);
    }
}

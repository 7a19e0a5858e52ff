//! Properties of `ssl.principal.mapping.rules` parsing and mapping: no input makes them
//! panic, and the rules' meaning holds for any DN.

use proptest::prelude::*;
use strom_tls::mapping::PrincipalMapper;

/// DN-like text: attribute pairs with the characters RFC 2253 output can contain.
fn dn() -> impl Strategy<Value = String> {
    proptest::collection::vec(("[A-Z]{1,3}", "[ -~&&[^,=\\\\]]{0,12}"), 1..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text parses or is refused, and a parsed list maps any DN or refuses it.
    #[test]
    fn arbitrary_rules_never_panic(rules in "\\PC{0,60}", dn in "\\PC{0,40}") {
        if let Ok(mapper) = PrincipalMapper::parse(&rules) {
            let _ = mapper.map(&dn);
            // What a parsed list prints parses again to the same list.
            let again = PrincipalMapper::parse(&mapper.to_string());
            prop_assert!(again.is_ok(), "{} printed as {}", rules, mapper);
        }
    }

    /// Rule-shaped text (the parts the grammar names, in any order) never panics either.
    #[test]
    fn rule_shaped_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("RULE:".to_owned()), Just("DEFAULT".to_owned()), Just("/".to_owned()),
                Just(",".to_owned()), Just("\\".to_owned()), Just("$".to_owned()),
                Just("L".to_owned()), Just("U".to_owned()), "[0-9]{1,3}", "[()*.^$a-z ]{0,4}",
            ],
            0..12,
        ),
        dn in dn(),
    ) {
        if let Ok(mapper) = PrincipalMapper::parse(&parts.concat()) {
            let _ = mapper.map(&dn);
        }
    }

    /// DEFAULT is the identity; a whole-DN group with `L`/`U` is the DN in that case; a rule
    /// that does not apply passes the DN on to the next one.
    #[test]
    fn rules_mean_what_kafka_says(dn in dn()) {
        prop_assert_eq!(PrincipalMapper::parse("DEFAULT").unwrap().map(&dn).unwrap(), dn.clone());
        prop_assert_eq!(
            PrincipalMapper::parse("RULE:(.*)/$1/U").unwrap().map(&dn).unwrap(),
            dn.to_uppercase()
        );
        prop_assert_eq!(
            PrincipalMapper::parse("RULE:^(.*)$/[$1]/L").unwrap().map(&dn).unwrap(),
            format!("[{}]", dn.to_lowercase())
        );
        let never = PrincipalMapper::parse("RULE:^NEVER=$/x/,DEFAULT").unwrap();
        prop_assert_eq!(never.map(&dn).unwrap(), dn.clone());
        prop_assert!(PrincipalMapper::parse("RULE:^NEVER=$/x/").unwrap().map(&dn).is_err());
    }
}

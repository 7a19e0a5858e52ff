//! The client-certificate subject reader (`strom_tls::dn`): any bytes give a DN or `None`,
//! never a panic, and a DN read is never empty of its `=` separators when it has parts.

/// Runs the checks on one input.
pub fn check(data: &[u8]) {
    if let Some(dn) = strom_tls::dn::subject_dn(data) {
        for part in dn
            .split(',')
            .filter(|p| !p.is_empty() && !p.ends_with('\\'))
        {
            assert!(part.contains('='), "RDN without a type: {part:?} in {dn:?}");
        }
    }
}

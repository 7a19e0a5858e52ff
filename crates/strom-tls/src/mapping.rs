//! Kafka's `ssl.principal.mapping.rules`: how a client certificate's subject DN (RFC 2253
//! form, see [`crate::dn`]) becomes the name of its `User:` principal.
//!
//! The rules are a comma-separated list, tried in order; the first that applies names the
//! principal, and a DN no rule applies to is refused (Kafka's `NoMatchingRule`, which fails
//! the connection's authentication):
//!
//! - `DEFAULT`: the DN as it is (the rule list when none is configured).
//! - `RULE:pattern/replacement/` with an optional `L` or `U` after the last `/`: applies when
//!   the regular expression matches the whole DN; the name is the DN with the match replaced
//!   by `replacement` (`$1`… its groups, `\` escapes the next character), then lower- or
//!   upper-cased. `\/` writes a `/` inside the pattern or the replacement.
//!
//! Example: `RULE:^CN=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT` maps `CN=Alice,OU=Eng,O=Org` to
//! `alice` and leaves every DN that does not start with `CN=` as it is.
//!
//! Differences from Kafka, whose patterns are Java regular expressions: patterns use the
//! `regex-lite` syntax (no look-around, no back-references in the pattern, `\d` and `\w`
//! ASCII only); a pattern that does not compile, or a replacement with a `$` that is not
//! followed by a group number, is refused when the rules are parsed rather than when a
//! client connects. A `$n` naming a group the pattern does not have is literal text, as
//! Kafka makes it (`escapeLiteralBackReferences`).

use std::fmt;

use regex_lite::Regex;

/// Why a rule list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A rule is neither `DEFAULT` nor `RULE:pattern/replacement/[LU]`, or has text after
    /// its end.
    #[error("invalid ssl.principal.mapping.rules rule `{rule}`")]
    InvalidRule {
        /// The rule as written.
        rule: String,
    },
    /// A rule's pattern is not a valid regular expression.
    #[error("invalid pattern `{pattern}` in ssl.principal.mapping.rules: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// The regular-expression parser's message.
        reason: String,
    },
    /// A replacement has a `$` not followed by a group number, or ends with a lone `\`.
    #[error("invalid replacement `{replacement}` in ssl.principal.mapping.rules")]
    InvalidReplacement {
        /// The replacement.
        replacement: String,
    },
}

/// A DN that no rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no ssl.principal.mapping.rules rule applies to `{dn}`")]
pub struct NoMatchingRule {
    /// The subject DN.
    pub dn: String,
}

/// What becomes of a mapped name's letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// One piece of a replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Group(usize),
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// As written (for `Display`).
        source: String,
        pattern: Regex,
        replacement: Vec<Piece>,
        case: Case,
    },
}

/// A parsed `ssl.principal.mapping.rules` list (see the module docs).
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for PrincipalMapper {
    /// `DEFAULT`: the DN as it is.
    fn default() -> Self {
        PrincipalMapper {
            rules: vec![Rule::Default],
        }
    }
}

impl fmt::Display for PrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for rule in &self.rules {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match rule {
                Rule::Default => f.write_str("DEFAULT")?,
                Rule::Replace { source, .. } => f.write_str(source)?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for PrincipalMapper {
    type Err = MappingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrincipalMapper::parse(s)
    }
}

/// Reads one `/`-terminated part of a rule (`\` keeps the next character with it), returning
/// it and the rest after the `/`, or `None` without a terminating `/`.
fn split_part(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The pattern as the regex parser takes it: `\/` is a plain `/`.
fn pattern_text(raw: &str) -> String {
    raw.replace("\\/", "/")
}

/// Parses a replacement with `groups` capture groups (Kafka/Java rules: `\x` is `x`; `$n`
/// takes as many digits as still name an existing group; a `$n` beyond the groups is literal).
fn parse_replacement(raw: &str, groups: usize) -> Result<Vec<Piece>, MappingError> {
    let invalid = || MappingError::InvalidReplacement {
        replacement: raw.to_owned(),
    };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => literal.push(chars.next().ok_or_else(invalid)?),
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    return Err(invalid());
                }
                // Kafka's escapeLiteralBackReferences: a reference beyond the groups is
                // shortened digit by digit while it has two or more; still beyond, it is text.
                let mut take = digits.len();
                let mut number: usize = digits.parse().map_err(|_| invalid())?;
                while number > groups && take > 1 {
                    take -= 1;
                    number = digits[..take].parse().map_err(|_| invalid())?;
                }
                if digits.starts_with('0') || number <= groups {
                    // Java then reads the group number greedily: the first digit, and more
                    // while the number still names a group.
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    let mut n = usize::from(digits.as_bytes()[0] - b'0');
                    let mut used = 1;
                    while used < digits.len() {
                        let next = n * 10 + usize::from(digits.as_bytes()[used] - b'0');
                        if next > groups {
                            break;
                        }
                        n = next;
                        used += 1;
                    }
                    pieces.push(Piece::Group(n));
                    literal.push_str(&digits[used..]);
                } else {
                    literal.push('$');
                    literal.push_str(&digits);
                }
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

impl PrincipalMapper {
    /// Parses a rule list (Kafka's syntax; see the module docs). Empty rules (`,,`) are
    /// skipped, as Kafka does; an empty list maps nothing.
    pub fn parse(rules: &str) -> Result<PrincipalMapper, MappingError> {
        let mut parsed = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            let invalid = |rule: &str| MappingError::InvalidRule {
                rule: rule.trim().to_owned(),
            };
            let (rule, after) = if let Some(tail) = rest.strip_prefix("DEFAULT") {
                (Rule::Default, tail)
            } else if let Some(body) = rest.strip_prefix("RULE:") {
                let until_comma = || rest.split(',').next().unwrap_or(rest);
                let (raw_pattern, tail) = split_part(body).ok_or_else(|| invalid(until_comma()))?;
                let (raw_replacement, tail) =
                    split_part(tail).ok_or_else(|| invalid(until_comma()))?;
                let (case, tail) = match tail.chars().next() {
                    Some('L') => (Case::Lower, &tail[1..]),
                    Some('U') => (Case::Upper, &tail[1..]),
                    _ => (Case::Keep, tail),
                };
                let pattern_source = pattern_text(raw_pattern);
                let pattern = Regex::new(&format!("^(?:{pattern_source})$")).map_err(|e| {
                    MappingError::InvalidPattern {
                        pattern: raw_pattern.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
                // The anchoring group is not capturing: `captures_len` counts group 0 too.
                let groups = pattern.captures_len() - 1;
                let replacement = parse_replacement(raw_replacement, groups)?;
                let source = &rest[..rest.len() - tail.len()];
                (
                    Rule::Replace {
                        source: source.to_owned(),
                        pattern,
                        replacement,
                        case,
                    },
                    tail,
                )
            } else if rest.starts_with(',') {
                // An empty rule.
                rest = rest[1..].trim_start();
                continue;
            } else {
                return Err(invalid(rest.split(',').next().unwrap_or(rest)));
            };
            let after = after.trim_start();
            match after.strip_prefix(',') {
                Some(next) => rest = next.trim_start(),
                None if after.is_empty() => rest = after,
                None => {
                    let end = rules.len() - after.len();
                    let start = rules.len() - rest.len();
                    let junk = after.split(',').next().unwrap_or(after);
                    return Err(invalid(&format!("{}{junk}", &rules[start..end])));
                }
            }
            parsed.push(rule);
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The principal name of `dn`: the first rule that applies (see the module docs).
    pub fn map(&self, dn: &str) -> Result<String, NoMatchingRule> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_owned()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                    ..
                } => {
                    let Some(captures) = pattern.captures(dn) else {
                        continue;
                    };
                    let mut name = String::new();
                    for piece in replacement {
                        match piece {
                            Piece::Literal(text) => name.push_str(text),
                            Piece::Group(n) => {
                                if let Some(m) = captures.get(*n) {
                                    name.push_str(m.as_str());
                                }
                            }
                        }
                    }
                    return Ok(match case {
                        Case::Keep => name,
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(NoMatchingRule { dn: dn.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &str, dn: &str) -> Result<String, NoMatchingRule> {
        PrincipalMapper::parse(rules).expect("valid rules").map(dn)
    }

    #[test]
    fn default_keeps_the_dn() {
        assert_eq!(
            PrincipalMapper::default().map("CN=a,O=b").unwrap(),
            "CN=a,O=b"
        );
        assert_eq!(map("DEFAULT", "CN=a,O=b").unwrap(), "CN=a,O=b");
    }

    /// The cases of Kafka's `SslPrincipalMapperTest.testSslPrincipalMapper`.
    #[test]
    fn kafka_examples() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, \
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
                     RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, \
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, \
                     DEFAULT";
        let m = PrincipalMapper::parse(rules).unwrap();
        let cases = [
            ("CN=Duke,OU=ServiceUsers,O=Org,C=US", "duke"),
            ("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", "duke@sme"),
            ("cn=duke,ou=sme,dc=mycp,dc=com", "DUKE@SME"),
            ("cN=duke,OU=JavaSoft,O=Sun Microsystems", "DUKE"),
            (
                "OU=JavaSoft,O=Sun Microsystems,C=US",
                "OU=JavaSoft,O=Sun Microsystems,C=US",
            ),
        ];
        for (dn, name) in cases {
            assert_eq!(m.map(dn).unwrap(), name, "{dn}");
        }
    }

    #[test]
    fn no_matching_rule_is_an_error() {
        assert_eq!(
            map("RULE:^CN=(.*)$/$1/", "O=x"),
            Err(NoMatchingRule { dn: "O=x".into() })
        );
        assert!(PrincipalMapper::parse("").unwrap().map("CN=a").is_err());
    }

    /// Kafka's `testInvalidRules` (those that are invalid here too) and a few of ours.
    #[test]
    fn invalid_rules_are_refused() {
        for rules in [
            "DEFAULT;",
            "RULE:",
            "RULE:/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
            "DEFAULT X",
            "SOMETHING",
            "RULE:(/x$/",
            "RULE:(.*)/$x/",
            "RULE:(.*)/x\\/",
        ] {
            assert!(PrincipalMapper::parse(rules).is_err(), "{rules}");
        }
    }

    #[test]
    fn commas_in_patterns_escapes_and_blank_rules() {
        assert_eq!(
            map("RULE:^CN=([^,]*),O=(.*)$/$2\\/$1/,,DEFAULT", "CN=a,O=b").unwrap(),
            "b/a"
        );
        assert_eq!(map("RULE:^CN=a\\/b$/slash/", "CN=a/b").unwrap(), "slash");
        assert_eq!(map("  RULE:x/y/ , DEFAULT  ", "x").unwrap(), "y");
        assert_eq!(map("  RULE:x/y/ , DEFAULT  ", "z").unwrap(), "z");
    }

    #[test]
    fn back_references_beyond_the_groups_are_literal() {
        // Two groups: `$12` is group 1 then "2"; `$3` is text.
        assert_eq!(
            map("RULE:^CN=(.),O=(.)$/$12-$3-$2/", "CN=a,O=b").unwrap(),
            "a2-$3-b"
        );
        // No groups at all: every reference is text.
        assert_eq!(map("RULE:^CN=a$/$1/", "CN=a").unwrap(), "$1");
    }

    #[test]
    fn display_round_trips() {
        let rules = "RULE:^CN=(.*?),OU=x$/$1/L,DEFAULT";
        assert_eq!(PrincipalMapper::parse(rules).unwrap().to_string(), rules);
    }
}

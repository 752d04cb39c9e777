//! Redis's glob patterns (`KEYS`, `SCAN … MATCH`): `*` any run of bytes, `?` one byte,
//! `[abc]`, `[^abc]`, `[a-z]` a class, `\x` the byte `x` itself. Bytes, not characters, as in
//! Redis; an unclosed `[` class ends at the end of the pattern, as Redis ends it; and, as
//! Redis's matcher, no pattern matches the empty key (Redis lists it for `KEYS *` only
//! because it does not match that one pattern at all).

/// Whether `text` matches `pattern`.
///
/// ```
/// use anna_kvs::glob::matches;
/// assert!(matches(b"user:*", b"user:42"));
/// assert!(matches(b"h?llo", b"hello"));
/// assert!(matches(b"h[^e]llo", b"hallo"));
/// assert!(!matches(b"h[a-b]llo", b"hello"));
/// assert!(matches(b"a\\*b", b"a*b"));
/// ```
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let mut give_up = false;
    match_from(pattern, text, &mut give_up, 0)
}

/// The matcher, as Redis's: a `*` tries each rest of the text, and once a `*`'s every try
/// failed, no longer match can succeed either (`give_up`), which keeps patterns with many
/// stars linear instead of exponential.
fn match_from(mut p: &[u8], mut s: &[u8], give_up: &mut bool, depth: usize) -> bool {
    if depth > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_from(&p[1..], s, give_up, depth + 1) {
                        return true;
                    }
                    if *give_up {
                        return false;
                    }
                    s = &s[1..];
                }
                *give_up = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let mut hit = false;
                loop {
                    match p {
                        [b'\\', escaped, ..] => {
                            p = &p[1..];
                            hit |= *escaped == s[0];
                        }
                        [b']', ..] => break,
                        // An unclosed class ends with the pattern.
                        [] => break,
                        [start, b'-', end, ..] => {
                            let (low, high) =
                                if start <= end { (*start, *end) } else { (*end, *start) };
                            hit |= (low..=high).contains(&s[0]);
                            p = &p[2..];
                        }
                        [byte, ..] => hit |= *byte == s[0],
                    }
                    p = &p[1..];
                }
                if hit == negate {
                    return false;
                }
                s = &s[1..];
                if p.is_empty() {
                    // (The class ran to the end: nothing left to step over.)
                    return s.is_empty();
                }
            }
            b'\\' if p.len() >= 2 => {
                if p[1] != s[0] {
                    return false;
                }
                p = &p[1..];
                s = &s[1..];
            }
            byte => {
                if byte != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_as_in_redis() {
        let cases: &[(&str, &str, bool)] = &[
            // As Redis's matcher: a pattern never matches the empty key (KEYS * lists it only
            // because Redis skips matching for that one pattern; so do the planners).
            ("*", "", false),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbc", false),
            ("*a*b*", "zzazzbzz", true),
            ("a**b", "ab", true),
            ("?", "", false),
            ("?", "x", true),
            ("??", "x", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hello", false),
            ("h[a-c]llo", "hbllo", true),
            ("h[c-a]llo", "hbllo", true),
            ("h[\\]]llo", "h]llo", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("a\\", "a\\", true),
            ("[abc", "a", true),
            ("[abc", "ab", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:names", false),
        ];
        for &(pattern, text, expected) in cases {
            assert_eq!(
                matches(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "a*".repeat(30) + "b";
        let text = "a".repeat(200);
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }
}

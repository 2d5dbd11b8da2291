//! Host names as nginx compares them: a request's host (request line, `Host`, HTTP/2
//! `:authority`) and a connection's SNI name.
//!
//! nginx runs both through `ngx_http_validate_host` before it compares them byte for byte
//! (`ngx_http_set_virtual_server`): the port goes, one trailing dot goes, ASCII letters
//! are lowercased, and a name with an empty label, a control character, a space or a `/`
//! is refused (an SNI name nginx refuses counts as none; a request host, as a 400). The
//! same rules here, so that the library and nginx never disagree on whether two names are
//! one. nginx 1.31 also refuses some punctuation older releases took; a name only one
//! side refuses cannot be the same name on both sides, so the older, wider rules are the
//! ones to follow.
//!
//! The one departure: a name nginx would leave with a trailing dot is refused, so that the
//! canonical form is a fixed point (the library may be handed nginx's `$host`, already
//! validated, or the client's bytes, and must compare both the same way).
//!
//! Both inputs are the client's bytes: every index is checked, and nothing allocates.

/// The part of `raw` nginx compares (the host without port or trailing dot, letters in
/// their original case), or `None` where nginx refuses the name.
pub fn canonical(raw: &[u8]) -> Option<&[u8]> {
    #[derive(PartialEq)]
    enum State {
        Usual,
        Literal,
        Rest,
    }
    let mut state = State::Usual;
    let mut last_dot: Option<usize> = None;
    let mut host_len = raw.len();
    for (i, &ch) in raw.iter().enumerate() {
        match ch {
            b'.' => {
                if i > 0 && last_dot == Some(i - 1) {
                    return None;
                }
                last_dot = Some(i);
            }
            b':' if state == State::Usual => {
                host_len = i;
                state = State::Rest;
            }
            b'[' if i == 0 => state = State::Literal,
            b']' if state == State::Literal => {
                host_len = i + 1;
                state = State::Rest;
            }
            b'/' => return None,
            ch if ch <= 0x20 || ch == 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && last_dot == Some(host_len - 1) {
        host_len -= 1;
    }
    match raw.get(..host_len) {
        // nginx keeps a trailing dot when the last dot came after the port (`a.:1.`
        // gives `a.`); such a name would change if validated again, so `$host` and the
        // client's bytes could disagree on it: refused, which only ever refuses more.
        Some(host) if !host.is_empty() && !host.ends_with(b".") => Some(host),
        _ => None,
    }
}

/// Whether nginx takes `a` and `b` for the same host name: both valid, and equal once
/// canonical and lowercased.
pub fn same_host(a: &[u8], b: &[u8]) -> bool {
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// `raw`'s canonical form, lowercased as nginx stores it, into `out`; `None` where nginx
/// refuses the name.
pub fn lowercase_into(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let host = canonical(raw)?;
    out.clear();
    out.extend(host.iter().map(u8::to_ascii_lowercase));
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Option<&str> {
        canonical(s.as_bytes()).map(|h| std::str::from_utf8(h).unwrap())
    }

    #[test]
    fn ports_and_one_trailing_dot_go() {
        assert_eq!(canon("a.test"), Some("a.test"));
        assert_eq!(canon("a.test:8443"), Some("a.test"));
        assert_eq!(canon("a.test."), Some("a.test"));
        assert_eq!(canon("a.test.:443"), Some("a.test"));
        assert_eq!(canon("[::1]:443"), Some("[::1]"));
        assert_eq!(canon("[::1]"), Some("[::1]"));
        assert_eq!(canon("127.0.0.1:80"), Some("127.0.0.1"));
        // nginx takes a leading dot, and anything after the first colon.
        assert_eq!(canon(".a.test"), Some(".a.test"));
        assert_eq!(canon("a.test:x:y"), Some("a.test"));
    }

    #[test]
    fn what_nginx_refuses_is_refused() {
        for bad in [
            "", ".", ":443", "a..test", "a.test..", "a/b", "a b", "a\tb", "a\0b", "a\x7fb", "..",
        ] {
            assert_eq!(canon(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn case_does_not_matter_and_ports_do_not_either() {
        assert!(same_host(b"A.Test", b"a.test"));
        assert!(same_host(b"a.test:443", b"A.TEST."));
        assert!(!same_host(b"a.test", b"b.test"));
        assert!(!same_host(b"a.test", b"a.test.b"));
        assert!(!same_host(b"", b""), "two invalid names are not one name");
    }

    #[test]
    fn lowercased_as_nginx_stores_it() {
        let mut out = Vec::new();
        assert_eq!(lowercase_into(b"WWW.A.Test.:8443", &mut out), Some(()));
        assert_eq!(out, b"www.a.test");
        assert_eq!(lowercase_into(b"a..b", &mut out), None);
    }
}

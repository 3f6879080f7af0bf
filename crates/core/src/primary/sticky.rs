//! Sticky keys: what identifies a client, per connection. `ip` is known at
//! accept; the others are read from the first request's head, peeked in the
//! primary (`MSG_PEEK`: never consumed, never copied to the worker). No key
//! in the head (or not HTTP, or TLS) falls back to the client's address.

use std::fmt;

use crate::tuning::MAX_HEAD;

/// `RS_CLUSTER_STICKY_KEY` / `setupPrimary({ sticky })` / `--sticky-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    Ip,
    /// A request header (lower-cased name); its first comma-separated value,
    /// so `x-forwarded-for` keys on the client, not the proxies.
    Header(String),
    Cookie(String),
    /// A query parameter of the request target (socket.io's `sid`).
    Query(String),
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadSpec(pub String);

impl fmt::Display for BadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sticky key must be 'ip', 'header:NAME', 'cookie:NAME' or 'query:NAME'; received {:?}",
            self.0
        )
    }
}

/// A header name or cookie/parameter name: HTTP token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl KeySpec {
    pub fn parse(s: &str) -> Result<KeySpec, BadSpec> {
        let bad = || BadSpec(s.to_string());
        if s == "ip" {
            return Ok(KeySpec::Ip);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if !is_token(name) {
            return Err(bad());
        }
        match kind {
            "header" => Ok(KeySpec::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(KeySpec::Cookie(name.to_string())),
            "query" => Ok(KeySpec::Query(name.to_string())),
            _ => Err(bad()),
        }
    }

    /// Whether the key comes from the request head (a peek) or the address.
    pub fn needs_head(&self) -> bool {
        !matches!(self, KeySpec::Ip)
    }

    /// Cookies and query parameters hold session ids that a server hands out
    /// in answer to a request without one: a new one goes to the worker its
    /// client's address went to, which is the worker that made it. A header
    /// names the client itself (`x-forwarded-for`), so it is placed by its
    /// own hash.
    pub fn follows_address(&self) -> bool {
        matches!(self, KeySpec::Cookie(_) | KeySpec::Query(_))
    }
}

/// What a peek found.
#[derive(Debug, PartialEq, Eq)]
pub enum Head<'a> {
    /// The key's value.
    Key(&'a [u8]),
    /// A complete head (or MAX_HEAD bytes, or not HTTP) without the key:
    /// fall back to the address.
    NoKey,
    /// Looks like HTTP but the head is not all there yet.
    Partial,
}

/// Finds `spec`'s key in the start of a connection's bytes.
pub fn find_key<'a>(spec: &KeySpec, bytes: &'a [u8]) -> Head<'a> {
    let complete = bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.len() >= MAX_HEAD;
    // A request line starts with a method token and a space; TLS, HTTP/2's
    // preface aside, starts with 0x16, which is not a token character.
    let method_len = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let http = method_len > 0 && bytes.get(method_len) == Some(&b' ');
    if !http {
        let undecided = method_len == bytes.len() && !complete;
        return if undecided { Head::Partial } else { Head::NoKey };
    }
    let mut lines = bytes.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let found = match spec {
        KeySpec::Ip => None,
        KeySpec::Query(name) => query_param(request_line, name.as_bytes()),
        KeySpec::Header(name) => header(lines, name.as_bytes()).map(first_value),
        KeySpec::Cookie(name) => lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| header_value(l, b"cookie"))
            .find_map(|v| cookie(v, name.as_bytes())),
    };
    match found {
        Some(v) if !v.is_empty() => Head::Key(v),
        _ if complete => Head::NoKey,
        // The key may be in a header line not received yet.
        _ => Head::Partial,
    }
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The value of `line` if it is header `name` (lower-case).
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    line[..colon]
        .eq_ignore_ascii_case(name)
        .then(|| trim(&line[colon + 1..]))
}

fn header<'a>(mut lines: impl Iterator<Item = &'a [u8]>, name: &[u8]) -> Option<&'a [u8]> {
    lines.find_map(|l| {
        if l.is_empty() {
            Some(None)
        } else {
            header_value(l, name).map(Some)
        }
    })?
}

fn first_value(v: &[u8]) -> &[u8] {
    trim(v.split(|&b| b == b',').next().unwrap_or(v))
}

fn cookie<'a>(v: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    v.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| trim(&pair[eq + 1..]))
    })
}

fn query_param<'a>(request_line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let target = request_line.split(|&b| b == b' ').nth(1)?;
    let q = target.iter().position(|&b| b == b'?')?;
    target[q + 1..].split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        (&pair[..eq] == name).then(|| pair.get(eq + 1..).unwrap_or_default())
    })
}

/// A 64-bit hash of a key (FNV-1a, then a finaliser for good high bits):
/// stable for the life of the primary, which is all placement needs.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!(KeySpec::parse("ip"), Ok(KeySpec::Ip));
        assert_eq!(
            KeySpec::parse("header:X-Forwarded-For"),
            Ok(KeySpec::Header("x-forwarded-for".into()))
        );
        assert_eq!(KeySpec::parse("cookie:sid"), Ok(KeySpec::Cookie("sid".into())));
        assert_eq!(KeySpec::parse("query:sid"), Ok(KeySpec::Query("sid".into())));
        for bad in ["", "IP", "header:", "header", "body:x", "query:a b", "cookie:a;b", ":x"] {
            assert!(KeySpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    const REQ: &[u8] = b"GET /socket.io/?EIO=4&transport=polling&sid=abc123 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.1.2.3, 10.0.0.1\r\nCookie: a=1; io=zz9; b=2\r\n\r\n";

    #[test]
    fn keys_are_found_in_a_request_head() {
        let spec = |s| KeySpec::parse(s).unwrap();
        assert_eq!(find_key(&spec("query:sid"), REQ), Head::Key(b"abc123"));
        assert_eq!(find_key(&spec("query:EIO"), REQ), Head::Key(b"4"));
        assert_eq!(find_key(&spec("header:x-forwarded-for"), REQ), Head::Key(b"10.1.2.3"));
        assert_eq!(find_key(&spec("header:host"), REQ), Head::Key(b"x"));
        assert_eq!(find_key(&spec("cookie:io"), REQ), Head::Key(b"zz9"));
        assert_eq!(find_key(&spec("cookie:nope"), REQ), Head::NoKey);
        assert_eq!(find_key(&spec("query:nope"), REQ), Head::NoKey);
    }

    #[test]
    fn an_incomplete_head_waits_and_other_protocols_fall_back() {
        let spec = KeySpec::parse("header:x-session").unwrap();
        assert_eq!(find_key(&spec, b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
        assert_eq!(find_key(&spec, b"GE"), Head::Partial);
        assert_eq!(find_key(&spec, b""), Head::Partial);
        assert_eq!(find_key(&spec, b"\x16\x03\x01\x02\x00"), Head::NoKey, "TLS");
        assert_eq!(find_key(&spec, b"SSH-2.0-OpenSSH\r\n"), Head::NoKey);
        // A body after the head is never looked at.
        let with_body = b"POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\nx-session: nope\r\n";
        assert_eq!(find_key(&spec, with_body), Head::NoKey);
        // An oversized head without the key ends the wait.
        let mut huge = b"GET / HTTP/1.1\r\nA: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        assert_eq!(find_key(&spec, &huge), Head::NoKey);
    }

    #[test]
    fn hashes_spread_and_are_stable() {
        assert_eq!(hash(b"abc"), hash(b"abc"));
        assert_ne!(hash(b"abc"), hash(b"abd"));
        let high: usize = (0..1000u32).filter(|i| hash(&i.to_le_bytes()) >> 63 == 1).count();
        assert!((400..600).contains(&high), "{high}");
    }
}

//! Bounds-checked reading and in-place rewriting of ClientHello bytes.
//!
//! Everything here is safe Rust over byte slices. Input comes from the network, so each
//! function validates the whole structure before it touches a byte: malformed input is
//! reported and left exactly as it was (OpenSSL then rejects it on its own terms).

use std::ops::Range;

/// The `application_layer_protocol_negotiation` extension type (RFC 7301).
pub const EXTENSION_ALPN: u16 = 16;
/// TLS 1.3 `pre_shared_key` (RFC 8446).
pub const EXTENSION_PRE_SHARED_KEY: u16 = 41;
/// TLS 1.3 `psk_key_exchange_modes` (RFC 8446).
pub const EXTENSION_PSK_KEY_EXCHANGE_MODES: u16 = 45;
/// A `PskKeyExchangeMode` value no TLS stack defines, so servers ignore it.
const UNKNOWN_PSK_MODE: u8 = 0xFF;
/// The protocol identifier this module exists to hide.
pub const H2: [u8; 2] = *b"h2";
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Why bytes were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A length points past the end of its enclosing structure.
    Truncated,
    /// Bytes remain after the structure's declared end.
    TrailingBytes,
    /// Not a ClientHello handshake message.
    NotClientHello,
    /// An ALPN list that is empty or holds an empty protocol name.
    EmptyProtocol,
}

type Result<T> = std::result::Result<T, Malformed>;

/// A cursor that never reads past its slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<Range<usize>> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Truncated)?;
        if end > self.buf.len() {
            return Err(Malformed::Truncated);
        }
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn uint(&mut self, width: usize) -> Result<usize> {
        let range = self.take(width)?;
        Ok(self.buf[range]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }

    /// A `width`-byte length followed by that many bytes; returns their range.
    fn prefixed(&mut self, width: usize) -> Result<Range<usize>> {
        let len = self.uint(width)?;
        self.take(len)
    }

    /// A `width`-byte length that must cover exactly the rest of the input.
    fn exact_length(&mut self, width: usize) -> Result<()> {
        let len = self.uint(width)?;
        match len.cmp(&self.remaining()) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => Err(Malformed::Truncated),
            std::cmp::Ordering::Less => Err(Malformed::TrailingBytes),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Malformed::TrailingBytes)
        }
    }
}

/// Finds the bodies of the extensions `types` in a whole ClientHello handshake message
/// (4-byte handshake header included), validating the message's framing down to every
/// extension. Each entry is `None` when that extension is absent.
pub fn find_extensions<const N: usize>(
    message: &[u8],
    types: [u16; N],
) -> Result<[Option<Range<usize>>; N]> {
    let mut found = [(); N].map(|_| None);
    let mut r = Reader::new(message);
    if r.uint(1)? != usize::from(HANDSHAKE_CLIENT_HELLO) {
        return Err(Malformed::NotClientHello);
    }
    r.exact_length(3)?;
    r.take(2 + 32)?; // legacy_version, random
    r.prefixed(1)?; // legacy_session_id
    r.prefixed(2)?; // cipher_suites
    r.prefixed(1)?; // legacy_compression_methods
    if r.remaining() == 0 {
        return Ok(found); // no extensions at all (allowed before TLS 1.3)
    }
    r.exact_length(2)?;
    while r.remaining() > 0 {
        let kind = r.uint(2)?;
        let data = r.prefixed(2)?;
        for (slot, wanted) in found.iter_mut().zip(types) {
            if usize::from(wanted) == kind && slot.is_none() {
                *slot = Some(data.clone());
            }
        }
    }
    Ok(found)
}

/// The ranges of the protocol names in an ALPN `ProtocolNameList` body (the bytes after
/// its 2-byte length, which is what OpenSSL hands an ALPN select callback).
fn protocol_names(list: &[u8]) -> Result<impl Iterator<Item = Range<usize>> + '_> {
    if list.is_empty() {
        return Err(Malformed::EmptyProtocol);
    }
    let mut check = Reader::new(list);
    while check.remaining() > 0 {
        if check.prefixed(1)?.is_empty() {
            return Err(Malformed::EmptyProtocol);
        }
    }
    Ok(walk_names(list))
}

/// The ranges of the protocol names of a list whose framing was checked.
fn walk_names(list: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut r = Reader::new(list);
    std::iter::from_fn(move || (r.remaining() > 0).then(|| r.prefixed(1).unwrap_or(0..0)))
}

/// Checks the framing of an ALPN list body.
pub fn check_protocols(list: &[u8]) -> Result<()> {
    protocol_names(list).map(drop)
}

/// The protocol names of an ALPN list body, as slices.
pub fn protocols(list: &[u8]) -> Result<impl Iterator<Item = &[u8]> + '_> {
    Ok(protocol_names(list)?.map(move |range| &list[range]))
}

/// An ALPN `ProtocolNameList` body whose framing was checked once, so that looking names
/// up in it does not check it again.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolList<'a>(&'a [u8]);

impl<'a> ProtocolList<'a> {
    /// Checks the framing of `list` (see [`check_protocols`]).
    pub fn parse(list: &'a [u8]) -> Result<Self> {
        check_protocols(list)?;
        Ok(ProtocolList(list))
    }

    /// The protocol names, in list order.
    pub fn names(self) -> impl Iterator<Item = &'a [u8]> {
        let list = self.0;
        walk_names(list).map(move |range| &list[range])
    }

    /// The entry equal to `name`, as a slice of the list.
    pub fn find(self, name: &[u8]) -> Option<&'a [u8]> {
        self.names().find(|entry| *entry == name)
    }
}

/// The body range of an ALPN extension's data (`u16 length || ProtocolNameList`).
fn extension_list(extension: &[u8]) -> Result<Range<usize>> {
    let mut r = Reader::new(extension);
    let list = r.prefixed(2)?;
    r.finish()?;
    Ok(list)
}

/// Overwrites every `h2` entry of an ALPN extension body with a 2-byte marker that the
/// list does not otherwise contain, so no server can select `h2` from it. Same length,
/// same structure; nothing else changes. Returns the marker, or `None` when the list
/// offered no `h2` (then nothing was written).
pub fn hide_h2(extension: &mut [u8]) -> Result<Option<[u8; 2]>> {
    let list = extension_list(extension)?;
    let list = &mut extension[list];
    if !protocols(list)?.any(|p| p == H2) {
        return Ok(None);
    }
    let marker = unused_two_byte_name(list)?;
    replace_names(list, H2, marker)?;
    Ok(Some(marker))
}

/// Undoes [`hide_h2`]: turns every `marker` entry back into `h2`. Returns how many.
pub fn restore_h2(extension: &mut [u8], marker: [u8; 2]) -> Result<usize> {
    let list = extension_list(extension)?;
    replace_names(&mut extension[list], marker, H2)
}

fn replace_names(list: &mut [u8], from: [u8; 2], to: [u8; 2]) -> Result<usize> {
    check_protocols(list)?;
    let mut count = 0;
    let mut pos = 0;
    while let Some(&len) = list.get(pos) {
        let name = pos + 1..pos + 1 + usize::from(len);
        pos = name.end;
        match list.get_mut(name) {
            Some(name) if *name == from => {
                name.copy_from_slice(&to);
                count += 1;
            }
            Some(_) => {}
            None => return Err(Malformed::Truncated),
        }
    }
    Ok(count)
}

/// GREASE identifiers (RFC 8701): reserved, so no server ever selects one.
const GREASE: [[u8; 2]; 16] = {
    let mut out = [[0u8; 2]; 16];
    let mut i = 0;
    while i < 16 {
        let b = (i as u8) << 4 | 0x0A;
        out[i] = [b, b];
        i += 1;
    }
    out
};

/// A 2-byte protocol name absent from `list`: a GREASE value when one is free (always,
/// for real clients), otherwise the first absent value found through a presence bitmap.
/// One always exists: a list of at most 65,535 bytes holds fewer than 65,536 names.
fn unused_two_byte_name(list: &[u8]) -> Result<[u8; 2]> {
    let present = |name: [u8; 2]| -> Result<bool> { Ok(protocols(list)?.any(|p| p == name)) };
    for candidate in GREASE {
        if !present(candidate)? {
            return Ok(candidate);
        }
    }
    let mut seen = [0u64; 1024];
    for p in protocols(list)? {
        if let [a, b] = *p {
            let v = usize::from(u16::from_be_bytes([a, b]));
            seen[v / 64] |= 1 << (v % 64);
        }
    }
    let free = (0..=u16::MAX)
        .find(|&v| seen[usize::from(v) / 64] & (1 << (usize::from(v) % 64)) == 0)
        .ok_or(Malformed::Truncated)?;
    Ok(free.to_be_bytes())
}

/// Overwrites every mode of a `psk_key_exchange_modes` extension body with a value no
/// stack defines. A server then finds no usable PSK mode and ignores the client's
/// `pre_shared_key` without computing its binder: a clean full handshake. Same length;
/// returns how many modes were changed.
pub fn disable_psk_modes(extension: &mut [u8]) -> Result<usize> {
    let mut r = Reader::new(extension);
    let modes = r.prefixed(1)?;
    r.finish()?;
    if modes.is_empty() {
        return Err(Malformed::Truncated);
    }
    let count = modes.len();
    for mode in &mut extension[modes] {
        *mode = UNKNOWN_PSK_MODE;
    }
    Ok(count)
}

/// The invariants of this module on arbitrary bytes, taken as a ClientHello message;
/// panics on a violation. Shared by the cargo-fuzz target and the corpus replay test.
#[doc(hidden)]
pub fn check_invariants(message: &[u8]) {
    let Ok([alpn, psk_modes]) =
        find_extensions(message, [EXTENSION_ALPN, EXTENSION_PSK_KEY_EXCHANGE_MODES])
    else {
        return;
    };
    if let Some(range) = alpn {
        let original = &message[range];
        let mut edited = original.to_vec();
        match hide_h2(&mut edited) {
            Err(_) | Ok(None) => assert_eq!(edited, original, "unchanged unless h2 was hidden"),
            Ok(Some(marker)) => {
                assert_eq!(edited.len(), original.len());
                let before = extension_list(original).expect("hide_h2 validated it");
                let after = extension_list(&edited).expect("hide_h2 keeps the framing");
                let pairs: Vec<(&[u8], &[u8])> = protocols(&original[before])
                    .expect("validated")
                    .zip(protocols(&edited[after.clone()]).expect("framing kept"))
                    .collect();
                for (was, now) in &pairs {
                    if *was == H2 {
                        assert_eq!(*now, marker);
                    } else {
                        assert_eq!(was, now, "only h2 entries change");
                        assert_ne!(*was, marker, "the marker was not already offered");
                    }
                }
                assert!(!protocols(&edited[after]).expect("kept").any(|p| p == H2));
                assert!(restore_h2(&mut edited, marker).expect("same framing") > 0);
                assert_eq!(edited, original, "restore undoes hide");
            }
        }
    }
    if let Some(range) = psk_modes {
        let original = &message[range];
        let mut edited = original.to_vec();
        match disable_psk_modes(&mut edited) {
            Err(_) => assert_eq!(edited, original),
            Ok(n) => {
                assert_eq!(edited.len(), original.len());
                assert_eq!(n, original.len() - 1);
                assert!(edited[1..].iter().all(|&m| m == UNKNOWN_PSK_MODE));
                assert_eq!(edited[0], original[0]);
            }
        }
    }
}

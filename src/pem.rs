//! PEM encoding of certificates straight into one buffer.
//!
//! `PEM_write_bio_X509` spends most of its time wiping its scratch buffers (as if a
//! certificate were secret) and regrowing its memory BIO; the PEM of a certificate is a
//! pure function of its DER, so we size the output once and base64 it ourselves. The
//! result is byte for byte what OpenSSL writes (64-character lines, `\n` line ends).

use openssl::x509::X509Ref;

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----\n";
const END: &[u8] = b"-----END CERTIFICATE-----\n";
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// 48 input bytes make one 64-character line.
const LINE_INPUT: usize = 48;

/// The PEM of `certs`, concatenated, followed by one NUL byte.
pub(crate) fn certificates_with_nul<'a>(
    certs: impl Iterator<Item = &'a X509Ref>,
) -> Result<Box<[u8]>, openssl::error::ErrorStack> {
    let ders = certs.map(X509Ref::to_der).collect::<Result<Vec<_>, _>>()?;
    let size = ders.iter().map(|d| encoded_len(d.len())).sum::<usize>() + 1;
    let mut out = vec![0u8; size].into_boxed_slice();
    let mut at = 0;
    for der in &ders {
        at = put(&mut out, at, BEGIN);
        at = put_base64_lines(&mut out, at, der);
        at = put(&mut out, at, END);
    }
    debug_assert_eq!(at + 1, size, "the NUL is already in place");
    Ok(out)
}

fn encoded_len(der_len: usize) -> usize {
    BEGIN.len() + der_len.div_ceil(3) * 4 + der_len.div_ceil(LINE_INPUT) + END.len()
}

/// Copies `bytes` to `out[at..]`, returning the next position. `out` was sized for it.
fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    out[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

/// Writes `der` as base64 lines of 64 characters, each ending in `\n`, at `out[at..]`;
/// returns the next position. `out` was sized by [`encoded_len`].
fn put_base64_lines(out: &mut [u8], mut at: usize, der: &[u8]) -> usize {
    let sextet = |n: u32, shift: u32| ALPHABET[(n >> shift) as usize & 63];
    for line in der.chunks(LINE_INPUT) {
        let mut groups = line.chunks_exact(3);
        for group in &mut groups {
            let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
            let quad = [sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)];
            at = put(out, at, &quad);
        }
        match *groups.remainder() {
            [a] => {
                let n = u32::from(a) << 16;
                at = put(out, at, &[sextet(n, 18), sextet(n, 12), b'=', b'=']);
            }
            [a, b] => {
                let n = u32::from(a) << 16 | u32::from(b) << 8;
                at = put(out, at, &[sextet(n, 18), sextet(n, 12), sextet(n, 6), b'=']);
            }
            _ => {}
        }
        at = put(out, at, b"\n");
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_lines(der: &[u8]) -> Vec<u8> {
        // OpenSSL's EVP_EncodeBlock on each 48-byte line, newline-terminated.
        let mut out = Vec::new();
        for line in der.chunks(LINE_INPUT) {
            out.extend_from_slice(openssl::base64::encode_block(line).as_bytes());
            out.push(b'\n');
        }
        out
    }

    proptest! {
        #[test]
        fn base64_lines_match_openssl(der in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut ours = vec![0u8; encoded_len(der.len()) - BEGIN.len() - END.len()];
            let end = put_base64_lines(&mut ours, 0, &der);
            prop_assert_eq!(end, ours.len(), "encoded_len is exact");
            prop_assert_eq!(&ours, &reference_lines(&der));
        }
    }
}

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
    let mut out = Vec::with_capacity(size);
    for der in &ders {
        out.extend_from_slice(BEGIN);
        push_base64_lines(&mut out, der);
        out.extend_from_slice(END);
    }
    out.push(0);
    debug_assert_eq!(out.len(), size);
    Ok(out.into_boxed_slice())
}

fn encoded_len(der_len: usize) -> usize {
    BEGIN.len() + der_len.div_ceil(3) * 4 + der_len.div_ceil(LINE_INPUT) + END.len()
}

fn push_base64_lines(out: &mut Vec<u8>, der: &[u8]) {
    for line in der.chunks(LINE_INPUT) {
        for group in line.chunks(3) {
            let b1 = group.get(1).copied().unwrap_or(0);
            let b2 = group.get(2).copied().unwrap_or(0);
            let n = u32::from(group[0]) << 16 | u32::from(b1) << 8 | u32::from(b2);
            let sextet = |shift: u32| ALPHABET[(n >> shift) as usize & 63];
            out.push(sextet(18));
            out.push(sextet(12));
            out.push(if group.len() > 1 { sextet(6) } else { b'=' });
            out.push(if group.len() > 2 { sextet(0) } else { b'=' });
        }
        out.push(b'\n');
    }
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
            let mut ours = Vec::new();
            push_base64_lines(&mut ours, &der);
            prop_assert_eq!(&ours, &reference_lines(&der));
            prop_assert_eq!(ours.len() + BEGIN.len() + END.len(), encoded_len(der.len()));
        }
    }
}

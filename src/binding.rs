//! What a resumable session of a mutual-TLS connection is bound to.
//!
//! OpenSSL resumes a session only on a connection whose session id context equals the
//! one the session was born with, and checks that on every resumption path (TLS 1.2
//! session IDs and tickets, TLS 1.3 stateless and stateful tickets), in
//! `ssl_get_prev_session()`; a mismatch is a clean full handshake. The library sets a
//! per-connection context, before that check runs, to a digest of everything the
//! client-certificate verdict depends on, so a session is resumed only where a full
//! handshake would verify the client the same way:
//! - the policy: this tag, whose version changes whenever what is bound changes, and the
//!   verify depth;
//! - the server identity as the ClientHello saw it: the raw `server_name` extension (or
//!   its absence, or "before the handshake"), and the connection's certificate at the
//!   time of the call;
//! - the CA set by content: the fingerprint of each CA certificate, sorted and
//!   de-duplicated, so the order of the caller's stack does not matter, and a CA rotated
//!   in or out changes the binding.
//!
//! A certificate's fingerprint is its SHA-1, as OpenSSL caches it with the certificate
//! object (computed once, under the certificate's lock; nginx hashes the same values for
//! its own session id context). That keeps the per-connection cost to one SHA-256 of about
//! a hundred bytes. Collision resistance is not at stake: an attacker supplies none of the
//! certificates fingerprinted here (the CA set and the server certificate are the
//! operator's), only the server name, which is hashed as is with SHA-256.
//!
//! The digest is 32 bytes, `SSL_MAX_SID_CTX_LENGTH`: it can never equal nginx's own
//! 20-byte context, so OpenSSL keeps it when nginx switches the connection to the
//! `SSL_CTX` of another `server {}` block (`SSL_set_SSL_CTX` copies the new context's
//! value only over one equal to the old context's).

use openssl::sha::Sha256;

/// The length of every binding: `SSL_MAX_SID_CTX_LENGTH`.
pub(crate) const LEN: usize = 32;

/// A certificate's SHA-1 fingerprint, as OpenSSL caches it.
pub(crate) type Fingerprint = [u8; 20];

/// A session id context no connection ever sets (bindings are SHA-256 outputs, nginx's
/// are 20 bytes): stamped on sessions that must never be resumed, should one escape into
/// a cache anyway.
pub(crate) const NEVER_RESUMABLE: [u8; LEN] = *b"kong-client-tls: never resumable";

/// The server name a connection asked for, as far as the binding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerName<'a> {
    /// The body of the ClientHello's `server_name` extension, unparsed: different bytes
    /// for the same name only cost a resumption, never a wrong verdict.
    Sent(&'a [u8]),
    /// A ClientHello without `server_name`.
    Absent,
    /// The call came before the handshake; the caller decided without a ClientHello.
    BeforeHandshake,
}

/// The inputs of one connection's verification that a session must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub server_name: ServerName<'a>,
    /// The fingerprint of the connection's certificate, if it had one yet.
    pub server_certificate: Option<Fingerprint>,
    /// See [`ca_set_digest`].
    pub ca_set: [u8; LEN],
    pub verify_depth: u32,
}

/// The order-free digest of a CA set, from each certificate's fingerprint. Sorts
/// `fingerprints` in place; duplicates count once.
pub(crate) fn ca_set_digest(fingerprints: &mut [Fingerprint]) -> [u8; LEN] {
    fingerprints.sort_unstable();
    let mut h = Sha256::new();
    h.update(b"kong-client-tls/ca-set/v1");
    for (i, fingerprint) in fingerprints.iter().enumerate() {
        if i == 0 || fingerprints[i - 1] != *fingerprint {
            h.update(fingerprint);
        }
    }
    h.finish()
}

/// The session id context of a connection verified with `inputs`.
pub(crate) fn session_id_context(inputs: &Inputs<'_>) -> [u8; LEN] {
    let mut h = Sha256::new();
    h.update(b"kong-client-tls/sid/v1");
    h.update(&inputs.verify_depth.to_be_bytes());
    // Every variable-length field is preceded by a tag and its length, so no two
    // different inputs hash the same byte string.
    match inputs.server_name {
        ServerName::Sent(bytes) => {
            h.update(b"S");
            h.update(&(bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        ServerName::Absent => h.update(b"A"),
        ServerName::BeforeHandshake => h.update(b"B"),
    }
    match &inputs.server_certificate {
        Some(digest) => {
            h.update(b"C");
            h.update(digest);
        }
        None => h.update(b"N"),
    }
    h.update(&inputs.ca_set);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs<'a>(name: ServerName<'a>, ca: [u8; LEN]) -> Inputs<'a> {
        Inputs {
            server_name: name,
            server_certificate: Some([7; 20]),
            ca_set: ca,
            verify_depth: 0,
        }
    }

    #[test]
    fn each_input_changes_the_binding() {
        let ca = ca_set_digest(&mut [[1; 20]]);
        let base = session_id_context(&inputs(ServerName::Sent(b"a.test"), ca));
        let others = [
            inputs(ServerName::Sent(b"b.test"), ca),
            inputs(ServerName::Absent, ca),
            inputs(ServerName::BeforeHandshake, ca),
            inputs(ServerName::Sent(b"a.test"), ca_set_digest(&mut [[2; 20]])),
            inputs(
                ServerName::Sent(b"a.test"),
                ca_set_digest(&mut [[1; 20], [2; 20]]),
            ),
            Inputs {
                server_certificate: None,
                ..inputs(ServerName::Sent(b"a.test"), ca)
            },
            Inputs {
                server_certificate: Some([8; 20]),
                ..inputs(ServerName::Sent(b"a.test"), ca)
            },
            Inputs {
                verify_depth: 1,
                ..inputs(ServerName::Sent(b"a.test"), ca)
            },
        ];
        for other in others {
            assert_ne!(session_id_context(&other), base, "{other:?}");
        }
        assert_eq!(
            session_id_context(&inputs(ServerName::Sent(b"a.test"), ca)),
            base
        );
        assert_ne!(NEVER_RESUMABLE, base);
    }

    proptest! {
        #[test]
        fn the_ca_set_digest_ignores_order_and_duplicates_but_not_content(
            set in proptest::collection::vec(any::<Fingerprint>(), 1..8),
            extra in any::<Fingerprint>(),
            seed in any::<u64>(),
        ) {
            let expected = ca_set_digest(&mut set.clone());
            let mut shuffled = set.clone();
            shuffled.extend_from_slice(&set[..1 + (seed as usize) % set.len()]);
            let by = (seed as usize) % shuffled.len();
            shuffled.rotate_left(by);
            prop_assert_eq!(ca_set_digest(&mut shuffled), expected);
            let mut grown = set.clone();
            grown.push(extra);
            prop_assert_eq!(ca_set_digest(&mut grown) == expected, set.contains(&extra));
        }

        #[test]
        fn server_names_of_different_bytes_never_share_a_binding(
            a in proptest::collection::vec(any::<u8>(), 0..64),
            b in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let ca = [3; LEN];
            let x = session_id_context(&inputs(ServerName::Sent(&a), ca));
            let y = session_id_context(&inputs(ServerName::Sent(&b), ca));
            prop_assert_eq!(x == y, a == b);
        }
    }
}

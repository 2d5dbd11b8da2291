//! A throw-away PKI made fresh by each test binary: root → intermediate → leaf, in RSA
//! and ECDSA flavours, plus an unrelated ("untrusted") hierarchy.

use std::sync::OnceLock;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Name, X509};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa2048,
    EcdsaP256,
}

pub const KEY_KINDS: [KeyKind; 2] = [KeyKind::Rsa2048, KeyKind::EcdsaP256];

#[derive(Clone)]
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
}

/// One hierarchy: `root` signs `intermediate`, which signs `leaf`; `root` also signs
/// `direct_leaf`, the only kind of client certificate verify depth 0 can accept.
#[derive(Clone)]
pub struct Pki {
    pub root: Identity,
    pub intermediate: Identity,
    pub leaf: Identity,
    pub direct_leaf: Identity,
}

impl Pki {
    /// A hierarchy named after `label`, cached per (label, kind) for the test binary.
    pub fn get(label: &'static str, kind: KeyKind) -> &'static Pki {
        type Cache = std::sync::Mutex<Vec<(&'static str, KeyKind, &'static Pki)>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap();
        if let Some((_, _, pki)) = cache.iter().find(|(l, k, _)| *l == label && *k == kind) {
            return pki;
        }
        let pki: &'static Pki = Box::leak(Box::new(Pki::new(label, kind)));
        cache.push((label, kind, pki));
        pki
    }

    pub fn new(label: &str, kind: KeyKind) -> Pki {
        let root_key = new_key(kind);
        let root = issue(&format!("{label} Root CA"), &root_key, None, true);
        let root = Identity {
            cert: root,
            key: root_key,
        };
        let int_key = new_key(kind);
        let intermediate = issue(
            &format!("{label} Intermediate CA"),
            &int_key,
            Some(&root),
            true,
        );
        let intermediate = Identity {
            cert: intermediate,
            key: int_key,
        };
        let leaf_key = new_key(kind);
        let leaf = issue(
            &format!("{label} leaf"),
            &leaf_key,
            Some(&intermediate),
            false,
        );
        let direct_key = new_key(kind);
        let direct = issue(
            &format!("{label} direct leaf"),
            &direct_key,
            Some(&root),
            false,
        );
        Pki {
            root,
            intermediate,
            leaf: Identity {
                cert: leaf,
                key: leaf_key,
            },
            direct_leaf: Identity {
                cert: direct,
                key: direct_key,
            },
        }
    }

    /// A new EC leaf named `cn`, issued directly by the root.
    pub fn issue_from_root(&self, cn: &str) -> Identity {
        let key = new_key(KeyKind::EcdsaP256);
        let cert = issue(cn, &key, Some(&self.root), false);
        Identity { cert, key }
    }

    /// The PEM a server should return for this client: leaf then intermediate.
    pub fn chain_pem(&self) -> String {
        let mut pem = String::from_utf8(self.leaf.cert.to_pem().unwrap()).unwrap();
        pem.push_str(&String::from_utf8(self.intermediate.cert.to_pem().unwrap()).unwrap());
        pem
    }
}

/// A fresh key of `kind`.
pub fn new_key(kind: KeyKind) -> PKey<Private> {
    match kind {
        KeyKind::Rsa2048 => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        KeyKind::EcdsaP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        }
    }
}

/// A certificate named `cn` for `key`, signed by `issuer` (self-signed without one), with
/// CA or leaf extensions.
pub fn issue(cn: &str, key: &PKey<Private>, issuer: Option<&Identity>, ca: bool) -> X509 {
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "kong-client-tls tests")
        .unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial
        .rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
        .unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
    } else {
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .digital_signature()
                .key_encipherment()
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    b.sign(issuer.map_or(key, |i| &i.key), MessageDigest::sha256())
        .unwrap();
    b.build()
}

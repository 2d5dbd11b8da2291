//! A throw-away PKI for the benches: root → intermediate 1 → intermediate 2 → leaf, so a
//! client can present leaf + 2 intermediates, plus a leaf signed directly by the root.
#![allow(dead_code)]

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Name, X509};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

impl KeyKind {
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
}

#[derive(Clone)]
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
}

/// `root` signs `int1`, which signs `int2`, which signs `leaf`; `root` also signs
/// `direct_leaf`.
pub struct Pki {
    pub root: Identity,
    pub int1: Identity,
    pub int2: Identity,
    pub leaf: Identity,
    pub direct_leaf: Identity,
}

impl Pki {
    pub fn new(label: &str, kind: KeyKind) -> Pki {
        let root = make(&format!("{label} Root CA"), kind, None, true);
        let int1 = make(&format!("{label} Intermediate 1"), kind, Some(&root), true);
        let int2 = make(&format!("{label} Intermediate 2"), kind, Some(&int1), true);
        let leaf = make(&format!("{label} client"), kind, Some(&int2), false);
        let direct_leaf = make(&format!("{label} direct client"), kind, Some(&root), false);
        Pki {
            root,
            int1,
            int2,
            leaf,
            direct_leaf,
        }
    }
}

impl Pki {
    fn members(&self) -> [(&'static str, &Identity); 5] {
        [
            ("root", &self.root),
            ("int1", &self.int1),
            ("int2", &self.int2),
            ("leaf", &self.leaf),
            ("direct", &self.direct_leaf),
        ]
    }

    /// Writes every certificate and key as `<dir>/<prefix>-<member>.{crt,key}`.
    pub fn save(&self, dir: &std::path::Path, prefix: &str) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, id) in self.members() {
            std::fs::write(
                dir.join(format!("{prefix}-{name}.crt")),
                id.cert.to_pem().unwrap(),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{prefix}-{name}.key")),
                id.key.private_key_to_pem_pkcs8().unwrap(),
            )
            .unwrap();
        }
    }

    /// Reads what [`Pki::save`] wrote.
    pub fn load(dir: &std::path::Path, prefix: &str) -> Pki {
        let get = |name: &str| Identity {
            cert: X509::from_pem(&std::fs::read(dir.join(format!("{prefix}-{name}.crt"))).unwrap())
                .unwrap(),
            key: PKey::private_key_from_pem(
                &std::fs::read(dir.join(format!("{prefix}-{name}.key"))).unwrap(),
            )
            .unwrap(),
        };
        Pki {
            root: get("root"),
            int1: get("int1"),
            int2: get("int2"),
            leaf: get("leaf"),
            direct_leaf: get("direct"),
        }
    }
}

fn new_key(kind: KeyKind) -> PKey<Private> {
    match kind {
        KeyKind::Rsa2048 => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        KeyKind::EcdsaP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        }
    }
}

fn make(cn: &str, kind: KeyKind, issuer: Option<&Identity>, ca: bool) -> Identity {
    let key = new_key(kind);
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "kong-client-tls bench")
        .unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    let (bc, ku) = if ca {
        (
            BasicConstraints::new().critical().ca().build().unwrap(),
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
    } else {
        (
            BasicConstraints::new().build().unwrap(),
            KeyUsage::new()
                .digital_signature()
                .key_encipherment()
                .build()
                .unwrap(),
        )
    };
    b.append_extension(bc).unwrap();
    b.append_extension(ku).unwrap();
    b.sign(issuer.map_or(&key, |i| &i.key), MessageDigest::sha256())
        .unwrap();
    Identity {
        cert: b.build(),
        key,
    }
}

//! A throw-away PKI for the benches: root → intermediate 1 → intermediate 2 → leaf, so a
//! client can present leaf + 2 intermediates, plus a leaf signed directly by the root.
#![allow(dead_code)]

use openssl::pkey::PKey;
use openssl::x509::X509;

// Keys and certificates are made exactly as in the tests; only the hierarchy differs.
#[path = "../../tests/common/pki.rs"]
mod base;

pub use base::{Identity, KeyKind};

impl KeyKind {
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
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

/// `n` self-signed CA certificates, unrelated to any [`Pki`], named `<label> <i>`. They
/// share one key (a key pair per certificate would only slow the bench's start).
pub fn cas(label: &str, kind: KeyKind, n: usize) -> Vec<X509> {
    let key = base::new_key(kind);
    (1..=n)
        .map(|i| loaded(base::issue(&format!("{label} {i}"), &key, None, true)))
        .collect()
}

fn make(cn: &str, kind: KeyKind, issuer: Option<&Identity>, ca: bool) -> Identity {
    let key = base::new_key(kind);
    let cert = loaded(base::issue(cn, &key, issuer, ca));
    Identity { cert, key }
}

/// `cert` as servers, clients and `ngx.ssl.parse_pem_cert` have it: parsed, so it keeps
/// its encoding. A certificate just built is encoded again each time it is sent or
/// hashed, which would bill the benches for work no real deployment does.
fn loaded(cert: X509) -> X509 {
    X509::from_der(&cert.to_der().unwrap()).unwrap()
}

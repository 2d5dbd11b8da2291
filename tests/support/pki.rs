//! A throw-away PKI made fresh by each test and bench binary: root → intermediate(s) →
//! leaf, in RSA and ECDSA flavours.

use std::path::Path;
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

impl KeyKind {
    /// How the benches' tables name the kind.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
}

/// One hierarchy: `root` signs `intermediates[0]`, each intermediate signs the next, and
/// the last signs `leaf`; `root` also signs `direct_leaf`, the only kind of client
/// certificate verify depth 0 can accept.
///
/// The tests use one intermediate ([`Pki::new`], [`Pki::get`]), the benches two
/// ([`Pki::with_intermediates`]), so that a client presents leaf + 2 intermediates.
/// The benches rely on: `new`/`with_intermediates`, the fields, [`Pki::chain`],
/// [`Pki::save`]/[`Pki::load`], [`cas`] and [`KeyKind::label`].
#[derive(Clone)]
pub struct Pki {
    pub root: Identity,
    /// Root side first: `intermediates[0]` is signed by the root.
    pub intermediates: Vec<Identity>,
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

    /// root → intermediate → leaf (and the direct leaf).
    pub fn new(label: &str, kind: KeyKind) -> Pki {
        Pki::with_intermediates(label, kind, 1)
    }

    /// root → `n` intermediates → leaf (and the direct leaf).
    pub fn with_intermediates(label: &str, kind: KeyKind, n: usize) -> Pki {
        assert!(n >= 1, "a Pki has at least one intermediate");
        let root = make(&format!("{label} Root CA"), kind, None, true);
        let mut intermediates: Vec<Identity> = Vec::with_capacity(n);
        for i in 1..=n {
            let cn = if n == 1 {
                format!("{label} Intermediate CA")
            } else {
                format!("{label} Intermediate {i}")
            };
            let issuer = intermediates.last().unwrap_or(&root);
            let id = make(&cn, kind, Some(issuer), true);
            intermediates.push(id);
        }
        let leaf = make(&format!("{label} leaf"), kind, intermediates.last(), false);
        let direct_leaf = make(&format!("{label} direct leaf"), kind, Some(&root), false);
        Pki {
            root,
            intermediates,
            leaf,
            direct_leaf,
        }
    }

    /// The intermediate that signs the leaf.
    pub fn intermediate(&self) -> &Identity {
        self.intermediates.last().unwrap()
    }

    /// What a peer sends after the leaf: the intermediates, leaf side first.
    pub fn chain(&self) -> Vec<&X509> {
        self.intermediates.iter().rev().map(|i| &i.cert).collect()
    }

    /// A new EC leaf named `cn`, issued directly by the root.
    pub fn issue_from_root(&self, cn: &str) -> Identity {
        make(cn, KeyKind::EcdsaP256, Some(&self.root), false)
    }

    /// The PEM a server should return for this client: leaf, then the intermediates leaf
    /// side first.
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.leaf.cert)
            .chain(self.chain())
            .map(pem)
            .collect()
    }

    fn members(&self) -> Vec<(String, &Identity)> {
        let mut members = vec![("root".to_string(), &self.root)];
        for (i, id) in self.intermediates.iter().enumerate() {
            members.push((format!("int{}", i + 1), id));
        }
        members.push(("leaf".into(), &self.leaf));
        members.push(("direct".into(), &self.direct_leaf));
        members
    }

    /// Writes every certificate and key as `<dir>/<prefix>-<member>.{crt,key}`, the
    /// members being `root`, `int1`…, `leaf` and `direct`.
    pub fn save(&self, dir: &Path, prefix: &str) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, id) in self.members() {
            std::fs::write(
                dir.join(format!("{prefix}-{name}.crt")),
                id.cert.to_pem().unwrap(),
            )
            .unwrap();
            std::fs::write(dir.join(format!("{prefix}-{name}.key")), key_pem(&id.key)).unwrap();
        }
    }

    /// Reads what [`Pki::save`] wrote.
    pub fn load(dir: &Path, prefix: &str) -> Pki {
        let read = |name: &str| -> Option<Identity> {
            let cert = std::fs::read(dir.join(format!("{prefix}-{name}.crt"))).ok()?;
            let key = std::fs::read(dir.join(format!("{prefix}-{name}.key"))).unwrap();
            Some(Identity {
                cert: X509::from_pem(&cert).unwrap(),
                key: PKey::private_key_from_pem(&key).unwrap(),
            })
        };
        let get = |name: &str| read(name).unwrap_or_else(|| panic!("no {prefix}-{name}.crt"));
        let intermediates: Vec<Identity> = (1..).map_while(|i| read(&format!("int{i}"))).collect();
        assert!(!intermediates.is_empty(), "no {prefix}-int1.crt");
        Pki {
            root: get("root"),
            intermediates,
            leaf: get("leaf"),
            direct_leaf: get("direct"),
        }
    }
}

/// `n` self-signed CA certificates, unrelated to any [`Pki`], named `<label> <i>`. They
/// share one key (a key pair per certificate would only slow the benches' start).
pub fn cas(label: &str, kind: KeyKind, n: usize) -> Vec<X509> {
    let key = new_key(kind);
    (1..=n)
        .map(|i| loaded(issue(&format!("{label} {i}"), &key, None, true)))
        .collect()
}

/// The library's limit on a CA set's subject names in a CertificateRequest, with their
/// 2-byte lengths (`MAX_CA_NAMES_BYTES`).
pub const CA_NAMES_LIMIT: usize = 64_512;

/// The bytes the subject names of `cas` take in a CertificateRequest, with their 2-byte
/// lengths.
pub fn ca_names_bytes(cas: &[X509]) -> usize {
    cas.iter()
        .map(|c| 2 + c.subject_name().to_der().unwrap().len())
        .sum()
}

/// 700 CAs with common names of up to 60 characters (X.520 allows 64; about 110 bytes of
/// name each), made once per test binary: more than any CertificateRequest holds.
pub fn long_named_cas() -> &'static [X509] {
    static POOL: OnceLock<Vec<X509>> = OnceLock::new();
    POOL.get_or_init(|| {
        let label = "a tenant's client CA, named as long as X.520 lets it be:";
        let cas = cas(label, KeyKind::EcdsaP256, 700);
        assert!(ca_names_bytes(&cas) > 65_535);
        cas
    })
}

/// `first`, then as many of [`long_named_cas`] as `fits` allows: the largest such set
/// whose names take at most `fits` bytes.
pub fn ca_set_within(first: &X509, fits: usize) -> Vec<X509> {
    let mut set = vec![first.clone()];
    for ca in long_named_cas() {
        set.push(ca.clone());
        if ca_names_bytes(&set) > fits {
            set.pop();
            break;
        }
    }
    set
}

fn make(cn: &str, kind: KeyKind, issuer: Option<&Identity>, ca: bool) -> Identity {
    let key = new_key(kind);
    let cert = loaded(issue(cn, &key, issuer, ca));
    Identity { cert, key }
}

/// `cert` as servers, clients and `ngx.ssl.parse_pem_cert` have it: parsed, so it keeps
/// its encoding. A certificate just built is encoded again each time it is sent or
/// hashed, which would bill the benches for work no real deployment does.
fn loaded(cert: X509) -> X509 {
    X509::from_der(&cert.to_der().unwrap()).unwrap()
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

/// `cert` as PEM text.
pub fn pem(cert: &X509) -> String {
    String::from_utf8(cert.to_pem().unwrap()).unwrap()
}

/// `key` as PKCS#8 PEM.
pub fn key_pem(key: &PKey<Private>) -> Vec<u8> {
    key.private_key_to_pem_pkcs8().unwrap()
}

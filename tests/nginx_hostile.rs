//! Hostile ClientHellos against a real nginx running `disable_http2_alpn()` and
//! `request_client_certificate()` (issue 9, section 5). Own harness (`harness = false`):
//! `cargo test` runs a short smoke run (a few thousand inputs), `make fuzz-nginx` the
//! full one (`HOSTILE_INPUTS`, default there 1,000,000; `HOSTILE_SECONDS` bounds the time
//! either way; `HOSTILE_THREADS` client threads; `HOSTILE_SEED` the first RNG seed).
//!
//! The inputs are raw ClientHello handshake messages built from the fuzz seeds
//! (`fuzz/corpus/client_hello`), wrapped in TLS records (split at 16 KiB) and sent over
//! TCP to 127.0.0.1:
//! - `mutation`: a seed with one of the server names, then bit flips, byte inserts and
//!   deletes, corrupted length fields, duplicated or truncated extensions, splices of
//!   two seeds;
//! - `psk`: the same on the seed that carries a TLS 1.3 `pre_shared_key`;
//! - `alpn`: a well-formed seed whose ALPN extension is replaced by an absurd list (empty
//!   names, 255-byte names, thousands of entries up to the extension's 65535 bytes,
//!   duplicates, h2 at every position, h2 only, GREASE), every enclosing length fixed;
//! - `hrr`: to the port that only has P-256, a first ClientHello whose X25519 key share
//!   forces a HelloRetryRequest, then a mutated (or absurd-ALPN) second ClientHello.
//!
//! Every answer is classified (TLS 1.2 ServerHello and its ALPN, HelloRetryRequest, TLS
//! 1.3 ServerHello, alert, close, reset, timeout). A TLS 1.2 ServerHello must never
//! select `h2` for a name where it is disabled. The absurd lists that OpenSSL's client
//! accepts are also offered in real TLS 1.2 and 1.3 handshakes, whose result is asserted
//! exactly. Afterwards nginx must still serve, with the same worker, and its log must have
//! no `[alert]`, `[crit]`, `[emerg]` or crashed worker ([`Nginx::finish`]). The summary
//! goes to stdout and, as a Markdown fragment, to
//! `<target>/reliability/fuzz-nginx.md` (the smoke run's to `fuzz-nginx-smoke.md`;
//! `HOSTILE_REPORT` to put it elsewhere).

mod support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kong_client_tls::internal::wire;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};

use support::clients::{self, Request};
use support::nginx::{self, Nginx, Ports, Setup};
use support::paths::{repo_root, target_dir};
use support::pki::{pem, KeyKind, Pki};

// The names nginx sees, and what it does for each --------------------------------------

/// `disable_http2_alpn()` in the client hello handler.
const OFF: &str = "off.hostile.test";
/// `disable_http2_alpn()` and `request_client_certificate(ca)` in the client hello handler.
const OFF_CA: &str = "off-ca.hostile.test";
/// `request_client_certificate()` in the certificate handler; h2 stays allowed.
const CERT: &str = "cert.hostile.test";
/// Nothing: h2 stays allowed (the control).
const ON: &str = "on.hostile.test";
const NAMES: [&str; 4] = [OFF, OFF_CA, CERT, ON];

fn disabled(name: &[u8]) -> bool {
    name.starts_with(b"off")
}

const MAIN: &str = "main";
const HRR: &str = "hrr";

fn http(p: &Ports) -> String {
    let server = |port: u16, extra: &str| {
        format!(
            r#"
    server {{
        {listen}
        server_name _;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate server.pem;
        ssl_certificate_key server.key;
        {extra}
        ssl_certificate_by_lua_block {{
            local name = require("ngx.ssl").server_name()
            if name == "{CERT}" then
                local ok, err = require("kong_client_tls").request_client_certificate()
                if not ok then ngx.log(ngx.WARN, "kct-hostile: certificate: ", err) end
            end
        }}
        location / {{ return 200 "alpn=$ssl_alpn_protocol sni=$ssl_server_name\n"; }}
    }}"#,
            listen = nginx::listen_http2(port)
        )
    };
    format!(
        r#"
    # At http {{}} level (every server is a TLS server): it runs on every nginx version.
    ssl_client_hello_by_lua_block {{
        local name = require("ngx.ssl.clienthello").get_client_hello_server_name()
        if name and name:find("^off") then
            local kct = require("kong_client_tls")
            local ok, err = kct.disable_http2_alpn()
            if not ok then ngx.log(ngx.WARN, "kct-hostile: disable_http2_alpn: ", err) end
            if name == "{OFF_CA}" then
                HOSTILE.ca = HOSTILE.ca or assert(require("ngx.ssl").parse_pem_cert(CA_PEM))
                ok, err = kct.request_client_certificate(HOSTILE.ca)
                if not ok then ngx.log(ngx.WARN, "kct-hostile: request_client_certificate: ", err) end
            end
        end
    }}
{main}
{hrr}
"#,
        main = server(p.get(MAIN), ""),
        hrr = server(p.get(HRR), "ssl_ecdh_curve prime256v1;"),
    )
}

// ClientHellos --------------------------------------------------------------------------

/// A ClientHello: the fields before the extensions, then the extensions in order.
#[derive(Clone)]
struct Hello {
    head: Vec<u8>,
    exts: Vec<(u16, Vec<u8>)>,
}

const EXT_SNI: u16 = 0;
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_KEY_SHARE: u16 = 51;

fn be16(b: &[u8]) -> usize {
    usize::from(b[0]) << 8 | usize::from(b[1])
}

impl Hello {
    /// Parses a well-formed seed (the wire module checks the framing first).
    fn parse(msg: &[u8]) -> Hello {
        let [alpn] = wire::find_extensions(msg, [wire::EXTENSION_ALPN]).expect("a seed");
        let mut p = 4 + 2 + 32;
        p += 1 + usize::from(msg[p]);
        p += 2 + be16(&msg[p..]);
        p += 1 + usize::from(msg[p]);
        let head = msg[4..p].to_vec();
        let mut exts = Vec::new();
        if p < msg.len() {
            p += 2;
            while p < msg.len() {
                let (kind, len) = (be16(&msg[p..]) as u16, be16(&msg[p + 2..]));
                if kind == wire::EXTENSION_ALPN {
                    assert_eq!(alpn.clone(), Some(p + 4..p + 4 + len));
                }
                exts.push((kind, msg[p + 4..p + 4 + len].to_vec()));
                p += 4 + len;
            }
        }
        Hello { head, exts }
    }

    /// The handshake message, every length computed.
    fn encode(&self) -> Vec<u8> {
        let mut body = self.head.clone();
        let total: usize = self.exts.iter().map(|(_, d)| 4 + d.len()).sum();
        body.extend_from_slice(&(total as u16).to_be_bytes());
        for (kind, data) in &self.exts {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(data.len() as u16).to_be_bytes());
            body.extend_from_slice(data);
        }
        let len = body.len() as u32;
        let mut msg = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        msg.extend(body);
        msg
    }

    /// Replaces extension `kind` (or inserts it first, before a final pre_shared_key).
    fn set(&mut self, kind: u16, data: Vec<u8>) {
        if let Some(e) = self.exts.iter_mut().find(|e| e.0 == kind) {
            e.1 = data;
        } else {
            self.exts.insert(0, (kind, data));
        }
    }

    fn remove(&mut self, kind: u16) {
        self.exts.retain(|e| e.0 != kind);
    }

    fn has(&self, kind: u16) -> bool {
        self.exts.iter().any(|e| e.0 == kind)
    }

    fn sni(&mut self, name: Option<&[u8]>) {
        match name {
            Some(name) => self.set(EXT_SNI, sni_ext(name)),
            None => self.remove(EXT_SNI),
        }
    }
}

fn sni_ext(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut ext = (entry.len() as u16).to_be_bytes().to_vec();
    ext.extend(entry);
    ext
}

/// The ALPN extension body of `names` (no check: empty names and all).
fn alpn_ext(names: &[Vec<u8>]) -> Vec<u8> {
    let list = alpn_wire(names);
    let mut ext = (list.len() as u16).to_be_bytes().to_vec();
    ext.extend(list);
    ext
}

/// The names as a `ProtocolNameList` body (what `set_alpn_protos` takes).
fn alpn_wire(names: &[Vec<u8>]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(n.len() as u8);
        list.extend_from_slice(n);
    }
    list
}

/// The handshake message in TLS records of at most 16 KiB.
fn records(msg: &[u8], version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5 * (msg.len() / 16384 + 1));
    for chunk in msg.chunks(16384) {
        out.push(22);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    if msg.is_empty() {
        out.extend_from_slice(&[22, 3, 1, 0, 0]);
    }
    out
}

struct Seeds {
    all: Vec<(String, Hello)>,
    /// Index in `all` of the seed with a pre_shared_key.
    psk: usize,
    /// TLS 1.3 seeds whose only key share is X25519 and which offer P-256: an HRR on the
    /// P-256-only port.
    hrr: Vec<usize>,
    /// A real P-256 key share entry for the second ClientHello.
    p256_share: Vec<u8>,
}

fn seeds() -> Seeds {
    let dir = repo_root().join("fuzz/corpus/client_hello");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let all: Vec<(String, Hello)> = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, Hello::parse(&std::fs::read(f).unwrap()))
        })
        .collect();
    let psk = all
        .iter()
        .position(|(_, h)| h.has(wire::EXTENSION_PRE_SHARED_KEY))
        .expect("a seed with a pre_shared_key");
    let hrr = all
        .iter()
        .enumerate()
        .filter(|(_, (_, h))| {
            let groups = h.exts.iter().find(|e| e.0 == EXT_SUPPORTED_GROUPS);
            let share = h.exts.iter().find(|e| e.0 == EXT_KEY_SHARE);
            matches!((groups, share), (Some(g), Some(s))
                if g.1.chunks(2).any(|c| c == [0, 23]) && s.1.len() == 2 + 4 + 32
                    && s.1[2..4] == [0, 29]
                    && !h.has(wire::EXTENSION_PRE_SHARED_KEY))
        })
        .map(|(i, _)| i)
        .collect::<Vec<_>>();
    assert!(!hrr.is_empty(), "no seed for HelloRetryRequests");
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = EcKey::generate(&group).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let point = key
        .public_key()
        .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .unwrap();
    let mut entry = vec![0, 23];
    entry.extend_from_slice(&(point.len() as u16).to_be_bytes());
    entry.extend(point);
    let mut p256_share = (entry.len() as u16).to_be_bytes().to_vec();
    p256_share.extend(entry);
    Seeds {
        all,
        psk,
        hrr,
        p256_share,
    }
}

// Randomness (xorshift: reproducible from HOSTILE_SEED, no dependency) -------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// Absurd ALPN lists ---------------------------------------------------------------------

/// A structured ALPN list and its label.
fn absurd_alpn(rng: &mut Rng) -> (&'static str, Vec<Vec<u8>>) {
    let h2 = b"h2".to_vec();
    let http11 = b"http/1.1".to_vec();
    match rng.below(12) {
        0 => ("empty-name", {
            let mut v = vec![h2.clone(), http11.clone()];
            v.insert(rng.below(3), Vec::new());
            v
        }),
        1 => ("255-byte-names", long_names(rng)),
        2 => ("thousands", thousands(rng)),
        3 => ("max-extension", max_extension(rng)),
        4 => ("duplicates", {
            let n = 2 + rng.below(200);
            (0..n)
                .map(|_| {
                    if rng.chance(70) {
                        h2.clone()
                    } else {
                        http11.clone()
                    }
                })
                .collect()
        }),
        5 => ("h2-at-every-position", {
            let n = 1 + rng.below(12);
            let mut v: Vec<Vec<u8>> = (0..n).map(|i| format!("p{i}").into_bytes()).collect();
            v.insert(rng.below(n + 1), h2.clone());
            if rng.chance(50) {
                v.insert(rng.below(n + 2), http11.clone());
            }
            v
        }),
        6 => ("h2-only", vec![h2.clone(); 1 + rng.below(3)]),
        7 => ("grease", {
            let g = 0x0a + 0x10 * rng.below(16) as u8;
            let mut v = vec![vec![g, g], h2.clone(), http11.clone()];
            if rng.chance(50) {
                v.swap(0, 1 + rng.below(2));
            }
            v
        }),
        8 => ("h2-lookalikes", {
            let mut v: Vec<Vec<u8>> = [&b"h2c"[..], b"h", b"2", b"H2", b"h2\0", b"\x02h2"]
                .iter()
                .map(|n| n.to_vec())
                .collect();
            v.insert(rng.below(v.len() + 1), h2.clone());
            if rng.chance(50) {
                v.push(http11.clone());
            }
            v
        }),
        9 => ("http10-http09", {
            let mut v = vec![h2.clone(), b"http/1.0".to_vec(), b"http/0.9".to_vec()];
            let i = rng.below(3);
            v.swap(0, i);
            v
        }),
        10 => ("no-known-protocol", {
            let n = 1 + rng.below(5);
            (0..n)
                .map(|_| {
                    let len = 1 + rng.below(20);
                    filler(rng, len)
                })
                .collect()
        }),
        _ => ("empty-list", Vec::new()),
    }
}

/// Random lowercase letters: a name no server knows.
fn filler(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
}

/// A few 255-byte names (the most a name can be), h2 among them.
fn long_names(rng: &mut Rng) -> Vec<Vec<u8>> {
    let n = 1 + rng.below(8);
    let mut v: Vec<Vec<u8>> = (0..n).map(|_| filler(rng, 255)).collect();
    v.insert(rng.below(n + 1), b"h2".to_vec());
    if rng.chance(50) {
        v.push(b"http/1.1".to_vec());
    }
    v
}

/// Thousands of short names, h2 once or more among them.
fn thousands(rng: &mut Rng) -> Vec<Vec<u8>> {
    // Up to the extension's limit: 2 + list <= 65535.
    let size = 1 + rng.below(4);
    let budget = 65533 - 12;
    let n = (budget / (size + 1)).min(1000 + rng.below(30000));
    let mut v: Vec<Vec<u8>> = (0..n).map(|_| filler(rng, size)).collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(v.len() + 1);
        v.insert(at, b"h2".to_vec());
    }
    if rng.chance(50) {
        let at = rng.below(v.len() + 1);
        v.insert(at, b"http/1.1".to_vec());
    }
    v
}

/// Exactly 65535 bytes of extension: 2 + 257 * 255 = 65537 is one too many, so 254 names
/// of 255 and a last one filling the rest, h2 somewhere.
fn max_extension(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..254).map(|_| filler(rng, 255)).collect();
    let used: usize = 2 + v.iter().map(|n| n.len() + 1).sum::<usize>() + 3;
    v.push(filler(rng, 65535 - used - 1));
    v.insert(rng.below(v.len() + 1), b"h2".to_vec());
    v
}

// Mutations -----------------------------------------------------------------------------

/// Mutates a well-formed ClientHello: some operations keep the framing, most do not.
fn mutate(rng: &mut Rng, hello: &Hello, seeds: &Seeds) -> (&'static str, Vec<u8>) {
    let mut h = hello.clone();
    let op = rng.below(9);
    let mut msg = match op {
        // Extension-level: lengths fixed afterwards.
        0 if !h.exts.is_empty() => {
            let i = rng.below(h.exts.len());
            let dup = h.exts[i].clone();
            let at = rng.below(h.exts.len() + 1);
            h.exts.insert(at, dup);
            return ("ext-duplicate", h.encode());
        }
        1 if !h.exts.is_empty() => {
            let i = rng.below(h.exts.len());
            let len = h.exts[i].1.len();
            h.exts[i].1.truncate(rng.below(len.max(1)));
            return ("ext-truncate", h.encode());
        }
        2 if !h.exts.is_empty() => {
            let i = rng.below(h.exts.len());
            h.exts.remove(i);
            return ("ext-remove", h.encode());
        }
        _ => h.encode(),
    };
    let label = match op {
        3 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(msg.len());
                msg[i] ^= 1 << rng.below(8);
            }
            "bit-flip"
        }
        4 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(msg.len() + 1);
                msg.insert(i, rng.next() as u8);
            }
            "byte-insert"
        }
        5 => {
            for _ in 0..1 + rng.below(4) {
                if !msg.is_empty() {
                    let i = rng.below(msg.len());
                    msg.remove(i);
                }
            }
            "byte-delete"
        }
        6 => {
            corrupt_length(rng, &mut msg);
            "length-corrupt"
        }
        7 => {
            let other = seeds.all[rng.below(seeds.all.len())].1.encode();
            let a = rng.below(msg.len());
            let b = rng.below(other.len());
            msg.truncate(a);
            msg.extend_from_slice(&other[b..]);
            "splice"
        }
        _ => {
            let at = rng.below(msg.len());
            msg.truncate(at);
            "message-truncate"
        }
    };
    (label, msg)
}

/// Sets one length field (handshake, session id, cipher suites, compression, extensions,
/// one extension's, the ALPN list's or one of its names) to a near or absurd value.
fn corrupt_length(rng: &mut Rng, msg: &mut [u8]) {
    let mut fields: Vec<(usize, usize)> = vec![(1, 3)];
    let mut p = 4 + 34;
    if msg.len() > p {
        fields.push((p, 1));
        p += 1 + usize::from(msg[p]);
        if msg.len() > p + 1 {
            fields.push((p, 2));
            p += 2 + be16(&msg[p..]);
            if msg.len() > p {
                fields.push((p, 1));
                p += 1 + usize::from(msg[p]);
                if msg.len() > p + 1 {
                    fields.push((p, 2));
                    p += 2;
                    while p + 4 <= msg.len() {
                        fields.push((p + 2, 2));
                        p += 4 + be16(&msg[p + 2..]);
                    }
                }
            }
        }
    }
    if let Ok([Some(alpn)]) = wire::find_extensions(msg, [wire::EXTENSION_ALPN]) {
        fields.push((alpn.start, 2));
        let mut q = alpn.start + 2;
        while q < alpn.end {
            fields.push((q, 1));
            q += 1 + usize::from(msg[q]);
        }
    }
    let (at, width) = *rng.pick(&fields);
    let old = msg[at..at + width]
        .iter()
        .fold(0u64, |a, &b| a << 8 | u64::from(b));
    let max = (1u64 << (8 * width)) - 1;
    let new = match rng.below(5) {
        0 => old.wrapping_add(1) & max,
        1 => old.wrapping_sub(1) & max,
        2 => 0,
        3 => max,
        _ => rng.next() & max,
    };
    for i in 0..width {
        msg[at + i] = (new >> (8 * (width - 1 - i))) as u8;
    }
}

// Sending and classifying -------------------------------------------------------------

const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

#[derive(Debug)]
enum Answer {
    Tls12 { alpn: Option<Vec<u8>> },
    Tls13,
    Hrr,
    Alert(u8),
    Close,
    Reset,
    Timeout,
    Garbage,
}

impl Answer {
    fn label(&self) -> String {
        match self {
            Answer::Tls12 { alpn: None } => "server-hello-tls1.2 (no ALPN)".into(),
            Answer::Tls12 { alpn: Some(p) } => {
                format!("server-hello-tls1.2 ({})", String::from_utf8_lossy(p))
            }
            Answer::Tls13 => "server-hello-tls1.3".into(),
            Answer::Hrr => "hello-retry-request".into(),
            Answer::Alert(d) => format!("alert {} ({d})", alert_name(*d)),
            Answer::Close => "close".into(),
            Answer::Reset => "reset".into(),
            Answer::Timeout => "timeout".into(),
            Answer::Garbage => "unparsable answer".into(),
        }
    }
}

fn alert_name(d: u8) -> &'static str {
    match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        47 => "illegal_parameter",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        120 => "no_application_protocol",
        _ => "other",
    }
}

const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the server's first handshake message (or alert) and classifies it.
fn read_answer(tcp: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut handshake = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        // Complete records first.
        while buf.len() >= 5 && buf.len() >= 5 + be16(&buf[3..]) {
            let len = be16(&buf[3..]);
            let (kind, body) = (buf[0], buf[5..5 + len].to_vec());
            buf.drain(..5 + len);
            match kind {
                21 if body.len() >= 2 => return Answer::Alert(body[1]),
                22 => handshake.extend(body),
                20 => {}
                _ => return Answer::Garbage,
            }
            if handshake.len() >= 4 {
                let len = (usize::from(handshake[1]) << 16) | be16(&handshake[2..]);
                if handshake.len() >= 4 + len {
                    return server_hello(&handshake[..4 + len]);
                }
            }
        }
        match tcp.read(&mut chunk) {
            Ok(0) => return Answer::Close,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Answer::Timeout
            }
            Err(_) => return Answer::Reset,
        }
    }
}

fn server_hello(msg: &[u8]) -> Answer {
    let parse = || -> Option<Answer> {
        if msg[0] != 2 {
            return None;
        }
        let body = &msg[4..];
        let random = body.get(2..34)?;
        if random == HRR_RANDOM {
            return Some(Answer::Hrr);
        }
        let mut p = 34;
        p += 1 + usize::from(*body.get(p)?);
        p += 3;
        let (mut tls13, mut alpn) = (false, None);
        if p + 2 <= body.len() {
            p += 2;
            while p + 4 <= body.len() {
                let (kind, len) = (be16(&body[p..]), be16(&body[p + 2..]));
                let data = body.get(p + 4..p + 4 + len)?;
                match kind {
                    43 => tls13 = data == [3, 4],
                    16 => alpn = Some(data.get(3..3 + usize::from(*data.get(2)?))?.to_vec()),
                    _ => {}
                }
                p += 4 + len;
            }
        }
        Some(if tls13 {
            Answer::Tls13
        } else {
            Answer::Tls12 { alpn }
        })
    };
    parse().unwrap_or(Answer::Garbage)
}

fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

/// Sends `msg` as the whole of the client's first flight, half-closes, classifies.
fn send_one(port: u16, msg: &[u8]) -> Answer {
    let mut tcp = connect(port);
    if tcp.write_all(&records(msg, 0x0301)).is_err() {
        return Answer::Reset;
    }
    let _ = tcp.shutdown(Shutdown::Write);
    read_answer(&mut tcp)
}

/// The SNI name the server reads from `msg` (the first server_name entry): in the
/// handshake message its header declares (what follows is another message). `Ok(None)`:
/// no server_name extension; `Err`: the framing does not parse.
fn sni_of(msg: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let declared =
        4 + ((usize::from(*msg.get(1).ok_or(())?) << 16) | be16(msg.get(2..4).ok_or(())?));
    let msg = msg.get(..declared).ok_or(())?;
    let [found] = wire::find_extensions(msg, [EXT_SNI]).map_err(|_| ())?;
    let Some(r) = found else {
        return Ok(None);
    };
    let ext = &msg[r];
    let len = be16(ext.get(3..5).ok_or(())?);
    ext.get(5..5 + len).map(|n| Some(n.to_vec())).ok_or(())
}

// The run -------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    inputs: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    violations: Vec<String>,
    handshakes: BTreeMap<String, u64>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        for (k, v) in other.inputs {
            *self.inputs.entry(k).or_default() += v;
        }
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.handshakes {
            *self.handshakes.entry(k).or_default() += v;
        }
        self.violations.extend(other.violations);
    }
}

/// One random input: returns its kind after sending it and recording the answer.
fn one_input(rng: &mut Rng, seeds: &Seeds, main: u16, hrr: u16, stats: &mut Stats) {
    let sni = pick_sni(rng);
    let kind = rng.below(100);
    let (label, answer, sent) = if kind < 12 {
        hrr_input(rng, seeds, sni.as_deref(), hrr)
    } else {
        main_input(rng, seeds, sni.as_deref(), kind, main)
    };
    *stats.inputs.entry(label.clone()).or_default() += 1;
    *stats.outcomes.entry(answer.label()).or_default() += 1;
    if let Answer::Tls12 { alpn: Some(p) } = &answer {
        if p == b"h2" {
            check_h2(&label, &sent, stats);
        }
    }
}

/// One of the names, none, or a long name that starts like a disabled one.
fn pick_sni(rng: &mut Rng) -> Option<Vec<u8>> {
    match rng.below(NAMES.len() + 2) {
        n if n < NAMES.len() => Some(NAMES[n].as_bytes().to_vec()),
        n if n == NAMES.len() => None,
        _ => Some(
            b"off-"
                .iter()
                .copied()
                .chain((0..rng.below(250)).map(|_| b'x'))
                .collect(),
        ),
    }
}

/// HelloRetryRequest, then a hostile second ClientHello: (label, answer, second hello).
fn hrr_input(
    rng: &mut Rng,
    seeds: &Seeds,
    sni: Option<&[u8]>,
    hrr: u16,
) -> (String, Answer, Vec<u8>) {
    let (_, seed) = &seeds.all[*rng.pick(&seeds.hrr)];
    let mut first = seed.clone();
    first.sni(sni);
    let mut tcp = connect(hrr);
    if tcp.write_all(&records(&first.encode(), 0x0301)).is_err() {
        return ("hrr (first refused)".to_string(), Answer::Reset, Vec::new());
    }
    match read_answer(&mut tcp) {
        Answer::Hrr => {
            let mut second = first.clone();
            second.set(EXT_KEY_SHARE, seeds.p256_share.clone());
            let (what, msg) = if rng.chance(35) {
                let (what, names) = absurd_alpn(rng);
                second.set(wire::EXTENSION_ALPN, alpn_ext(&names));
                (what, second.encode())
            } else {
                mutate(rng, &second, seeds)
            };
            let answer = if tcp.write_all(&records(&msg, 0x0303)).is_err() {
                Answer::Reset
            } else {
                let _ = tcp.shutdown(Shutdown::Write);
                read_answer(&mut tcp)
            };
            (format!("hrr second: {what}"), answer, msg)
        }
        other => ("hrr (no HRR)".to_string(), other, Vec::new()),
    }
}

/// A psk, absurd-ALPN or mutated ClientHello to the main port (by `kind`, 12..100):
/// (label, answer, hello).
fn main_input(
    rng: &mut Rng,
    seeds: &Seeds,
    sni: Option<&[u8]>,
    kind: usize,
    main: u16,
) -> (String, Answer, Vec<u8>) {
    let psk = kind < 27;
    let (_, seed) = if psk {
        &seeds.all[seeds.psk]
    } else {
        &seeds.all[rng.below(seeds.all.len())]
    };
    let mut h = seed.clone();
    h.sni(sni);
    let (what, msg) = if kind >= 70 {
        let (what, names) = absurd_alpn(rng);
        h.set(wire::EXTENSION_ALPN, alpn_ext(&names));
        if rng.chance(30) {
            ("alpn+mutation", mutate(rng, &h, seeds).1)
        } else {
            (what, h.encode())
        }
    } else {
        mutate(rng, &h, seeds)
    };
    let prefix = if psk {
        "psk"
    } else if kind >= 70 {
        "alpn"
    } else {
        "mutation"
    };
    (format!("{prefix}: {what}"), send_one(main, &msg), msg)
}

/// A TLS 1.2 ServerHello selected h2 for `sent`: a violation when its name disables h2.
fn check_h2(label: &str, sent: &[u8], stats: &mut Stats) {
    match sni_of(sent) {
        Ok(Some(n)) if disabled(&n) => {
            if stats.violations.len() < 20 {
                stats.violations.push(format!(
                    "{label}: h2 selected for {} ({} bytes: {})",
                    String::from_utf8_lossy(&n),
                    sent.len(),
                    hex(&sent[..sent.len().min(400)])
                ));
            }
        }
        Ok(_) => {}
        Err(()) => {
            *stats
                .outcomes
                .entry("h2 with unparsable SNI".into())
                .or_default() += 1;
            if std::env::var_os("HOSTILE_SHOW_UNPARSED").is_some() {
                eprintln!("{label}: h2, SNI not parsed: {}", hex(sent));
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Real TLS 1.2 and 1.3 handshakes with OpenSSL's client offering absurd lists it
/// accepts, per name; the result is asserted exactly. Returns the handshakes done.
fn openssl_handshakes(port: u16, rng: &mut Rng, rounds: usize, stats: &mut Stats) {
    for _ in 0..rounds {
        let (what, names) = absurd_alpn(rng);
        let wire_list = alpn_wire(&names);
        for version in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
            let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
            ctx.set_min_proto_version(Some(version)).unwrap();
            ctx.set_max_proto_version(Some(version)).unwrap();
            ctx.set_verify(SslVerifyMode::NONE);
            if ctx.set_alpn_protos(&wire_list).is_err() {
                *stats
                    .handshakes
                    .entry(format!("{what}: refused by the OpenSSL client"))
                    .or_default() += 1;
                break;
            }
            let ctx = ctx.build();
            for name in NAMES {
                let mut ssl = Ssl::new(&ctx).unwrap();
                ssl.set_hostname(name).unwrap();
                let tcp = connect(port);
                let got = ssl
                    .connect(tcp)
                    .map(|s| s.ssl().selected_alpn_protocol().map(|p| p.to_vec()))
                    .map_err(|e| e.to_string());
                let offered = |p: &[u8]| names.iter().any(|n| n == p);
                let known = [&b"http/1.1"[..], b"http/1.0", b"http/0.9"]
                    .into_iter()
                    .find(|p| offered(p));
                let want = if !disabled(name.as_bytes()) && offered(b"h2") {
                    Some(&b"h2"[..])
                } else {
                    known
                };
                let ctx = format!("{name} {version:?} offering {what} ({} names)", names.len());
                // OpenSSL's client may accept a list it then cannot put into a ClientHello.
                if matches!(&got, Err(e) if e.contains("tls_construct")) {
                    *stats
                        .handshakes
                        .entry(format!(
                            "{what}: ClientHello not built by the OpenSSL client"
                        ))
                        .or_default() += 1;
                    continue;
                }
                match (want, &got) {
                    (Some(w), Ok(Some(p))) => {
                        assert_eq!(p.as_slice(), w, "{ctx}: got {}", String::from_utf8_lossy(p))
                    }
                    // An empty list: OpenSSL's client sends no ALPN extension at all.
                    (None, Ok(None)) if names.is_empty() => {}
                    (None, Err(e)) => assert!(e.contains("no application protocol"), "{ctx}: {e}"),
                    _ => panic!("{ctx}: want {want:?}, got {got:?}"),
                }
                let label = match &got {
                    Ok(Some(p)) => {
                        format!("{} {}", version_label(version), String::from_utf8_lossy(p))
                    }
                    Ok(None) => format!("{} no ALPN", version_label(version)),
                    Err(_) => format!("{} no_application_protocol", version_label(version)),
                };
                *stats.handshakes.entry(label).or_default() += 1;
            }
        }
    }
}

fn version_label(v: SslVersion) -> &'static str {
    if v == SslVersion::TLS1_3 {
        "TLS 1.3"
    } else {
        "TLS 1.2"
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

fn main() {
    if !selected() {
        return;
    }
    let cfg = Config::from_env();
    let nginx = start_nginx();
    let (main_port, hrr_port) = (nginx.port(MAIN), nginx.port(HRR));
    let workers = nginx.workers();
    let seeds = seeds();
    println!(
        "nginx {:?}, worker(s) {workers:?}; {} seeds; {} inputs max, {} s max, {} threads",
        nginx::nginx_version(),
        seeds.all.len(),
        if cfg.limit == u64::MAX {
            "no".to_string()
        } else {
            cfg.limit.to_string()
        },
        cfg.seconds,
        cfg.threads,
    );

    // Real handshakes first: the exact expectations, on a fresh worker.
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut rng = Rng::new(cfg.base_seed ^ 0xA1);
    let rounds = if cfg.full { 200 } else { 25 };
    openssl_handshakes(main_port, &mut rng, rounds, &mut stats);
    let handshake_time = started.elapsed();

    let (inputs, elapsed) = run_inputs(&cfg, &seeds, main_port, hrr_port);
    stats.merge(inputs);
    let total: u64 = stats.inputs.values().sum();
    let rate = total as f64 / elapsed.as_secs_f64();

    // Still serving, same worker, clean log (every line written: `finish_expecting`
    // reads it again and allows only the lines classified here).
    let reply = clients::get(&Request::new(main_port, "/", SslVersion::TLS1_3).sni(ON));
    assert_eq!(reply.status, 200, "{reply:?}");
    let after = nginx.workers();
    let log = nginx.settled_error_log();
    let warnings = library_warnings(&log);
    let (refused, expected) = openssl_refusals(&log);

    let report = markdown(
        &stats,
        &warnings,
        &refused,
        total,
        rate,
        elapsed,
        handshake_time,
        &workers,
        &after,
        cfg.threads,
    );
    println!("{report}");
    write_report(&report, cfg.full);

    assert!(
        stats.violations.is_empty(),
        "h2 selected where disabled:\n{}",
        stats.violations.join("\n")
    );
    assert_eq!(workers, after, "the worker changed during the run:\n{log}");
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    nginx.finish_expecting(&expected);
    println!(
        "hostile_client_hellos: ok ({total} inputs in {:.1} s)",
        elapsed.as_secs_f64()
    );
}

/// Whether this run is wanted: `cargo test -- --list` and filters see one test, named
/// like the file.
fn selected() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("hostile_client_hellos: test");
        return false;
    }
    match args.iter().find(|a| !a.starts_with('-')) {
        Some(filter) => "hostile_client_hellos".contains(filter.as_str()),
        None => true,
    }
}

/// The run's knobs (see the module's documentation).
struct Config {
    /// The full run (`make fuzz-nginx`), not `cargo test`'s smoke run.
    full: bool,
    limit: u64,
    seconds: u64,
    threads: usize,
    base_seed: u64,
}

impl Config {
    fn from_env() -> Config {
        let full = env_u64("HOSTILE_INPUTS").is_some() || env_u64("HOSTILE_SECONDS").is_some();
        Config {
            full,
            limit: env_u64("HOSTILE_INPUTS").unwrap_or(if full { u64::MAX } else { 5000 }),
            seconds: env_u64("HOSTILE_SECONDS").unwrap_or(if full { 3600 } else { 15 }),
            threads: env_u64("HOSTILE_THREADS").unwrap_or(6) as usize,
            base_seed: env_u64("HOSTILE_SEED").unwrap_or(0x6b63_7431),
        }
    }
}

fn start_nginx() -> Nginx {
    let server = Pki::get("hostile-server", KeyKind::EcdsaP256);
    let clients_ca = Pki::get("hostile-clients", KeyKind::EcdsaP256);
    let mut files = nginx::server_files(server);
    files.push(("ca.pem", pem(&clients_ca.root.cert).into_bytes()));
    let ca_path = nginx::temp_dir("hostile").join("ca.pem");
    let init = format!(
        r#"        require "kong_client_tls"
        local f = assert(io.open("{}"))
        CA_PEM = f:read("*a")
        HOSTILE = {{}}
        f:close()"#,
        ca_path.display()
    );
    let setup = Setup {
        main: "master_process on;\nworker_processes 1;",
        init_lua: Some(&init),
        log_level: "warn",
        worker_connections: 1024,
        ..Setup::default()
    };
    Nginx::start_with("hostile", &setup, &[MAIN, HRR], &files, &http)
}

/// Random inputs from `threads` threads until the limit or the time is up; their stats
/// and how long they took.
fn run_inputs(cfg: &Config, seeds: &Seeds, main_port: u16, hrr_port: u16) -> (Stats, Duration) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cfg.seconds);
    let (full, limit, base_seed) = (cfg.full, cfg.limit, cfg.base_seed);
    let next = AtomicU64::new(0);
    let done = AtomicUsize::new(0);
    let merged = Mutex::new(Stats::default());
    std::thread::scope(|s| {
        for t in 0..cfg.threads {
            let (next, done, merged) = (&next, &done, &merged);
            s.spawn(move || {
                let mut local = Stats::default();
                let mut rng = Rng::new(base_seed.wrapping_add(t as u64 * 7919));
                while Instant::now() < deadline && next.fetch_add(1, Ordering::Relaxed) < limit {
                    one_input(&mut rng, seeds, main_port, hrr_port, &mut local);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if full && n % 50_000 == 0 {
                        println!(
                            "  {n} inputs, {:.0}/s",
                            n as f64 / started.elapsed().as_secs_f64()
                        );
                    }
                }
                merged.lock().unwrap().merge(local);
            });
        }
    });
    let elapsed = started.elapsed();
    (merged.into_inner().unwrap(), elapsed)
}

/// The library's errors the Lua handlers logged, by message.
fn library_warnings(log: &str) -> BTreeMap<String, u64> {
    let mut warnings: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("kct-hostile:")) {
        let msg = line.split("kct-hostile: ").nth(1).unwrap_or("");
        let msg = msg.split(", client:").next().unwrap_or(msg).to_string();
        *warnings.entry(msg).or_default() += 1;
    }
    warnings
}

/// nginx logs a handshake that OpenSSL refused at `crit` unless the reason is on its
/// own list of client errors (`ngx_ssl_connection_error`; nginx 1.22's list is short):
/// those are counted, by reason, and are the only `crit` lines allowed. One that says
/// `internal error` or `callback failed` could be ours, and is not allowed.
/// Returns the counts and the distinct texts to allow.
fn openssl_refusals(log: &str) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut expected: Vec<String> = Vec::new();
    for line in log.lines().filter(|l| l.contains("[crit]")) {
        let Some(start) = line.find("SSL_do_handshake() failed (SSL: ") else {
            continue;
        };
        let Some(len) = line[start..].find(") while SSL handshaking") else {
            continue;
        };
        let text = &line[start..start + len + ") while SSL handshaking".len()];
        if text.contains("internal error") || text.contains("callback failed") {
            continue;
        }
        let reason: Vec<&str> = text
            .split("error:")
            .skip(1)
            .map(|e| e.split_once("::").map_or(e, |x| x.1))
            .map(|e| e.trim_end_matches(") while SSL handshaking").trim())
            .collect();
        *refused.entry(reason.join(" / ")).or_default() += 1;
        if !expected.iter().any(|e| e == text) {
            expected.push(text.to_string());
        }
    }
    (refused, expected)
}

/// Writes the Markdown fragment where `HOSTILE_REPORT` says, or under the target dir.
fn write_report(report: &str, full: bool) {
    let out = std::env::var_os("HOSTILE_REPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            // The smoke run of `cargo test` leaves the full run's fragment alone.
            let file = if full {
                "fuzz-nginx.md"
            } else {
                "fuzz-nginx-smoke.md"
            };
            target_dir().join("reliability").join(file)
        });
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, report).unwrap();
    println!("wrote {}", out.display());
}

#[allow(clippy::too_many_arguments)]
fn markdown(
    stats: &Stats,
    warnings: &BTreeMap<String, u64>,
    refused: &BTreeMap<String, u64>,
    total: u64,
    rate: f64,
    elapsed: Duration,
    handshake_time: Duration,
    before: &[u32],
    after: &[u32],
    threads: usize,
) -> String {
    let (major, minor, patch) = nginx::nginx_version();
    let mut md = String::new();
    md.push_str("## Hostile ClientHellos against nginx\n\n");
    md.push_str(&format!(
        "Written by `tests/nginx_hostile.rs` (`make fuzz-nginx`). nginx {major}.{minor}.{patch}{}, one worker, \
         `http2` on, `disable_http2_alpn()` and `request_client_certificate(ca)` in \
         `ssl_client_hello_by_lua*`, `request_client_certificate()` in \
         `ssl_certificate_by_lua*`.\n\n",
        match nginx::nginx_root() {
            Some(r) => format!(" (root {})", r.display()),
            None => " (host)".to_string(),
        }
    ));
    md.push_str(&format!(
        "- inputs: **{total}** in {:.1} s, **{rate:.0} inputs/s** ({threads} client threads)\n",
        elapsed.as_secs_f64()
    ));
    let hs: u64 = stats.handshakes.values().sum();
    md.push_str(&format!(
        "- real OpenSSL-client handshakes with absurd ALPN lists (result asserted exactly): {hs} in {:.1} s\n",
        handshake_time.as_secs_f64()
    ));
    md.push_str(&format!(
        "- h2 selected where disabled: **{}**\n",
        stats.violations.len()
    ));
    md.push_str(&format!(
        "- worker pid before/after: {before:?} / {after:?}{}; nginx still serving: yes; \
         no `[alert]`, `[emerg]`, crashed worker or `[crit]` other than OpenSSL's refusals \
         below (checked by `finish_expecting()` after this was written)\n\n",
        if before == after {
            " (unchanged)"
        } else {
            " (CHANGED)"
        }
    ));
    let table = |md: &mut String, title: &str, map: &BTreeMap<String, u64>| {
        md.push_str(&format!("| {title} | count |\n|---|---:|\n"));
        for (k, v) in map {
            md.push_str(&format!("| {} | {v} |\n", k.replace('|', "\\|")));
        }
        md.push('\n');
    };
    table(&mut md, "input kind", &stats.inputs);
    table(&mut md, "server's answer", &stats.outcomes);
    table(&mut md, "real handshake", &stats.handshakes);
    if !refused.is_empty() {
        table(
            &mut md,
            "handshake refused by OpenSSL, logged by nginx at `crit` (its level for reasons \
             not on its client-error list)",
            refused,
        );
    }
    if !warnings.is_empty() {
        table(&mut md, "library error returned to Lua (logged)", warnings);
    }
    md
}

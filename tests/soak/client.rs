//! The soak's client process: `SOAK_CLIENT=<index>` re-executes the soak binary as one
//! of several concurrent load clients. Each makes its share of the connections, checks
//! every reply against what the server's configuration must give, and prints to stdout:
//!
//! - `P <n>` every 200 connections (progress, read by the driver);
//! - `F <unix ms> <instance> <kind> <detail>` for every failure (the driver decides which
//!   a reload, the upgrade or the killed worker explains);
//! - `C <kind> <n>` at the end: connections made, by kind of check.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslOptions, SslSession, SslStream, SslVersion,
};

use crate::support::clients::{client_context, parse_head, ClientCert};
use crate::support::pki::Pki;

/// What the driver hands each client (environment variables).
pub struct Plan {
    pub index: usize,
    pub connections: usize,
    pub pki_dir: String,
    /// (instance name, ec port, rsa port)
    pub instances: Vec<(String, u16, u16)>,
}

impl Plan {
    pub fn from_env() -> Plan {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set"));
        let instances = var("SOAK_INSTANCES")
            .split(',')
            .map(|i| {
                let mut p = i.split(':');
                let name = p.next().unwrap().to_string();
                let ec = p.next().unwrap().parse().unwrap();
                let rsa = p.next().unwrap().parse().unwrap();
                (name, ec, rsa)
            })
            .collect();
        Plan {
            index: var("SOAK_CLIENT").parse().unwrap(),
            connections: var("SOAK_CLIENT_CONNECTIONS").parse().unwrap(),
            pki_dir: var("SOAK_PKI"),
            instances,
        }
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The client certificate a connection presents.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Who {
    Trusted,
    Untrusted,
    Anonymous,
}

/// How the server treats a name (its first label; see the driver's Lua).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mtls {
    /// request_client_certificate(CA) in client_hello: bound, resumable.
    HelloCa,
    /// request_client_certificate() in client_hello.
    HelloNoCa,
    /// request_client_certificate(CA) in certificate.
    CertCa,
    /// request_client_certificate() in certificate.
    CertNoCa,
    /// Nothing requested.
    None,
}

impl Mtls {
    const ALL: [Mtls; 5] = [
        Mtls::HelloCa,
        Mtls::HelloNoCa,
        Mtls::CertCa,
        Mtls::CertNoCa,
        Mtls::None,
    ];
    fn label(self) -> &'static str {
        match self {
            Mtls::HelloCa => "hca",
            Mtls::HelloNoCa => "hnoca",
            Mtls::CertCa => "cca",
            Mtls::CertNoCa => "cnoca",
            Mtls::None => "none",
        }
    }
    fn requests(self) -> bool {
        self != Mtls::None
    }
    fn with_ca(self) -> bool {
        matches!(self, Mtls::HelloCa | Mtls::CertCa)
    }
}

/// What a client reports: counts by kind, and its stdout.
struct Ctx {
    counts: BTreeMap<String, u64>,
    out: io::Stdout,
}

impl Ctx {
    fn count(&mut self, kind: &str, n: u64) {
        *self.counts.entry(kind.to_string()).or_default() += n;
    }
    fn fail(&mut self, instance: &str, kind: &str, detail: &str) {
        let detail: String = detail
            .chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .take(300)
            .collect();
        let _ = writeln!(self.out, "F {} {instance} {kind} {detail}", now_ms());
    }
}

/// One connection's settings.
#[derive(Clone)]
struct Conn<'a> {
    port: u16,
    version: SslVersion,
    sni: String,
    cert: Option<&'a ClientCert>,
    session: Option<SslSession>,
    alpn: Option<&'static [u8]>,
    groups: Option<&'static str>,
    no_ticket: bool,
}

fn context(c: &Conn) -> SslContext {
    let mut ctx = client_context(c.version, c.cert, c.alpn, c.groups);
    if c.no_ticket {
        ctx.set_options(SslOptions::NO_TICKET);
    }
    ctx.build()
}

fn connect_tcp(port: u16) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

fn handshake(c: &Conn) -> Result<SslStream<TcpStream>, String> {
    let ctx = context(c);
    let mut ssl = Ssl::new(&ctx).unwrap();
    ssl.set_hostname(&c.sni).unwrap();
    if let Some(s) = &c.session {
        // SAFETY: the session comes from a client of the same settings.
        unsafe { ssl.set_session(s).unwrap() };
    }
    let tcp = connect_tcp(c.port).map_err(|e| format!("connect: {e}"))?;
    ssl.connect(tcp).map_err(|e| match e {
        HandshakeError::Failure(m) => format!("handshake: {}", m.error()),
        HandshakeError::SetupFailure(e) => format!("setup: {e}"),
        HandshakeError::WouldBlock(_) => "would block".into(),
    })
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// One HTTP/1.1 request on `s`; `Err((any byte received, message))`.
fn request(s: &mut SslStream<TcpStream>, path: &str, host: &str) -> Result<Reply, (bool, String)> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
    )
    .map_err(|e| (false, format!("write: {e}")))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match s.read(&mut buf) {
            Ok(0) => return Err((!raw.is_empty(), "closed before the response".into())),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err((!raw.is_empty(), format!("read: {e}"))),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let (status, headers) = parse_head(&head);
    let status = status.unwrap_or(0);
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or((true, format!("no content-length: {head}")))?;
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut buf) {
            Ok(0) => return Err((true, "closed in the body".into())),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => return Err((true, format!("read body: {e}"))),
        }
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Checks a reply of `/`: status, verify result and override, chain, resumed flag.
fn check(
    r: &Reply,
    mtls: Mtls,
    who: Who,
    chain: Option<&str>,
    resumed: Option<bool>,
) -> Result<(), String> {
    if r.status != 200 {
        return Err(format!(
            "status {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let verify = r.headers.get("x-verify").map(String::as_str).unwrap_or("");
    let over = r
        .headers
        .get("x-override")
        .map(String::as_str)
        .unwrap_or("");
    let sent = mtls.requests() && who != Who::Anonymous;
    let want_ok = match (sent, who, mtls.with_ca()) {
        (false, _, _) => verify == "NONE",
        (true, Who::Trusted, true) => verify == "SUCCESS",
        (true, _, _) => verify.starts_with("FAILED:"),
    };
    if !want_ok {
        return Err(format!("verify {verify:?} for {mtls:?} {who:?}"));
    }
    if over != verify {
        return Err(format!("override {over:?} != verify {verify:?}"));
    }
    let body = String::from_utf8_lossy(&r.body);
    let want_chain = if sent { chain.unwrap_or("") } else { "" };
    // A resumed session keeps the leaf; the rest of the chain only when OpenSSL kept it
    // (src/chain.rs): not across a serialized session (tickets, the shared cache).
    let reused = r.headers.get("x-reused").map(String::as_str) == Some("r");
    let leaf_only = want_chain
        .find("-----END CERTIFICATE-----\n")
        .map(|e| &want_chain[..e + 26]);
    if body != want_chain && !(reused && leaf_only == Some(&*body)) {
        return Err(format!(
            "chain of {} bytes, {} expected",
            body.len(),
            want_chain.len()
        ));
    }
    if let Some(want) = resumed {
        let got = r.headers.get("x-reused").map(String::as_str) == Some("r");
        if got != want {
            return Err(format!("resumed {got}, {want} expected"));
        }
    }
    Ok(())
}

/// A stream that lets the handshake through until `cut` says to stop, then fails.
struct Cut {
    tcp: TcpStream,
    writes: usize,
    /// Write number (1-based) to truncate after the first record of `record_type`; the
    /// error follows.
    at_write: usize,
    record_type: Option<u8>,
    cut: bool,
}

impl Read for Cut {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cut {
            return Err(io::Error::other("cut"));
        }
        self.tcp.read(buf)
    }
}

impl Write for Cut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cut {
            return Err(io::Error::other("cut"));
        }
        self.writes += 1;
        if self.writes < self.at_write {
            return self.tcp.write(buf);
        }
        // Up to and including the first record of the type (or the whole write).
        let mut end = buf.len();
        if let Some(t) = self.record_type {
            let mut i = 0;
            while i + 5 <= buf.len() {
                let len = u16::from_be_bytes([buf[i + 3], buf[i + 4]]) as usize;
                let next = (i + 5 + len).min(buf.len());
                if buf[i] == t {
                    end = next;
                    break;
                }
                i = next;
            }
        }
        self.tcp.write_all(&buf[..end])?;
        self.cut = true;
        Err(io::Error::other("cut"))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Closes with a TCP reset (SO_LINGER 0).
fn reset(tcp: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the right size.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
}

/// A handshake cut off after the ClientHello (write 1) or the client's Certificate
/// (write 2's first handshake record), then a reset.
fn vanish(c: &Conn, at_write: usize) -> Result<(), String> {
    let ctx = context(c);
    let mut ssl = Ssl::new(&ctx).unwrap();
    ssl.set_hostname(&c.sni).unwrap();
    let tcp = connect_tcp(c.port).map_err(|e| format!("connect: {e}"))?;
    let keep = tcp.try_clone().unwrap();
    let record_type = match (at_write, c.version) {
        (1, _) => None,
        (_, SslVersion::TLS1_3) => Some(23),
        _ => Some(22),
    };
    let cut = Cut {
        tcp,
        writes: 0,
        at_write,
        record_type,
        cut: false,
    };
    match ssl.connect(cut) {
        Ok(_) => Err("handshake completed despite the cut".into()),
        Err(_) => {
            reset(&keep);
            Ok(())
        }
    }
}

const VERSIONS: [SslVersion; 2] = [SslVersion::TLS1_2, SslVersion::TLS1_3];
const H2_HTTP11: &[u8] = b"\x02h2\x08http/1.1";
const H2: &[u8] = b"\x02h2";

pub fn run(plan: Plan) {
    let certs = Certs::load(Path::new(&plan.pki_dir));
    let mut cx = Ctx {
        counts: BTreeMap::new(),
        out: io::stdout(),
    };
    let mut done = 0usize;
    let mut i = plan.index * 7919;
    let mut last_progress = 0;
    while done < plan.connections {
        i += 1;
        done += connection(&mut cx, &certs, &plan, i);
        if done - last_progress >= 200 {
            let _ = writeln!(cx.out, "P {}", done - last_progress);
            last_progress = done;
        }
    }
    let _ = writeln!(cx.out, "P {}", done - last_progress);
    let counts = std::mem::take(&mut cx.counts);
    for (k, n) in counts {
        let _ = writeln!(cx.out, "C {k} {n}");
    }
}

/// The client certificates the connections present, and the chains the server must
/// return for them.
struct Certs {
    trusted: ClientCert,
    untrusted: ClientCert,
    trusted_pem: String,
    untrusted_pem: String,
}

impl Certs {
    fn load(dir: &Path) -> Certs {
        let client = Pki::load(dir, "client");
        let untrusted = Pki::load(dir, "untrusted");
        // Verify depth 0 (Kong's): a trusted client is issued by a CA of the list.
        let trusted = ClientCert {
            cert: client.direct_leaf.cert.clone(),
            chain: vec![],
            key: client.direct_leaf.key.clone(),
        };
        let untrusted = ClientCert::leaf(&untrusted);
        Certs {
            trusted_pem: trusted.chain_pem(),
            untrusted_pem: untrusted.chain_pem(),
            trusted,
            untrusted,
        }
    }
}

/// What every kind of connection number `i` shares: where it goes, how the server treats
/// its name, and what the client presents.
struct Target<'a> {
    inst: &'a str,
    base: Conn<'a>,
    mtls: Mtls,
    who: Who,
    pem: Option<&'a str>,
}

/// Connection number `i` (two for a resumption): each of its settings and its kind cycle
/// with `i` at their own period, so every mix of them comes up. Returns the connections
/// made.
fn connection(cx: &mut Ctx, certs: &Certs, plan: &Plan, i: usize) -> usize {
    // Two in three connections go to the first instance (steady), one to the second.
    let (inst, ec, rsa) = &plan.instances[if i % 3 == 2 && plan.instances.len() > 1 {
        1
    } else {
        0
    }];
    let version = VERSIONS[i % 2];
    let port = if (i / 2) % 2 == 0 { *ec } else { *rsa };
    let mtls = Mtls::ALL[(i / 4) % 5];
    let who = [Who::Trusted, Who::Untrusted, Who::Anonymous][(i / 20) % 3];
    let (cert, pem) = match who {
        Who::Trusted => (Some(&certs.trusted), Some(certs.trusted_pem.as_str())),
        Who::Untrusted => (Some(&certs.untrusted), Some(certs.untrusted_pem.as_str())),
        Who::Anonymous => (None, None),
    };
    let t = Target {
        inst: inst.as_str(),
        base: Conn {
            port,
            version,
            sni: format!("{}.x.soak", mtls.label()),
            cert,
            session: None,
            alpn: None,
            groups: None,
            no_ticket: false,
        },
        mtls,
        who,
        pem,
    };
    match i % 10 {
        0..=2 => run_full(cx, &t),
        3 | 4 => run_resume(cx, &t, i),
        5 => run_alpn(cx, &t, i),
        6 => run_hrr(cx, &t),
        7 => run_keepalive(cx, &t),
        8 => run_vanish(cx, certs, &t, i),
        _ => run_mid_response(cx, &t),
    }
}

/// A full handshake and one request.
fn run_full(cx: &mut Ctx, t: &Target) -> usize {
    let r = one(&t.base, t.mtls, t.who, t.pem, None);
    record(cx, t.inst, "full", r);
    1
}

/// A resumption attempt: tickets, or session IDs (TLS 1.2 without tickets, the shared
/// cache), with disable_session_reuse on some names.
/// Across names: a session verified on hca.x.soak offered to another name that requests
/// a certificate, which must verify anew.
fn run_resume(cx: &mut Ctx, t: &Target, i: usize) -> usize {
    let (mtls, who, pem) = (t.mtls, t.who, t.pem);
    let nosr = (i / 60) % 2 == 1 && !mtls.requests();
    let cross = (i / 60) % 3 == 2 && mtls.requests() && mtls != Mtls::HelloCa;
    let mut c = t.base.clone();
    c.sni = format!("{}.{}.soak", mtls.label(), if nosr { "nosr" } else { "x" });
    c.no_ticket = i % 10 == 4 && c.version == SslVersion::TLS1_2;
    let first = if cross {
        let mut on_hca = c.clone();
        on_hca.sni = format!("{}.x.soak", Mtls::HelloCa.label());
        one_keep(&on_hca, Mtls::HelloCa, who, pem, Some(false))
    } else {
        one_keep(&c, mtls, who, pem, Some(false))
    };
    let label = if cross {
        "resume-cross-name"
    } else if c.no_ticket {
        "resume-session-id"
    } else {
        "resume-ticket"
    };
    match first {
        Err(e) => {
            record(cx, t.inst, label, Err(e));
            1
        }
        Ok(session) => {
            // Resumable: no certificate requested and no disable_session_reuse,
            // or requested from client_hello with the CA list.
            let want = !cross && !nosr && matches!(mtls, Mtls::None | Mtls::HelloCa);
            c.session = session;
            let r = one(&c, mtls, who, pem, Some(want));
            record(cx, t.inst, label, r);
            2
        }
    }
}

/// ALPN: h2,http/1.1 / only h2 / nothing, on names with and without disable_http2_alpn.
fn run_alpn(cx: &mut Ctx, t: &Target, i: usize) -> usize {
    let noh2 = (i / 10) % 2 == 0;
    let offer = [Some(H2_HTTP11), Some(H2), None][(i / 20) % 3];
    let mut c = t.base.clone();
    c.sni = format!("none.{}.soak", if noh2 { "noh2" } else { "x" });
    c.cert = None;
    c.alpn = offer;
    let r = alpn(&c, noh2, offer);
    record(cx, t.inst, "alpn", r);
    1
}

/// A HelloRetryRequest: the client's key share is for a group the server does not have
/// (P-384); mutual TLS from client_hello.
fn run_hrr(cx: &mut Ctx, t: &Target) -> usize {
    let mut c = t.base.clone();
    c.version = SslVersion::TLS1_3;
    c.groups = Some("P-384:X25519");
    let r = one(&c, t.mtls, t.who, t.pem, None);
    record(cx, t.inst, "hrr", r);
    1
}

/// Keep-alive: the chain fetched on every request.
fn run_keepalive(cx: &mut Ctx, t: &Target) -> usize {
    match keepalive(&t.base, t.mtls, t.who, t.pem, 10) {
        Ok(retried) => {
            if retried {
                cx.fail(
                    t.inst,
                    "ka-closed-retried",
                    "keep-alive closed before a response, retried",
                );
            }
            record(cx, t.inst, "keepalive", Ok(()));
        }
        Err(e) => record(cx, t.inst, "keepalive", Err(e)),
    }
    1
}

/// Vanishing clients: reset after the ClientHello, after the Certificate.
fn run_vanish(cx: &mut Ctx, certs: &Certs, t: &Target, i: usize) -> usize {
    let at = 1 + (i / 10) % 2;
    let mut c = t.base.clone();
    if at == 2 {
        c.cert = Some(&certs.trusted);
        c.sni = "hca.x.soak".into();
    }
    let r = vanish(&c, at);
    let label = if at == 1 {
        "rst-after-hello"
    } else {
        "rst-after-cert"
    };
    record(cx, t.inst, label, r);
    1
}

/// Reset in the middle of a 1 MiB response.
fn run_mid_response(cx: &mut Ctx, t: &Target) -> usize {
    let r = mid_response(&t.base);
    record(cx, t.inst, "rst-mid-response", r);
    1
}

fn record(cx: &mut Ctx, inst: &str, label: &str, r: Result<(), String>) {
    cx.count(&format!("{inst}/{label}"), 1);
    if let Err(e) = r {
        cx.fail(inst, label, &e);
    }
}

/// One connection, one request to `/`, checked; `Ok(session)` to offer next time.
fn one_keep(
    c: &Conn,
    mtls: Mtls,
    who: Who,
    chain: Option<&str>,
    resumed: Option<bool>,
) -> Result<Option<SslSession>, String> {
    let mut s = handshake(c)?;
    let r = request(&mut s, "/", &c.sni).map_err(|(_, e)| e)?;
    check(&r, mtls, who, chain, resumed)?;
    if s.ssl().session_reused() != resumed.unwrap_or(s.ssl().session_reused()) {
        return Err("client and server disagree on resumption".into());
    }
    let _ = s.shutdown();
    Ok(s.ssl().session().map(|x| x.to_owned()))
}

fn one(
    c: &Conn,
    mtls: Mtls,
    who: Who,
    chain: Option<&str>,
    resumed: Option<bool>,
) -> Result<(), String> {
    one_keep(c, mtls, who, chain, resumed).map(|_| ())
}

fn alpn(c: &Conn, noh2: bool, offer: Option<&[u8]>) -> Result<(), String> {
    let want: Option<&[u8]> = match (offer, noh2) {
        (None, _) => None,
        (Some(_), false) => Some(b"h2"),
        (Some(o), true) if o == H2 => {
            return match handshake(c) {
                Ok(_) => Err("only h2 offered on a disable_http2_alpn name: accepted".into()),
                Err(e) if e.contains("no application protocol") => Ok(()),
                Err(e) => Err(format!(
                    "only h2: {e}, not the no_application_protocol alert"
                )),
            };
        }
        (Some(_), true) => Some(b"http/1.1"),
    };
    let mut s = handshake(c)?;
    let got = s.ssl().selected_alpn_protocol().map(|p| p.to_vec());
    if got.as_deref() != want {
        return Err(format!(
            "ALPN {:?}, {:?} expected",
            got.map(|g| String::from_utf8_lossy(&g).to_string()),
            want.map(|w| String::from_utf8_lossy(w).to_string())
        ));
    }
    if got.as_deref() != Some(b"h2") {
        let r = request(&mut s, "/", &c.sni).map_err(|(_, e)| e)?;
        check(&r, Mtls::None, Who::Anonymous, None, None)?;
    }
    let _ = s.shutdown();
    Ok(())
}

/// `n` requests on one connection; `Ok(true)` when the server closed it before a response
/// after at least one (a draining worker) and a fresh connection then served the rest.
fn keepalive(
    c: &Conn,
    mtls: Mtls,
    who: Who,
    chain: Option<&str>,
    n: usize,
) -> Result<bool, String> {
    let mut s = handshake(c)?;
    let mut retried = false;
    let mut k = 0;
    while k < n {
        match request(&mut s, "/", &c.sni) {
            Ok(r) => {
                check(&r, mtls, who, chain, None).map_err(|e| format!("request {k}: {e}"))?;
                k += 1;
            }
            Err((false, e)) if k > 0 && !retried => {
                let _ = e;
                retried = true;
                s = handshake(c)?;
            }
            Err((_, e)) => return Err(format!("request {k}: {e}")),
        }
    }
    let _ = s.shutdown();
    Ok(retried)
}

fn mid_response(c: &Conn) -> Result<(), String> {
    let mut s = handshake(c)?;
    write!(s, "GET /big HTTP/1.1\r\nHost: {}\r\n\r\n", c.sni).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16384];
    let mut got = 0;
    while got < 64 * 1024 {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {got} bytes")),
            Ok(n) => got += n,
            Err(e) => return Err(format!("read after {got} bytes: {e}")),
        }
    }
    reset(s.get_ref());
    drop(s);
    Ok(())
}

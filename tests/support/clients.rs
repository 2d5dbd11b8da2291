//! The TLS clients the nginx tests drive nginx with, all on the host: a Rust client
//! ([`get`]: one HTTP/1.0 request over exactly one TLS version, with SNI, a client
//! certificate, a session to resume), plain HTTP ([`get_plain`]), and the everyday
//! clients `openssl s_client` ([`SClient`]) and `curl` ([`curl`]), run under a
//! [`ChildGuard`](super::process::ChildGuard) so that none outlives its test.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use foreign_types::ForeignTypeRef;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslRef, SslSession, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::stack::StackRef;
use openssl::x509::{X509Name, X509};

use super::pki::{pem, Pki};
use super::process;
use super::sys::SSL_get_client_CA_list;

/// What a client presents: a certificate, the chain it sends after it, and the key.
#[derive(Clone)]
pub struct ClientCert {
    pub cert: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl ClientCert {
    /// leaf + intermediate(s) of `pki`.
    pub fn leaf(pki: &Pki) -> ClientCert {
        ClientCert {
            cert: pki.leaf.cert.clone(),
            chain: pki.chain().into_iter().cloned().collect(),
            key: pki.leaf.key.clone(),
        }
    }
    /// A client certificate issued directly by `pki`'s root (no intermediate).
    pub fn issued_by_root(pki: &Pki, cn: &str) -> ClientCert {
        let id = pki.issue_from_root(cn);
        ClientCert {
            cert: id.cert,
            chain: vec![],
            key: id.key,
        }
    }
    /// The PEM the server must return for this client: cert, then chain.
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.cert)
            .chain(&self.chain)
            .map(pem)
            .collect()
    }
}

// The Rust client ----------------------------------------------------------------------

/// A connection to 127.0.0.1:`port` over exactly `version` that does not verify the
/// server, and (for [`get`]) the request made on it.
pub struct Request<'a> {
    pub port: u16,
    pub path: &'a str,
    pub version: SslVersion,
    pub sni: Option<&'a str>,
    pub cert: Option<&'a ClientCert>,
    pub session: Option<&'a SslSession>,
    /// The ALPN list offered (wire format), none by default.
    pub alpn: Option<&'a [u8]>,
    /// The key-share groups (`set_groups_list`), OpenSSL's by default.
    pub groups: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn new(port: u16, path: &'a str, version: SslVersion) -> Self {
        Request {
            port,
            path,
            version,
            sni: None,
            cert: None,
            session: None,
            alpn: None,
            groups: None,
        }
    }
    pub fn sni(mut self, sni: &'a str) -> Self {
        self.sni = Some(sni);
        self
    }
    pub fn cert(mut self, cert: Option<&'a ClientCert>) -> Self {
        self.cert = cert;
        self
    }
    pub fn session(mut self, session: Option<&'a SslSession>) -> Self {
        self.session = session;
        self
    }
    pub fn alpn(mut self, alpn: Option<&'a [u8]>) -> Self {
        self.alpn = alpn;
        self
    }
    pub fn groups(mut self, groups: Option<&'a str>) -> Self {
        self.groups = groups;
        self
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The client resumed the session it offered.
    pub reused: bool,
    /// The client's session after the whole response (TLS 1.3 tickets included).
    pub session: Option<SslSession>,
    /// DER of the acceptable-CA names of the server's CertificateRequest.
    pub ca_names: Vec<Vec<u8>>,
    pub version: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("reused", &self.reused)
            .field("version", &self.version)
            .finish()
    }
}

impl Reply {
    /// A header nginx may leave out because it is empty.
    pub fn header_or_empty(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }
}

/// A client context for exactly `version`, that does not verify the server, presenting
/// `cert` (and its chain) when given, offering `alpn` (wire format) and key shares for
/// `groups` (e.g. "P-384:X25519", which makes a server without P-384 ask again).
pub fn client_context(
    version: SslVersion,
    cert: Option<&ClientCert>,
    alpn: Option<&[u8]>,
    groups: Option<&str>,
) -> SslContextBuilder {
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_min_proto_version(Some(version)).unwrap();
    ctx.set_max_proto_version(Some(version)).unwrap();
    ctx.set_verify(SslVerifyMode::NONE);
    if let Some(c) = cert {
        ctx.set_certificate(&c.cert).unwrap();
        for extra in &c.chain {
            ctx.add_extra_chain_cert(extra.clone()).unwrap();
        }
        ctx.set_private_key(&c.key).unwrap();
    }
    if let Some(alpn) = alpn {
        ctx.set_alpn_protos(alpn).unwrap();
    }
    if let Some(groups) = groups {
        ctx.set_groups_list(groups).unwrap();
    }
    ctx
}

/// The TLS handshake of `req` (its request is not sent); `prepare` sees the client `SSL`
/// just before (e.g. to count its ClientHellos). `Err` with OpenSSL's message.
pub fn handshake(
    req: &Request,
    prepare: impl FnOnce(&mut SslRef),
) -> Result<SslStream<TcpStream>, String> {
    let ctx = client_context(req.version, req.cert, req.alpn, req.groups).build();
    let mut ssl = Ssl::new(&ctx).unwrap();
    if let Some(sni) = req.sni {
        ssl.set_hostname(sni).unwrap();
    }
    if let Some(session) = req.session {
        // SAFETY: the session comes from a client of the same settings.
        unsafe { ssl.set_session(session).unwrap() };
    }
    prepare(&mut ssl);
    let tcp = TcpStream::connect(("127.0.0.1", req.port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    ssl.connect(tcp).map_err(|e| e.to_string())
}

/// Everything `stream` sends until it closes. A peer closing without close_notify after
/// the full response is a close; an error before anything arrived panics (`what` says
/// where).
pub fn read_to_close(stream: &mut impl Read, what: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("reading {what}: {e}"),
        }
    }
    raw
}

/// One HTTP/1.0 request over TLS with exactly `req.version`.
pub fn get(req: &Request) -> Reply {
    let mut stream =
        handshake(req, |_| {}).unwrap_or_else(|e| panic!("handshake with port {}: {e}", req.port));
    let host = req.sni.unwrap_or("localhost");
    write!(stream, "GET {} HTTP/1.0\r\nHost: {host}\r\n\r\n", req.path).unwrap();
    let raw = read_to_close(&mut stream, &format!("from port {}", req.port));
    // A clean close (close_notify sent): OpenSSL marks the session of a connection freed
    // without one as not resumable.
    let _ = stream.shutdown();
    let ssl = stream.ssl();
    // SAFETY: the stack belongs to the live SSL and is only read here.
    let ca_names = unsafe {
        let list = SSL_get_client_CA_list(ssl.as_ptr());
        if list.is_null() {
            Vec::new()
        } else {
            StackRef::<X509Name>::from_ptr(list)
                .iter()
                .map(|n| n.to_der().unwrap())
                .collect()
        }
    };
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let (status, headers) = parse_head(head);
    let status = status.unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        headers,
        body: body.to_string(),
        reused: ssl.session_reused(),
        session: ssl.session().map(|s| s.to_owned()),
        ca_names,
        version: ssl.version_str().to_string(),
    }
}

/// An HTTP response head: the status (`None` without a status line) and the headers,
/// names lower-cased.
pub fn parse_head(head: &str) -> (Option<u16>, HashMap<String, String>) {
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers)
}

/// A plain-HTTP GET (for the dump endpoint and non-TLS checks).
pub fn get_plain(port: u16, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = parse_head(head)
        .0
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// The probe results recorded under `prefix` by `tests/nginx/kct_e2e.lua` (its `dump`
/// handler on `dump_port`).
pub fn results(dump_port: u16, prefix: &str) -> HashMap<String, String> {
    let (status, body) = get_plain(dump_port, &format!("/dump?prefix={prefix}"));
    assert_eq!(status, 200, "{body}");
    parse_results(&body)
}

/// The body of a `kct_e2e.dump()` ("key<TAB>hex(value)" lines) as a map.
pub fn parse_results(body: &str) -> HashMap<String, String> {
    body.lines()
        .map(|l| {
            let (k, hex) = l.split_once('\t').expect("key\thex");
            (k.to_string(), unhex(hex))
        })
        .collect()
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

pub fn tls_label(v: SslVersion) -> &'static str {
    if v == SslVersion::TLS1_3 {
        "TLSv1.3"
    } else {
        "TLSv1.2"
    }
}

/// A readable dump of a name list, for messages.
pub fn describe(names: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for der in names {
        let name = X509Name::from_der(der).unwrap();
        for e in name.entries() {
            let _ = write!(s, "/{}", e.data().to_string().unwrap());
        }
        s.push(';');
    }
    s
}

// openssl s_client and curl ------------------------------------------------------------

/// An `openssl s_client` command line over exactly one TLS version, its stdout line
/// buffered (`stdbuf -oL`: what it receives and what it reports interleave only between
/// lines).
pub struct SClient {
    command: Command,
}

/// What `openssl s_client` printed, and whether it exited with 0.
pub struct SClientOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl SClient {
    /// `s_client -tls1_2|-tls1_3 -connect 127.0.0.1:<port>`.
    pub fn new(port: u16, version: SslVersion) -> SClient {
        let flag = if version == SslVersion::TLS1_3 {
            "-tls1_3"
        } else {
            "-tls1_2"
        };
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "openssl", "s_client", flag, "-connect"])
            .arg(format!("127.0.0.1:{port}"));
        SClient { command }
    }

    /// Sends `name` as SNI.
    pub fn servername(self, name: &str) -> SClient {
        self.args(["-servername", name])
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> SClient {
        self.command.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> SClient {
        self.command.args(args);
        self
    }

    /// Runs it to its end: with `request`, sends it and waits for the server to close
    /// (`-ign_eof`); without, closes after the handshake (stdin is `/dev/null`).
    pub fn run(mut self, request: Option<&str>) -> SClientOutput {
        if request.is_some() {
            self.command.arg("-ign_eof");
        }
        let out = process::run(&mut self.command, request.map(str::as_bytes));
        SClientOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl SClientOutput {
    /// The protocol ALPN selected, `"none"` when none was.
    pub fn alpn(&self) -> &str {
        if self.stdout.contains("No ALPN negotiated") {
            return "none";
        }
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("ALPN protocol: "))
            .unwrap_or_else(|| panic!("no ALPN line:\n{}\n{}", self.stdout, self.stderr))
    }
}

/// `curl <args>`, stdin `/dev/null`; asserts it succeeded and returns (stdout, stderr).
pub fn curl<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> (String, String) {
    let out = process::run(Command::new("curl").args(args), None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl: {stderr}");
    (stdout, stderr)
}

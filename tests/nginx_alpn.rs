//! End to end: `disable_http2_alpn()` inside a stock nginx with `http2` on (Debian's: the
//! host's nginx 1.22.1, lua-nginx-module 0.10.23, OpenSSL 3.0, or with `KCT_NGINX_ROOT`
//! that of a Debian 13 or unstable root, see `tests/distro/run.sh`), driven by curl,
//! `openssl s_client` and a Rust TLS client (with a minimal HTTP/2 client so that the
//! server's own view of each connection is read back over h2 as well as over HTTP/1.1).
//!
//! The client hello handler is defined once, at `http {}` level, so that every TLS
//! `server {}` has it: it calls `disable_http2_alpn()` for every SNI name starting with
//! `off-`. Where it must be defined differs by nginx version (which server's handler
//! runs); `client_hello_handler_placement` shows what works where.
//!
//! One nginx, three TLS ports, all on 127.0.0.1:
//! - `main`: two `server {}` blocks, the default one (`*.a.test`) and `*.b.test`, which
//!   has its own `SSL_CTX`, to which nginx switches on SNI: after the handler ran up to
//!   nginx 1.29.1, before it from 1.29.2 on. Session tickets on, no session cache
//!   (nginx's defaults).
//! - `hrr`: only P-256 (`ssl_ecdh_curve prime256v1`): a TLS 1.3 client whose first key
//!   share is X25519 gets a HelloRetryRequest and sends a second ClientHello.
//! - `ids`: no tickets, a shared session cache: TLS 1.2 session-ID resumption (and TLS 1.3
//!   stateful tickets).
//!
//! Every response reports what nginx saw (`$server_protocol`, `$ssl_alpn_protocol`,
//! `$ssl_session_reused`, the server block); the handler logs what `disable_http2_alpn()`
//! returned, once per ClientHello it ran for, under a unique SNI name per case.
//! `KCT_SHOW_LOG=1 cargo test --release --test nginx_alpn -- --nocapture` prints nginx's
//! error log.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use openssl::ssl::{SslSession, SslVersion};

use support::clients::{self, Request, SClient, SClientOutput};
use support::memtls::{count_client_hellos, VERSIONS};
use support::nginx::{self, Nginx, Ports, Setup};
use support::pki::{KeyKind, Pki};

const H2_HTTP11: &[u8] = b"\x02h2\x08http/1.1";
const ONLY_H2: &[u8] = b"\x02h2";
const ONLY_HTTP11: &[u8] = b"\x08http/1.1";
const GREASE_H2_HTTP11: &[u8] = b"\x02\x0a\x0a\x02h2\x08http/1.1";

const MAIN: &str = "main";
const HRR: &str = "hrr";
const IDS: &str = "ids";

fn server_pki() -> &'static Pki {
    Pki::get("server", KeyKind::EcdsaP256)
}

fn v(version: SslVersion) -> &'static str {
    if version == SslVersion::TLS1_3 {
        "v13"
    } else {
        "v12"
    }
}

// The server --------------------------------------------------------------------------

/// The client hello handler: `disable_http2_alpn()` for `off-*` names, logging what it
/// returned; a log line for every other name too.
const CLIENT_HELLO: &str = r#"
        ssl_client_hello_by_lua_block {
            local name = require("ngx.ssl.clienthello").get_client_hello_server_name()
            if name and name:find("^off%-") then
                local ok, err = require("kong_client_tls").disable_http2_alpn()
                ngx.log(ngx.NOTICE, "kct-alpn: client_hello ", name,
                        " disable_http2_alpn returned ", type(ok), " ", tostring(ok),
                        " ", tostring(err))
            else
                ngx.log(ngx.NOTICE, "kct-alpn: client_hello ", tostring(name), " untouched")
            end
        }"#;

fn report(block: &str) -> String {
    format!(
        "location / {{ return 200 \"block={block} proto=$server_protocol \
         alpn=$ssl_alpn_protocol tls=$ssl_protocol reused=$ssl_session_reused \
         sni=$ssl_server_name\\n\"; }}"
    )
}

fn tls_server(port: u16, names: &str, extra: &str) -> String {
    format!(
        "{listen}\n        \
         server_name {names};\n        \
         ssl_protocols TLSv1.2 TLSv1.3;\n        \
         ssl_certificate server.pem;\n        \
         ssl_certificate_key server.key;\n        \
         {extra}",
        listen = nginx::listen_http2(port),
    )
}

fn alpn_http(p: &Ports) -> String {
    format!(
        r#"
    # At http {{}} level: every server {{}} below has it (all of them are TLS servers), so
    # it runs whichever server's handler nginx picks (see client_hello_handler_placement).
    {CLIENT_HELLO}

    server {{
        {main_a}
        {report_a}
    }}

    # Same port, another server block and so another SSL_CTX.
    server {{
        {main_b}
        {report_b}
    }}

    server {{
        {hrr}
        {report_hrr}
    }}

    server {{
        {ids}
        {report_ids}
    }}
"#,
        main_a = tls_server(p.get(MAIN), "*.a.test", "ssl_session_tickets on;"),
        report_a = report("A"),
        main_b = tls_server(p.get(MAIN), "*.b.test", "ssl_session_tickets on;"),
        report_b = report("B"),
        hrr = tls_server(p.get(HRR), "*.a.test", "ssl_ecdh_curve prime256v1;"),
        report_hrr = report("HRR"),
        ids = tls_server(
            p.get(IDS),
            "*.a.test",
            "ssl_session_tickets off;\n        ssl_session_cache shared:ids:1m;"
        ),
        report_ids = report("IDS"),
    )
}

/// What the handler logged for `name`: one entry per run.
fn handler_runs(log: &str, name: &str) -> Vec<String> {
    logged_runs(log, &format!("kct-alpn: client_hello {name} "))
}

/// What follows `needle` on each log line that has it, up to the first comma.
fn logged_runs(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(needle).map(|(_, rest)| rest.to_string()))
        .map(|rest| rest.split(',').next().unwrap().to_string())
        .collect()
}

/// Asserts the handler ran exactly once for `name` and what it did there.
fn assert_handler(nginx: &Nginx, name: &str) {
    let runs = handler_runs(&nginx.error_log(), name);
    let want = if name.starts_with("off-") {
        "disable_http2_alpn returned boolean true nil"
    } else {
        "untouched"
    };
    assert_eq!(
        runs,
        vec![want.to_string()],
        "client hello handler for {name}"
    );
}

// The Rust client ---------------------------------------------------------------------

struct Hello<'a> {
    port: u16,
    sni: &'a str,
    version: SslVersion,
    alpn: Option<&'a [u8]>,
    groups: Option<&'a str>,
    session: Option<&'a SslSession>,
}

impl<'a> Hello<'a> {
    fn new(port: u16, sni: &'a str, version: SslVersion, alpn: Option<&'a [u8]>) -> Self {
        Hello {
            port,
            sni,
            version,
            alpn,
            groups: None,
            session: None,
        }
    }
}

struct Outcome {
    /// The protocol the client's handshake selected.
    alpn: Option<String>,
    /// The client resumed the session it offered.
    reused: bool,
    client_hellos: usize,
    /// What nginx reported (`key=value` of the location's body).
    server: HashMap<String, String>,
    session: Option<SslSession>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("alpn", &self.alpn)
            .field("reused", &self.reused)
            .field("client_hellos", &self.client_hellos)
            .field("server", &self.server)
            .finish()
    }
}

impl Outcome {
    fn server(&self, key: &str) -> &str {
        self.server
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }
}

/// A handshake, then `GET /` over whatever ALPN selected (HTTP/2 for `h2`, else
/// HTTP/1.1); `Err` with OpenSSL's message when the handshake fails.
fn fetch(h: &Hello) -> Result<Outcome, String> {
    let mut req = Request::new(h.port, "/", h.version)
        .alpn(h.alpn)
        .groups(h.groups)
        .session(h.session);
    // An empty name: no SNI at all.
    if !h.sni.is_empty() {
        req = req.sni(h.sni);
    }
    let host = if h.sni.is_empty() { "127.0.0.1" } else { h.sni };
    let mut sent = None;
    let mut stream = clients::handshake(&req, |ssl| sent = Some(count_client_hellos(ssl)))?;
    let sent = sent.unwrap();
    let alpn = stream
        .ssl()
        .selected_alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let body = if alpn.as_deref() == Some("h2") {
        h2_get(&mut stream, host)
    } else {
        http11_get(&mut stream, host)
    };
    let _ = stream.shutdown();
    let ssl = stream.ssl();
    let server = body
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Outcome {
        alpn,
        reused: ssl.session_reused(),
        client_hellos: sent.load(Ordering::SeqCst),
        server,
        session: ssl.session().map(|s| s.to_owned()),
    })
}

fn http11_get(stream: &mut impl ReadWrite, host: &str) -> String {
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let raw = clients::read_to_close(stream, "the HTTP/1.1 response");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP/1.1 response");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_string()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A minimal HTTP/2 `GET /`: preface, empty SETTINGS, one HEADERS frame (HPACK without
/// Huffman coding), then the DATA of stream 1 until END_STREAM.
fn h2_get(stream: &mut impl ReadWrite, host: &str) -> String {
    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream_id.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    assert!(host.len() < 127);
    // :method GET, :scheme https, :path /, then :authority (literal, indexed name 1).
    let mut block = vec![0x82, 0x87, 0x84, 0x41, host.len() as u8];
    block.extend_from_slice(host.as_bytes());
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x5, 1, &block)); // END_STREAM | END_HEADERS
    stream.write_all(&out).unwrap();

    let mut read_exact = |n: usize| {
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).expect("an HTTP/2 frame");
        buf
    };
    let (mut status_200, mut body) = (false, Vec::new());
    loop {
        let head = read_exact(9);
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let payload = read_exact(len);
        match (kind, id) {
            (7, _) => panic!("GOAWAY: {payload:?}"),
            (3, 1) => panic!("RST_STREAM: {payload:?}"),
            // :status 200 is entry 8 of the static table; nginx sends it indexed.
            (1, 1) => status_200 = payload.first() == Some(&0x88),
            (0, 1) => body.extend_from_slice(&payload),
            _ => {}
        }
        if id == 1 && (kind == 0 || kind == 1) && flags & 0x1 != 0 {
            break;
        }
    }
    assert!(status_200, "HTTP/2 :status 200");
    String::from_utf8(body).unwrap()
}

// curl and openssl s_client -----------------------------------------------------------

/// `curl --http2` over exactly `version`; returns (stdout, stderr). `name` 127.0.0.1:
/// no SNI (curl sends none for an IP address).
fn curl_http2(port: u16, name: &str, version: SslVersion) -> (String, String) {
    let flags: &[&str] = if version == SslVersion::TLS1_3 {
        &["--tlsv1.3"]
    } else {
        &["--tlsv1.2", "--tls-max", "1.2"]
    };
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let common = ["-sS", "-v", "-k", "--http2", "--max-time", "20"];
    let target = [
        "--resolve",
        &resolve,
        "-w",
        "http_version=%{http_version}\n",
        &url,
    ];
    clients::curl(common.iter().chain(flags).chain(&target))
}

/// `openssl s_client` over exactly `version` with SNI `name`, sending `request` (then
/// waiting for the server to close) or nothing.
fn s_client(
    port: u16,
    name: &str,
    version: SslVersion,
    extra: &[&str],
    request: Option<&str>,
) -> SClientOutput {
    SClient::new(port, version)
        .servername(name)
        .args(extra)
        .run(request)
}

// The tests ---------------------------------------------------------------------------

fn start() -> Nginx {
    Nginx::start(
        "alpn",
        &[MAIN, HRR, IDS],
        &nginx::server_files(server_pki()),
        &alpn_http,
    )
}

/// Runs every case against one nginx (one start-up for the whole file).
#[test]
fn disable_http2_alpn_in_nginx() {
    let nginx = start();
    full_handshakes(&nginx);
    curl_and_s_client(&nginx);
    hello_retry_request(&nginx);
    resumptions(&nginx);
    s_client_resumptions(&nginx);
    let log = nginx.error_log();
    if std::env::var_os("KCT_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    assert!(
        !log.contains("[error]") && !log.contains("[warn]"),
        "unexpected errors in the log:\n{log}"
    );
    nginx.finish();
}

/// Full handshakes with the Rust client: every offer, both TLS versions, the default
/// server block and the one SNI switches to.
fn full_handshakes(nginx: &Nginx) {
    let port = nginx.port(MAIN);
    for version in VERSIONS {
        let offers: [(&str, Option<&[u8]>, &str, &str); 5] = [
            ("h2-http11", Some(H2_HTTP11), "http/1.1", "h2"),
            ("grease", Some(GREASE_H2_HTTP11), "http/1.1", "h2"),
            ("http11", Some(ONLY_HTTP11), "http/1.1", "http/1.1"),
            ("none", None, "none", "none"),
            ("only-h2", Some(ONLY_H2), "alert", "h2"),
        ];
        for (what, offer, off_gets, on_gets) in offers {
            for block in ["a", "b"] {
                for (switch, want) in [("off", off_gets), ("on", on_gets)] {
                    let name = format!("{switch}-full-{what}-{}.{block}.test", v(version));
                    let ctx = format!("{name} offering {what}");
                    let got = fetch(&Hello::new(port, &name, version, offer));
                    assert_handler(nginx, &name);
                    if want == "alert" {
                        let err = got.err().unwrap_or_else(|| panic!("{ctx}: handshake ok"));
                        assert!(err.contains("no application protocol"), "{ctx}: {err}");
                        continue;
                    }
                    let got = got.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(got.alpn.as_deref().unwrap_or("none"), want, "{ctx}");
                    assert_eq!(got.server("block"), block.to_uppercase(), "{ctx}");
                    assert_eq!(got.server("sni"), name, "{ctx}");
                    assert_eq!(got.server("tls"), clients::tls_label(version), "{ctx}");
                    let (proto, alpn) = match want {
                        "h2" => ("HTTP/2.0", "h2"),
                        "http/1.1" => ("HTTP/1.1", "http/1.1"),
                        _ => ("HTTP/1.1", ""),
                    };
                    assert_eq!(got.server("proto"), proto, "{ctx}");
                    assert_eq!(got.server("alpn"), alpn, "{ctx}");
                    assert_eq!(got.client_hellos, 1, "{ctx}");
                }
            }
        }
    }
}

/// curl `--http2` and `openssl s_client -alpn`, both server blocks.
fn curl_and_s_client(nginx: &Nginx) {
    let port = nginx.port(MAIN);
    for version in VERSIONS {
        for block in ["a", "b"] {
            for (switch, http_version, alpn, proto) in [
                ("off", "1.1", "http/1.1", "HTTP/1.1"),
                ("on", "2", "h2", "HTTP/2.0"),
            ] {
                let name = format!("{switch}-curl-{}.{block}.test", v(version));
                let (out, err) = curl_http2(port, &name, version);
                assert_handler(nginx, &name);
                assert!(
                    err.contains(&format!("ALPN: server accepted {alpn}")),
                    "{name}: {err}"
                );
                let block_up = block.to_uppercase();
                assert!(
                    out.contains(&format!("block={block_up} proto={proto} alpn={alpn} ")),
                    "{name}: {out}"
                );
                assert!(
                    out.ends_with(&format!("\nhttp_version={http_version}\n")),
                    "{name}: {out}"
                );

                let name = format!("{switch}-sclient-both-{}.{block}.test", v(version));
                let out = s_client(port, &name, version, &["-alpn", "h2,http/1.1"], None);
                assert_handler(nginx, &name);
                assert!(out.ok, "{name}: {}", out.stderr);
                assert_eq!(out.alpn(), alpn, "{name}");

                let name = format!("{switch}-sclient-h2-{}.{block}.test", v(version));
                let out = s_client(port, &name, version, &["-alpn", "h2"], None);
                assert_handler(nginx, &name);
                if switch == "off" {
                    assert!(!out.ok, "{name}: handshake must fail:\n{}", out.stdout);
                    assert!(
                        out.stderr.contains("no application protocol"),
                        "{name}: {}",
                        out.stderr
                    );
                } else {
                    assert!(out.ok, "{name}: {}", out.stderr);
                    assert_eq!(out.alpn(), "h2", "{name}");
                }

                let name = format!("{switch}-sclient-none-{}.{block}.test", v(version));
                let out = s_client(port, &name, version, &[], None);
                assert_handler(nginx, &name);
                assert!(out.ok, "{name}: {}", out.stderr);
                assert_eq!(out.alpn(), "none", "{name}");
            }
        }
    }
}

/// Server P-256 only, client X25519 first: two ClientHellos, one handler run.
fn hello_retry_request(nginx: &Nginx) {
    let port = nginx.port(HRR);
    let v13 = SslVersion::TLS1_3;
    for (switch, want) in [("off", "http/1.1"), ("on", "h2")] {
        let name = format!("{switch}-hrr-rust.a.test");
        let mut hello = Hello::new(port, &name, v13, Some(H2_HTTP11));
        hello.groups = Some("X25519:P-256");
        let got = fetch(&hello).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.client_hellos, 2, "{name}: a HelloRetryRequest");
        assert_handler(nginx, &name);
        assert_eq!(got.alpn.as_deref(), Some(want), "{name}");
        assert_eq!(got.server("alpn"), want, "{name}");
        assert_eq!(got.server("block"), "HRR", "{name}");

        // Without the retry (P-256 first), as a control of the control.
        let name = format!("{switch}-hrr-none.a.test");
        let mut hello = Hello::new(port, &name, v13, Some(H2_HTTP11));
        hello.groups = Some("P-256:X25519");
        let got = fetch(&hello).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.client_hellos, 1, "{name}");
        assert_eq!(got.alpn.as_deref(), Some(want), "{name}");

        let name = format!("{switch}-hrr-sclient.a.test");
        let out = s_client(
            port,
            &name,
            v13,
            &["-groups", "X25519:P-256", "-msg", "-alpn", "h2,http/1.1"],
            None,
        );
        assert!(out.ok, "{name}: {}", out.stderr);
        assert_handler(nginx, &name);
        let sent = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(">>> ") && l.contains("ClientHello"))
            .count();
        assert_eq!(sent, 2, "{name}: two ClientHellos:\n{}", out.stdout);
        // s_client -msg names the HelloRetryRequest a ServerHello (it is one on the wire).
        let received = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("<<< ") && l.contains("ServerHello"))
            .count();
        assert_eq!(received, 2, "{name}: HelloRetryRequest, ServerHello");
        assert_eq!(out.alpn(), want, "{name}");
    }
    // Offering only h2, the first ClientHello already gets the alert.
    let name = "off-hrr-only-h2.a.test";
    let mut hello = Hello::new(port, name, v13, Some(ONLY_H2));
    hello.groups = Some("X25519:P-256");
    let err = fetch(&hello).expect_err("only h2 must fail");
    assert!(err.contains("no application protocol"), "{name}: {err}");
    assert_handler(nginx, name);
}

/// TLS 1.2 ticket and session-ID resumptions are kept (and get http/1.1); a TLS 1.3
/// resumption offering h2 on a disabled name becomes a clean full handshake.
fn resumptions(nginx: &Nginx) {
    use SslVersion as V;
    /// (label, port, version, offer on resumption, an off name resumes?, on name gets)
    type Case = (
        &'static str,
        &'static str,
        V,
        &'static [u8],
        bool,
        &'static str,
    );
    let cases: [Case; 7] = [
        ("ticket", MAIN, V::TLS1_2, H2_HTTP11, true, "h2"),
        ("id", IDS, V::TLS1_2, H2_HTTP11, true, "h2"),
        ("ticket", MAIN, V::TLS1_3, H2_HTTP11, false, "h2"),
        ("id", IDS, V::TLS1_3, H2_HTTP11, false, "h2"),
        (
            "ticket-grease",
            MAIN,
            V::TLS1_3,
            GREASE_H2_HTTP11,
            false,
            "h2",
        ),
        (
            "ticket-http11",
            MAIN,
            V::TLS1_3,
            ONLY_HTTP11,
            true,
            "http/1.1",
        ),
        ("ticket-hrr", HRR, V::TLS1_3, H2_HTTP11, false, "h2"),
    ];
    for (what, port_name, version, offer, off_resumed, on_alpn) in cases {
        let port = nginx.port(port_name);
        let hrr = port_name == HRR;
        for (switch, resumed, alpn) in [("off", off_resumed, "http/1.1"), ("on", true, on_alpn)] {
            let first_name = format!("{switch}-resume-{what}-{}-first.a.test", v(version));
            let mut first = Hello::new(port, &first_name, version, Some(H2_HTTP11));
            if hrr {
                first.groups = Some("X25519:P-256");
            }
            let got = fetch(&first).unwrap_or_else(|e| panic!("{first_name}: {e}"));
            assert!(!got.reused, "{first_name}");
            assert_handler(nginx, &first_name);
            let session = got.session.expect("a session");

            // The same SNI name as the session; the handler logs by name, so count its
            // runs before and after.
            let name = first_name.clone();
            let before = handler_runs(&nginx.error_log(), &name).len();
            let mut again = Hello::new(port, &name, version, Some(offer));
            again.session = Some(&session);
            if hrr {
                again.groups = Some("X25519:P-256");
            }
            let ctx = format!("{name}: resumption offering {offer:?}");
            let got = fetch(&again).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let runs = handler_runs(&nginx.error_log(), &name);
            assert_eq!(runs.len(), before + 1, "{ctx}: one handler run");
            if switch == "off" {
                assert_eq!(
                    runs.last().unwrap(),
                    "disable_http2_alpn returned boolean true nil"
                );
            }
            assert_eq!(got.reused, resumed, "{ctx}: client resumed?");
            let reused = if resumed { "r" } else { "." };
            assert_eq!(got.server("reused"), reused, "{ctx}: $ssl_session_reused");
            assert_eq!(got.alpn.as_deref(), Some(alpn), "{ctx}");
            assert_eq!(got.server("alpn"), alpn, "{ctx}");
            let proto = if alpn == "h2" { "HTTP/2.0" } else { "HTTP/1.1" };
            assert_eq!(got.server("proto"), proto, "{ctx}");
            if hrr {
                assert_eq!(got.client_hellos, 2, "{ctx}: a HelloRetryRequest");
            }
        }
    }
}

/// The same with `openssl s_client -sess_out/-sess_in` and an HTTP/1.1 request.
fn s_client_resumptions(nginx: &Nginx) {
    let dir: &Path = &nginx.dir;
    for version in VERSIONS {
        for (switch, want_alpn, resumed) in [
            ("off", "http/1.1", version == SslVersion::TLS1_2),
            ("on", "h2", true),
        ] {
            let name = format!("{switch}-sclient-resume-{}.a.test", v(version));
            let sess = dir.join(format!("{name}.sess"));
            let sess = sess.to_str().unwrap();
            let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
            let first = s_client(
                nginx.port(MAIN),
                &name,
                version,
                &["-alpn", "h2,http/1.1", "-sess_out", sess],
                Some(&request),
            );
            assert!(first.ok, "{name}: {}", first.stderr);
            assert!(
                first.stdout.contains("New, TLSv1."),
                "{name}: {}",
                first.stdout
            );
            assert_eq!(first.alpn(), want_alpn, "{name}");
            let again = s_client(
                nginx.port(MAIN),
                &name,
                version,
                &["-alpn", "h2,http/1.1", "-sess_in", sess],
                Some(&request),
            );
            assert!(again.ok, "{name}: {}", again.stderr);
            let want = if resumed {
                "Reused, TLSv1."
            } else {
                "New, TLSv1."
            };
            assert!(again.stdout.contains(want), "{name}: {}", again.stdout);
            assert_eq!(again.alpn(), want_alpn, "{name} resumed");
            if switch == "off" {
                let reused = if resumed { "r" } else { "." };
                assert!(
                    again.stdout.contains(&format!(
                        "block=A proto=HTTP/1.1 alpn=http/1.1 tls={} reused={reused} ",
                        clients::tls_label(version)
                    )),
                    "{name}: {}",
                    again.stdout
                );
            }
            let runs = handler_runs(&nginx.error_log(), &name);
            assert_eq!(runs.len(), 2, "{name}: one handler run per connection");
        }
    }
}

// Where the client hello handler must be defined ------------------------------------

/// From nginx 1.29.2 on, nginx selects the `server {}` by SNI in a ClientHello callback
/// of its own (`ngx_ssl_client_hello_callback`), and lua-nginx-module, when built for such
/// an nginx (`#if (nginx_version > 1029001)` in `ngx_http_lua_ssl_client_hello_handler`),
/// calls it first and then runs the handler of the server SNI selected. Before, nginx
/// selected the server later (servername callback) and the handler that ran was that of
/// the default server of the address, for every name.
const SNI_BEFORE_CLIENT_HELLO: (u32, u32, u32) = (1, 29, 2);

/// Where the test puts `ssl_client_hello_by_lua*`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Placement {
    /// Once, at `http {}` level: every `server {}` inherits it.
    Http,
    /// In every TLS `server {}` (each with its own label).
    EveryServer,
    /// Only in the default server (enough up to nginx 1.29.1).
    DefaultOnly,
}

/// A handler labelled `label`: `disable_http2_alpn()` for `off-*` names; logs which
/// handler ran for which name, and what it did.
fn placement_handler(label: &str) -> String {
    format!(
        r#"
        ssl_client_hello_by_lua_block {{
            local name = require("ngx.ssl.clienthello").get_client_hello_server_name()
            local did = "untouched"
            if name and name:find("^off%-") then
                local ok, err = require("kong_client_tls").disable_http2_alpn()
                did = "disable_http2_alpn " .. tostring(ok) .. " " .. tostring(err)
            end
            ngx.log(ngx.NOTICE, "kct-placement: ", tostring(name), " handler={label} ", did)
        }}"#
    )
}

fn placement_http(placement: Placement, port: u16) -> String {
    let (http, a, b) = match placement {
        Placement::Http => (placement_handler("http"), String::new(), String::new()),
        Placement::EveryServer => (
            String::new(),
            placement_handler("A"),
            placement_handler("B"),
        ),
        Placement::DefaultOnly => (String::new(), placement_handler("A"), String::new()),
    };
    format!(
        r#"
    {http}
    server {{
        {main_a}
        {a}
        {report_a}
    }}
    server {{
        {main_b}
        {b}
        {report_b}
    }}
"#,
        main_a = tls_server(port, "*.a.test", ""),
        report_a = report("A"),
        main_b = tls_server(port, "*.b.test", ""),
        report_b = report("B"),
    )
}

/// Which handlers ran for `name`, in order: their labels and what they did.
fn placement_runs(log: &str, name: &str) -> Vec<String> {
    logged_runs(log, &format!("kct-placement: {name} "))
}

/// The placements that work on every nginx (`http {}` level, every `server {}`), the one
/// that works only before nginx 1.29.2 (default server only), and the one nginx refuses
/// (`http {}` level with a plain-HTTP `server {}`), each asserted for what the nginx under
/// test does.
#[test]
fn client_hello_handler_placement() {
    let sni_first = nginx::nginx_version() >= SNI_BEFORE_CLIENT_HELLO;
    for placement in [
        Placement::Http,
        Placement::EveryServer,
        Placement::DefaultOnly,
    ] {
        let http = |p: &Ports| placement_http(placement, p.get("tls"));
        let nginx = Nginx::start(
            "placement",
            &["tls"],
            &nginx::server_files(server_pki()),
            &http,
        );
        let port = nginx.port("tls");
        let mut alerts = 0;
        for version in VERSIONS {
            for block in ["a", "b"] {
                for (switch, alpn) in [("off", "http/1.1"), ("on", "h2")] {
                    let name = format!("{switch}-{placement:?}-{}.{block}.test", v(version))
                        .to_ascii_lowercase();
                    let ctx = format!("{placement:?}, nginx {:?}: {name}", nginx::nginx_version());
                    let got = fetch(&Hello::new(port, &name, version, Some(H2_HTTP11)));
                    let runs = placement_runs(&nginx.error_log(), &name);
                    // The handler nginx runs for this name, if any.
                    let handler = match (placement, block, sni_first) {
                        (Placement::Http, _, _) => Some("http"),
                        (_, "a", _) => Some("A"),
                        (_, _, false) => Some("A"),
                        (Placement::EveryServer, "b", true) => Some("B"),
                        (Placement::DefaultOnly, "b", true) => None,
                        _ => unreachable!(),
                    };
                    let Some(handler) = handler else {
                        // The selected server has no handler: lua-nginx-module logs an
                        // alert and fails the handshake.
                        let err = got.err().unwrap_or_else(|| panic!("{ctx}: handshake ok"));
                        assert!(err.contains("alert internal error"), "{ctx}: {err}");
                        assert!(runs.is_empty(), "{ctx}: {runs:?}");
                        alerts += 1;
                        continue;
                    };
                    let got = got.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let did = if switch == "off" {
                        "disable_http2_alpn true nil"
                    } else {
                        "untouched"
                    };
                    assert_eq!(runs, vec![format!("handler={handler} {did}")], "{ctx}");
                    assert_eq!(got.alpn.as_deref(), Some(alpn), "{ctx}");
                    assert_eq!(got.server("alpn"), alpn, "{ctx}");
                    assert_eq!(got.server("block"), block.to_uppercase(), "{ctx}");
                }
            }
        }
        let alert = "no ssl_client_hello_by_lua* defined in server *.b.test";
        let log = nginx.error_log();
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("[alert]") && l.contains(alert))
                .count(),
            alerts,
            "{placement:?}: alerts:\n{log}"
        );
        nginx.finish_expecting(&[alert]);
    }

    // At http {} level, every server {} inherits the handler, a plain-HTTP one too, and
    // lua-nginx-module refuses that: the handler belongs in the TLS servers then.
    let http = |p: &Ports| {
        format!(
            "{}\n    server {{ {} }}\n    server {{ listen 127.0.0.1:{}; }}\n",
            placement_handler("http"),
            tls_server(p.get("tls"), "*.a.test", ""),
            p.get("plain")
        )
    };
    let files = nginx::server_files(server_pki());
    let setup = Setup::default();
    match Nginx::try_start_with("placement-plain", &setup, &["tls", "plain"], &files, &http) {
        Ok(nginx) => {
            drop(nginx);
            panic!("nginx started with a client hello handler for a plain-HTTP server");
        }
        Err(log) => assert!(
            log.contains("[emerg]") && log.contains("no ssl configured for the server"),
            "{log}"
        ),
    }
}

// `http2 off;` per server {} (no Lua) ----------------------------------------------------

/// nginx 1.25.1 made HTTP/2 a per-server directive (`http2 on|off;`) and deprecated the
/// `http2` parameter of `listen`.
const HTTP2_DIRECTIVE: (u32, u32, u32) = (1, 25, 1);

/// A TLS server block without `http2` in its `listen`, then `extra`, reporting `block`.
fn plain_tls_server(port: u16, name: &str, extra: &str, block: &str) -> String {
    format!(
        "server {{\n        \
         listen 127.0.0.1:{port} ssl;\n        \
         server_name {name};\n        \
         ssl_protocols TLSv1.2 TLSv1.3;\n        \
         ssl_certificate server.pem;\n        \
         ssl_certificate_key server.key;\n        \
         {extra}\n        \
         {report}\n    \
         }}\n    ",
        report = report(block),
    )
}

/// What a client offering `h2,http/1.1` gets for `name` ("" = no SNI) on `port`, by the
/// Rust client and by curl `--http2`, over TLS 1.2 and 1.3: asserts `alpn` and that
/// `block` served it over the matching HTTP version.
fn assert_alpn(port: u16, name: &str, block: &str, alpn: &str, ctx: &str) {
    let proto = if alpn == "h2" { "HTTP/2.0" } else { "HTTP/1.1" };
    for version in VERSIONS {
        let ctx = format!(
            "{ctx}: {} {version:?}",
            if name.is_empty() { "no SNI" } else { name }
        );
        let got = fetch(&Hello::new(port, name, version, Some(H2_HTTP11)))
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(got.alpn.as_deref(), Some(alpn), "{ctx}: {got:?}");
        assert_eq!(got.server("alpn"), alpn, "{ctx}: {got:?}");
        assert_eq!(got.server("proto"), proto, "{ctx}: {got:?}");
        assert_eq!(got.server("block"), block, "{ctx}: {got:?}");
        assert_eq!(got.server("sni"), name, "{ctx}: {got:?}");
        assert_eq!(
            got.server("tls"),
            clients::tls_label(version),
            "{ctx}: {got:?}"
        );

        let curl_name = if name.is_empty() { "127.0.0.1" } else { name };
        let (out, err) = curl_http2(port, curl_name, version);
        assert!(
            err.contains(&format!("ALPN: server accepted {alpn}")),
            "{ctx} (curl): {err}"
        );
        let http_version = if alpn == "h2" { "2" } else { "1.1" };
        assert!(
            out.contains(&format!("block={block} proto={proto} alpn={alpn} ")),
            "{ctx} (curl): {out}"
        );
        assert!(
            out.contains(&format!(" sni={name}\n")),
            "{ctx} (curl): {out}"
        );
        assert!(
            out.ends_with(&format!("\nhttp_version={http_version}\n")),
            "{ctx} (curl): {out}"
        );
    }
}

/// Without Lua: from nginx 1.25.1, `http2 off;` in one `server {}` and `http2 on;` in
/// another on the same TLS address give each name its own ALPN answer (the servername
/// callback switches the connection's server before ALPN is selected), and a client
/// without SNI gets the default server's; so `disable_http2_alpn` is needed only for a
/// decision per connection (client address, fingerprint, ...), not per name. A legacy
/// `listen ... http2` on that address still offers h2 to every name, `http2 off;` or
/// not. Before 1.25.1 there is no `http2` directive (nginx refuses the config) and
/// `listen ... http2` is the only switch: per address, for every name.
#[test]
fn http2_off_per_server() {
    let version = nginx::nginx_version();
    let files = nginx::server_files(server_pki());
    let setup = Setup {
        no_lua: true,
        ..Setup::default()
    };
    if version < HTTP2_DIRECTIVE {
        let http = |p: &Ports| plain_tls_server(p.get("tls"), "on.test", "http2 on;", "ON");
        match Nginx::try_start_with("http2-directive", &setup, &["tls"], &files, &http) {
            Ok(nginx) => {
                drop(nginx);
                panic!("nginx {version:?} accepted the http2 directive");
            }
            Err(log) => assert!(
                log.contains("[emerg]") && log.contains("unknown directive \"http2\""),
                "nginx {version:?}: {log}"
            ),
        }
    } else {
        // On one port the default server has http2 on, on the other off.
        let (on, off) = ("default-on", "default-off");
        let http = |p: &Ports| {
            [
                plain_tls_server(p.get(on), "on.test", "http2 on;", "ON"),
                plain_tls_server(p.get(on), "off.test", "http2 off;", "OFF"),
                plain_tls_server(p.get(off), "off.test", "http2 off;", "OFF"),
                plain_tls_server(p.get(off), "on.test", "http2 on;", "ON"),
            ]
            .concat()
        };
        let nginx = Nginx::start_with("http2-directive", &setup, &[on, off], &files, &http);
        for (name, default) in [(on, "ON"), (off, "OFF")] {
            let ctx = format!("nginx {version:?}, port {name} (default server {default})");
            let port = nginx.port(name);
            assert_alpn(port, "on.test", "ON", "h2", &ctx);
            assert_alpn(port, "off.test", "OFF", "http/1.1", &ctx);
            let alpn = if default == "ON" { "h2" } else { "http/1.1" };
            assert_alpn(port, "", default, alpn, &ctx);
        }
        let log = nginx.error_log();
        assert!(!log.contains("[warn]"), "{log}");
        nginx.finish();
    }

    // The legacy switch, in the non-default server only; the default server says
    // `http2 off;` where the directive exists.
    let off = if version < HTTP2_DIRECTIVE {
        ""
    } else {
        "http2 off;"
    };
    let http = |p: &Ports| {
        [
            plain_tls_server(p.get("tls"), "off.test", off, "OFF"),
            plain_tls_server(p.get("tls"), "legacy.test", "", "LEGACY")
                .replace(" ssl;", " ssl http2;"),
        ]
        .concat()
    };
    let nginx = Nginx::start_with("http2-legacy", &setup, &["tls"], &files, &http);
    let ctx = format!("nginx {version:?}, listen ... http2 in one server");
    let port = nginx.port("tls");
    assert_alpn(port, "legacy.test", "LEGACY", "h2", &ctx);
    assert_alpn(port, "off.test", "OFF", "h2", &ctx);
    assert_alpn(port, "", "OFF", "h2", &ctx);
    let log = nginx.error_log();
    let deprecated =
        "the \"listen ... http2\" directive is deprecated, use the \"http2\" directive instead";
    assert_eq!(
        log.contains(deprecated),
        version >= HTTP2_DIRECTIVE,
        "nginx {version:?}: {log}"
    );
    nginx.finish();
}

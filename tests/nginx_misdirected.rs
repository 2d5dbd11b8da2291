//! End to end: a request that names another server than the one a connection's client
//! certificate was requested for (SNI `a.test`, `Host: b.test`) gets 421 Misdirected
//! Request from `reject_misdirected_request()`, where nginx's own static mutual TLS
//! gets 421 too, in a stock nginx (the host's nginx 1.22, or with `KCT_NGINX_ROOT` that
//! of a Debian root, see `tests/distro/run.sh`), driven by real clients: the Rust client
//! (HTTP/1.0, HTTP/1.1 keep-alive), a minimal HTTP/2 client (`support::h2`), curl
//! `--http2` and `openssl s_client`, over TLS 1.2 and 1.3.
//!
//! One nginx serves, on each of three ports, the tenants `a.test` (the default server),
//! `b.test` and `c.test`, each with a client CA of its own, and `public.test`, which
//! requests no certificate. A tenant admits a request only when `$ssl_client_verify` is
//! `SUCCESS`, and answers "served by <tenant> for <client>", so that every response says
//! which server answered whom. The ports differ in how the certificate is requested:
//! - `static`: nginx's own `ssl_verify_client optional; ssl_client_certificate <CA>;`, no
//!   Lua: the reference;
//! - `hello`: `request_client_certificate(<CA of the SNI name>)` in
//!   `ssl_client_hello_by_lua*` (the client hello form; the handler at `http {}` level,
//!   acting on this port only, which works on every nginx version);
//! - `cert`: `request_client_certificate(<tenant's CA>)` in each tenant's
//!   `ssl_certificate_by_lua*` (the certificate form, Kong's placement);
//!
//! with `server_rewrite_by_lua_block { reject_misdirected_request() }` at `http {}`
//! level. Every case runs on the three ports side by side, in a table of what each gave
//! and what it should give (printed, and shown on failure). A second nginx without the
//! guard shows the hole it closes, and that `get_full_client_certificate_chain()` refuses
//! a misdirected request there. A tenant's access phase logs `kct-cross` whenever it
//! admits another tenant's client; only the cases that expect it may produce one.
//!
//! What nginx does itself, pinned by the static column: it answers 421 only when SNI
//! named one of its servers (an unknown SNI name counts as none) and the request's
//! server verifies clients; its 421 closes an HTTP/1.1 connection (the guard's does
//! not); a request naming no host at all (HTTP/1.0 without `Host`, HTTP/2 without
//! `:authority`) is looked up as the empty name, which selects the default server
//! whatever SNI selected, so it gets 421 too when SNI was given (and an HTTP/2 one
//! without a host 400 anyway). Without SNI, static nginx lets every tenant see the
//! default server's verdict; the guard does not.

mod support;

use std::collections::BTreeSet;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use openssl::ssl::{Ssl, SslOptions, SslSession, SslStream, SslVersion};

use support::clients::{self, ClientCert, SClient};
use support::h2;
use support::nginx::{self, Nginx, Ports};
use support::pki::{self, KeyKind, Pki};

const VERSIONS: [SslVersion; 2] = [SslVersion::TLS1_2, SslVersion::TLS1_3];

// The tenants, their CAs and clients --------------------------------------------------

/// The tenants' letters; tenant `a` serves `a.test`, and so on.
const TENANTS: [&str; 3] = ["a", "b", "c"];

fn server_pki() -> &'static Pki {
    Pki::get("server", KeyKind::EcdsaP256)
}

fn tenant_pki(tenant: &str) -> &'static Pki {
    match tenant {
        "a" => Pki::get("tenant A", KeyKind::EcdsaP256),
        "b" => Pki::get("tenant B", KeyKind::EcdsaP256),
        "c" => Pki::get("tenant C", KeyKind::EcdsaP256),
        _ => panic!("no tenant {tenant}"),
    }
}

/// The client of `tenant`: "client of A", issued by tenant A's root (verify depth 0
/// accepts only a certificate issued directly by a listed CA).
fn client(tenant: &str) -> &'static ClientCert {
    static CLIENTS: OnceLock<Vec<ClientCert>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(|| {
        TENANTS
            .iter()
            .map(|t| {
                let cn = format!("client of {}", t.to_uppercase());
                ClientCert::issued_by_root(tenant_pki(t), &cn)
            })
            .collect()
    });
    let i = TENANTS.iter().position(|t| *t == tenant).unwrap();
    &clients[i]
}

/// The server's certificate, each tenant's CA (`ca-<t>.pem`) and client
/// (`client-<t>.{pem,key}`, for curl and s_client), in nginx's directory.
fn files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = nginx::server_files(server_pki())
        .into_iter()
        .map(|(n, d)| (n.to_string(), d))
        .collect();
    for t in TENANTS {
        let c = client(t);
        files.push((
            format!("ca-{t}.pem"),
            pki::pem(&tenant_pki(t).root.cert).into(),
        ));
        files.push((format!("client-{t}.pem"), pki::pem(&c.cert).into()));
        files.push((format!("client-{t}.key"), pki::key_pem(&c.key)));
    }
    files
}

// The server --------------------------------------------------------------------------

/// How a port's tenants request a client certificate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Form {
    /// nginx's own `ssl_verify_client`.
    Static,
    /// `request_client_certificate` in `ssl_client_hello_by_lua*`.
    Hello,
    /// `request_client_certificate` in `ssl_certificate_by_lua*`.
    Cert,
}

const STATIC: &str = "static";
const HELLO: &str = "hello";
const CERT: &str = "cert";

/// The guarded nginx's ports, in the tables' column order.
const GUARDED: [(&str, Form); 3] = [
    (STATIC, Form::Static),
    (HELLO, Form::Hello),
    (CERT, Form::Cert),
];
/// The nginx without the guard.
const UNGUARDED: [(&str, Form); 2] = [(HELLO, Form::Hello), (CERT, Form::Cert)];

const NAMES: [&str; 4] = ["a.test", "b.test", "c.test", "public.test"];

/// `a` for `a.test`; `None` for `public.test`.
fn tenant_of(name: &str) -> Option<&'static str> {
    TENANTS
        .into_iter()
        .find(|t| name.strip_prefix(t) == Some(".test"))
}

/// Lua that answers 200 with `expr` and a newline, with a Content-Length (so that an
/// HTTP/1.1 response is not chunked).
fn reply(expr: &str) -> String {
    format!(
        "local body = {expr} .. \"\\n\"\n                \
         ngx.header[\"Content-Length\"] = #body\n                \
         ngx.print(body)"
    )
}

/// A tenant admits only `SUCCESS`; it logs `kct-cross` when it admits another tenant's
/// client.
fn access(listener: &str, name: &str, tenant: &str) -> String {
    let dn = format!(
        "CN=client of {},O=kong-client-tls tests",
        tenant.to_uppercase()
    );
    format!(
        r#"access_by_lua_block {{
                local verify, dn = ngx.var.ssl_client_verify, ngx.var.ssl_client_s_dn
                if verify == "SUCCESS" and dn ~= "{dn}" then
                    ngx.log(ngx.WARN, "kct-cross listener={listener} server={name} dn=", dn)
                end
                if verify ~= "SUCCESS" then
                    return ngx.exit(403)
                end
            }}"#
    )
}

/// The certificate form of `tenant`.
fn certificate_form(tenant: &str) -> String {
    format!(
        r#"ssl_certificate_by_lua_block {{
            local ca = require("kct_e2e").ca("ca-{tenant}")
            local ok, err = require("kong_client_tls").request_client_certificate(ca)
            if not ok then
                ngx.log(ngx.ERR, "kct-misdirected: certificate form: ", err)
                return ngx.exit(ngx.ERROR)
            end
        }}"#
    )
}

/// The client hello form for the port `port` (the handler is at `http {}` level, so it
/// runs for every port): the CA of the SNI name's tenant; no request for `public.test`;
/// the default server's (tenant A) without SNI or for an unknown name, as nginx's static
/// configuration does.
fn client_hello_form(port: u16) -> String {
    format!(
        r#"
    ssl_client_hello_by_lua_block {{
        if require("ngx.ssl").server_port() ~= {port} then
            return
        end
        local name = require("ngx.ssl.clienthello").get_client_hello_server_name()
        name = name and name:lower():gsub("%.$", "")
        if name == "public.test" then
            return
        end
        local tenant = ({{ ["a.test"] = "a", ["b.test"] = "b", ["c.test"] = "c" }})[name] or "a"
        local ca = require("kct_e2e").ca("ca-" .. tenant)
        local ok, err = require("kong_client_tls").request_client_certificate(ca)
        if not ok then
            ngx.log(ngx.ERR, "kct-misdirected: client hello form: ", err)
            return ngx.exit(ngx.ERROR)
        end
    }}
"#
    )
}

const GUARD: &str = r#"
    server_rewrite_by_lua_block { require("kong_client_tls").reject_misdirected_request() }
"#;

/// The `listen` line(s) of a block on `port`, HTTP/2 on.
fn listen(port: u16, default: bool) -> String {
    let line = nginx::listen_http2(port);
    if default {
        line.replacen(" ssl", " ssl default_server", 1)
    } else {
        line
    }
}

/// The `server {}` of `name` on `port`: `/` (the tenant's content, behind its access
/// check), `/name` (`get_client_certificate_server_name()`) and `/chain`
/// (`get_full_client_certificate_chain()`: how many certificates, and the error).
fn server_block(listener: &str, form: Form, port: u16, name: &str) -> String {
    let tenant = tenant_of(name);
    let form_lines = match (form, tenant) {
        (Form::Static, Some(t)) => {
            format!("ssl_verify_client optional;\n        ssl_client_certificate ca-{t}.pem;")
        }
        (Form::Cert, Some(t)) => certificate_form(t),
        _ => String::new(),
    };
    let access = tenant.map_or(String::new(), |t| access(listener, name, t));
    let served = reply(&format!(
        r#""served by {name} for " .. (ngx.var.ssl_client_s_dn or "")"#
    ));
    let server_name = reply(
        r#""name=" .. tostring(require("kong_client_tls").get_client_certificate_server_name())"#,
    );
    let chain = reply(
        r#"(function()
                    local chain, err = require("kong_client_tls").get_full_client_certificate_chain()
                    local n = chain and select(2, chain:gsub("BEGIN CERTIFICATE", ""))
                    err = err and (err:match("^misdirected request") or err)
                    return "chain=" .. tostring(n) .. " err=" .. tostring(err)
                end)()"#,
    );
    format!(
        r#"
    server {{
        {listen}
        server_name {name};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate server.pem;
        ssl_certificate_key server.key;
        {form_lines}
        location / {{
            {access}
            content_by_lua_block {{
                {served}
            }}
        }}
        location = /name {{
            content_by_lua_block {{
                {server_name}
            }}
        }}
        location = /chain {{
            content_by_lua_block {{
                {chain}
            }}
        }}
    }}
"#,
        listen = listen(port, name == "a.test"),
    )
}

/// The `http {}` body: the session cache (for TLS 1.2 session IDs), the guard when
/// `guard`, the client hello handler for the `hello` port, and every name on every port.
fn http(p: &Ports, guard: bool, listeners: &[(&str, Form)]) -> String {
    let mut http = String::from("\n    ssl_session_cache shared:kct_misdirected:1m;\n");
    if guard {
        http.push_str(GUARD);
    }
    for (listener, form) in listeners {
        if *form == Form::Hello {
            http.push_str(&client_hello_form(p.get(listener)));
        }
        for name in NAMES {
            http.push_str(&server_block(listener, *form, p.get(listener), name));
        }
    }
    http
}

fn start(name: &str, guard: bool, listeners: &'static [(&'static str, Form)]) -> Nginx {
    let files = files();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let ports: Vec<&'static str> = listeners.iter().map(|(l, _)| *l).collect();
    Nginx::start(name, &ports, &files, &|p: &Ports| http(p, guard, listeners))
}

fn start_guarded(name: &str) -> Nginx {
    start(name, true, &GUARDED)
}

/// The listeners whose tenants admitted another tenant's client (`kct-cross`).
fn crossed(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| l.split("kct-cross listener=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The lines of the warning that the guard is missing.
fn guard_warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("reject_misdirected_request"))
        .collect()
}

/// Stops nginx after checking its log: no `[error]`, `warnings` lines naming
/// `reject_misdirected_request` (the warning that the guard is missing), and another
/// tenant's client admitted only on the listeners `cross` (besides what `finish`
/// refuses).
fn finish(nginx: Nginx, cross: &[&str], warnings: usize) {
    let log = nginx.settled_error_log();
    assert!(!log.contains("[error]"), "error log has [error]:\n{log}");
    let warned = guard_warnings(&log);
    assert!(
        warned.len() == warnings && warned.iter().all(|l| l.contains("[warn]")),
        "want {warnings} [warn] naming reject_misdirected_request:\n{log}"
    );
    let want: BTreeSet<String> = cross.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        crossed(&log),
        want,
        "listeners admitting another tenant's client:\n{log}"
    );
    nginx.finish();
}

// The clients -------------------------------------------------------------------------

/// One TLS connection to 127.0.0.1: like `clients::handshake`, and able to refuse
/// tickets (a TLS 1.2 session ID alone) and to offer `h2`.
#[derive(Clone, Copy)]
struct Dial<'a> {
    port: u16,
    version: SslVersion,
    sni: Option<&'a str>,
    cert: Option<&'a ClientCert>,
    session: Option<&'a SslSession>,
    no_ticket: bool,
    h2: bool,
}

impl<'a> Dial<'a> {
    fn new(port: u16, version: SslVersion, sni: Option<&'a str>, tenant: Option<&str>) -> Self {
        Dial {
            port,
            version,
            sni,
            cert: tenant.map(client),
            session: None,
            no_ticket: false,
            h2: false,
        }
    }

    fn connect(&self) -> SslStream<TcpStream> {
        let alpn: Option<&[u8]> = self.h2.then_some(b"\x02h2");
        let mut ctx = clients::client_context(self.version, self.cert, alpn, None);
        if self.no_ticket {
            ctx.set_options(SslOptions::NO_TICKET);
        }
        let ctx = ctx.build();
        let mut ssl = Ssl::new(&ctx).unwrap();
        if let Some(sni) = self.sni {
            ssl.set_hostname(sni).unwrap();
        }
        if let Some(session) = self.session {
            // SAFETY: the session comes from a client of the same settings.
            unsafe { ssl.set_session(session).unwrap() };
        }
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let stream = ssl
            .connect(tcp)
            .unwrap_or_else(|e| panic!("handshake with port {}: {e}", self.port));
        if self.h2 {
            assert_eq!(stream.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
        }
        stream
    }
}

/// An HTTP/1.x response, and whether the server closes the connection after it.
struct H1Reply {
    status: u16,
    body: String,
    closes: bool,
}

impl H1Reply {
    fn summary(&self) -> String {
        summary(self.status, &self.body)
    }
}

/// `GET path` over HTTP/1.1 with `Host: host`, or with `host` `None` over HTTP/1.0
/// without a Host header.
fn h1_request(stream: &mut impl ReadWrite, host: Option<&str>, path: &str) -> H1Reply {
    let request = match host {
        Some(host) => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("no response head ({other:?}) after {head:?}"),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let (status, headers) = clients::parse_head(head.trim_end());
    let status = status.unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = headers
        .get("content-length")
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    let closes = headers
        .get("connection")
        .map_or(true, |c| c.eq_ignore_ascii_case("close"));
    H1Reply {
        status,
        body: String::from_utf8(body).unwrap(),
        closes,
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A response in a table: the status, and for a 200 what the body says (which server
/// served which tenant's client, or the probe's line).
fn summary(status: u16, body: &str) -> String {
    if status != 200 {
        return status.to_string();
    }
    let line = body.trim_end();
    let Some(rest) = line.strip_prefix("served by ") else {
        return format!("200 {line}");
    };
    let (server, dn) = rest.split_once(" for").unwrap_or((rest, ""));
    let dn = dn.trim_start();
    let who = dn
        .strip_prefix("CN=client of ")
        .and_then(|d| d.split(',').next())
        .unwrap_or(if dn.is_empty() { "-" } else { dn });
    format!("200 {server} for {who}")
}

/// One connection, one request.
fn one_request(dial: &Dial, host: Option<&str>, path: &str) -> String {
    let mut stream = dial.connect();
    let reply = h1_request(&mut stream, host, path);
    let _ = stream.shutdown();
    reply.summary()
}

fn tls(version: SslVersion) -> &'static str {
    if version == SslVersion::TLS1_3 {
        "1.3"
    } else {
        "1.2"
    }
}

// The table ---------------------------------------------------------------------------

/// What each listener gave in each case, next to what it should give.
struct Table {
    title: String,
    columns: Vec<&'static str>,
    rows: Vec<(String, Vec<(String, String)>)>,
}

impl Table {
    fn new(title: &str, listeners: &[(&'static str, Form)]) -> Table {
        Table {
            title: title.to_string(),
            columns: listeners.iter().map(|(l, _)| *l).collect(),
            rows: Vec::new(),
        }
    }

    /// A row: per column, (got, want).
    fn row(&mut self, case: String, cells: Vec<(String, String)>) {
        assert_eq!(cells.len(), self.columns.len(), "{case}");
        self.rows.push((case, cells));
    }

    fn ok(&self) -> bool {
        self.rows
            .iter()
            .all(|(_, cells)| cells.iter().all(|(got, want)| got == want))
    }

    /// Prints the table; panics with it when a cell differs from what it should be.
    fn check(&self) {
        println!("{self}");
        assert!(
            self.ok(),
            "cells marked `≠` differ from the expected:\n{self}"
        );
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = |(got, want): &(String, String)| {
            if got == want {
                got.clone()
            } else {
                format!("{got} ≠ want {want}")
            }
        };
        let mut widths = vec![self
            .rows
            .iter()
            .map(|(c, _)| c.chars().count())
            .max()
            .unwrap_or(0)];
        for (i, column) in self.columns.iter().enumerate() {
            let w = self.rows.iter().map(|(_, c)| cell(&c[i]).chars().count());
            widths.push(w.chain([column.len()]).max().unwrap());
        }
        writeln!(f, "{} (nginx {:?})", self.title, nginx::nginx_version())?;
        let header = std::iter::once("case").chain(self.columns.iter().copied());
        table_line(f, &widths, header.map(String::from).collect())?;
        for (case, cells) in &self.rows {
            let row = std::iter::once(case.clone()).chain(cells.iter().map(cell));
            table_line(f, &widths, row.collect())?;
        }
        Ok(())
    }
}

fn table_line(f: &mut fmt::Formatter<'_>, widths: &[usize], cells: Vec<String>) -> fmt::Result {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
        .collect();
    writeln!(f, "| {} |", padded.join(" | "))
}

/// Runs `drive` on each listener of `nginx`, pairing each result with `want(form)`.
fn cells(
    nginx: &Nginx,
    listeners: &[(&'static str, Form)],
    drive: impl Fn(u16) -> String,
    want: impl Fn(Form) -> String,
) -> Vec<(String, String)> {
    listeners
        .iter()
        .map(|(l, form)| (drive(nginx.port(l)), want(*form)))
        .collect()
}

/// `reference` for the static port, `guarded` for the two library ports.
fn by_form(reference: &str, guarded: &str) -> impl Fn(Form) -> String {
    let (reference, guarded) = (reference.to_string(), guarded.to_string());
    move |form| {
        if form == Form::Static {
            reference.clone()
        } else {
            guarded.clone()
        }
    }
}

// One request per connection ------------------------------------------------------------

/// One request on a fresh connection: SNI, Host ([`NO_HOST`]: HTTP/1.0 without one),
/// path, the client's tenant (`None`: no certificate), and the expected summaries on the
/// static port and on the two guarded ones; `why` when they differ or surprise.
struct Case {
    sni: Option<&'static str>,
    host: &'static str,
    path: &'static str,
    client: Option<&'static str>,
    reference: &'static str,
    guarded: &'static str,
    why: &'static str,
}

const fn case(
    sni: Option<&'static str>,
    host: &'static str,
    client: Option<&'static str>,
    reference: &'static str,
    guarded: &'static str,
) -> Case {
    Case {
        sni,
        host,
        path: "/",
        client,
        reference,
        guarded,
        why: "",
    }
}

/// The same expectation on the three ports.
const fn same(
    sni: Option<&'static str>,
    host: &'static str,
    client: Option<&'static str>,
    want: &'static str,
) -> Case {
    case(sni, host, client, want, want)
}

impl Case {
    const fn at(self, path: &'static str) -> Case {
        Case { path, ..self }
    }
    const fn why(self, why: &'static str) -> Case {
        Case { why, ..self }
    }

    fn host(&self) -> Option<&str> {
        Some(self.host).filter(|h| !h.is_empty())
    }

    fn label(&self, version: SslVersion) -> String {
        let host = self
            .host()
            .map_or("HTTP/1.0, no Host".into(), |h| format!("Host {h}"));
        let why = if self.why.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.why)
        };
        format!(
            "TLS {} SNI {} {host} {} client {}{why}",
            tls(version),
            self.sni.unwrap_or("-"),
            self.path,
            self.client.map_or("-".into(), str::to_uppercase),
        )
    }
}

const A: Option<&str> = Some("a");
const B: Option<&str> = Some("b");
const C: Option<&str> = Some("c");
const SNI_A: Option<&str> = Some("a.test");
const SNI_B: Option<&str> = Some("b.test");
const SNI_C: Option<&str> = Some("c.test");
const SNI_PUBLIC: Option<&str> = Some("public.test");
const SNI_UNKNOWN: Option<&str> = Some("unknown.test");
/// Upper case and a trailing dot: nginx takes it for `a.test`.
const SNI_A_ODD: Option<&str> = Some("A.Test.");
const NO_SNI: Option<&str> = None;
const NO_HOST: &str = "";

const SERVED_A: &str = "200 a.test for A";
const SERVED_B: &str = "200 b.test for B";
const SERVED_C: &str = "200 c.test for C";
const PUBLIC: &str = "200 public.test for -";
const NAME_NIL: &str = "200 name=nil";

/// Every one-request case.
const CASES: &[Case] = &[
    // Correctly addressed requests, and the controls.
    same(SNI_A, "a.test", A, SERVED_A),
    same(SNI_B, "b.test", B, SERVED_B),
    same(SNI_C, "c.test", C, SERVED_C),
    case(SNI_B, "b.test", A, "400", "403").why("wrong CA: static nginx refuses it itself"),
    same(SNI_A, "a.test", None, "403"),
    same(SNI_PUBLIC, "public.test", A, PUBLIC),
    // The attack, and the names nginx takes for the SNI name, or not.
    same(SNI_A, "b.test", A, "421"),
    same(SNI_A, "c.test", A, "421"),
    same(SNI_B, "a.test", B, "421"),
    same(SNI_A, "b.test:443", A, "421"),
    same(SNI_A, "B.TEST", A, "421"),
    same(SNI_A, "A.TEST", A, SERVED_A),
    same(SNI_A, "a.test.", A, SERVED_A),
    same(SNI_A, "a.test:443", A, SERVED_A),
    same(SNI_A_ODD, "a.test", A, SERVED_A),
    same(SNI_A, "unknown.test", A, "421"),
    same(SNI_UNKNOWN, "unknown.test", A, SERVED_A),
    case(SNI_UNKNOWN, "b.test", A, "200 b.test for A", "421")
        .why("static nginx takes an SNI name no server has for none: no 421"),
    case(SNI_A, "public.test", A, "200 public.test for A", "421")
        .why("stricter: public.test requests no certificate, but is not a.test"),
    case(SNI_PUBLIC, "b.test", B, "421", "403")
        .why("no certificate requested: the guard lets it by, b.test sees NONE"),
    // The host of the request line wins over the Host header.
    same(SNI_A, "a.test", A, "421").at("https://b.test/"),
    same(SNI_A, "b.test", A, SERVED_A).at("https://a.test/"),
    // No host at all: nginx looks up the empty name, which selects the default server
    // (a.test) whatever SNI selected; static nginx answers 421 there, for SNI a.test too.
    case(SNI_A, NO_HOST, A, "421", SERVED_A).why("the default server is SNI's: no 421 needed"),
    same(SNI_B, NO_HOST, B, "421").why("b.test's client routed to a.test"),
    // No SNI: the default server (a.test) requested the certificate.
    same(NO_SNI, "a.test", A, SERVED_A),
    same(NO_SNI, NO_HOST, A, SERVED_A),
    same(NO_SNI, "unknown.test", A, SERVED_A),
    case(NO_SNI, "b.test", A, "200 b.test for A", "421")
        .why("static nginx has no 421 without SNI: b.test admits A's client"),
    case(NO_SNI, "c.test", A, "200 c.test for A", "421").why("static: no 421 without SNI"),
    case(NO_SNI, "public.test", A, "200 public.test for A", "421").why("another block"),
    // get_client_certificate_server_name(): nil where the module requested nothing.
    case(SNI_A, "a.test", A, NAME_NIL, "200 name=a.test").at("/name"),
    case(SNI_A_ODD, "a.test", A, NAME_NIL, "200 name=a.test").at("/name"),
    case(
        SNI_UNKNOWN,
        "unknown.test",
        A,
        NAME_NIL,
        "200 name=unknown.test",
    )
    .at("/name"),
    case(NO_SNI, "a.test", A, NAME_NIL, "200 name=false").at("/name"),
    same(SNI_PUBLIC, "public.test", A, NAME_NIL).at("/name"),
    same(SNI_A, "b.test", A, "421").at("/name"),
    // get_full_client_certificate_chain() behind the guard
    same(SNI_A, "a.test", A, "200 chain=1 err=nil").at("/chain"),
    same(SNI_A, "b.test", A, "421").at("/chain"),
];

/// Every case of [`CASES`] over TLS 1.2 and 1.3, each on a connection of its own, on
/// the three ports; then `openssl s_client -servername a.test` sending `Host: b.test`.
#[test]
fn misdirected_requests_get_421_where_static_nginx_gives_it() {
    let nginx = start_guarded("misdirected");
    let mut table = Table::new("one request per connection", &GUARDED);
    for version in VERSIONS {
        for case in CASES {
            let drive = |port| {
                let dial = Dial::new(port, version, case.sni, case.client);
                one_request(&dial, case.host(), case.path)
            };
            let want = by_form(case.reference, case.guarded);
            table.row(case.label(version), cells(&nginx, &GUARDED, drive, want));
        }
    }
    for version in VERSIONS {
        let drive = |port| s_client_misdirected(&nginx, port, version);
        let label = format!(
            "TLS {} openssl s_client -servername a.test, Host b.test",
            tls(version)
        );
        table.row(label, cells(&nginx, &GUARDED, drive, by_form("421", "421")));
    }
    table.check();
    // Only static nginx admits another tenant's client (no SNI, Host b.test).
    finish(nginx, &[STATIC], 0);
}

/// `openssl s_client -servername a.test` with client A's certificate, then a raw
/// `GET / HTTP/1.1` with `Host: b.test`; the status line's code.
fn s_client_misdirected(nginx: &Nginx, port: u16, version: SslVersion) -> String {
    let out = SClient::new(port, version)
        .servername("a.test")
        .arg("-cert")
        .arg(nginx.dir.join("client-a.pem"))
        .arg("-key")
        .arg(nginx.dir.join("client-a.key"))
        .run(Some(
            "GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        ));
    assert!(out.ok, "s_client:\n{}\n{}", out.stdout, out.stderr);
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no status line:\n{}\n{}", out.stdout, out.stderr))
        .to_string()
}

// Several requests per connection -----------------------------------------------------

/// Requests one after the other on one connection (HTTP/1.1 keep-alive, or HTTP/2
/// streams), one per host (`""`: no `:authority`), and what each should give on the
/// static port and on the guarded ones ("closed": the server closes after it).
struct Sequence {
    h2: bool,
    sni: Option<&'static str>,
    client: Option<&'static str>,
    hosts: &'static [&'static str],
    reference: &'static [&'static str],
    guarded: &'static [&'static str],
    why: &'static str,
}

impl Sequence {
    /// What static nginx gives: in 1.29.2 and later (taken here as from 1.29.0), an HTTP/2
    /// request naming no host is a 400 before any server is looked up ("client sent
    /// neither :authority nor Host header").
    fn reference(&self) -> String {
        let no_host_400 = self.h2 && nginx::nginx_version() >= (1, 29, 0);
        let statuses: Vec<&str> = self
            .hosts
            .iter()
            .zip(self.reference)
            .map(|(host, r)| {
                if no_host_400 && host.is_empty() {
                    "400"
                } else {
                    r
                }
            })
            .collect();
        statuses.join(", ")
    }

    fn label(&self, version: SslVersion) -> String {
        let what = if self.h2 {
            "HTTP/2 :authority"
        } else {
            "HTTP/1.1 keep-alive, Host"
        };
        let hosts: Vec<&str> = self
            .hosts
            .iter()
            .map(|h| if h.is_empty() { "(none)" } else { h })
            .collect();
        let why = if self.why.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.why)
        };
        format!(
            "TLS {} SNI {} client {} {what} {}{why}",
            tls(version),
            self.sni.unwrap_or("-"),
            self.client.unwrap().to_uppercase(),
            hosts.join(", ")
        )
    }

    fn drive(&self, port: u16, version: SslVersion) -> String {
        let dial = Dial {
            h2: self.h2,
            ..Dial::new(port, version, self.sni, self.client)
        };
        if self.h2 {
            h2_streams(&dial, self.hosts)
        } else {
            keep_alive(&dial, self.hosts)
        }
    }
}

const SEQUENCES: &[Sequence] = &[
    Sequence {
        h2: false,
        sni: SNI_A,
        client: A,
        hosts: &["a.test", "b.test", "a.test", "c.test", "a.test"],
        reference: &[SERVED_A, "421 closed", SERVED_A, "421 closed", SERVED_A],
        guarded: &[SERVED_A, "421", SERVED_A, "421", SERVED_A],
        why: "nginx's 421 closes, the guard's keeps the connection",
    },
    Sequence {
        h2: false,
        sni: NO_SNI,
        client: A,
        hosts: &["a.test", "b.test", "a.test"],
        reference: &[SERVED_A, "200 b.test for A", SERVED_A],
        guarded: &[SERVED_A, "421", SERVED_A],
        why: "",
    },
    Sequence {
        h2: true,
        sni: SNI_A,
        client: A,
        hosts: &[
            "a.test",
            "b.test",
            "a.test",
            "c.test",
            "b.test:443",
            "a.test",
        ],
        reference: &[SERVED_A, "421", SERVED_A, "421", "421", SERVED_A],
        guarded: &[SERVED_A, "421", SERVED_A, "421", "421", SERVED_A],
        why: "",
    },
    Sequence {
        h2: true,
        sni: NO_SNI,
        client: A,
        hosts: &["a.test", "b.test", "a.test"],
        reference: &[SERVED_A, "200 b.test for A", SERVED_A],
        guarded: &[SERVED_A, "421", SERVED_A],
        why: "",
    },
    // No :authority (nor Host): nginx looks up the empty name, which selects the default
    // server (a.test): static nginx answers 421 there; without `ssl_verify_client`, nginx
    // refuses an HTTP/2 request without a host itself (400). nginx 1.29.2 (Debian
    // unstable's 1.30 too) refuses it before any server is looked up, static or not;
    // 1.27.1 does not; the releases between are not tested: see `Sequence::reference`.
    Sequence {
        h2: true,
        sni: SNI_B,
        client: B,
        hosts: &["b.test", "", "b.test"],
        reference: &[SERVED_B, "421", SERVED_B],
        guarded: &[SERVED_B, "400", SERVED_B],
        why: "no host: nginx's 400",
    },
];

/// Requests for `hosts` on one HTTP/1.1 connection, reconnecting (same dial) when the
/// server closed it; "closed" follows a response after which it did.
fn keep_alive(dial: &Dial, hosts: &[&str]) -> String {
    let mut stream = dial.connect();
    let mut seen = Vec::new();
    for host in hosts {
        let reply = h1_request(&mut stream, Some(host), "/");
        let mut s = reply.summary();
        if reply.closes {
            s.push_str(" closed");
            // The server closes: nothing more comes.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            assert!(rest.is_empty(), "{rest:?} after a closing response");
            stream = dial.connect();
        }
        seen.push(s);
    }
    let _ = stream.shutdown();
    seen.join(", ")
}

/// `hosts` as streams of one HTTP/2 connection, each the `:authority` of its stream
/// (`""`: none).
fn h2_streams(dial: &Dial, hosts: &[&str]) -> String {
    let mut client = h2::Client::new(dial.connect());
    let seen: Vec<String> = hosts
        .iter()
        .map(|host| {
            let r = client.get(Some(*host).filter(|h| !h.is_empty()), "/");
            match r.reset {
                Some(code) => format!("RST_STREAM {code}"),
                None => summary(r.status, &r.body),
            }
        })
        .collect();
    let _ = client.into_inner().shutdown();
    seen.join(", ")
}

/// Every [`SEQUENCES`] over TLS 1.2 and 1.3 on the three ports; then curl `--http2`
/// with `-H 'Host: b.test'`, and `--next` to `a.test`.
///
/// nginx's own 421 comes while it reads the request head, before it has decided on
/// keep-alive, so it closes the connection (`Connection: close`). The guard's 421 is an
/// ordinary response from the server rewrite phase: the connection stays open, and the
/// next request on it, for the SNI name, is served. Neither closes an HTTP/2 connection.
#[test]
fn keep_alive_and_http2_connections_alternating_hosts() {
    let nginx = start_guarded("misdirected-streams");
    let mut table = Table::new("several requests per connection", &GUARDED);
    for version in VERSIONS {
        for seq in SEQUENCES {
            let drive = |port| seq.drive(port, version);
            let want = by_form(&seq.reference(), &seq.guarded.join(", "));
            table.row(seq.label(version), cells(&nginx, &GUARDED, drive, want));
        }
    }
    let drive = |port| curl_http2(&nginx, port);
    let want = "421 via h2, then 200 a.test for A via h2; :authority b.test sent";
    table.row(
        "TLS 1.3 curl --http2 https://a.test/ -H 'Host: b.test' --next https://a.test/".into(),
        cells(&nginx, &GUARDED, drive, by_form(want, want)),
    );
    table.check();
    finish(nginx, &[STATIC], 0);
}

/// `curl --http2` to `https://a.test:<port>/` with client A's certificate and `-H 'Host:
/// b.test'`, then (`--next`) without: each transfer's status and HTTP version, and
/// whether curl's trace shows it sent the Host header as `:authority`.
fn curl_http2(nginx: &Nginx, port: u16) -> String {
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/");
    let (cert, key) = (
        nginx.dir.join("client-a.pem"),
        nginx.dir.join("client-a.key"),
    );
    let transfer = |host: Option<&str>| {
        let mut args: Vec<String> = [
            "-sS",
            "-v",
            "-k",
            "--http2",
            "--tlsv1.3",
            "--max-time",
            "20",
        ]
        .map(String::from)
        .to_vec();
        args.extend(["--resolve".into(), resolve.clone()]);
        args.extend(["--cert".into(), cert.display().to_string()]);
        args.extend(["--key".into(), key.display().to_string()]);
        args.extend(["-w".into(), "\nkct-w %{http_code} %{http_version}\n".into()]);
        if let Some(host) = host {
            args.extend(["-H".into(), format!("Host: {host}")]);
        }
        args.push(url.clone());
        args
    };
    let mut args = transfer(Some("b.test"));
    args.push("--next".into());
    args.extend(transfer(None));
    let (out, err) = clients::curl(&args);
    let mut seen = Vec::new();
    let mut body = String::new();
    for line in out.lines() {
        match line.strip_prefix("kct-w ") {
            Some(w) => {
                let (code, version) = w.split_once(' ').unwrap();
                let status: u16 = code.parse().unwrap();
                seen.push(format!("{} via h{version}", summary(status, body.trim())));
                body.clear();
            }
            None => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    let authority = if err.contains(":authority: b.test") {
        ":authority b.test sent"
    } else {
        ":authority b.test NOT in curl's trace"
    };
    format!("{}; {authority}", seen.join(", then "))
}

// Resumed sessions --------------------------------------------------------------------

/// What the client offers to resume.
#[derive(Clone, Copy, Debug)]
enum Offer {
    Tls12Ticket,
    Tls12SessionId,
    Tls13Ticket,
}

impl Offer {
    fn dial(self, port: u16) -> Dial<'static> {
        let version = match self {
            Offer::Tls13Ticket => SslVersion::TLS1_3,
            _ => SslVersion::TLS1_2,
        };
        Dial {
            no_ticket: matches!(self, Offer::Tls12SessionId),
            ..Dial::new(port, version, SNI_A, A)
        }
    }
}

/// A full handshake on `a.test` (Host a.test), then connections resuming its session
/// with Host b.test, then a.test (the same connection, unless the 421 closed it).
fn resume(port: u16, offer: Offer) -> String {
    let dial = offer.dial(port);
    let mut stream = dial.connect();
    let first = h1_request(&mut stream, Some("a.test"), "/").summary();
    let _ = stream.shutdown();
    let session = stream
        .ssl()
        .session()
        .map(|s| s.to_owned())
        .expect("a session");
    let resumed = Dial {
        session: Some(&session),
        ..dial
    };
    let mut seen = Vec::new();
    let mut stream = resumed.connect();
    for host in ["b.test", "a.test"] {
        let reply = h1_request(&mut stream, Some(host), "/");
        let reused = if stream.ssl().session_reused() {
            "resumed"
        } else {
            "full"
        };
        seen.push(format!("{} {reused}", reply.summary()));
        if reply.closes {
            stream = resumed.connect();
        }
    }
    let _ = stream.shutdown();
    format!("{first}; {}", seen.join(", "))
}

/// A session made on `a.test` and resumed there with `Host: b.test` gets 421, and with
/// `Host: a.test` is served, resumed, on the client hello form (whose sessions resume)
/// as on static nginx; the certificate form makes no resumable session.
#[test]
fn resumed_sessions_get_421_for_another_host() {
    let nginx = start_guarded("misdirected-resumed");
    let mut table = Table::new("resumed sessions (SNI a.test, client A)", &GUARDED);
    for offer in [
        Offer::Tls12Ticket,
        Offer::Tls12SessionId,
        Offer::Tls13Ticket,
    ] {
        let want = move |form| {
            let how = if form == Form::Cert {
                "full"
            } else {
                "resumed"
            };
            format!("{SERVED_A}; 421 {how}, {SERVED_A} {how}")
        };
        let label = format!("{offer:?}: Host a.test; resumed: Host b.test, a.test");
        table.row(
            label,
            cells(&nginx, &GUARDED, |port| resume(port, offer), want),
        );
    }
    table.check();
    finish(nginx, &[], 0);
}

// Without the guard -------------------------------------------------------------------

/// Without `reject_misdirected_request()`, on both library forms: a client of A with SNI
/// a.test (or none) and `Host: b.test` is served by b.test — the hole the guard closes —
/// while `get_full_client_certificate_chain()` refuses such a request ("misdirected
/// request ..."); the first such call warns, once, that the guard is missing.
#[test]
fn without_the_guard_a_misdirected_request_is_served() {
    let nginx = start("misdirected-unguarded", false, &UNGUARDED);
    let mut table = Table::new("without reject_misdirected_request()", &UNGUARDED);
    let misdirected = "200 chain=nil err=misdirected request";
    let cases = [
        (SNI_A, Some("a.test"), "/", A, SERVED_A),
        (SNI_A, Some("b.test"), "/", A, "200 b.test for A"),
        (NO_SNI, Some("b.test"), "/", A, "200 b.test for A"),
        (SNI_B, None, "/", B, "200 a.test for B"),
        (SNI_A, Some("a.test"), "/chain", A, "200 chain=1 err=nil"),
        (SNI_A, Some("b.test"), "/chain", A, misdirected),
        (SNI_A, Some("B.test:443"), "/chain", A, misdirected),
        (NO_SNI, Some("b.test"), "/chain", A, misdirected),
        (NO_SNI, Some("a.test"), "/chain", A, "200 chain=1 err=nil"),
        (SNI_B, None, "/chain", B, misdirected),
    ];
    for version in VERSIONS {
        for (sni, host, path, tenant, want) in cases {
            let drive = |port| one_request(&Dial::new(port, version, sni, tenant), host, path);
            let label = format!(
                "TLS {} SNI {} Host {} {path} client {}",
                tls(version),
                sni.unwrap_or("-"),
                host.unwrap_or("- (HTTP/1.0)"),
                tenant.unwrap().to_uppercase()
            );
            table.row(
                label,
                cells(&nginx, &UNGUARDED, drive, |_| want.to_string()),
            );
        }
    }
    table.check();
    finish(nginx, &[HELLO, CERT], 1);
}

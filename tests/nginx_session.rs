//! End to end (issue 12): in a stock nginx (the host's nginx 1.22.1 with lua-nginx-module
//! 0.10.23, or with `KCT_NGINX_ROOT` that of a Debian 13 or unstable root, see
//! `tests/distro/run.sh`), a resumed TLS session never carries a client-certificate
//! verdict to a connection where a full handshake would verify differently, and stays
//! resumable where it would verify the same. The client is `openssl s_client`
//! (`-sess_out`/`-sess_in`), sending one HTTP/1.1 request; every response echoes what
//! nginx saw: `$ssl_session_reused`, `$ssl_client_verify`, `$ssl_client_s_dn`, the SNI
//! name, the `server {}` block and the worker's pid.
//!
//! On one port, with one server certificate for every block:
//! - `a.test` (also `a2.test`, same block) and `b.test`: `request_client_certificate`
//!   with CA_A, resp. CA_B, from `ssl_client_hello_by_lua*` (the client hello form);
//! - `*.rot.test`: the same with a CA set (`{A}`, `{B}` or `{A,B}`) the test switches
//!   between connections through a shared dict (plain-HTTP `/rot`), one name per thread;
//! - `k.test`: the certificate form (Kong's placement, `ssl_certificate_by_lua*`), CA_A;
//! - `c.test`: the control, which requests no certificate.
//!
//! The client hello handler is the same in every TLS block (the README's placement that
//! works on every nginx) and decides by SNI name. The blocks exist on three ports: session
//! tickets on and `ssl_session_cache shared:` (TLS 1.2 tickets, TLS 1.2 session IDs with
//! `-no_ticket`, TLS 1.3 stateless tickets); tickets off, the same shared cache (TLS 1.2
//! session IDs, TLS 1.3 stateful tickets); tickets off and the `builtin` cache (the same,
//! from OpenSSL's own cache). Each path runs in a thread of its own. Other nginx instances
//! cover expiry, two
//! workers with a reload, and where nginx switches the `server {}` block relative to the
//! session lookup. Every nginx ends with a clean error log (no `[alert]`, `[crit]`,
//! `[emerg]`, `[error]`) and every handshake succeeds.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::ffi::c_long;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foreign_types::ForeignType;
use openssl::asn1::Asn1Time;
use openssl::ssl::{SslSession, SslVersion};

use support::clients::{self, SClient};
use support::nginx::{self, HttpBlock, Nginx, Ports, Setup};
use support::pki::{self, Identity, KeyKind, Pki};
use support::sys::SSL_SESSION_set_time;

fn server_pki() -> &'static Pki {
    Pki::get("server", KeyKind::EcdsaP256)
}
fn pki_a() -> &'static Pki {
    Pki::get("CA_A", KeyKind::EcdsaP256)
}
fn pki_b() -> &'static Pki {
    Pki::get("CA_B", KeyKind::EcdsaP256)
}

/// Client identities (file names in nginx's directory) and their subjects. Verify depth
/// 0 accepts only a certificate issued directly by a listed CA.
const CLIENT_A: &str = "client-a";
const CLIENT_B: &str = "client-b";
const CLIENT_SHORT: &str = "client-short";
const DN_A: &str = "CN=client of A,O=kong-client-tls tests";
const DN_B: &str = "CN=client of B,O=kong-client-tls tests";
const DN_SHORT: &str = "CN=short-lived client of A,O=kong-client-tls tests";

fn client_files(name: &str, id: &Identity) -> [(String, Vec<u8>); 2] {
    [
        (format!("{name}.pem"), pki::pem(&id.cert).into_bytes()),
        (format!("{name}.key"), pki::key_pem(&id.key)),
    ]
}

/// Every file the server and the client need, in nginx's directory.
fn files() -> Vec<(String, Vec<u8>)> {
    let (a, b) = (pki_a(), pki_b());
    let mut files: Vec<(String, Vec<u8>)> = nginx::server_files(server_pki())
        .into_iter()
        .map(|(n, d)| (n.to_string(), d))
        .collect();
    let (ca_a, ca_b) = (pki::pem(&a.root.cert), pki::pem(&b.root.cert));
    files.push(("ca-a.pem".into(), ca_a.clone().into_bytes()));
    files.push(("ca-b.pem".into(), ca_b.clone().into_bytes()));
    files.push(("ca-ab.pem".into(), format!("{ca_a}{ca_b}").into_bytes()));
    files.extend(client_files(CLIENT_A, &a.issue_from_root("client of A")));
    files.extend(client_files(CLIENT_B, &b.issue_from_root("client of B")));
    // Another server certificate, for the block of `sni_order_http` that must differ.
    let other = &server_pki().direct_leaf;
    files.push(("other.pem".into(), pki::pem(&other.cert).into_bytes()));
    files.push(("other.key".into(), pki::key_pem(&other.key)));
    // Resuming across a reload needs the same ticket keys before and after it.
    files.push(("ticket.key".into(), random_bytes(80)));
    files
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    bytes
}

fn start(name: &str, setup: Setup, ports: &[&'static str], http: HttpBlock) -> Nginx {
    let files = files();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    Nginx::start_with(name, &setup, ports, &files, http)
}

/// Stops nginx: no `[error]` either (a failed request or a handshake the handler
/// aborted), besides what `finish` refuses.
fn finish(nginx: Nginx) {
    let log = nginx.error_log();
    assert!(!log.contains("[error]"), "error log has [error]:\n{log}");
    nginx.finish();
}

// The server --------------------------------------------------------------------------

/// The client hello handler of every TLS block: which CA set a name verifies against.
const CLIENT_HELLO: &str = r#"
        ssl_client_hello_by_lua_block {
            local name = require("ngx.ssl.clienthello").get_client_hello_server_name()
            local ca
            if name == "a.test" or name == "a2.test" then
                ca = "ca-a"
            elseif name == "b.test" then
                ca = "ca-b"
            elseif name and name:find("%.rot%.test$") then
                ca = "ca-" .. assert(ngx.shared.results:get("rot|" .. name), name)
            end
            if ca then
                local ca_certs = require("kct_e2e").ca(ca)
                local ok, err = require("kong_client_tls").request_client_certificate(ca_certs)
                if not ok then
                    ngx.log(ngx.ERR, "kct-session: ", name, ": ", err)
                    return ngx.exit(ngx.ERROR)
                end
            end
        }"#;

/// Kong's placement: the request made in the certificate phase.
const CERTIFICATE_FORM: &str = r#"
        ssl_certificate_by_lua_block {
            local ca_certs = require("kct_e2e").ca("ca-a")
            local ok, err = require("kong_client_tls").request_client_certificate(ca_certs)
            if not ok then
                ngx.log(ngx.ERR, "kct-session: certificate form: ", err)
                return ngx.exit(ngx.ERROR)
            end
        }"#;

const TICKETS_ON: &str = "ssl_session_cache shared:kct_sessions:4m;\n        \
                          ssl_session_tickets on;";
const TICKETS_OFF: &str = "ssl_session_cache shared:kct_sessions:4m;\n        \
                           ssl_session_tickets off;";
const BUILTIN_CACHE: &str = "ssl_session_cache builtin:1000;\n        \
                             ssl_session_tickets off;";

/// The response: what nginx saw of the connection, `block` the `server {}` serving it.
fn echo(block: &str) -> String {
    format!(
        "location / {{\n            \
         return 200 \"kct|block={block}|sni=$ssl_server_name|reused=$ssl_session_reused|\
         verify=$ssl_client_verify|dn=$ssl_client_s_dn|proto=$ssl_protocol|pid=$pid\\n\";\n        \
         }}"
    )
}

/// The TLS blocks on `port`, `a.test`'s first (the default server), with `session` (the
/// session settings) and `listen` (more `listen` parameters, allowed once per port).
fn tls_servers(port: u16, session: &str, listen: &str) -> String {
    let mut http = String::new();
    for (i, (block, names, extra)) in [
        ("a", "a.test a2.test", ""),
        ("b", "b.test", ""),
        ("c", "c.test", ""),
        ("k", "k.test", CERTIFICATE_FORM),
        ("rot", "*.rot.test", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let listen = if i == 0 { listen } else { "" };
        http.push_str(&format!(
            r#"
    server {{
        listen 127.0.0.1:{port} ssl {listen};
        server_name {names};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate server.pem;
        ssl_certificate_key server.key;
        {session}
        {CLIENT_HELLO}
        {extra}
        {echo}
    }}
"#,
            echo = echo(block)
        ));
    }
    http
}

/// Plain HTTP: `/rot?name=<sni>&set=a|b|ab` chooses the CA set of a `*.rot.test` name.
fn control_server(port: u16) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{port};
        location /rot {{
            content_by_lua_block {{
                assert(ngx.shared.results:set("rot|" .. ngx.var.arg_name, ngx.var.arg_set))
                ngx.print(ngx.shared.results:get("rot|" .. ngx.var.arg_name))
            }}
        }}
    }}
"#
    )
}

const CONTROL: &str = "control";
const TICKETS: &str = "tickets";
const NO_TICKETS: &str = "no-tickets";
const BUILTIN: &str = "builtin";

fn binding_http(p: &Ports) -> String {
    format!(
        "{}{}{}{}",
        control_server(p.get(CONTROL)),
        tls_servers(p.get(TICKETS), TICKETS_ON, ""),
        tls_servers(p.get(NO_TICKETS), TICKETS_OFF, ""),
        tls_servers(p.get(BUILTIN), BUILTIN_CACHE, "")
    )
}

// The client --------------------------------------------------------------------------

/// What the client offers, i.e. which resumption path the server takes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Offer {
    /// TLS 1.2, a ticket (and a session ID).
    Tls12Ticket,
    /// TLS 1.2 with `-no_ticket`: a session ID only.
    Tls12SessionId,
    /// TLS 1.3: a ticket, stateless or (tickets off) stateful.
    Tls13,
}

/// One resumption path: a port and what the client offers there.
struct Route {
    what: &'static str,
    port: &'static str,
    offer: Offer,
}

const ROUTES: [Route; 7] = [
    Route {
        what: "tickets on, TLS 1.2 ticket",
        port: TICKETS,
        offer: Offer::Tls12Ticket,
    },
    Route {
        what: "tickets on, TLS 1.2 session ID (shared cache)",
        port: TICKETS,
        offer: Offer::Tls12SessionId,
    },
    Route {
        what: "tickets on, TLS 1.3 stateless ticket",
        port: TICKETS,
        offer: Offer::Tls13,
    },
    Route {
        what: "tickets off, TLS 1.2 session ID (shared cache)",
        port: NO_TICKETS,
        offer: Offer::Tls12SessionId,
    },
    Route {
        what: "tickets off, TLS 1.3 stateful ticket (shared cache)",
        port: NO_TICKETS,
        offer: Offer::Tls13,
    },
    Route {
        what: "tickets off, TLS 1.2 session ID (builtin cache)",
        port: BUILTIN,
        offer: Offer::Tls12SessionId,
    },
    Route {
        what: "tickets off, TLS 1.3 stateful ticket (builtin cache)",
        port: BUILTIN,
        offer: Offer::Tls13,
    },
];

/// What one connection showed, on the client's side and in nginx's response.
struct Seen {
    ctx: String,
    reused: bool,
    server: HashMap<String, String>,
    /// Every "TLS session ticket lifetime hint" the client printed.
    hints: Vec<u64>,
}

impl Seen {
    fn server(&self, key: &str) -> &str {
        &self.server[key]
    }

    fn verdict(&self) -> (&str, &str) {
        (self.server("verify"), self.server("dn"))
    }

    /// Asserts whether the session was resumed and the verdict nginx reported.
    fn expect(&self, reused: bool, verify: &str, dn: &str) -> &Self {
        assert_eq!(self.reused, reused, "{}: resumed", self.ctx);
        assert_eq!(self.verdict(), (verify, dn), "{}: verdict", self.ctx);
        self
    }
}

/// The session a connection starts from.
#[derive(Clone, Copy)]
enum Session<'a> {
    /// None offered, and the one the server hands out not kept.
    None,
    /// None offered; the one the server hands out written to this file, if any.
    Out(&'a Path),
    /// This one offered.
    In(&'a Path),
}

/// `openssl s_client` for one route, its files in nginx's directory.
struct Client<'a> {
    nginx: &'a Nginx,
    what: &'a str,
    port: u16,
    offer: Offer,
    /// Unique per client: its session files and `*.rot.test` name.
    tag: String,
}

impl<'a> Client<'a> {
    /// `route` on its port of `nginx`.
    fn new(nginx: &'a Nginx, route: &'a Route, tag: &str) -> Self {
        Client {
            nginx,
            what: route.what,
            port: nginx.port(route.port),
            offer: route.offer,
            tag: tag.to_string(),
        }
    }

    fn file(&self, label: &str) -> PathBuf {
        self.nginx.dir.join(format!("{}-{label}.sess", self.tag))
    }

    fn connect(&self, name: &str, cert: Option<&str>, session: Session) -> Seen {
        let dir = &self.nginx.dir;
        let version = if self.offer == Offer::Tls13 {
            SslVersion::TLS1_3
        } else {
            SslVersion::TLS1_2
        };
        let mut cmd = SClient::new(self.port, version)
            .servername(name)
            .arg("-trace");
        if self.offer == Offer::Tls12SessionId {
            cmd = cmd.arg("-no_ticket");
        }
        if let Some(cert) = cert {
            cmd = cmd
                .arg("-cert")
                .arg(dir.join(format!("{cert}.pem")))
                .arg("-key")
                .arg(dir.join(format!("{cert}.key")));
        }
        let offered = match session {
            Session::None => "-".to_string(),
            Session::Out(path) => {
                let _ = fs::remove_file(path);
                cmd = cmd.arg("-sess_out").arg(path);
                "-".to_string()
            }
            Session::In(path) => {
                cmd = cmd.arg("-sess_in").arg(path);
                path.file_name().unwrap().to_string_lossy().into_owned()
            }
        };
        let ctx = format!(
            "{}: {name}, client {}, session {offered}",
            self.what,
            cert.unwrap_or("without a certificate")
        );
        let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        let out = cmd.run(Some(&request));
        let (stdout, stderr) = (&out.stdout, &out.stderr);
        let context = || format!("{ctx}:\n{stdout}\n{stderr}");
        assert!(out.ok, "{}", context());
        let line = stdout
            .lines()
            .find(|l| l.starts_with("kct|"))
            .unwrap_or_else(|| panic!("no response: {}", context()));
        let server: HashMap<String, String> = line
            .split('|')
            .skip(1)
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // s_client's first summary line: "Reused, TLSv1.3, ..." or "New, TLSv1.3, ...".
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("Reused, ") || l.starts_with("New, "))
            .unwrap_or_else(|| panic!("no summary line: {}", context()));
        let reused = summary.starts_with("Reused, ");
        let want_reused = if reused { "r" } else { "." };
        assert_eq!(server["reused"], want_reused, "{}", context());
        let proto = if self.offer == Offer::Tls13 {
            "TLSv1.3"
        } else {
            "TLSv1.2"
        };
        assert_eq!(server["proto"], proto, "{}", context());
        // The ClientHello as sent (-trace): it carries a session exactly when one is
        // offered, so a refusal is the server's decision.
        let hello: Vec<&str> = stdout
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("ClientHello"))
            .take_while(|l| !l.contains("Received Record"))
            .map(str::trim)
            .collect();
        let carries = |prefix: &str, empty: &str| {
            hello
                .iter()
                .any(|l| l.starts_with(prefix) && !l.ends_with(empty))
        };
        let offered = match self.offer {
            Offer::Tls13 => carries("extension_type=psk(41)", "length=0"),
            Offer::Tls12Ticket => carries("extension_type=session_ticket(35)", "length=0"),
            Offer::Tls12SessionId => carries("session_id (len=", "(len=0):"),
        };
        assert!(!hello.is_empty(), "no ClientHello traced: {}", context());
        assert_eq!(
            offered,
            matches!(session, Session::In(_)),
            "session offered: {}",
            context()
        );
        let hints = stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("TLS session ticket lifetime hint: "))
            .map(|h| {
                let n = h.strip_suffix(" (seconds)").unwrap_or(h);
                n.parse()
                    .unwrap_or_else(|e| panic!("lifetime hint {h:?}: {e}: {}", context()))
            })
            .collect();
        Seen {
            ctx,
            reused,
            server,
            hints,
        }
    }

    /// A full handshake that hands out a resumable session; returns the connection and
    /// the session's file.
    fn new_session(&self, name: &str, cert: Option<&str>, label: &str) -> (Seen, PathBuf) {
        let path = self.file(label);
        let seen = self.connect(name, cert, Session::Out(&path));
        assert!(!seen.reused, "{}: resumed without a session", seen.ctx);
        assert!(path.is_file(), "{}: no resumable session", seen.ctx);
        (seen, path)
    }

    /// A full handshake, not offering any session.
    fn full(&self, name: &str, cert: Option<&str>) -> Seen {
        let seen = self.connect(name, cert, Session::None);
        assert!(!seen.reused, "{}: resumed without a session", seen.ctx);
        seen
    }

    fn offer(&self, name: &str, cert: Option<&str>, session: &Path) -> Seen {
        self.connect(name, cert, Session::In(session))
    }

    /// The CA set of this client's `*.rot.test` name from now on.
    fn rotate(&self, set: &str) {
        let path = format!("/rot?name={}&set={set}", self.rot_name());
        let (status, body) = clients::get_plain(self.nginx.port(CONTROL), &path);
        assert_eq!((status, body.as_str()), (200, set));
    }

    fn rot_name(&self) -> String {
        format!("{}.rot.test", self.tag)
    }
}

// The binding on every path -----------------------------------------------------------

/// Cases 1, 2, 3 and 5 of issue 12 on every route, one thread per route.
#[test]
fn sessions_resume_only_where_the_verdict_is_the_same() {
    let nginx = start(
        "session",
        Setup::default(),
        &[CONTROL, TICKETS, NO_TICKETS, BUILTIN],
        &binding_http,
    );
    std::thread::scope(|s| {
        for (i, route) in ROUTES.iter().enumerate() {
            let client = Client::new(&nginx, route, &format!("r{i}"));
            s.spawn(move || {
                cross_name(&client);
                certificate_form(&client);
                rotation(&client);
                controls(&client);
            });
        }
    });
    finish(nginx);
}

/// A session verified on one name, offered to another name verifying against another
/// CA, or the same CA in the same block: a full handshake there, with its own verdict.
/// The session stays good for its own name (offered last, after the refusals).
fn cross_name(c: &Client) {
    let (first, s_a) = c.new_session("a.test", Some(CLIENT_A), "a");
    first.expect(false, "SUCCESS", DN_A);
    let on_b = c.full("b.test", Some(CLIENT_A));
    assert!(on_b.server("verify").starts_with("FAILED:"), "{}", on_b.ctx);
    assert_eq!(on_b.verdict().1, DN_A, "{}", on_b.ctx);
    let (verify, dn) = on_b.verdict();
    c.offer("b.test", Some(CLIENT_A), &s_a)
        .expect(false, verify, dn);
    assert_eq!(on_b.server("block"), "b");
    // Same block, same CA set, another name: bound to the name too.
    let seen = c.offer("a2.test", Some(CLIENT_A), &s_a);
    seen.expect(false, "SUCCESS", DN_A);
    assert_eq!(seen.server("block"), "a", "{}", seen.ctx);
    let seen = c.offer("a.test", Some(CLIENT_A), &s_a);
    seen.expect(true, "SUCCESS", DN_A);
    assert_eq!(seen.server("sni"), "a.test", "{}", seen.ctx);

    // The other way round, with a client of CA_B.
    let (first, s_b) = c.new_session("b.test", Some(CLIENT_B), "b");
    first.expect(false, "SUCCESS", DN_B);
    let on_a = c.full("a.test", Some(CLIENT_B));
    assert!(on_a.server("verify").starts_with("FAILED:"), "{}", on_a.ctx);
    let (verify, dn) = on_a.verdict();
    c.offer("a.test", Some(CLIENT_B), &s_b)
        .expect(false, verify, dn);
    c.offer("b.test", Some(CLIENT_B), &s_b)
        .expect(true, "SUCCESS", DN_B);
}

/// The certificate form (Kong's placement) hands out no resumable session: no session
/// ID, no ticket; the next connection verifies again. A bound session from a client
/// hello form name is not resumed there either.
fn certificate_form(c: &Client) {
    let path = c.file("k");
    let first = c.connect("k.test", Some(CLIENT_A), Session::Out(&path));
    first.expect(false, "SUCCESS", DN_A);
    assert!(
        !path.exists(),
        "{}: the client got a resumable session",
        first.ctx
    );
    assert!(first.hints.is_empty(), "{}: a ticket", first.ctx);
    c.full("k.test", Some(CLIENT_A))
        .expect(false, "SUCCESS", DN_A);
    let s_a = c.file("a");
    c.offer("k.test", Some(CLIENT_A), &s_a)
        .expect(false, "SUCCESS", DN_A);
    // A client of CA_B there: a full handshake, FAILED as on a.test.
    let seen = c.full("k.test", Some(CLIENT_B));
    assert!(seen.server("verify").starts_with("FAILED:"), "{}", seen.ctx);
}

/// One name whose CA set changes between connections: {A}, {B}, {A} again, {A,B}. A
/// session is resumed only under the set it was verified with.
fn rotation(c: &Client) {
    let name = c.rot_name();
    let name = name.as_str();
    c.rotate("a");
    let (first, s_a) = c.new_session(name, Some(CLIENT_A), "rot-a");
    first.expect(false, "SUCCESS", DN_A);
    c.offer(name, Some(CLIENT_A), &s_a)
        .expect(true, "SUCCESS", DN_A);

    c.rotate("b");
    let fresh = c.full(name, Some(CLIENT_A));
    assert!(
        fresh.server("verify").starts_with("FAILED:"),
        "{}",
        fresh.ctx
    );
    let (verify, dn) = fresh.verdict();
    c.offer(name, Some(CLIENT_A), &s_a)
        .expect(false, verify, dn);
    let (first, s_b) = c.new_session(name, Some(CLIENT_B), "rot-b");
    first.expect(false, "SUCCESS", DN_B);

    c.rotate("a");
    let fresh = c.full(name, Some(CLIENT_B));
    assert!(
        fresh.server("verify").starts_with("FAILED:"),
        "{}",
        fresh.ctx
    );
    let (verify, dn) = fresh.verdict();
    c.offer(name, Some(CLIENT_B), &s_b)
        .expect(false, verify, dn);
    // The set it was verified with is back: the session is good again (and so was
    // offered above, and is still there).
    c.offer(name, Some(CLIENT_A), &s_a)
        .expect(true, "SUCCESS", DN_A);

    // {A} -> {A,B}: a full handshake would give the same verdict, but the set changed;
    // refused all the same (conservative).
    c.rotate("ab");
    c.full(name, Some(CLIENT_A)).expect(false, "SUCCESS", DN_A);
    c.offer(name, Some(CLIENT_A), &s_a)
        .expect(false, "SUCCESS", DN_A);
    c.offer(name, Some(CLIENT_B), &s_b)
        .expect(false, "SUCCESS", DN_B);
}

/// The control name, which requests no certificate, keeps resuming its own sessions,
/// and no session crosses between it and a name that requests one.
fn controls(c: &Client) {
    let (first, s_c) = c.new_session("c.test", Some(CLIENT_A), "c");
    first.expect(false, "NONE", "");
    c.offer("c.test", Some(CLIENT_A), &s_c)
        .expect(true, "NONE", "");
    c.offer("a.test", Some(CLIENT_A), &s_c)
        .expect(false, "SUCCESS", DN_A);
    // A bound session offered where no certificate is requested: today's nginx would
    // report SUCCESS on a server that never asked.
    let s_a = c.file("a");
    c.offer("c.test", Some(CLIENT_A), &s_a)
        .expect(false, "NONE", "");
    // The documented residual: a session born without any request resumes on the
    // certificate form, and reports NONE (no peer certificate), what a full handshake
    // gives a client that sends none.
    c.offer("k.test", Some(CLIENT_A), &s_c)
        .expect(true, "NONE", "");
}

// Expiry ------------------------------------------------------------------------------

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A client certificate issued by `pki`'s root, valid until `not_after` (Unix time).
fn short_lived(pki: &Pki, cn: &str, not_after: i64) -> Identity {
    let id = pki.issue_from_root(cn);
    let end = Asn1Time::from_unix(not_after).unwrap();
    // SAFETY: the certificate was just made and is not shared; it is signed again after
    // the change, by the same root.
    unsafe {
        assert_eq!(
            openssl_sys::X509_set1_notAfter(id.cert.as_ptr(), end.as_ptr()),
            1
        );
        assert!(
            openssl_sys::X509_sign(
                id.cert.as_ptr(),
                pki.root.key.as_ptr(),
                openssl_sys::EVP_sha256()
            ) > 0
        );
    }
    id
}

/// Makes the client's copy of a session look just received. A TLS 1.3 client does not
/// offer a ticket older than the lifetime the server announced; one that does anyway
/// leaves the decision to the server, which is what is tested.
fn restart_session_clock(path: &Path) {
    const LABEL: &str = "SSL SESSION PARAMETERS";
    let pem = fs::read_to_string(path).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let session = SslSession::from_der(&openssl::base64::decode_block(&b64).unwrap()).unwrap();
    // SAFETY: a live session of our own.
    unsafe { SSL_SESSION_set_time(session.as_ptr(), unix_now() as c_long) };
    let b64 = openssl::base64::encode_block(&session.to_der().unwrap());
    let mut pem = format!("-----BEGIN {LABEL}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {LABEL}-----\n"));
    fs::write(path, pem).unwrap();
}

/// nginx's default `ssl_session_timeout` (5 minutes): the lifetime of a session nothing
/// shortens.
const NGINX_SESSION_TIMEOUT: u64 = 300;

/// A session verified with the short-lived certificate on `a.test`, resumed, and a
/// control session of `c.test`; returns both.
fn before_expiry(c: &Client, not_after: i64) -> (PathBuf, PathBuf) {
    let before = unix_now();
    let (first, s_short) = c.new_session("a.test", Some(CLIENT_SHORT), "short");
    first.expect(false, "SUCCESS", DN_SHORT);
    // The session was made at `before` or later: it must end a second before the
    // certificate (OpenSSL's clock has whole seconds).
    let left = (not_after - 1 - before) as u64;
    assert!(
        first.hints.iter().all(|h| (1..=left).contains(h)),
        "{}: lifetime {:?}, certificate expires {} s after the handshake began",
        first.ctx,
        first.hints,
        left + 1
    );
    if c.offer == Offer::Tls13 {
        assert!(!first.hints.is_empty(), "{}: no ticket", first.ctx);
    }
    let again = c.offer("a.test", Some(CLIENT_SHORT), &s_short);
    again.expect(true, "SUCCESS", DN_SHORT);
    let end = first.hints.iter().max().copied().unwrap_or(0);
    assert!(
        again.hints.iter().all(|h| *h <= end),
        "{}: lifetime {:?} after {:?}",
        again.ctx,
        again.hints,
        first.hints
    );
    let (control, s_c) = c.new_session("c.test", None, "short-c");
    assert!(
        control.hints.iter().all(|h| *h == NGINX_SESSION_TIMEOUT),
        "{}: {:?}",
        control.ctx,
        control.hints
    );
    (s_short, s_c)
}

/// Case 4: a session verified with a client certificate valid for 10 more seconds is
/// resumed before it expires, and refused after it, where a full handshake reports it
/// expired; on every route. The announced ticket lifetimes end before the certificate,
/// and a TLS 1.3 resumption does not extend them; a control session of the same age
/// without a certificate request is still resumed.
#[test]
fn sessions_end_before_the_client_certificate_expires() {
    let nginx = start(
        "expiry",
        Setup::default(),
        &[CONTROL, TICKETS, NO_TICKETS, BUILTIN],
        &binding_http,
    );
    let not_after = unix_now() + 10;
    let short = short_lived(pki_a(), "short-lived client of A", not_after);
    for (file, data) in client_files(CLIENT_SHORT, &short) {
        fs::write(nginx.dir.join(file), data).unwrap();
    }
    let clients: Vec<Client> = ROUTES
        .iter()
        .enumerate()
        .map(|(i, route)| Client::new(&nginx, route, &format!("x{i}")))
        .collect();
    // In parallel: every route must resume before the session ends.
    let sessions: Vec<(PathBuf, PathBuf)> = std::thread::scope(|s| {
        let threads: Vec<_> = clients
            .iter()
            .map(|c| s.spawn(move || before_expiry(c, not_after)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });

    let after = UNIX_EPOCH + Duration::from_secs(not_after as u64 + 1);
    if let Ok(wait) = after.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    for (c, (s_short, s_c)) in clients.iter().zip(&sessions) {
        let expired = "FAILED:certificate has expired";
        c.full("a.test", Some(CLIENT_SHORT))
            .expect(false, expired, DN_SHORT);
        restart_session_clock(s_short);
        c.offer("a.test", Some(CLIENT_SHORT), s_short)
            .expect(false, expired, DN_SHORT);
        c.offer("c.test", None, s_c).expect(true, "NONE", "");
    }
    finish(nginx);
}

// Two workers and a reload -------------------------------------------------------------

/// Workers die with the master even when the master is killed: the test stops only the
/// master, and `Nginx` sets this for the master alone.
const WORKERS_DIE_WITH_MASTER: &str = r#"
    init_worker_by_lua_block {
        local ffi = require "ffi"
        pcall(ffi.cdef, "int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long);")
        ffi.C.prctl(1, 9, 0, 0, 0) -- PR_SET_PDEATHSIG, SIGKILL
    }
"#;

/// `binding_http` for two workers: tickets from a key file, so that every worker and
/// every configuration generation (a reload) encrypts and decrypts them alike; connections
/// spread over the workers by the kernel (`reuseport`: one socket per worker). No
/// `builtin` cache: it is one per worker process.
fn workers_http(p: &Ports) -> String {
    let tickets = format!("{TICKETS_ON}\n        ssl_session_ticket_key ticket.key;");
    format!(
        "{WORKERS_DIE_WITH_MASTER}{}{}{}",
        control_server(p.get(CONTROL)),
        tls_servers(p.get(TICKETS), &tickets, "reuseport"),
        tls_servers(p.get(NO_TICKETS), TICKETS_OFF, "reuseport")
    )
}

/// Case 6 and `worker_processes 2`: bound sessions resume on the other worker, still
/// refuse another name there, and after `nginx -s reload` (SIGHUP, configuration
/// unchanged) resume on the new workers, on every route.
#[test]
fn two_workers_and_a_reload_keep_bound_sessions() {
    let setup = Setup {
        main: "master_process on;\nworker_processes 2;",
        ..Setup::default()
    };
    let nginx = start(
        "workers",
        setup,
        &[CONTROL, TICKETS, NO_TICKETS],
        &workers_http,
    );
    let clients: Vec<Client> = ROUTES
        .iter()
        .enumerate()
        .filter(|(_, route)| route.port != BUILTIN)
        .map(|(i, route)| Client::new(&nginx, route, &format!("w{i}")))
        .collect();
    let mut workers = BTreeSet::new();
    let mut elsewhere = 0;
    let mut kept = Vec::new();
    for c in &clients {
        let (first, s_a) = c.new_session("a.test", Some(CLIENT_A), "a");
        first.expect(false, "SUCCESS", DN_A);
        let (control, s_c) = c.new_session("c.test", None, "c");
        control.expect(false, "NONE", "");
        workers.insert(first.server("pid").to_string());
        for _ in 0..4 {
            let again = c.offer("a.test", Some(CLIENT_A), &s_a);
            again.expect(true, "SUCCESS", DN_A);
            workers.insert(again.server("pid").to_string());
            elsewhere += usize::from(again.server("pid") != first.server("pid"));
        }
        let on_b = c.full("b.test", Some(CLIENT_A));
        let (verify, dn) = on_b.verdict();
        c.offer("b.test", Some(CLIENT_A), &s_a)
            .expect(false, verify, dn);
        kept.push((s_a, s_c, on_b));
    }
    assert_eq!(workers.len(), 2, "workers seen: {workers:?}");
    assert!(elsewhere > 0, "no session resumed on the other worker");

    nginx.reload();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !workers.iter().all(|pid| {
        nginx
            .error_log()
            .contains(&format!("worker process {pid} exited with code 0"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the old workers {workers:?} did not exit:\n{}",
            nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (c, (s_a, s_c, on_b)) in clients.iter().zip(&kept) {
        let again = c.offer("a.test", Some(CLIENT_A), s_a);
        again.expect(true, "SUCCESS", DN_A);
        assert!(
            !workers.contains(again.server("pid")),
            "{}: served by an old worker",
            again.ctx
        );
        c.offer("c.test", None, s_c).expect(true, "NONE", "");
        let (verify, dn) = on_b.verdict();
        c.offer("b.test", Some(CLIENT_A), s_a)
            .expect(false, verify, dn);
    }
    finish(nginx);
}

// Where nginx switches the server block ----------------------------------------------

/// From nginx 1.29.2 on, nginx selects the `server {}` block by SNI in a client hello
/// callback of its own, which OpenSSL runs before it looks up the offered session; before,
/// it switched from the servername callback, after that lookup (docs/design/
/// session-binding.md §1.2).
const SNI_BEFORE_SESSION_LOOKUP: (u32, u32, u32) = (1, 29, 2);

/// Plain nginx (no Lua): `c.test` (the default server) and `e.test`, whose other
/// certificate gives it another session id context of nginx's own.
fn sni_order_http(p: &Ports) -> String {
    let block = |name: &str, cert: &str| {
        format!(
            r#"
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {name};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {cert}.pem;
        ssl_certificate_key {cert}.key;
        {TICKETS_ON}
        {echo}
    }}
"#,
            port = p.get(TICKETS),
            echo = echo(name)
        )
    };
    format!("{}{}", block("c.test", "server"), block("e.test", "other"))
}

/// nginx's own session id context separates `c.test` from `e.test` only where nginx
/// switches to `e.test`'s block before the session lookup: from 1.29.2 on, a session of
/// `c.test` is refused on `e.test`; before, the lookup compares with the default server's
/// context for every name, and it is resumed. What the binding adds on every version is
/// tested above; this pins which order the nginx under test has.
#[test]
fn where_nginx_switches_the_server_block() {
    let setup = Setup {
        no_lua: true,
        ..Setup::default()
    };
    let nginx = start("sni-order", setup, &[TICKETS], &sni_order_http);
    let sni_first = nginx::nginx_version() >= SNI_BEFORE_SESSION_LOOKUP;
    for (i, route) in ROUTES.iter().enumerate().filter(|(_, r)| r.port == TICKETS) {
        let c = Client::new(&nginx, route, &format!("o{i}"));
        let (_, s_c) = c.new_session("c.test", None, "c");
        c.offer("c.test", None, &s_c).expect(true, "NONE", "");
        let seen = c.offer("e.test", None, &s_c);
        seen.expect(!sni_first, "NONE", "");
        assert_eq!(seen.server("block"), "e.test", "{}", seen.ctx);
    }
    finish(nginx);
}

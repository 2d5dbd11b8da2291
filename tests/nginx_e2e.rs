//! End to end: `lua/kong_client_tls.lua` inside a stock nginx (Debian's: the host's
//! nginx 1.22.1 with lua-nginx-module 0.10.23 and lua-resty-core 0.1.25, or with
//! `KCT_NGINX_ROOT` that of a Debian 13 or unstable root, see `tests/distro/run.sh`),
//! driven by real TLS clients over TLS 1.2 and TLS 1.3. Each test starts one nginx with
//! several server blocks on 127.0.0.1 and stops it whatever happens; every test ends by
//! checking that nginx is still alive, exits cleanly and logged no `[alert]`, `[crit]`,
//! `[emerg]` or crash.

mod support;

use std::collections::HashMap;
use std::process::Command;

use openssl::ssl::SslVersion;

use support::clients::{self, get, get_plain, results, ClientCert, Request, SClient};
use support::memtls::VERSIONS;
use support::nginx::{self, ssl_server, Discovery, Nginx, Ports, Setup};
use support::pki::{self, KeyKind, Pki};
use support::{paths, process, sys};

fn server_pki() -> &'static Pki {
    Pki::get("server", KeyKind::EcdsaP256)
}
fn client_pki() -> &'static Pki {
    Pki::get("client", KeyKind::Rsa2048)
}
fn untrusted_pki() -> &'static Pki {
    Pki::get("untrusted", KeyKind::EcdsaP256)
}

const NOT_TLS: &str = "connection is not TLS or TLS support for Nginx not enabled";

// Every function in every phase ---------------------------------------------------

use support::kong::{
    allowed_phases as allowed, kong_phase, wrong_phase_message, FUNCTIONS as FUNCS,
};

/// The line of `tests/nginx/kct_e2e.lua` that calls the API: level-2 errors point there.
fn invoke_line() -> String {
    let src = include_str!("nginx/kct_e2e.lua");
    let line = src
        .lines()
        .position(|l| l.trim() == "return pack(f(arg))")
        .expect("invoke line")
        + 1;
    format!("kct_e2e.lua:{line}")
}

/// What the probe must have recorded for `func` in `label` (probe phase label).
fn expected(label: &str, func: &str, chain: Option<&str>) -> String {
    let kong = kong_phase(label);
    let ok = allowed(func);
    if !ok.contains(&kong) {
        return format!("err|{}|{}", invoke_line(), wrong_phase_message(kong, func));
    }
    match func {
        "request_client_certificate" | "disable_session_reuse" | "disable_http2_alpn" => {
            "ok|1|boolean|true".into()
        }
        "get_full_client_certificate_chain" => match chain {
            Some(pem) => format!("ok|1|string|{pem}"),
            None => "ok|1|nil|nil".into(),
        },
        _ => "ok|0|nil|nil".into(),
    }
}

fn check_result(got: &HashMap<String, String>, key: &str, want: &str) {
    let value = got
        .get(key)
        .unwrap_or_else(|| panic!("nothing recorded for {key}; got {got:#?}"));
    // Errors carry the full path of kct_e2e.lua: compare from the file name on.
    let value = match value.strip_prefix("err|") {
        Some(rest) => {
            let (where_, msg) = rest.split_once('|').unwrap();
            let file = where_.rsplit('/').next().unwrap();
            format!("err|{file}|{msg}")
        }
        None => value.clone(),
    };
    assert_eq!(value, want, "{key}");
}

fn phases_http(p: &Ports) -> String {
    let (tls, plain) = (p.get("tls"), p.get("plain"));
    format!(
        r#"
    init_worker_by_lua_block {{
        local e2e = require "kct_e2e"
        e2e.probe("worker", "init_worker", false)
        ngx.timer.at(0, function() e2e.probe("worker", "timer", false) end)
    }}

    upstream probe_backend {{
        server 127.0.0.1:{plain};
        balancer_by_lua_block {{
            require("kct_e2e").probe_request("balancer")
            assert(require("ngx.balancer").set_current_peer("127.0.0.1", {plain}))
        }}
    }}

    server {{
        {ssl}
        ssl_client_hello_by_lua_block {{ require("kct_e2e").probe_ssl("client_hello") }}
        ssl_certificate_by_lua_block {{ require("kct_e2e").probe_ssl("certificate") }}

        location /proxy {{
            rewrite_by_lua_block {{ require("kct_e2e").probe_request("rewrite") }}
            access_by_lua_block {{ require("kct_e2e").probe_request("access") }}
            proxy_pass http://probe_backend;
            header_filter_by_lua_block {{ require("kct_e2e").probe_request("header_filter") }}
            body_filter_by_lua_block {{ require("kct_e2e").probe_request("body_filter") }}
            log_by_lua_block {{ require("kct_e2e").probe_request("log") }}
        }}
        location /content {{
            content_by_lua_block {{
                require("kct_e2e").probe_request("content")
                ngx.say("content done")
            }}
        }}
        location /verify {{
            access_by_lua_block {{
                local v = ngx.var.arg_v
                require("kct_e2e").verify_value(v and ngx.unescape_uri(v))
            }}
            content_by_lua_block {{ ngx.say("verify done") }}
            log_by_lua_block {{
                ngx.shared.results:set("verify|" .. ngx.var.arg_id,
                                       tostring(ngx.ctx.CLIENT_VERIFY_OVERRIDE))
            }}
        }}
    }}

    server {{
        listen 127.0.0.1:{plain};
        location / {{ return 200 "backend\n"; }}
        location /dump {{ content_by_lua_block {{ require("kct_e2e").dump(ngx.var.arg_prefix) }} }}
        location /plain-chain {{ content_by_lua_block {{ require("kct_e2e").report() }} }}
    }}
"#,
        ssl = ssl_server(tls),
    )
}

#[test]
fn every_function_in_every_phase() {
    let nginx = Nginx::start(
        "phases",
        &["tls", "plain"],
        &nginx::server_files(server_pki()),
        &phases_http,
    );
    let (tls, plain) = (nginx.port("tls"), nginx.port("plain"));
    let client = ClientCert::leaf(client_pki());
    let chain = client.chain_pem();

    for version in VERSIONS {
        for with_cert in [true, false] {
            let sni = format!(
                "{}-{}.probe.test",
                if with_cert { "cert" } else { "nocert" },
                if version == SslVersion::TLS1_3 {
                    "v13"
                } else {
                    "v12"
                }
            );
            let cert = with_cert.then_some(&client);
            let pem = with_cert.then_some(chain.as_str());
            for path in ["/proxy", "/content"] {
                let reply = get(&Request::new(tls, path, version).sni(&sni).cert(cert));
                assert_eq!(reply.status, 200, "{path}: {reply:?}");
                assert_eq!(reply.version, clients::tls_label(version));
            }
            let got = results(plain, &sni);
            for label in [
                "client_hello",
                "certificate",
                "rewrite",
                "access",
                "balancer",
                "header_filter",
                "body_filter",
                "log",
                "content",
            ] {
                for func in FUNCS {
                    let key = format!("{sni}|{label}|{func}");
                    check_result(&got, &key, &expected(label, func, pem));
                }
            }
            // set_client_verify stored its value where Kong's serializer reads it, and
            // later phases (where it may not be called) still see it.
            for (label, value) in [
                ("rewrite", "FAILED:set in rewrite"),
                ("access", "FAILED:set in access"),
                ("balancer", "FAILED:set in balancer"),
                ("header_filter", "FAILED:set in balancer"),
                ("body_filter", "FAILED:set in balancer"),
                ("log", "FAILED:set in balancer"),
                ("content", "FAILED:set in content"),
            ] {
                check_result(&got, &format!("{sni}|{label}|ctx"), value);
            }
        }
    }

    // init_worker and a timer: no function may run there.
    let got = results(plain, "worker|");
    for label in ["init_worker", "timer"] {
        for func in FUNCS {
            check_result(
                &got,
                &format!("worker|{label}|{func}"),
                &expected(label, func, None),
            );
        }
    }

    // A connection without TLS: nil and Kong's error text.
    let reply = get_plain(plain, "/plain-chain");
    assert_eq!(reply.0, 200);
    assert_eq!(reply.1, "");
    let raw = raw_headers(plain, "/plain-chain");
    assert!(raw.contains("X-Chain-Count: 2"), "{raw}");
    assert!(raw.contains(&format!("X-Chain-Err: {NOT_TLS}")), "{raw}");

    // set_client_verify: accepted values stored in ngx.ctx.CLIENT_VERIFY_OVERRIDE and seen
    // in the log phase; others rejected with Kong's message, nothing stored.
    let msg = |v: &str| {
        format!(
            "{}: unknown client verify value: {v} accepted values are: \"SUCCESS\", \"NONE\" or \"FAILED:<reason>\"",
            invoke_line()
        )
    };
    let cases: [(&str, &str, Option<String>); 8] = [
        ("SUCCESS", "SUCCESS", None),
        ("NONE", "NONE", None),
        ("FAILED:", "FAILED:", None),
        ("FAILED%3Aunknown%20CA", "FAILED:unknown CA", None),
        ("success", "success", Some(msg("success"))),
        ("FAILED", "FAILED", Some(msg("FAILED"))),
        ("failed%3Ax", "failed:x", Some(msg("failed:x"))),
        ("SUCCESS%20", "SUCCESS ", Some(msg("SUCCESS "))),
    ];
    for version in VERSIONS {
        for (i, (query, value, error)) in cases.iter().enumerate() {
            let id = format!("{}-{i}", clients::tls_label(version));
            let path = format!("/verify?id={id}&v={query}");
            let reply = get(&Request::new(tls, &path, version).sni("verify.test"));
            assert_eq!(reply.status, 200);
            match error {
                None => {
                    assert_eq!(reply.header("X-Set-Ok"), "true", "{value}");
                    assert_eq!(reply.header("X-Override"), *value);
                }
                Some(err) => {
                    assert_eq!(reply.header("X-Set-Ok"), "false", "{value}");
                    let got = reply.header("X-Set-Err");
                    assert_eq!(got.rsplit('/').next().unwrap(), err.as_str());
                    assert_eq!(reply.header("X-Override"), "nil");
                }
            }
            let logged = results(plain, &format!("verify|{id}"));
            let want = if error.is_none() { *value } else { "nil" };
            assert_eq!(
                logged[&format!("verify|{id}")],
                want,
                "log phase for {value}"
            );
        }
        // Not a string: Kong's assertion.
        let reply = get(&Request::new(tls, "/verify?id=x", version).sni("verify.test"));
        assert_eq!(reply.header("X-Set-Ok"), "false");
        assert!(reply.header("X-Set-Err").ends_with("assertion failed!"));
    }

    nginx.finish();
}

fn raw_headers(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    raw
}

// request_client_certificate against ngx.ssl.verify_client(ca, 0) -----------------

/// The servers of `mtls_http`: ours and the reference, with a CA list and without, and
/// ours over HTTP/2.
const MTLS_PORTS: [&str; 6] = ["ours_ca", "ref_ca", "ours_none", "ref_none", "h2", "typed"];

fn mtls_http(p: &Ports) -> String {
    let server = |port: u16, body: &str| {
        format!(
            r#"
    server {{
        {ssl}
        ssl_certificate_by_lua_block {{
            local tls = require "kong_client_tls"
            local ngx_ssl = require "ngx.ssl"
            local e2e = require "kct_e2e"
            local ok, err = {body}
            if not ok then
                ngx.log(ngx.ERR, "requesting the client certificate failed: ", err)
                return ngx.exit(ngx.ERROR)
            end
        }}
        location / {{ content_by_lua_block {{ require("kct_e2e").report() }} }}
        location /dump {{ content_by_lua_block {{ require("kct_e2e").dump(ngx.var.arg_prefix) }} }}
    }}
"#,
            ssl = ssl_server(port)
        )
    };
    [
        server(
            p.get("ours_ca"),
            "tls.request_client_certificate(e2e.ca(\"client-ca\"))",
        ),
        server(
            p.get("ref_ca"),
            "ngx_ssl.verify_client(e2e.ca(\"client-ca\"), 0)",
        ),
        server(p.get("ours_none"), "tls.request_client_certificate()"),
        server(p.get("ref_none"), "ngx_ssl.verify_client(nil, 0)"),
        // The same as the first, over HTTP/2 (a request's connection is then the stream's).
        server(
            p.get("h2"),
            "tls.request_client_certificate(e2e.ca(\"client-ca\"))",
        )
        .replace(
            &format!("listen 127.0.0.1:{} ssl;", p.get("h2")),
            &nginx::listen_http2(p.get("h2")),
        ),
        server(p.get("typed"), "e2e.wrong_ca_certs(e2e.ca(\"client-ca\"))"),
    ]
    .concat()
}

#[test]
fn request_client_certificate_matches_ngx_ssl_verify_client() {
    let mut files = nginx::server_files(server_pki());
    files.push((
        "client-ca.pem",
        pki::pem(&client_pki().root.cert).into_bytes(),
    ));
    // Found through KONG_CLIENT_TLS_LIB this time (passed with the `env` directive).
    let nginx = Nginx::start_with(
        "mtls",
        &Setup::discovery(Discovery::Env),
        &MTLS_PORTS,
        &files,
        &mtls_http,
    );
    let (ours_ca, ref_ca, ours_none, ref_none) = (
        nginx.port("ours_ca"),
        nginx.port("ref_ca"),
        nginx.port("ours_none"),
        nginx.port("ref_none"),
    );

    let leaf = ClientCert::leaf(client_pki());
    let direct = ClientCert::issued_by_root(client_pki(), "client direct");
    let untrusted = ClientCert::leaf(untrusted_pki());
    let root_name = client_pki().root.cert.subject_name().to_der().unwrap();
    let leaf_dn = "CN=client leaf,O=kong-client-tls tests";
    let direct_dn = "CN=client direct,O=kong-client-tls tests";
    let untrusted_dn = "CN=untrusted leaf,O=kong-client-tls tests";

    // (client, expected $ssl_client_verify with the CA list, without it, $ssl_client_s_dn)
    let cases: [(&str, Option<&ClientCert>, &str, &str, &str); 4] = [
        ("no certificate", None, "NONE", "NONE", ""),
        (
            "issued by the listed CA",
            Some(&direct),
            "SUCCESS",
            "FAILED:unable to verify the first certificate",
            direct_dn,
        ),
        (
            "leaf + intermediate (longer than depth 0)",
            Some(&leaf),
            "FAILED:unable to get local issuer certificate",
            "FAILED:unable to get local issuer certificate",
            leaf_dn,
        ),
        (
            "untrusted",
            Some(&untrusted),
            "FAILED:unable to get local issuer certificate",
            "FAILED:unable to get local issuer certificate",
            untrusted_dn,
        ),
    ];

    for version in VERSIONS {
        for (what, cert, verify_ca, verify_none, dn) in cases {
            for (ours, reference, with_ca) in
                [(ours_ca, ref_ca, true), (ours_none, ref_none, false)]
            {
                let ctx = format!(
                    "{} {what} (CA list: {with_ca})",
                    clients::tls_label(version)
                );
                let a = get(&Request::new(ours, "/", version).cert(cert));
                let b = get(&Request::new(reference, "/", version).cert(cert));
                // Same as the reference, field by field.
                for h in [
                    "X-Verify",
                    "X-S-DN",
                    "X-Chain-Count",
                    "X-Chain-Err",
                    "X-Protocol",
                ] {
                    assert_eq!(a.header_or_empty(h), b.header_or_empty(h), "{ctx}: {h}");
                }
                assert_eq!(a.body, b.body, "{ctx}: chain");
                assert_eq!(
                    a.ca_names,
                    b.ca_names,
                    "{ctx}: CA names {} vs {}",
                    clients::describe(&a.ca_names),
                    clients::describe(&b.ca_names)
                );
                // And what it is.
                assert_eq!(a.header("X-Protocol"), clients::tls_label(version));
                let want_names = if with_ca {
                    vec![root_name.clone()]
                } else {
                    vec![]
                };
                assert_eq!(a.ca_names, want_names, "{ctx}: CA names");
                assert_eq!(
                    a.header("X-Verify"),
                    if with_ca { verify_ca } else { verify_none },
                    "{ctx}"
                );
                assert_eq!(a.header_or_empty("X-S-DN"), dn, "{ctx}");
                assert_eq!(a.header("X-Chain-Count"), "1", "{ctx}");
                assert_eq!(a.header("X-Chain-Err"), "nil", "{ctx}");
                assert_eq!(
                    a.body,
                    cert.map(|c| c.chain_pem()).unwrap_or_default(),
                    "{ctx}"
                );
            }
        }
    }

    // The same through curl and openssl s_client, the everyday clients.
    let dir = &nginx.dir;
    std::fs::write(dir.join("client.pem"), leaf.chain_pem()).unwrap();
    std::fs::write(dir.join("client.key"), pki::key_pem(&leaf.key)).unwrap();
    let h2 = nginx.port("h2");
    let cert = dir.join("client.pem").display().to_string();
    let key = dir.join("client.key").display().to_string();
    for (flag, max) in [("--tlsv1.2", "1.2"), ("--tlsv1.3", "1.3")] {
        for (port, http, status) in [
            (ours_ca, "--http1.1", "HTTP/1.1 200"),
            (h2, "--http2", "HTTP/2 200"),
        ] {
            let url = format!("https://127.0.0.1:{port}/");
            let (text, _) = clients::curl([
                "-sS",
                "-k",
                flag,
                "--tls-max",
                max,
                http,
                "-D",
                "-",
                "--cert",
                &cert,
                "--key",
                &key,
                &url,
            ]);
            let (head, body) = text.split_once("\r\n\r\n").expect("headers");
            let head = head.to_ascii_lowercase();
            let ctx = format!("curl {flag} {http}");
            assert!(
                head.starts_with(&status.to_ascii_lowercase()),
                "{ctx}: {head}"
            );
            assert!(
                head.contains("x-verify: failed:unable to get local issuer certificate"),
                "{ctx}: {head}"
            );
            assert!(
                head.contains(&format!("x-s-dn: {}", leaf_dn.to_ascii_lowercase())),
                "{ctx}: {head}"
            );
            assert_eq!(body, leaf.chain_pem(), "{ctx}");
        }
    }
    for version in VERSIONS {
        let flag = clients::tls_label(version);
        let names = |port: u16| {
            let text = SClient::new(port, version).run(None).stdout;
            let start = text
                .find("Acceptable client certificate CA names")
                .unwrap_or_else(|| panic!("no CA names section: {text}"));
            text[start..].lines().skip(1).take(1).collect::<String>()
        };
        let ours = names(ours_ca);
        assert_eq!(ours, names(ref_ca), "{flag}");
        assert!(ours.contains("CN = client Root CA"), "{flag}: {ours}");
    }

    nginx.finish();
}

// disable_session_reuse on every resumption path -----------------------------------

/// One resumption path: the server-level session settings.
struct Path {
    name: &'static str,
    settings: &'static str,
    /// The ports of its two servers: the control, and the one disabling session reuse.
    ports: [&'static str; 2],
}

const PATHS: [Path; 4] = [
    Path {
        name: "session tickets, no cache",
        settings: "ssl_session_tickets on; ssl_session_cache none;",
        ports: ["tickets", "tickets-disabled"],
    },
    Path {
        name: "shared session cache, no tickets",
        settings: "ssl_session_tickets off; ssl_session_cache shared:CACHE:1m;",
        ports: ["shared", "shared-disabled"],
    },
    Path {
        name: "builtin session cache, no tickets",
        settings: "ssl_session_tickets off; ssl_session_cache builtin:1000;",
        ports: ["builtin", "builtin-disabled"],
    },
    Path {
        name: "tickets and shared cache",
        settings: "ssl_session_tickets on; ssl_session_cache shared:CACHE:1m;",
        ports: ["both", "both-disabled"],
    },
];

/// The server of one context where only one SNI name loses session reuse.
const PER_SNI: &str = "per-sni";

fn resumption_ports() -> Vec<&'static str> {
    PATHS
        .iter()
        .flat_map(|p| p.ports)
        .chain([PER_SNI])
        .collect()
}

fn resumption_http(p: &Ports) -> String {
    let mut http = String::new();
    for (i, path) in PATHS.iter().enumerate() {
        for (j, disable) in [false, true].into_iter().enumerate() {
            let port = p.get(path.ports[j]);
            let settings = path.settings.replace("CACHE", &format!("c{i}{j}"));
            // The control asks for a certificate the resumable way (at ClientHello time,
            // with a CA set: the session is bound to it); the other the Kong way, paired
            // with disable_session_reuse as Kong recommends.
            let request = if disable {
                r#"ssl_certificate_by_lua_block {
            local tls = require "kong_client_tls"
            assert(tls.request_client_certificate())
            assert(tls.disable_session_reuse())
        }"#
            } else {
                r#"ssl_client_hello_by_lua_block {
            local tls = require "kong_client_tls"
            assert(tls.request_client_certificate(require("kct_e2e").ca("client-ca")))
        }"#
            };
            http.push_str(&format!(
                r#"
    server {{
        {ssl}
        {settings}
        {request}
        location / {{ content_by_lua_block {{ require("kct_e2e").report() }} }}
    }}
"#,
                ssl = ssl_server(port)
            ));
        }
    }
    // One server, one context: session reuse disabled only for one SNI name.
    http.push_str(&format!(
        r#"
    server {{
        {ssl}
        ssl_session_tickets on;
        ssl_session_cache shared:cond:1m;
        ssl_certificate_by_lua_block {{
            local tls = require "kong_client_tls"
            if require("ngx.ssl").server_name() == "private.test" then
                assert(tls.disable_session_reuse())
            end
        }}
        location / {{ content_by_lua_block {{ require("kct_e2e").report() }} }}
    }}
"#,
        ssl = ssl_server(p.get(PER_SNI))
    ));
    http
}

fn resumable(session: &openssl::ssl::SslSessionRef) -> bool {
    use foreign_types::ForeignTypeRef;
    // SAFETY: a live session.
    unsafe { sys::SSL_SESSION_is_resumable(session.as_ptr()) == 1 }
}

#[test]
fn disable_session_reuse_on_every_resumption_path() {
    let mut files = nginx::server_files(server_pki());
    files.push((
        "client-ca.pem",
        pki::pem(&client_pki().root.cert).into_bytes(),
    ));
    let nginx = Nginx::start("resumption", &resumption_ports(), &files, &resumption_http);
    let client = ClientCert::leaf(client_pki());
    let full_chain = client.chain_pem();
    let leaf_only = pki::pem(&client.cert);

    for version in VERSIONS {
        for path in &PATHS {
            let (control, disabled) = (nginx.port(path.ports[0]), nginx.port(path.ports[1]));
            let ctx = |s: &str| format!("{} {}: {s}", clients::tls_label(version), path.name);

            // The control server hands out a resumable session and resumes it.
            let first = get(&Request::new(control, "/", version).cert(Some(&client)));
            assert!(!first.reused, "{}", ctx("control first"));
            assert_eq!(first.body, full_chain, "{}", ctx("control first chain"));
            let session = first.session.as_ref().expect("session");
            assert!(resumable(session), "{}", ctx("control session resumable"));
            let again = get(&Request::new(control, "/", version)
                .cert(Some(&client))
                .session(Some(session)));
            assert!(again.reused, "{}", ctx("control resumes"));
            assert_eq!(
                again.header("X-Reused"),
                "r",
                "{}",
                ctx("control $ssl_session_reused")
            );
            // On the resumed session the chain is still there: the leaf always; the
            // intermediates only where OpenSSL kept the session object itself (its own
            // cache); a serialized session (ticket, shared cache) keeps only the leaf.
            let want = if path.name.starts_with("builtin") {
                &full_chain
            } else {
                &leaf_only
            };
            assert_eq!(&again.body, want, "{}", ctx("chain on the resumed session"));
            assert_eq!(again.header("X-Chain-Count"), "1");
            assert_eq!(again.header("X-Verify"), first.header("X-Verify"));
            assert_eq!(
                again.header_or_empty("X-S-DN"),
                first.header_or_empty("X-S-DN")
            );

            // The server that calls disable_session_reuse never resumes.
            let first = get(&Request::new(disabled, "/", version).cert(Some(&client)));
            assert!(!first.reused);
            assert_eq!(first.body, full_chain, "{}", ctx("disabled first chain"));
            let session = first.session.as_ref().expect("session");
            assert!(
                !resumable(session),
                "{}",
                ctx("no session ID and no ticket")
            );
            if version == SslVersion::TLS1_2 {
                assert!(session.id().is_empty(), "{}", ctx("empty session ID"));
            }
            // Even offering that session (or a control server's) gets a full handshake.
            let again = get(&Request::new(disabled, "/", version)
                .cert(Some(&client))
                .session(Some(session)));
            assert!(!again.reused, "{}", ctx("disabled does not resume"));
            assert_eq!(
                again.header("X-Reused"),
                ".",
                "{}",
                ctx("$ssl_session_reused")
            );
            assert_eq!(again.body, full_chain);
        }

        // Same server, same SSL_CTX: only the private name loses session reuse.
        let cond = nginx.port(PER_SNI);
        let ctx = |s: &str| format!("{} per-SNI: {s}", clients::tls_label(version));
        let public = get(&Request::new(cond, "/", version).sni("public.test"));
        let private = get(&Request::new(cond, "/", version).sni("private.test"));
        assert!(
            !resumable(private.session.as_ref().unwrap()),
            "{}",
            ctx("private")
        );
        let private_again = get(&Request::new(cond, "/", version)
            .sni("private.test")
            .session(private.session.as_ref()));
        assert!(!private_again.reused, "{}", ctx("private resumed"));
        let public_again = get(&Request::new(cond, "/", version)
            .sni("public.test")
            .session(public.session.as_ref()));
        assert!(public_again.reused, "{}", ctx("public does not resume"));
        assert_eq!(public_again.header("X-Chain-Count"), "1");
        assert_eq!(public_again.body, "", "no certificate was requested");
    }

    nginx.finish();
}

// Loading inside nginx ----------------------------------------------------------------

#[test]
fn nginx_refuses_to_start_when_the_library_is_not_found() {
    let http = |p: &Ports| format!("server {{ listen 127.0.0.1:{}; }}", p.get("http"));
    let log = match Nginx::try_start_with(
        "notfound",
        &Setup::discovery(Discovery::Nowhere),
        &["http"],
        &[],
        &http,
    ) {
        Ok(nginx) => {
            drop(nginx);
            panic!("nginx started without the library");
        }
        Err(log) => log,
    };
    assert!(
        log.contains(
            "kong_client_tls: libkong_client_tls.so not found; set KONG_CLIENT_TLS_LIB to its \
             path or add its directory to package.cpath (lua_package_cpath in nginx); tried: \
             /nonexistent/libkong_client_tls.so, /nonexistent/kong_client_tls.so"
        ),
        "{log}"
    );
}

/// `tests/c/fake_openssl_version.c` built as `<target>/release/kct-fake-openssl-version.so`
/// (the release dir is visible to nginx in a root too); returns its path.
fn fake_openssl_version_shim(release: &std::path::Path) -> std::path::PathBuf {
    let out = release.join("kct-fake-openssl-version.so");
    let tmp = release.join(format!(
        "kct-fake-openssl-version.so.{}",
        std::process::id()
    ));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&tmp)
        .arg(paths::repo_root().join("tests/c/fake_openssl_version.c"))
        .status()
        .unwrap_or_else(|e| panic!("{cc} runs: {e}"));
    assert!(status.success(), "{cc} failed to build the shim");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// A plain-HTTP server whose `/` answers what `OpenSSL_version_num()` returns inside
/// nginx now (hex), i.e. after start-up, through LuaJIT's FFI.
fn openssl_version_http(p: &Ports) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{};
        location / {{
            content_by_lua_block {{
                local ffi = require "ffi"
                pcall(ffi.cdef, "unsigned long OpenSSL_version_num(void);")
                ngx.print(string.format("%x", tonumber(ffi.C.OpenSSL_version_num())))
            }}
        }}
    }}
"#,
        p.get("http")
    )
}

fn running_openssl_version_num(nginx: &Nginx) -> u64 {
    let (status, body) = get_plain(nginx.port("http"), "/");
    assert_eq!(status, 200, "{body}");
    u64::from_str_radix(&body, 16).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

/// An OpenSSL release line the library was not verified on, faked with an LD_PRELOAD
/// shim of `OpenSSL_version_num()`, makes nginx refuse to start: the `require` in
/// `init_by_lua*` raises the module's message and nginx exits. Controls: without the
/// shim nginx starts; with the shim faking a verified line it starts too and the faked
/// number is what nginx's own process answers, which shows the preload reaches nginx
/// (through in-root.sh's chroot as well). nginx keeps its environment while it loads the
/// configuration (`init_by_lua*` runs then), and afterwards only what `env` names.
#[test]
fn nginx_refuses_to_start_on_an_unverified_openssl_line() {
    nginx::check_prerequisites().unwrap_or_else(|e| panic!("{e}"));
    let release = paths::release_dir();
    let shim = fake_openssl_version_shim(&release);
    let shim = shim.to_str().unwrap();
    let keep_env = "env KCT_FAKE_OPENSSL_VERSION_NUM;";

    // No shim: the real line, which the library accepts.
    let nginx = Nginx::start("openssl-real", &["http"], &[], &openssl_version_http);
    let real = running_openssl_version_num(&nginx);
    nginx.finish();
    let (major, minor) = (real >> 28, (real >> 20) & 0xff);
    assert!(
        (major, minor) >= (3, 0),
        "running OpenSSL_version_num {real:x}"
    );

    // The shim, faking the real line with a patch level no release has.
    let fake_verified = format!("{:x}", (real & !0xfffff) | 0xff0);
    let env = [
        ("LD_PRELOAD", shim),
        ("KCT_FAKE_OPENSSL_VERSION_NUM", fake_verified.as_str()),
    ];
    let setup = Setup {
        env: &env,
        main: keep_env,
        ..Setup::default()
    };
    let nginx = Nginx::start_with(
        "openssl-fake-verified",
        &setup,
        &["http"],
        &[],
        &openssl_version_http,
    );
    assert_eq!(
        format!("{:x}", running_openssl_version_num(&nginx)),
        fake_verified,
        "the shim is not what nginx runs (real {real:x})"
    );
    nginx.finish();

    // The same without `env`: init_by_lua* saw the variable (nginx started), but nginx
    // dropped it from its environment afterwards, master_process off or not.
    let setup = Setup { main: "", ..setup };
    let nginx = Nginx::start_with(
        "openssl-fake-no-env",
        &setup,
        &["http"],
        &[],
        &openssl_version_http,
    );
    assert_eq!(running_openssl_version_num(&nginx), 0, "environment kept");
    nginx.finish();

    // OpenSSL 5.0.0: refused at init_by_lua, nginx exits.
    let env = [
        ("LD_PRELOAD", shim),
        ("KCT_FAKE_OPENSSL_VERSION_NUM", "50000000"),
    ];
    let setup = Setup {
        env: &env,
        main: keep_env,
        ..Setup::default()
    };
    let log = match Nginx::try_start_with(
        "openssl-unverified",
        &setup,
        &["http"],
        &[],
        &openssl_version_http,
    ) {
        Ok(nginx) => {
            drop(nginx);
            panic!("nginx started with a faked OpenSSL 5.0.0");
        }
        Err(log) => log,
    };
    assert!(log.contains("(nginx exited: "), "{log}");
    assert!(!log.contains("cannot be preloaded"), "{log}");
    let lib = release.join("libkong_client_tls.so");
    let want = format!(
        "kong_client_tls: refusing to load {} with OpenSSL 5.0.0: the running OpenSSL \
         release line is not verified for kong_client_tls (verified: 3.0, 3.1, 3.2, 3.3, \
         3.4, 3.5, 3.6, 4.0)",
        lib.display()
    );
    assert!(log.contains(&want), "no `{want}` in:\n{log}");
    assert!(log.contains("init_by_lua"), "{log}");
}

/// `ca_certs` of a C type other than a certificate stack raises an error that names the
/// type, in the certificate phase of real nginx, and the handshake goes on: the same
/// call with the stack as a lua-resty-openssl chain object then verifies the client.
#[test]
fn wrong_typed_ca_certs_get_a_clear_error_and_the_connection_goes_on() {
    let mut files = nginx::server_files(server_pki());
    files.push((
        "client-ca.pem",
        pki::pem(&client_pki().root.cert).into_bytes(),
    ));
    let nginx = Nginx::start_with("typed", &Setup::default(), &MTLS_PORTS, &files, &mtls_http);
    let direct = ClientCert::issued_by_root(client_pki(), "client direct");
    for version in VERSIONS {
        let reply = get(&Request::new(nginx.port("typed"), "/", version).cert(Some(&direct)));
        assert_eq!(reply.status, 200, "{version:?}");
        assert_eq!(
            reply.header("X-Verify"),
            "SUCCESS",
            "{version:?}: the chain object"
        );
        assert_eq!(reply.body, direct.chain_pem(), "{version:?}");
    }
    let dump = get(&Request::new(
        nginx.port("typed"),
        "/dump?prefix=types|",
        SslVersion::TLS1_3,
    ));
    let got = clients::parse_results(&dump.body);
    let expected = "ca_certs expects a STACK_OF(X509) * cdata (from ngx.ssl.parse_pem_cert, \
                    or a lua-resty-openssl x509.chain or its ctx) but found ";
    for (case, ctype) in [
        ("x509", "ctype<struct x509_st *>"),
        ("x509_object", "ctype<struct x509_st *>"),
        ("evp_pkey", "ctype<struct evp_pkey_st *>"),
        ("ssl", "ctype<struct ssl_st *>"),
        ("int4", "ctype<int [4]>"),
    ] {
        assert_eq!(
            got[&format!("types|{case}")],
            format!("{expected}{ctype}"),
            "{case}"
        );
    }
    let anonymous = &got["types|struct"];
    assert!(
        anonymous.starts_with(&format!("{expected}ctype<struct ")),
        "{anonymous}"
    );
    assert_eq!(got.len(), 6, "{got:?}");
    nginx.finish();
}

/// With `lua_code_cache off`, lua-nginx-module gives each request and each SSL phase a
/// Lua VM of its own and closes it afterwards, and LuaJIT dlclose()s the library with it,
/// while the connection still carries the library's state and callbacks. The library
/// stays mapped (`-z nodelete`), so keep-alive connections serve request after request
/// and are closed without harm.
#[test]
fn connections_outlive_the_lua_vm_with_lua_code_cache_off() {
    let mut files = nginx::server_files(server_pki());
    files.push((
        "client-ca.pem",
        pki::pem(&client_pki().root.cert).into_bytes(),
    ));
    let http = |p: &Ports| {
        format!(
            r#"
    lua_code_cache off;
    server {{
        {ssl}
        ssl_client_hello_by_lua_block {{
            assert(require("kong_client_tls").disable_http2_alpn())
        }}
        ssl_certificate_by_lua_block {{
            local e2e = require "kct_e2e"
            assert(require("kong_client_tls").request_client_certificate(e2e.ca("client-ca")))
        }}
        location / {{ content_by_lua_block {{ require("kct_e2e").report() }} }}
    }}
"#,
            ssl = ssl_server(p.get("tls")).replace(
                &format!("listen 127.0.0.1:{} ssl;", p.get("tls")),
                &nginx::listen_http2(p.get("tls")),
            ),
        )
    };
    let nginx = Nginx::start_with("nocache", &Setup::default(), &["tls"], &files, &http);
    let direct = ClientCert::issued_by_root(client_pki(), "client direct");
    let dir = &nginx.dir;
    std::fs::write(dir.join("client.pem"), direct.chain_pem()).unwrap();
    std::fs::write(dir.join("client.key"), pki::key_pem(&direct.key)).unwrap();
    let url = format!("https://127.0.0.1:{}/", nginx.port("tls"));
    for flag in ["--tlsv1.2", "--tlsv1.3"] {
        for connection in 0..3 {
            let mut args: Vec<String> = [
                "-sS",
                "-k",
                flag,
                "--http2",
                "--cert",
                "",
                "--key",
                "",
                "-w",
                "|%{http_version} %{num_connects} %{http_code}|",
            ]
            .map(String::from)
            .to_vec();
            args[5] = dir.join("client.pem").display().to_string();
            args[7] = dir.join("client.key").display().to_string();
            // Five requests on one keep-alive connection.
            args.extend(std::iter::repeat(url.clone()).take(5));
            let (out, _) = clients::curl(&args);
            let parts: Vec<&str> = out.split('|').collect();
            let ctx = format!("{flag} connection {connection}");
            for request in 0..5 {
                assert_eq!(
                    parts[request * 2],
                    direct.chain_pem(),
                    "{ctx} request {request}"
                );
                let connects = if request == 0 { 1 } else { 0 };
                // h2 refused by the library: HTTP/1.1 on every request of the connection.
                assert_eq!(
                    parts[request * 2 + 1],
                    format!("1.1 {connects} 200"),
                    "{ctx}"
                );
            }
        }
    }
    nginx.finish_expecting(&["lua_code_cache is off"]);
}

// The harness ---------------------------------------------------------------------------

/// nginx started under a wrapper command (as the benches run it under callgrind) is the
/// nginx the harness waits for, names and stops: here `env KCT_WRAPPED=1`, which execs
/// nginx with that variable (which nginx then reports). As one process and as a master
/// with a worker, the library loads, mutual-TLS handshakes work, and the process the
/// harness holds is nginx itself.
#[test]
fn nginx_runs_under_a_wrapper_command() {
    let mut files = nginx::server_files(server_pki());
    files.push((
        "client-ca.pem",
        pki::pem(&client_pki().root.cert).into_bytes(),
    ));
    let leaf = ClientCert::leaf(client_pki());
    let ports: Vec<&str> = MTLS_PORTS.iter().copied().chain(["env"]).collect();
    let http = |p: &Ports| {
        format!(
            r#"{}
    server {{
        listen 127.0.0.1:{};
        location / {{ content_by_lua_block {{ ngx.print(os.getenv("KCT_WRAPPED")) }} }}
    }}
"#,
            mtls_http(p),
            p.get("env")
        )
    };
    for main in [
        "env KCT_WRAPPED;",
        "env KCT_WRAPPED;\nmaster_process on;\nworker_processes 1;",
    ] {
        let setup = Setup {
            wrapper: &["env", "KCT_WRAPPED=1"],
            main,
            ..Setup::default()
        };
        let nginx = Nginx::start_with("wrapped", &setup, &ports, &files, &http);
        assert_eq!(
            get_plain(nginx.port("env"), "/"),
            (200, "1".to_string()),
            "{main:?}: the wrapper's variable"
        );
        for version in VERSIONS {
            let ctx = format!("{} {main:?}", clients::tls_label(version));
            let reply = get(&Request::new(nginx.port("ours_ca"), "/", version).cert(Some(&leaf)));
            assert_eq!(reply.status, 200, "{ctx}");
            assert_eq!(
                reply.header("X-Protocol"),
                clients::tls_label(version),
                "{ctx}"
            );
            assert_eq!(reply.body, leaf.chain_pem(), "{ctx}");
        }
        let exe = std::fs::read_link(format!("/proc/{}/exe", nginx.pid())).unwrap();
        assert!(
            exe.ends_with(nginx::NGINX.trim_start_matches('/')),
            "{main:?}: {exe:?}"
        );
        let workers = nginx.workers();
        if !main.contains("master_process on") {
            assert_eq!(workers, vec![nginx.pid()], "one process");
        } else {
            assert_eq!(workers, vec![nginx.worker()], "one worker");
            assert_ne!(nginx.worker(), nginx.pid(), "the worker is not the master");
        }
        for pid in workers {
            assert!(process::usage(pid).rss_kb > 0, "{main:?}: RSS of {pid}");
        }
        nginx.finish();
    }
}

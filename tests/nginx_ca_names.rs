//! End to end: a CA set whose subject names do not fit a CertificateRequest, in a stock
//! nginx (the host's, or a Debian root's with `KCT_NGINX_ROOT`, see `tests/distro/run.sh`),
//! both forms, TLS 1.2 and 1.3. `request_client_certificate` returns `nil` and an error
//! saying how many bytes the names take and what fits; the handshake then completes
//! without a CertificateRequest (`NONE`), never with an `internal_error` alert and a
//! `[crit]` line. A set just within the limit is sent whole and verifies. The limit
//! itself, against plain OpenSSL: `tests/ca_names.rs`.

mod support;

use openssl::x509::X509;
use support::clients::{get, ClientCert, Request};
use support::memtls::VERSIONS;
use support::nginx::{self, Nginx, Ports, Setup};
use support::pki::{self, ca_names_bytes, KeyKind, Pki, CA_NAMES_LIMIT as LIMIT};

const PORTS: [&str; 2] = ["hello", "cert"];

fn client_pki() -> &'static Pki {
    Pki::get("client", KeyKind::EcdsaP256)
}

/// The client's root, then long-named CAs while their names take at most `fits` bytes.
fn set_within(fits: usize) -> Vec<X509> {
    pki::ca_set_within(&client_pki().root.cert, fits)
}

fn pem_of(set: &[X509]) -> Vec<u8> {
    set.iter().map(pki::pem).collect::<String>().into_bytes()
}

/// The same handler in both forms: the CA set is the file the SNI name says.
fn handler(form: &str) -> String {
    let name = match form {
        "hello" => r#"require("ngx.ssl.clienthello").get_client_hello_server_name()"#,
        _ => r#"require("ngx.ssl").server_name()"#,
    };
    format!(
        r#"local name = {name}
            local ok, err = require("kong_client_tls").request_client_certificate(SETS[name])
            ngx.log(ngx.WARN, "kct-ca-names {form} ", name, ": ", tostring(ok), " ", tostring(err))"#
    )
}

fn http(p: &Ports) -> String {
    let server = |port: &str, directive: &str| {
        format!(
            r#"
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate     server.pem;
        ssl_certificate_key server.key;
        ssl_session_tickets off;
        {directive} {{
            {handler}
        }}
        location / {{ return 200 "verify=$ssl_client_verify\n"; }}
    }}"#,
            port = p.get(port),
            handler = handler(port),
        )
    };
    server("hello", "ssl_client_hello_by_lua_block")
        + &server("cert", "ssl_certificate_by_lua_block")
}

#[test]
fn a_ca_set_too_large_to_name_is_refused_with_its_size_and_the_handshake_goes_on() {
    let (fits, over) = (set_within(LIMIT), set_within(LIMIT + 300));
    let took = ca_names_bytes(&over);
    let mut files = nginx::server_files(Pki::get("server", KeyKind::EcdsaP256));
    files.push(("fits.pem", pem_of(&fits)));
    files.push(("over.pem", pem_of(&over)));
    let dir = nginx::temp_dir("ca-names");
    let init = format!(
        r#"        require "kong_client_tls"
        local function load(file)
            local f = assert(io.open("{dir}/" .. file))
            local stack = assert(require("ngx.ssl").parse_pem_cert(f:read("*a")))
            f:close()
            return stack
        end
        SETS = {{ ["fits.test"] = load("fits.pem"), ["over.test"] = load("over.pem") }}"#,
        dir = dir.display()
    );
    let setup = Setup {
        init_lua: Some(&init),
        ..Setup::default()
    };
    let nginx = Nginx::start_with("ca-names", &setup, &PORTS, &files, &http);
    let client = ClientCert::issued_by_root(client_pki(), "client direct");
    for port in PORTS {
        for version in VERSIONS {
            let what = format!("{port} {version:?}");
            let req = |sni| Request::new(nginx.port(port), "/", version).sni(sni);
            let reply = get(&req("fits.test").cert(Some(&client)));
            assert_eq!(reply.body, "verify=SUCCESS\n", "{what}: the set that fits");
            assert_eq!(reply.ca_names.len(), fits.len(), "{what}: every name sent");
            let reply = get(&req("over.test").cert(Some(&client)));
            assert_eq!(reply.body, "verify=NONE\n", "{what}: no certificate asked");
            assert!(reply.ca_names.is_empty(), "{what}: no CertificateRequest");
        }
    }
    let log = nginx.settled_error_log();
    let refused = format!(
        "nil ca_certs' subject names do not fit a CertificateRequest (nothing was changed): \
         they take {took} bytes, at most {LIMIT} fit"
    );
    for port in PORTS {
        let lines = |name: &str, tail: &str| {
            log.lines()
                .filter(|l| l.contains(&format!("kct-ca-names {port} {name}: {tail}")))
                .count()
        };
        assert_eq!(
            lines("over.test", &refused),
            2,
            "{port}: refused, said why:\n{log}"
        );
        assert_eq!(
            lines("fits.test", "true nil"),
            2,
            "{port}: accepted:\n{log}"
        );
    }
    nginx.finish();
}

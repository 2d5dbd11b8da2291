//! Groups 1, 2, 4, 5 and 6 of `make bench` (issue 5), in one process, no sockets:
//! 1. the cost of each of our calls made from the certificate / client hello callback,
//!    as the ratio of whole in-memory handshakes with and without it;
//! 2. chain retrieval: our first and repeated calls against the algorithm of
//!    lua-kong-nginx-module (re-implemented here) and against a bare memcpy;
//! 4. what `disable_http2_alpn` costs a TLS 1.3 resumption that offers `h2` (it becomes
//!    a full handshake, see docs/alpn.md);
//! 5. what the client hello form of `request_client_certificate` saves a mutual-TLS client
//!    that reconnects with its session (issue 12): resumption rate and CPU per connection
//!    against the certificate form, Kong's `disable_session_reuse` pairing and plain
//!    resumption; and what the call itself costs in each form;
//! 6. server CPU per full mutual-TLS handshake against the CA set size (issue 18):
//!    `request_client_certificate` with 1 to 1000 CAs, in both forms, against the same CAs
//!    on the context (nginx's `ssl_verify_client optional_no_ca`).
//!
//! `cargo bench --bench calls` writes `target/bench/group1.md`, `group2.md`, … (see
//! `KCT_BENCH_DIR`), and prints the ratios. Run without `--bench` (as `cargo test
//! --all-targets` does), it only checks that every measured path works.

#[path = "support/goal.rs"]
mod goal;
#[path = "support/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use std::ffi::{c_char, c_void};
use std::hint::black_box;
use std::time::Instant;

use foreign_types::ForeignTypeRef;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSession, SslSessionCacheMode,
    SslStream, SslVerifyMode, SslVersion,
};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Name, X509};
use openssl_sys::{stack_st_X509, SSL};

use goal::{Comparison, Goal};
use kong_client_tls::kong_client_tls_disable_http2_alpn;
use kong_client_tls::kong_client_tls_disable_session_reuse;
use kong_client_tls::kong_client_tls_request_client_certificate;
use kong_client_tls::{
    kong_client_tls_get0_full_client_certificate_chain,
    kong_client_tls_get_full_client_certificate_chain,
};
use stats::{fmt_us, median, scaled, Interleaved, Paired, Table};
use support::memtls::{
    client_context_presenting, client_ssl, handshake, handshake_resuming, paused_in_callback, pipe,
    set_cert_hook, set_client_hello_hook, set_pause, step_handshake, Pause, RawHook, Reconnecting,
};
use support::pki::{self, KeyKind, Pki};
use support::sys;

/// `println!` in bench mode only: a smoke run's single samples prove nothing.
macro_rules! say {
    ($($t:tt)*) => {
        if stats::bench_mode() {
            println!($($t)*);
        }
    };
}

const KINDS: [KeyKind; 2] = [KeyKind::EcdsaP256, KeyKind::Rsa2048];
const VERSIONS: [(SslVersion, &str); 2] = [
    (SslVersion::TLS1_3, "TLS 1.3"),
    (SslVersion::TLS1_2, "TLS 1.2"),
];

struct Keys {
    kind: KeyKind,
    server: Pki,
    client: Pki,
}

fn server_builder(keys: &Keys, version: SslVersion) -> SslContextBuilder {
    let mut ctx = SslContext::builder(SslMethod::tls_server()).unwrap();
    ctx.set_certificate(&keys.server.direct_leaf.cert).unwrap();
    ctx.set_private_key(&keys.server.direct_leaf.key).unwrap();
    ctx.set_min_proto_version(Some(version)).unwrap();
    ctx.set_max_proto_version(Some(version)).unwrap();
    ctx.set_session_id_context(b"kong-client-tls-bench")
        .unwrap();
    ctx
}

/// A server context whose certificate callback runs `hook` (empty when `None`).
fn server_ctx(
    ctx: SslContextBuilder,
    cert_hook: Option<RawHook>,
    hello_hook: Option<RawHook>,
    arg: *mut c_void,
) -> SslContext {
    let ctx = ctx;
    set_cert_hook(ctx.as_ptr(), cert_hook, arg);
    set_client_hello_hook(ctx.as_ptr(), hello_hook, arg);
    ctx.build()
}

/// nginx's `ssl_verify_client optional_no_ca` + `ssl_client_certificate ca.pem`, with
/// `ssl_verify_depth 0` as Kong's `verify_client(ca, 0)`: all static, on the context
/// (the store and the CA list of `cas` built once, here).
fn static_optional_no_ca(mut ctx: SslContextBuilder, cas: &[&X509]) -> SslContextBuilder {
    ctx.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    ctx.set_verify_depth(0);
    let mut names = Stack::<X509Name>::new().unwrap();
    let mut store = X509StoreBuilder::new().unwrap();
    for ca in cas {
        names.push(ca.subject_name().to_owned().unwrap()).unwrap();
        store.add_cert((*ca).clone()).unwrap();
    }
    ctx.set_client_ca_list(names);
    ctx.set_cert_store(store.build());
    ctx
}

fn client_ctx(
    version: SslVersion,
    identity: Option<&pki::Identity>,
    chain: &[&X509],
) -> SslContext {
    client_context_presenting(version, identity, chain).build()
}

/// `certs` as the `STACK_OF(X509)` a hook gets: parsed once, as the Lua module's caller
/// does with `ngx.ssl.parse_pem_cert`; leaked, as contexts live for the whole process.
fn ca_stack(certs: &[&X509]) -> *mut c_void {
    let mut stack = Stack::<X509>::new().unwrap();
    for c in certs {
        stack.push((*c).clone()).unwrap();
    }
    let stack: &'static Stack<X509> = Box::leak(Box::new(stack));
    stack.as_ptr() as *mut c_void
}

// The hooks: each is one of our calls, exactly as the Lua module makes it.

unsafe fn hook_request_client_certificate(ssl: *mut SSL, ca: *mut c_void) {
    let mut err: *const c_char = std::ptr::null();
    let rc = kong_client_tls_request_client_certificate(ssl, ca as *const stack_st_X509, &mut err);
    assert_eq!(rc, 0);
}

unsafe fn hook_disable_http2_alpn(ssl: *mut SSL, _arg: *mut c_void) {
    let mut err: *const c_char = std::ptr::null();
    assert_eq!(kong_client_tls_disable_http2_alpn(ssl, &mut err), 0);
}

/// A client for exactly `version` that offers h2, then http/1.1.
fn alpn_client(version: SslVersion) -> SslContext {
    let mut ctx = client_context_presenting(version, None, &[]);
    ctx.set_alpn_protos(b"\x02h2\x08http/1.1").unwrap();
    ctx.build()
}

/// A server that negotiates ALPN like nginx with `http2`: server preference h2, then
/// http/1.1; no overlap is a fatal alert.
fn with_alpn(mut ctx: SslContextBuilder) -> SslContextBuilder {
    ctx.set_alpn_select_callback(|_, client| {
        openssl::ssl::select_next_proto(b"\x02h2\x08http/1.1", client)
            .ok_or(openssl::ssl::AlpnError::ALERT_FATAL)
    });
    ctx
}

unsafe fn hook_disable_session_reuse(ssl: *mut SSL, _arg: *mut c_void) {
    let mut err: *const c_char = std::ptr::null();
    assert_eq!(kong_client_tls_disable_session_reuse(ssl, &mut err), 0);
}

struct Row {
    setup: String,
    call: &'static str,
    baseline: &'static str,
    paired: Paired,
}

/// A server configuration measured in group 1 (and under callgrind).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    StaticOptionalNoCa,
    RequestClientCertificate,
    Plain,
    DisableSessionReuse,
    StaticNoResumption,
    AlpnEmptyHello,
    DisableHttp2Alpn,
}

const MODES: [(Mode, &str); 7] = [
    (Mode::StaticOptionalNoCa, "static_optional_no_ca"),
    (Mode::RequestClientCertificate, "request_client_certificate"),
    (Mode::Plain, "plain"),
    (Mode::DisableSessionReuse, "disable_session_reuse"),
    (Mode::StaticNoResumption, "static_no_resumption"),
    (Mode::AlpnEmptyHello, "alpn_empty_hello"),
    (Mode::DisableHttp2Alpn, "disable_http2_alpn"),
];

/// (baseline A, call B, call text, baseline text).
const COMPARISONS: [(Mode, Mode, &str, &str); 4] = [
    (
        Mode::StaticOptionalNoCa,
        Mode::RequestClientCertificate,
        "`request_client_certificate(ca)` in the certificate callback",
        "static `optional_no_ca` (verify PEER + accept-all callback, depth 0, CA list and store on the context)",
    ),
    (
        Mode::Plain,
        Mode::DisableSessionReuse,
        "`disable_session_reuse()` in the certificate callback",
        "same handshake without the call (tickets and session cache on)",
    ),
    (
        Mode::StaticNoResumption,
        Mode::DisableSessionReuse,
        "`disable_session_reuse()` in the certificate callback",
        "static equivalent (no tickets, `SSL_OP_NO_TICKET`, session cache off)",
    ),
    (
        Mode::AlpnEmptyHello,
        Mode::DisableHttp2Alpn,
        "`disable_http2_alpn()` in the client hello callback",
        "same handshake, empty client hello callback (client offers h2, http/1.1; h2 negotiated)",
    ),
];

/// The (server, client) contexts of `mode`. The client presents a certificate issued
/// by the CA in the mutual-TLS modes, and offers h2 + http/1.1 in the ALPN modes.
fn mode_contexts(keys: &Keys, version: SslVersion, mode: Mode) -> (SslContext, SslContext) {
    let null = std::ptr::null_mut();
    let ca = &keys.client.root.cert;
    let mtls_client = || client_ctx(version, Some(&keys.client.direct_leaf), &[]);
    let plain_client = || client_ctx(version, None, &[]);
    let base = || server_builder(keys, version);
    match mode {
        Mode::StaticOptionalNoCa => (
            server_ctx(static_optional_no_ca(base(), &[ca]), None, None, null),
            mtls_client(),
        ),
        Mode::RequestClientCertificate => (
            server_ctx(
                base(),
                Some(hook_request_client_certificate),
                None,
                ca_stack(&[ca]),
            ),
            mtls_client(),
        ),
        Mode::Plain => (server_ctx(base(), None, None, null), plain_client()),
        Mode::DisableSessionReuse => (
            server_ctx(base(), Some(hook_disable_session_reuse), None, null),
            plain_client(),
        ),
        Mode::StaticNoResumption => {
            let mut st = base();
            st.set_num_tickets(0).unwrap();
            st.set_options(SslOptions::NO_TICKET);
            st.set_session_cache_mode(SslSessionCacheMode::OFF);
            (server_ctx(st, None, None, null), plain_client())
        }
        Mode::AlpnEmptyHello => (
            server_ctx(with_alpn(base()), None, None, null),
            alpn_client(version),
        ),
        Mode::DisableHttp2Alpn => (
            server_ctx(with_alpn(base()), None, Some(hook_disable_http2_alpn), null),
            alpn_client(version),
        ),
    }
}

/// Checks that `mode` does what it should on one handshake.
fn check_mode(mode: Mode, server: &SslContext, client: &SslContext) {
    let c = handshake(server, client);
    let s = c.server.ssl();
    match mode {
        Mode::StaticOptionalNoCa | Mode::RequestClientCertificate => {
            assert!(s.peer_certificate().is_some());
            assert_eq!(s.verify_result().as_raw(), 0);
        }
        Mode::AlpnEmptyHello => {
            assert_eq!(c.client.ssl().selected_alpn_protocol(), Some(&b"h2"[..]))
        }
        Mode::DisableHttp2Alpn => assert_eq!(
            c.client.ssl().selected_alpn_protocol(),
            Some(&b"http/1.1"[..])
        ),
        _ => {}
    }
}

/// Group 1, measure: every comparison in every setup (TLS version × server key type).
fn measure_handshakes(bench: bool, all_keys: &[Keys]) -> Vec<Row> {
    let samples = if bench { scaled(41) } else { 1 };
    let target_ms = if bench {
        50.0 * stats::scale().min(1.0)
    } else {
        1.0
    };
    let mut rows: Vec<Row> = vec![];
    for (version, vname) in VERSIONS {
        for keys in all_keys {
            let setup = format!("{vname}, {}", keys.kind.label());
            for (ma, mb, call, baseline) in COMPARISONS {
                let (a, client) = mode_contexts(keys, version, ma);
                let (b, _) = mode_contexts(keys, version, mb);
                check_mode(ma, &a, &client);
                check_mode(mb, &b, &client);
                rows.push(Row {
                    setup: setup.clone(),
                    call,
                    baseline,
                    paired: measure(samples, target_ms, &a, &b, &client),
                });
            }
        }
    }
    rows
}

/// Group 1's goal, in time and in instructions: a handshake with the call (B) costs at
/// most 1 % more than the baseline's (A).
fn handshake_goal(setup: &str, call: &str, ratio: f64) -> Goal {
    Goal::new(format!("{setup}: {call}"), ratio, Comparison::AtMost, 1.01).shown(4, "")
}

/// The summary goal of one goal measured in several setups: the worst (lowest for an
/// "at least" goal), named by its setup, then every setup's value when `all`.
fn worst_of(label: String, setups: &[(&str, &Goal)], digits: usize, all: bool) -> Goal {
    let w = Goal::worst(setups.iter().map(|s| s.1)).unwrap();
    let setup = setups.iter().find(|s| std::ptr::eq(s.1, w)).unwrap().0;
    let word = if w.comparison == Comparison::AtLeast {
        "lowest"
    } else {
        "worst"
    };
    let mut text = format!("{word} {:.*} ({setup})", digits, w.value);
    if all {
        let list: Vec<String> = setups.iter().map(|s| format!("{:.3}", s.1.value)).collect();
        text.push_str(&format!("; all setups: {}", list.join(", ")));
    }
    let mut goal = Goal::new(label, w.value, w.comparison, w.target).described(text);
    goal.target_digits = w.target_digits;
    goal
}

/// Group 1's summary goals: per (call, baseline), the worst of the four setups. `rows`
/// are (setup, call, baseline, goal); `measured` names the measure in the label.
fn comparison_summary(
    rows: &[(&str, &str, &str, Goal)],
    measured: &str,
    digits: usize,
    all: bool,
) -> Vec<Goal> {
    let mut goals = vec![];
    for (_, _, call, baseline) in COMPARISONS {
        let setups: Vec<(&str, &Goal)> = rows
            .iter()
            .filter(|r| r.1 == call && r.2 == baseline)
            .map(|r| (r.0, &r.3))
            .collect();
        if !setups.is_empty() {
            let label = format!("{call} vs {baseline} ({measured})");
            goals.push(worst_of(label, &setups, digits, all));
        }
    }
    goals
}

/// The cells of an A/B measurement: A median, B median (each formatted by `per_run`),
/// the median of the B/A ratios with `digits` decimals, and their spread.
fn paired_cells(p: &Paired, per_run: &dyn Fn(f64) -> String, digits: usize) -> [String; 4] {
    [
        per_run(median(&p.a)),
        per_run(median(&p.b)),
        format!("{:.*}", digits, p.ratio()),
        p.ratio_spread(),
    ]
}

/// Group 1, report: the table of every setup's comparisons.
fn group1_table(rows: &[Row], goals: &[Goal]) -> String {
    let mut table = Table::new(&[
        "setup",
        "call (B)",
        "baseline (A)",
        "A median",
        "B median",
        "B/A ratio (median)",
        "ratio p25–p75",
        "wall-clock ratio",
        "goal ≤ 1.01",
    ]);
    for (r, g) in rows.iter().zip(goals) {
        let [a, b, ratio, spread] = paired_cells(&r.paired, &fmt_us, 4);
        table.row(&[
            r.setup.clone(),
            r.call.to_string(),
            r.baseline.to_string(),
            a,
            b,
            ratio,
            spread,
            format!("{:.4}", r.paired.wall_ratio()),
            g.verdict(),
        ]);
    }
    table.text
}

fn group1(bench: bool, all_keys: &[Keys], out: &mut String, summary: &mut Vec<String>) -> bool {
    // The libssl actually loaded: `make bench` runs this binary again with another
    // OpenSSL line's libssl.so.3 first on LD_LIBRARY_PATH.
    let running = openssl::version::version();
    say!("group 1 on {running}: handshake with call / without (CPU time, median of paired ratios)");
    let rows = measure_handshakes(bench, all_keys);
    let goals: Vec<Goal> = rows
        .iter()
        .map(|r| handshake_goal(&r.setup, r.call, r.paired.ratio()))
        .collect();
    for (r, g) in rows.iter().zip(&goals) {
        say!(
            "  {:<22} {:<60} ratio {:.4}  (p25–p75 {})  {}",
            r.setup,
            r.call,
            g.value,
            r.paired.ratio_spread(),
            g.console_verdict()
        );
    }
    out.push_str(&format!(
        "Measured on {running} (the libssl loaded at run time).\n\n"
    ));
    out.push_str(&group1_table(&rows, &goals));
    let judged: Vec<(&str, &str, &str, Goal)> = rows
        .iter()
        .zip(goals.iter().cloned())
        .map(|(r, g)| (r.setup.as_str(), r.call, r.baseline, g))
        .collect();
    let worst = comparison_summary(&judged, "handshake CPU time, B/A", 3, true);
    summary.extend(worst.iter().map(|g| g.summary_row("1")));
    goals.iter().all(Goal::met)
}

/// Interleaved batches of handshakes against server contexts `a` and `b`.
fn measure(
    samples: usize,
    target_ms: f64,
    a: &SslContext,
    b: &SslContext,
    client: &SslContext,
) -> Paired {
    let mut run_a = || {
        black_box(handshake(a, client));
    };
    let mut run_b = || {
        black_box(handshake(b, client));
    };
    let per_sample = stats::calibrate(target_ms, &mut run_a);
    Paired::run_alternating(samples, per_sample, &mut run_a, &mut run_b)
}

// Group 2 ------------------------------------------------------------------------------

/// lua-kong-nginx-module's `get_full_client_certificate_chain`, for comparison only: on
/// every call a fresh memory BIO, `PEM_write_bio_X509` of the leaf and of each
/// certificate of the peer chain, then the BIO's bytes copied out into `buf`.
unsafe fn anchor_chain(ssl: *mut SSL, buf: &mut [u8]) -> usize {
    use openssl_sys::*;
    let cert = SSL_get1_peer_certificate(ssl);
    assert!(!cert.is_null());
    let bio = BIO_new(BIO_s_mem());
    assert!(!bio.is_null());
    assert_eq!(PEM_write_bio_X509(bio, cert), 1);
    X509_free(cert);
    let chain = SSL_get_peer_cert_chain(ssl) as *const OPENSSL_STACK;
    for i in 0..OPENSSL_sk_num(chain) {
        let c = OPENSSL_sk_value(chain, i) as *mut X509;
        assert_eq!(PEM_write_bio_X509(bio, c), 1);
    }
    let pending = BIO_ctrl(bio, sys::BIO_CTRL_PENDING, 0, std::ptr::null_mut()) as usize;
    assert!(pending <= buf.len());
    let n = BIO_read(bio, buf.as_mut_ptr().cast(), pending as c_int);
    sys::BIO_free(bio);
    n as usize
}

/// One way of getting the chain into `buf`; returns the PEM length.
type ChainFn = unsafe fn(*mut SSL, &mut [u8]) -> usize;

/// Our copying call, as a C caller makes it.
unsafe fn ours_chain(ssl: *mut SSL, buf: &mut [u8]) -> usize {
    let mut len = buf.len();
    let rc = kong_client_tls_get_full_client_certificate_chain(
        ssl,
        buf.as_mut_ptr().cast(),
        &mut len,
        std::ptr::null_mut(),
    );
    assert_eq!(rc, 0);
    len
}

/// Our zero-copy call plus one copy out, as the Lua module makes it (get0 + ffi.string).
unsafe fn ours_get0_copy(ssl: *mut SSL, buf: &mut [u8]) -> usize {
    let mut pem: *const c_char = std::ptr::null();
    let mut len = 0usize;
    let rc = kong_client_tls_get0_full_client_certificate_chain(
        ssl,
        &mut pem,
        &mut len,
        std::ptr::null_mut(),
    );
    assert_eq!(rc, 0);
    std::ptr::copy_nonoverlapping(pem.cast::<u8>(), buf.as_mut_ptr(), len);
    len
}

/// Group 2's measurements for one key type (CPU ns per call).
struct ChainRun {
    label: String,
    pem_len: usize,
    conns: usize,
    first_anchor: Vec<f64>,
    first_ours: Vec<f64>,
    anchor: Vec<f64>,
    ours: Vec<f64>,
    get0: Vec<f64>,
    memcpy: Vec<f64>,
}

/// First calls on fresh connections: each connection gets exactly one of the two calls
/// (alternating), so both meet the same cold caches right after the handshake. Checks
/// that both produce the same PEM. Returns (anchor times, our times, PEM length).
fn first_calls(
    server: &SslContext,
    client: &SslContext,
    conns: usize,
    buf: &mut [u8],
) -> (Vec<f64>, Vec<f64>, usize) {
    let (mut first_anchor, mut first_ours) = (vec![], vec![]);
    let mut pem_len = 0;
    let mut reference: Option<Vec<u8>> = None;
    for i in 0..conns * 2 {
        let conn = handshake(server, client);
        let ssl = conn.server.ssl().as_ptr();
        let (f, into): (ChainFn, &mut Vec<f64>) = if i % 2 == 0 {
            (anchor_chain, &mut first_anchor)
        } else {
            (ours_chain, &mut first_ours)
        };
        let t = Instant::now();
        // SAFETY: live server SSL after a handshake with a client certificate.
        let n = unsafe { f(ssl, buf) };
        into.push(t.elapsed().as_nanos() as f64);
        match &reference {
            None => reference = Some(buf[..n].to_vec()),
            Some(r) => assert_eq!(&r[..], &buf[..n], "our PEM differs from the anchor's"),
        }
        pem_len = n;
    }
    (first_anchor, first_ours, pem_len)
}

/// Repeated calls on one connection, interleaved batches: (anchor, ours, get0, memcpy).
fn repeated_calls(bench: bool, samples: usize, ssl: *mut SSL, pem_len: usize) -> [Vec<f64>; 4] {
    let mut buf = vec![0u8; 64 * 1024];
    let mut buf2 = vec![0u8; 64 * 1024];
    // SAFETY: live server SSL after a handshake with a client certificate.
    unsafe { ours_chain(ssl, &mut buf) };
    let src = buf[..pem_len].to_vec();
    let mut anchor = || {
        // SAFETY: as above.
        black_box(unsafe { anchor_chain(ssl, black_box(&mut buf)) });
    };
    let anchor_batch = if bench {
        stats::calibrate(20.0, &mut anchor)
    } else {
        1
    };
    let fast_batch = anchor_batch * 50;
    let mut t: [Vec<f64>; 4] = Default::default();
    for _ in 0..samples {
        t[0].push(stats::time_batch(anchor_batch, &mut anchor).0);
        let mut ours = || {
            // SAFETY: as above.
            black_box(unsafe { ours_chain(ssl, black_box(&mut buf2)) });
        };
        t[1].push(stats::time_batch(fast_batch, &mut ours).0);
        let mut get0 = || {
            // SAFETY: as above.
            black_box(unsafe { ours_get0_copy(ssl, black_box(&mut buf2)) });
        };
        t[2].push(stats::time_batch(fast_batch, &mut get0).0);
        let mut copy = || {
            let dst = black_box(&mut buf2);
            let s = black_box(&src);
            // SAFETY: `dst` is larger than `s`; distinct buffers.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), dst.as_mut_ptr(), s.len()) };
            black_box(&dst);
        };
        t[3].push(stats::time_batch(fast_batch, &mut copy).0);
    }
    t
}

/// Group 2, measure: first and repeated calls for one key type.
fn measure_chain(bench: bool, keys: &Keys) -> ChainRun {
    let conns = if bench { scaled(300) } else { 3 };
    let samples = if bench { scaled(31) } else { 1 };
    let (server, client) = chain_contexts(keys);
    let mut buf = vec![0u8; 64 * 1024];
    let (first_anchor, first_ours, pem_len) = first_calls(&server, &client, conns, &mut buf);
    let conn = handshake(&server, &client);
    let [anchor, ours, get0, memcpy] =
        repeated_calls(bench, samples, conn.server.ssl().as_ptr(), pem_len);
    ChainRun {
        label: format!("{} leaf + 2 intermediates", keys.kind.label()),
        pem_len,
        conns,
        first_anchor,
        first_ours,
        anchor,
        ours,
        get0,
        memcpy,
    }
}

/// Group 2, judge: the three goals of one key type.
fn chain_goals(r: &ChainRun) -> [Goal; 3] {
    let label = &r.label;
    [
        Goal::new(
            format!("{label}: our first call / anchor algorithm"),
            median(&r.first_ours) / median(&r.first_anchor),
            Comparison::AtMost,
            1.0,
        ),
        Goal::new(
            format!("{label}: anchor algorithm / our repeated call"),
            median(&r.anchor) / median(&r.ours),
            Comparison::AtLeast,
            20.0,
        )
        .shown(1, "×"),
        Goal::new(
            format!("{label}: our repeated call / memcpy of the same bytes"),
            median(&r.ours) / median(&r.memcpy),
            Comparison::AtMost,
            3.0,
        )
        .shown(2, "×"),
    ]
}

/// Group 2, report: the table rows of one key type.
fn chain_rows(table: &mut Table, r: &ChainRun, g: &[Goal; 3]) {
    let get0_vs_memcpy = median(&r.get0) / median(&r.memcpy);
    let (first_r, rep_speedup, rep_vs_memcpy) = (g[0].value, g[1].value, g[2].value);
    let conns = r.conns;
    let rows: [(&str, &[f64], String, String); 6] = [
        ("anchor algorithm, fresh connection (per call)", &r.first_anchor, String::new(), String::new()),
        (
            "our first call, fresh connection (encodes and caches)",
            &r.first_ours,
            format!("{first_r:.3} × anchor (ratio of medians, {conns} connections each)"),
            format!("≤ 1.0: {}", stats::verdict(g[0].met())),
        ),
        ("anchor algorithm, same connection again", &r.anchor, String::new(), String::new()),
        (
            "our repeated call (`get_full_client_certificate_chain`, copies into the caller's buffer)",
            &r.ours,
            format!("{rep_speedup:.1}× faster than anchor; {rep_vs_memcpy:.2} × memcpy"),
            format!(
                "≥ 20×: {}; ≤ 3 × memcpy: {}",
                stats::verdict(g[1].met()),
                stats::verdict(g[2].met())
            ),
        ),
        (
            "our repeated call, Lua module's path (`get0` + one copy)",
            &r.get0,
            format!(
                "{:.1}× faster than anchor; {get0_vs_memcpy:.2} × memcpy",
                median(&r.anchor) / median(&r.get0)
            ),
            "(information)".to_string(),
        ),
        ("memcpy of the same bytes (floor)", &r.memcpy, String::new(), String::new()),
    ];
    for (what, v, ratio, goal) in rows {
        table.row(&[
            r.label.clone(),
            r.pem_len.to_string(),
            what.to_string(),
            fmt_us(median(v)),
            stats::iqr(v, &|x| fmt_us(x)),
            ratio,
            goal,
        ]);
    }
}

fn group2(bench: bool, all_keys: &[Keys], out: &mut String, summary: &mut Vec<String>) -> bool {
    let mut table = Table::new(&[
        "client chain",
        "PEM bytes",
        "measurement",
        "median",
        "p25–p75",
        "ratio",
        "goal",
    ]);
    let mut all_met = true;
    say!("group 2: chain retrieval, leaf + 2 intermediates");
    for keys in all_keys {
        let run = measure_chain(bench, keys);
        let goals = chain_goals(&run);
        all_met &= goals.iter().all(Goal::met);
        say!(
            "  {}: first call / anchor {:.3} ({}); anchor / repeated {:.1}x ({}); repeated / memcpy {:.2} ({}); get0+copy / memcpy {:.2}",
            run.label,
            goals[0].value,
            goals[0].console_verdict(),
            goals[1].value,
            goals[1].console_verdict(),
            goals[2].value,
            goals[2].console_verdict(),
            median(&run.get0) / median(&run.memcpy),
        );
        summary.extend(goals.iter().map(|g| g.summary_row("2")));
        chain_rows(&mut table, &run, &goals);
    }
    out.push_str(&table.text);
    all_met
}

/// The handshakes callgrind counts (`--toggle-collect=*kct_measured_handshakes*`).
#[inline(never)]
fn kct_measured_handshakes(server: &SslContext, client: &SslContext, n: usize) {
    for _ in 0..n {
        black_box(handshake(server, client));
    }
}

const INSTR_HANDSHAKES: usize = 10;

/// Group 2 under callgrind: the first call on fresh connections.
const CHAIN_MODES: [(&str, ChainFn); 2] =
    [("chain_anchor", anchor_chain), ("chain_ours", ours_chain)];

#[inline(never)]
fn kct_measured_chain_warmup(f: ChainFn, ssl: *mut SSL, buf: &mut [u8]) {
    // SAFETY: as in kct_measured_chain.
    black_box(unsafe { f(ssl, buf) });
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::EcdsaP256 => "ecdsa",
        KeyKind::Rsa2048 => "rsa",
    }
}

fn version_name(v: SslVersion) -> &'static str {
    if v == SslVersion::TLS1_3 {
        "tls13"
    } else {
        "tls12"
    }
}

/// The chain calls callgrind counts: `f` once on each of `ssls` (fresh connections).
#[inline(never)]
fn kct_measured_chain(f: ChainFn, ssls: &[*mut SSL], buf: &mut [u8]) {
    for &ssl in ssls {
        // SAFETY: live server SSLs after handshakes with a client certificate.
        black_box(unsafe { f(ssl, black_box(&mut *buf)) });
    }
}

/// The group 2 setup: TLS 1.3, the client sends leaf + 2 intermediates.
fn chain_contexts(keys: &Keys) -> (SslContext, SslContext) {
    let version = SslVersion::TLS1_3;
    let server = server_ctx(
        static_optional_no_ca(server_builder(keys, version), &[&keys.client.root.cert]),
        None,
        None,
        std::ptr::null_mut(),
    );
    let client = client_ctx(version, Some(&keys.client.leaf), &keys.client.chain());
    (server, client)
}

/// Child mode: `--instr VERSION KIND MODE N PKI_DIR`, run under callgrind by
/// [`instructions`]: one warm-up handshake, then N counted ones.
fn instr_child(args: &[String]) {
    let version = VERSIONS
        .iter()
        .find(|(v, _)| version_name(*v) == args[0])
        .unwrap()
        .0;
    let kind = *KINDS.iter().find(|k| kind_name(**k) == args[1]).unwrap();
    let n: usize = args[3].parse().unwrap();
    let dir = std::path::Path::new(&args[4]);
    let keys = Keys {
        kind,
        server: Pki::load(dir, &format!("{}-server", kind_name(kind))),
        client: Pki::load(dir, &format!("{}-client", kind_name(kind))),
    };
    if let Some(f) = CHAIN_MODES.iter().find(|(n, _)| *n == args[2]).map(|c| c.1) {
        let (server, client) = chain_contexts(&keys);
        let conns: Vec<_> = (0..n + 1).map(|_| handshake(&server, &client)).collect();
        let ssls: Vec<*mut SSL> = conns.iter().map(|c| c.server.ssl().as_ptr()).collect();
        let mut buf = vec![0u8; 64 * 1024];
        // One warm-up call (first-use initialisation), then one call per connection.
        kct_measured_chain_warmup(f, ssls[0], &mut buf);
        if std::env::var_os("KCT_REPEAT").is_some() {
            // Profiling aid: the repeated call, N times on the warmed-up connection.
            kct_measured_chain(f, &vec![ssls[0]; n], &mut buf);
        } else {
            kct_measured_chain(f, &ssls[1..], &mut buf);
        }
        return;
    }
    let mode = MODES.iter().find(|(_, n)| *n == args[2]).unwrap().0;
    let (server, client) = mode_contexts(&keys, version, mode);
    check_mode(mode, &server, &client);
    kct_measured_handshakes(&server, &client, n);
}

/// One callgrind run: (version, key type, mode) as [`instr_child`] takes them.
type InstrJob = (&'static str, &'static str, &'static str);

/// Every callgrind run: each mode of group 1 in each setup, then group 2's first calls.
fn instr_jobs() -> Vec<InstrJob> {
    let mut jobs = vec![];
    for (version, _) in VERSIONS {
        for kind in KINDS {
            for (_, mode) in MODES {
                jobs.push((version_name(version), kind_name(kind), mode));
            }
        }
    }
    for kind in KINDS {
        for (mode, _) in CHAIN_MODES {
            jobs.push(("tls13", kind_name(kind), mode));
        }
    }
    jobs
}

fn instr_file(dir: &std::path::Path, j: &InstrJob) -> std::path::PathBuf {
    dir.join(format!("{}-{}-{}.out", j.0, j.1, j.2))
}

/// One callgrind run: its output file, the functions it counts (`--toggle-collect`) and
/// the arguments of the child (this binary in one of its `--instr` modes).
struct CallgrindRun {
    out: std::path::PathBuf,
    toggles: &'static [&'static str],
    args: Vec<String>,
}

/// Group 1's and group 2's callgrind runs.
fn group1_runs(dir: &std::path::Path, pki_dir: &std::path::Path) -> Vec<CallgrindRun> {
    instr_jobs()
        .iter()
        .map(|j| CallgrindRun {
            out: instr_file(dir, j),
            toggles: &["*kct_measured_handshakes*", "*kct_measured_chain"],
            args: vec![
                "--instr".into(),
                j.0.into(),
                j.1.into(),
                j.2.into(),
                INSTR_HANDSHAKES.to_string(),
                pki_dir.display().to_string(),
            ],
        })
        .collect()
}

/// Runs every job under callgrind, two at a time; an error when valgrind cannot start.
/// The output of a child that fails is removed, so that its count reads "failed".
fn run_callgrind(runs: &[CallgrindRun]) -> std::io::Result<()> {
    let exe = std::env::current_exe().unwrap();
    let mut running: Vec<(std::process::Child, &std::path::Path)> = vec![];
    let reap = |(mut child, out): (std::process::Child, &std::path::Path)| {
        if !child.wait().unwrap().success() {
            let _ = std::fs::remove_file(out);
        }
    };
    for run in runs {
        if running.len() >= 2 {
            reap(running.remove(0));
        }
        let mut cmd = std::process::Command::new("valgrind");
        cmd.arg("--tool=callgrind");
        for t in run.toggles {
            cmd.arg(format!("--toggle-collect={t}"));
        }
        let child = cmd
            .arg(format!("--callgrind-out-file={}", run.out.display()))
            .arg(&exe)
            .args(&run.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        running.push((child, &run.out));
    }
    for r in running {
        reap(r);
    }
    Ok(())
}

/// Instructions per handshake (or per call) of one job, from its callgrind output.
fn instr_count(dir: &std::path::Path, j: InstrJob) -> Option<f64> {
    instr_per_run(&instr_file(dir, &j))
}

/// The instructions a callgrind output counted, per run of [`INSTR_HANDSHAKES`].
fn instr_per_run(file: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("summary:") || l.starts_with("totals:"))?;
    let total: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(total / INSTR_HANDSHAKES as f64)
}

/// Group 1 in instructions: one comparison in one setup, (A, B) when both runs counted.
struct InstrRow {
    setup: String,
    call: &'static str,
    baseline: &'static str,
    counts: Option<(f64, f64)>,
}

/// Group 1 in instructions, measure (read): every comparison in every setup.
fn instr_rows(dir: &std::path::Path) -> Vec<InstrRow> {
    let name = |m: Mode| MODES.iter().find(|(x, _)| *x == m).unwrap().1;
    let mut rows = vec![];
    for (version, vname) in VERSIONS {
        for kind in KINDS {
            let setup = format!("{vname}, {}", kind.label());
            let (v, k) = (version_name(version), kind_name(kind));
            for (ma, mb, call, baseline) in COMPARISONS {
                let a = instr_count(dir, (v, k, name(ma)));
                let b = instr_count(dir, (v, k, name(mb)));
                let counts = a.zip(b);
                rows.push(InstrRow {
                    setup: setup.clone(),
                    call,
                    baseline,
                    counts,
                });
            }
        }
    }
    rows
}

/// Group 1 in instructions, judge and report: the table, and the worst setup per comparison.
fn instr_handshakes(dir: &std::path::Path, out: &mut String) -> Vec<Goal> {
    let mut table = Table::new(&[
        "setup",
        "call (B)",
        "baseline (A)",
        "A instructions / handshake",
        "B instructions / handshake",
        "B − A",
        "B/A",
        "goal ≤ 1.01",
    ]);
    println!("group 1 (callgrind instructions per handshake, B/A):");
    let mut judged = vec![];
    for r in instr_rows(dir) {
        let mut cells = vec![r.setup.clone(), r.call.to_string(), r.baseline.to_string()];
        let Some((a, b)) = r.counts else {
            cells.extend(["failed", "failed", "", "", ""].map(String::from));
            table.row(&cells);
            continue;
        };
        let goal = handshake_goal(&r.setup, r.call, b / a);
        println!("  {:<22} {:<60} {:.4}", r.setup, r.call, goal.value);
        cells.extend([
            format!("{a:.0}"),
            format!("{b:.0}"),
            format!("{:+.0}", b - a),
            goal.value_text(),
            goal.verdict(),
        ]);
        table.row(&cells);
        judged.push((r.setup, r.call, r.baseline, goal));
    }
    out.push_str(&format!(
        "Instructions executed per handshake (client and server together), counted by \
         `valgrind --tool=callgrind` over {INSTR_HANDSHAKES} handshakes after one warm-up, \
         one process per configuration. Deterministic up to the randomness of the \
         handshake itself (key shares, nonces), i.e. to a few hundredths of a percent.\n\n"
    ));
    out.push_str(&table.text);
    let judged: Vec<(&str, &str, &str, Goal)> = judged
        .iter()
        .map(|(s, c, b, g): &(String, _, _, Goal)| (s.as_str(), *c, *b, g.clone()))
        .collect();
    comparison_summary(
        &judged,
        "callgrind instructions per handshake, B/A",
        4,
        false,
    )
}

/// Group 2 in instructions: our first call against the anchor algorithm's.
fn instr_chain(dir: &std::path::Path, out: &mut String) -> Vec<Goal> {
    let mut chain = Table::new(&[
        "client chain",
        "anchor algorithm: instructions / first call",
        "ours: instructions / first call",
        "ours / anchor",
        "goal ≤ 1.0",
    ]);
    let mut goals = vec![];
    for kind in KINDS {
        let a = instr_count(dir, ("tls13", kind_name(kind), "chain_anchor"));
        let b = instr_count(dir, ("tls13", kind_name(kind), "chain_ours"));
        let Some((a, b)) = a.zip(b) else { continue };
        let label = format!("{} leaf + 2 intermediates", kind.label());
        let goal = Goal::new(
            format!("{label}: our first call / anchor algorithm (callgrind instructions)"),
            b / a,
            Comparison::AtMost,
            1.0,
        )
        .shown(4, "");
        println!(
            "  group 2 first call, {}: ours / anchor {} (instructions)",
            kind.label(),
            goal.value_text()
        );
        chain.row(&[
            label,
            format!("{a:.0}"),
            format!("{b:.0}"),
            goal.value_text(),
            goal.verdict(),
        ]);
        goals.push(goal);
    }
    out.push_str(&format!(
        "\nGroup 2, first call on a fresh connection, counted the same way ({INSTR_HANDSHAKES} \
         connections, one call each, after one warm-up call; handshakes not counted):\n\n{}",
        chain.text
    ));
    goals
}

/// Instructions counted by callgrind in child processes (two at a time): with `g1`, per
/// handshake of every group 1 mode, then the ratios of the group 1 comparisons (and
/// group 2's first calls); with `g6`, group 6's servers at its CA set sizes. Skipped
/// without valgrind.
fn instructions(
    pki_dir: &std::path::Path,
    g1: Option<&mut String>,
    g6: Option<(&[usize], &mut String)>,
    summary: &mut Vec<String>,
) {
    let dir = stats::out_dir().join("callgrind");
    std::fs::create_dir_all(&dir).unwrap();
    let mut runs = vec![];
    if g1.is_some() {
        runs.extend(group1_runs(&dir, pki_dir));
    }
    if let Some((sizes, _)) = &g6 {
        runs.extend(ca_set_runs(&dir, pki_dir, sizes));
    }
    if let Err(e) = run_callgrind(&runs) {
        println!("instructions: valgrind not runnable ({e}); skipped");
        let none = "valgrind was not available: not measured.\n";
        g1.into_iter().for_each(|out| out.push_str(none));
        g6.into_iter().for_each(|(_, out)| out.push_str(none));
        return;
    }
    if let Some(out) = g1 {
        let handshakes = instr_handshakes(&dir, out);
        let chain = instr_chain(&dir, out);
        summary.extend(chain.iter().map(|g| g.summary_row("2")));
        summary.extend(handshakes.iter().map(|g| g.summary_row("1")));
    }
    if let Some((sizes, out)) = g6 {
        let goals = ca_set_instructions(&dir, sizes, out);
        summary.extend(goals.iter().map(|g| g.summary_row("6")));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--instr") {
        instr_child(&args[i + 1..]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--instr6") {
        instr6_child(&args[i + 1..]);
        return;
    }
    let bench = stats::bench_mode();
    let t0 = Instant::now();
    let all_keys: Vec<Keys> = KINDS
        .iter()
        .map(|&kind| Keys {
            kind,
            server: Pki::with_intermediates("bench server", kind, 2),
            client: Pki::with_intermediates("bench client", kind, 2),
        })
        .collect();

    let pki_dir = stats::out_dir().join("pki");
    for k in all_keys.iter().filter(|_| bench) {
        k.server
            .save(&pki_dir, &format!("{}-server", kind_name(k.kind)));
        k.client
            .save(&pki_dir, &format!("{}-client", kind_name(k.kind)));
    }
    let mut summary = vec![];
    let mut g1 = String::new();
    // KCT_BENCH_SKIP=1,2,4,5,6,instr,instr1 skips parts (for working on one group):
    // groups, all callgrind runs (instr), or group 1 and 2's callgrind runs (instr1;
    // group 6's are skipped with the group).
    let skip = std::env::var("KCT_BENCH_SKIP").unwrap_or_default();
    let skip = |part: &str| skip.split(',').any(|p| p == part);
    let met1 = skip("1") || group1(bench, &all_keys, &mut g1, &mut summary);
    let mut g2 = String::new();
    let met2 = skip("2") || group2(bench, &all_keys, &mut g2, &mut summary);
    let mut g4 = String::new();
    if !skip("4") {
        group4(bench, &all_keys, &mut g4, &mut summary);
    }
    let mut g5 = String::new();
    let met5 = skip("5") || group5(bench, &all_keys, &mut g5, &mut summary);
    let mut g6 = String::new();
    let ca_sets = (!skip("6")).then(|| group6(bench, &all_keys, &pki_dir, &mut g6, &mut summary));
    let met6 = ca_sets.as_ref().map_or(true, |c| c.met);
    if !bench {
        println!("calls bench: smoke run only (run with --bench to measure)");
        return;
    }
    let (mut g1i, mut g6i) = (String::new(), String::new());
    if std::env::var_os("KCT_BENCH_NO_CALLGRIND").is_none() && !skip("instr") {
        let g1 = (!skip("instr1")).then_some(&mut g1i);
        let g6 = ca_sets.as_ref().map(|c| (c.sizes.as_slice(), &mut g6i));
        instructions(&pki_dir, g1, g6, &mut summary);
    }
    let dir = stats::out_dir();
    std::fs::write(dir.join("group1-instr.md"), g1i).unwrap();
    std::fs::write(dir.join("group1.md"), g1).unwrap();
    std::fs::write(dir.join("group2.md"), g2).unwrap();
    std::fs::write(dir.join("group4.md"), g4).unwrap();
    std::fs::write(dir.join("group5.md"), g5).unwrap();
    std::fs::write(dir.join("group6.md"), g6).unwrap();
    std::fs::write(dir.join("group6-instr.md"), g6i).unwrap();
    std::fs::write(dir.join("summary-calls.md"), summary.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("calls.status"),
        format!("group1={met1}\ngroup2={met2}\ngroup5={met5}\ngroup6={met6}\n"),
    )
    .unwrap();
    println!("calls bench: {:.0} s", t0.elapsed().as_secs_f64());
}

// Group 4 ------------------------------------------------------------------------------

/// A TLS 1.3 server like nginx with `http2`, whose client hello callback runs `hook`;
/// all such servers share one ticket key, so a ticket from one resumes on another.
fn tls13_alpn_server(keys: &Keys, hook: Option<RawHook>) -> SslContext {
    let ctx = with_alpn(server_builder(keys, SslVersion::TLS1_3));
    let mut ticket_keys = [7u8; 80];
    // SAFETY: live context; OpenSSL copies the 80 key bytes.
    let rc = unsafe {
        sys::SSL_CTX_ctrl(
            ctx.as_ptr(),
            sys::SSL_CTRL_SET_TLSEXT_TICKET_KEYS,
            80,
            ticket_keys.as_mut_ptr().cast(),
        )
    };
    assert_eq!(rc, 1);
    server_ctx(ctx, None, hook, std::ptr::null_mut())
}

/// Group 4's measurements for one key type.
struct AlpnRun {
    kind: KeyKind,
    /// A: the resumption, no call; B: the same offer with the call.
    vs_resumption: Paired,
    /// A: a full handshake, no session offered; B: the same offer with the call.
    vs_full: Paired,
}

/// What each side really does, checked before anything is timed: the server without the
/// call resumes and picks h2, the one with it does a full handshake with http/1.1, and
/// the session stays resumable.
fn check_alpn_offer(
    plain: &SslContext,
    disabled: &SslContext,
    client: &SslContext,
    session: &SslSession,
) {
    let resumed = handshake_resuming(plain, client, Some(session));
    assert!(resumed.server.ssl().session_reused());
    assert_eq!(
        resumed.server.ssl().selected_alpn_protocol(),
        Some(&b"h2"[..])
    );
    let full = handshake_resuming(disabled, client, Some(session));
    assert!(!full.server.ssl().session_reused());
    assert_eq!(
        full.server.ssl().selected_alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    for _ in 0..2 {
        let again = handshake_resuming(plain, client, Some(session));
        assert!(
            again.server.ssl().session_reused(),
            "the session stays resumable"
        );
    }
}

/// Group 4, measure: one key type.
fn measure_alpn(bench: bool, keys: &Keys) -> AlpnRun {
    let samples = if bench { scaled(21) } else { 1 };
    let target_ms = if bench {
        50.0 * stats::scale().min(1.0)
    } else {
        1.0
    };
    let plain = tls13_alpn_server(keys, None);
    let disabled = tls13_alpn_server(keys, Some(hook_disable_http2_alpn));
    let client = alpn_client(SslVersion::TLS1_3);
    let session = handshake(&plain, &client).kept_session().unwrap();
    check_alpn_offer(&plain, &disabled, &client, &session);
    let mut resume_plain = || {
        black_box(handshake_resuming(&plain, &client, Some(&session)));
    };
    let mut resume_disabled = || {
        black_box(handshake_resuming(&disabled, &client, Some(&session)));
    };
    let mut full_plain = || {
        black_box(handshake(&plain, &client));
    };
    let per_sample = stats::calibrate(target_ms, &mut resume_plain);
    let vs_resumption =
        Paired::run_alternating(samples, per_sample, &mut resume_plain, &mut resume_disabled);
    let per_sample = stats::calibrate(target_ms, &mut full_plain);
    let vs_full =
        Paired::run_alternating(samples, per_sample, &mut full_plain, &mut resume_disabled);
    AlpnRun {
        kind: keys.kind,
        vs_resumption,
        vs_full,
    }
}

/// Group 4, judge: reported only (docs/alpn.md explains the cost).
fn alpn_goal(r: &AlpnRun) -> Goal {
    Goal::reported(
        format!(
            "{}: TLS 1.3 resumption offering h2 with `disable_http2_alpn()` (a full handshake) / the same resumption without it; and / a full handshake",
            r.kind.label()
        ),
        format!(
            "{:.2}× ; {:.3}",
            r.vs_resumption.ratio(),
            r.vs_full.ratio()
        ),
    )
    .noted("docs/alpn.md")
}

/// Group 4, report: the two rows of one key type.
fn alpn_rows(table: &mut Table, r: &AlpnRun) {
    for (paired, a, b) in [
        (
            &r.vs_resumption,
            "TLS 1.3 resumption offering h2, no call",
            "same offer, `disable_http2_alpn()` (full handshake)",
        ),
        (
            &r.vs_full,
            "TLS 1.3 full handshake, no session offered, no call",
            "resumption offer + `disable_http2_alpn()`",
        ),
    ] {
        say!(
            "group 4 {}: {b} / {a}: {:.2}",
            r.kind.label(),
            paired.ratio()
        );
        let [a_median, b_median, ratio, spread] = paired_cells(paired, &fmt_us, 3);
        table.row(&[
            r.kind.label().to_string(),
            a.to_string(),
            b.to_string(),
            a_median,
            b_median,
            ratio,
            spread,
        ]);
    }
}

/// The cost of `disable_http2_alpn` to a TLS 1.3 resumption offering `h2`: OpenSSL must
/// ignore the PSK (its binder covers the ALPN bytes we rewrite), so the handshake is a
/// full one. A: the resumption, no call; B: the same offer, with the call. Also B against
/// a plain full handshake (no session offered), which it should cost about the same as.
fn group4(bench: bool, all_keys: &[Keys], out: &mut String, summary: &mut Vec<String>) {
    let mut table = Table::new(&[
        "server key",
        "A",
        "B",
        "A median",
        "B median",
        "B/A ratio (median)",
        "ratio p25–p75",
    ]);
    for keys in all_keys {
        let run = measure_alpn(bench, keys);
        alpn_rows(&mut table, &run);
        summary.push(alpn_goal(&run).summary_row("4"));
    }
    out.push_str(
        "A TLS 1.3 resumption that offers `h2` cannot be kept once `disable_http2_alpn` rewrites \
         the ALPN list (the PSK binder covers those bytes; see docs/alpn.md): OpenSSL does a \
         full handshake instead. In-memory handshakes, server CPU + client CPU of one thread, \
         interleaved A/B, the same session offered each time (one shared ticket key).\n\n",
    );
    out.push_str(&table.text);
}

// Group 5 ------------------------------------------------------------------------------

/// The name every group 5 client asks for (SNI), as clients of a Kong route do.
const HOST: &str = "bench.test";

/// A way for a server to resume sessions: group 5's servers resume through one only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ResumptionPath {
    Tls13Tickets,
    Tls12Tickets,
    /// TLS 1.2 session IDs in the server context's own cache (no tickets).
    Tls12SessionIds,
}

impl ResumptionPath {
    fn version(self) -> SslVersion {
        match self {
            ResumptionPath::Tls13Tickets => SslVersion::TLS1_3,
            _ => SslVersion::TLS1_2,
        }
    }

    fn configure(self, ctx: &mut SslContextBuilder) {
        match self {
            ResumptionPath::Tls13Tickets | ResumptionPath::Tls12Tickets => {
                ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
            }
            ResumptionPath::Tls12SessionIds => {
                ctx.set_options(SslOptions::NO_TICKET);
                ctx.set_session_cache_mode(SslSessionCacheMode::SERVER);
            }
        }
    }
}

const PATHS: [(ResumptionPath, &str); 3] = [
    (ResumptionPath::Tls13Tickets, "TLS 1.3 tickets"),
    (ResumptionPath::Tls12Tickets, "TLS 1.2 tickets"),
    (
        ResumptionPath::Tls12SessionIds,
        "TLS 1.2 session IDs (server cache)",
    ),
];

/// What a server does about a mutual-TLS client's reconnections (group 5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reuse {
    HelloForm,
    CertificateForm,
    KongPairing,
    StaticResumption,
    PlainResumption,
    PlainFull,
}

/// Each variant, what it is, and whether its reconnections must resume (all or none).
const REUSE: [(Reuse, &str, bool); 6] = [
    (
        Reuse::HelloForm,
        "`request_client_certificate(ca)` in the client hello callback",
        true,
    ),
    (
        Reuse::CertificateForm,
        "`request_client_certificate(ca)` in the certificate callback",
        false,
    ),
    (
        Reuse::KongPairing,
        "`request_client_certificate(ca)` + `disable_session_reuse()` in the certificate callback (Kong's pairing)",
        false,
    ),
    (
        Reuse::StaticResumption,
        "no call, static `optional_no_ca` + CA on the context (nginx's `ssl_verify_client`), client offers its session",
        true,
    ),
    (
        Reuse::PlainResumption,
        "no call (no certificate requested), client offers its session",
        true,
    ),
    (
        Reuse::PlainFull,
        "no call (no certificate requested), client offers no session",
        false,
    ),
];

fn reuse_index(r: Reuse) -> usize {
    REUSE.iter().position(|x| x.0 == r).unwrap()
}

/// Kong's certificate phase: the request, then `disable_session_reuse`.
unsafe fn hook_kong_pairing(ssl: *mut SSL, ca: *mut c_void) {
    hook_request_client_certificate(ssl, ca);
    hook_disable_session_reuse(ssl, std::ptr::null_mut());
}

/// A server that resumes only through `path`, doing what `reuse` says.
fn reuse_server(keys: &Keys, path: ResumptionPath, reuse: Reuse, ca: *mut c_void) -> SslContext {
    let mut ctx = server_builder(keys, path.version());
    path.configure(&mut ctx);
    let request: RawHook = hook_request_client_certificate;
    let (cert_hook, hello_hook): (Option<RawHook>, Option<RawHook>) = match reuse {
        Reuse::HelloForm => (None, Some(request)),
        Reuse::CertificateForm => (Some(request), None),
        Reuse::KongPairing => (Some(hook_kong_pairing), None),
        Reuse::StaticResumption => {
            ctx = static_optional_no_ca(ctx, &[&keys.client.root.cert]);
            (None, None)
        }
        Reuse::PlainResumption | Reuse::PlainFull => (None, None),
    };
    server_ctx(ctx, cert_hook, hello_hook, ca)
}

/// One setup's measurement: counts and CPU time per connection of each variant.
struct ReuseRun {
    setup: String,
    /// (resumed, connections) per variant.
    counts: Vec<(usize, usize)>,
    m: Interleaved,
}

impl ReuseRun {
    fn rate(&self, v: usize) -> f64 {
        let (resumed, n) = self.counts[v];
        resumed as f64 / n as f64
    }

    fn ratio(&self, b: Reuse, a: Reuse) -> (f64, String) {
        let r = self.m.ratios(reuse_index(b), reuse_index(a));
        (median(&r), stats::iqr(&r, &|x| format!("{x:.3}")))
    }
}

/// Checks what each variant's connections really are, on a full handshake and on the
/// reconnection after it: the certificate verdict where one is requested, and whether
/// the server resumed.
fn check_reuse(reuse: Reuse, must_resume: bool, client: &mut Reconnecting) {
    for attempt in 0..2 {
        let conn = client.connect();
        let s = conn.server.ssl();
        let resumed = attempt == 1 && must_resume;
        assert_eq!(
            s.session_reused(),
            resumed,
            "{reuse:?}, connection {attempt}"
        );
        if !matches!(reuse, Reuse::PlainResumption | Reuse::PlainFull) {
            assert!(
                s.peer_certificate().is_some(),
                "{reuse:?}: no client certificate"
            );
            assert_eq!(s.verify_result().as_raw(), 0, "{reuse:?}: not verified");
        }
    }
    client.reset_counts();
}

/// A variant that does not (or does) resume measures something else than its label
/// says: fail, whatever the timings.
fn assert_resumption(setup: &str, counts: &[(usize, usize)]) {
    for ((r, _, must_resume), (resumed, n)) in REUSE.iter().zip(counts) {
        if *must_resume {
            assert!(
                *resumed as f64 >= 0.99 * *n as f64,
                "{setup}, {r:?}: only {resumed} of {n} reconnections resumed"
            );
        } else {
            assert_eq!(
                *resumed, 0,
                "{setup}, {r:?}: {resumed} of {n} reconnections resumed"
            );
        }
    }
}

/// Group 5, measure: one setup (resumption path × key type), every variant in the same
/// interleaved rounds.
fn measure_reuse(
    bench: bool,
    samples: usize,
    (path, pname): (ResumptionPath, &str),
    keys: &Keys,
) -> ReuseRun {
    let target_ms = if bench {
        25.0 * stats::scale().min(1.0)
    } else {
        1.0
    };
    let setup = format!("{pname}, {}", keys.kind.label());
    let ca = ca_stack(&[&keys.client.root.cert]);
    let client = client_ctx(path.version(), Some(&keys.client.direct_leaf), &[]);
    let servers: Vec<SslContext> = REUSE
        .iter()
        .map(|(r, _, _)| reuse_server(keys, path, *r, ca))
        .collect();
    let mut clients: Vec<Reconnecting> = REUSE
        .iter()
        .zip(&servers)
        .map(|((r, _, _), server)| Reconnecting::new(server, &client, HOST, *r != Reuse::PlainFull))
        .collect();
    for ((r, _, must_resume), c) in REUSE.iter().zip(clients.iter_mut()) {
        check_reuse(*r, *must_resume, c);
    }
    let mut conns: Vec<Box<dyn FnMut() + '_>> = clients
        .iter_mut()
        .map(|c| Box::new(move || drop(black_box(c.connect()))) as Box<dyn FnMut()>)
        .collect();
    // Sized on the costliest variant: every variant runs as often, and the cheap ones
    // would otherwise make the rounds long.
    let per_sample = stats::calibrate(target_ms, &mut *conns[reuse_index(Reuse::KongPairing)]);
    let mut each: Vec<&mut dyn FnMut()> = conns
        .iter_mut()
        .map(|c| &mut **c as &mut dyn FnMut())
        .collect();
    let m = Interleaved::run(samples, per_sample, &mut each);
    drop(conns);
    let counts: Vec<(usize, usize)> = clients.iter().map(|c| (c.resumed, c.connections)).collect();
    assert_resumption(&setup, &counts);
    ReuseRun { setup, counts, m }
}

/// Group 5, judge: one setup's goals and ratios, each (median, p25–p75).
struct ReuseJudged {
    /// The client hello form resumes (≥ 0.99).
    rate: Goal,
    /// Hello form / static mTLS resumption: what the library adds (≤ 1.10).
    vs_static: Goal,
    static_spread: String,
    saving: (f64, String),
    overhead: (f64, String),
    cert: f64,
}

fn judge_reuse(run: &ReuseRun) -> ReuseJudged {
    let (vs_static, static_spread) = run.ratio(Reuse::HelloForm, Reuse::StaticResumption);
    ReuseJudged {
        rate: Goal::new(
            "resumption rate of a mutual-TLS client reconnecting with its session, `request_client_certificate(ca)` in the client hello callback (TLS 1.3 tickets, TLS 1.2 tickets and session IDs; ECDSA and RSA)",
            run.rate(reuse_index(Reuse::HelloForm)),
            Comparison::AtLeast,
            0.99,
        ),
        vs_static: Goal::new(
            "CPU per mTLS reconnection: client hello form (resumed) / static `optional_no_ca` resumption (nginx's `ssl_verify_client`: the same client certificate in the session, no call)",
            vs_static,
            Comparison::AtMost,
            1.10,
        )
        .target_shown(2),
        static_spread,
        saving: run.ratio(Reuse::HelloForm, Reuse::KongPairing),
        overhead: run.ratio(Reuse::HelloForm, Reuse::PlainResumption),
        cert: run.ratio(Reuse::CertificateForm, Reuse::KongPairing).0,
    }
}

/// Group 5, report: the summary goals over every setup.
fn reuse_summary(runs: &[ReuseRun], judged: &[ReuseJudged]) -> Vec<Goal> {
    let setups = |g: &dyn Fn(&ReuseJudged) -> &Goal| -> Vec<(&str, &Goal)> {
        runs.iter()
            .zip(judged)
            .map(|(r, j)| (r.setup.as_str(), g(j)))
            .collect()
    };
    let rate = setups(&|j| &j.rate);
    let vs_static = setups(&|j| &j.vs_static);
    let savings: Vec<String> = runs
        .iter()
        .zip(judged)
        .map(|(r, j)| format!("{:.2} ({})", j.saving.0, r.setup))
        .collect();
    let overheads: Vec<String> = judged
        .iter()
        .map(|j| format!("{:.3}", j.overhead.0))
        .collect();
    vec![
        worst_of(rate[0].1.label.clone(), &rate, 3, false),
        Goal::reported(
            "CPU per mTLS reconnection (client + server): client hello form / certificate form + `disable_session_reuse()` (Kong)",
            savings.join(", "),
        ),
        worst_of(vs_static[0].1.label.clone(), &vs_static, 3, true),
        Goal::reported(
            "CPU per mTLS reconnection: client hello form (resumed) / plain resumption (no client certificate in the session)",
            overheads.join(", "),
        ),
    ]
}

/// Group 5, report: the connections table and the ratios table.
fn reuse_tables(runs: &[ReuseRun], judged: &[ReuseJudged]) -> (Table, Table) {
    let mut table = Table::new(&[
        "setup",
        "server",
        "resumed / connections",
        "resumption rate",
        "CPU per connection, client + server (median)",
        "p25–p75",
    ]);
    let mut ratios = Table::new(&[
        "setup",
        "hello form / Kong's pairing (the saving)",
        "p25–p75",
        "hello form / static mTLS resumption (what the library adds)",
        "p25–p75",
        "goal ≤ 1.10",
        "hello form / plain resumption",
        "p25–p75",
        "certificate form / Kong's pairing",
    ]);
    for (run, j) in runs.iter().zip(judged) {
        for (v, (_, label, _)) in REUSE.iter().enumerate() {
            let (resumed, n) = run.counts[v];
            table.row(&[
                run.setup.clone(),
                label.to_string(),
                format!("{resumed} / {n}"),
                format!("{:.3}", run.rate(v)),
                fmt_us(median(&run.m.cpu[v])),
                stats::iqr(&run.m.cpu[v], &|x| fmt_us(x)),
            ]);
        }
        ratios.row(&[
            run.setup.clone(),
            format!("{:.3} ({:.2}× less CPU)", j.saving.0, 1.0 / j.saving.0),
            j.saving.1.clone(),
            format!("{:.3}", j.vs_static.value),
            j.static_spread.clone(),
            j.vs_static.verdict(),
            format!("{:.3}", j.overhead.0),
            j.overhead.1.clone(),
            format!("{:.3}", j.cert),
        ]);
    }
    (table, ratios)
}

/// Group 5's text before its tables.
fn reuse_text(samples: usize) -> String {
    format!(
        "Measured on {}. A client with a certificate issued by the CA reconnects to one server \
         again and again, sending SNI `{HOST}` and offering the session it kept from its \
         previous connection (after reading the TLS 1.3 tickets that follow a handshake), as \
         browsers and HTTP clients do. The server resumes only through the path named (the \
         other paths off) and passes the CA as `ca_certs` where it calls \
         `request_client_certificate`. In-memory handshakes in one thread, client CPU + server \
         CPU of each connection (`SSL` objects made and freed included); the six servers of a \
         setup are measured in the same interleaved rounds ({} rounds). The resumption rate \
         counts every connection after the first two, which are checked one by one (a full \
         handshake, then a resumption or not as the variant says, with the verdict SUCCESS \
         where a certificate is requested); the bench fails if a variant \
         that must resume misses more than 1 % or one that must not resumes once.\n\n",
        openssl::version::version(),
        samples
    )
}

/// Group 5's text after its tables.
const REUSE_NOTE: &str =
    "\nA resumed session that carries a client certificate costs more than one without: \
     OpenSSL decodes the session, certificate and public key included, from each ticket \
     it accepts and again for each ticket it issues (TLS 1.3 issues one on every \
     resumption), and OpenSSL 3.0's public-key decoding (`OSSL_DECODER`) is slow. Sessions \
     kept as objects in the server's own cache skip it. The \
     static `optional_no_ca` row carries the same certificate in its sessions, so \
     hello form / static is what the library adds to resuming a mutual-TLS session; \
     hello form / plain resumption is what resuming one costs over a session without a \
     client certificate.\n";

/// Group 5: a mutual-TLS client reconnecting with its session, per resumption path and
/// key type; every variant of one setup measured in the same interleaved rounds.
fn group5(bench: bool, all_keys: &[Keys], out: &mut String, summary: &mut Vec<String>) -> bool {
    let samples = if bench { scaled(21) } else { 1 };
    let mut runs = vec![];
    for path in PATHS {
        for keys in all_keys {
            runs.push(measure_reuse(bench, samples, path, keys));
        }
    }
    let judged: Vec<ReuseJudged> = runs.iter().map(judge_reuse).collect();
    for (run, j) in runs.iter().zip(&judged) {
        say!(
            "group 5 {}: hello form / Kong's pairing {:.3} ({:.2}x saved); / static mTLS resumption {:.3} ({}); / plain resumption {:.3}; hello-form rate {:.3}",
            run.setup,
            j.saving.0,
            1.0 / j.saving.0,
            j.vs_static.value,
            j.vs_static.console_verdict(),
            j.overhead.0,
            j.rate.value
        );
    }
    let goals = reuse_summary(&runs, &judged);
    summary.extend(goals.iter().map(|g| g.summary_row("5")));
    let (table, ratios) = reuse_tables(&runs, &judged);
    out.push_str(&reuse_text(samples));
    out.push_str(&table.text);
    out.push_str("\nRatios of CPU per connection, taken within each round (median and spread over the rounds):\n\n");
    out.push_str(&ratios.text);
    out.push_str(REUSE_NOTE);
    call_cost(bench, all_keys, out, summary);
    goals.iter().all(Goal::met)
}

/// Calls per timed run in [`call_cost`]: one call is a few microseconds.
const CALLS: usize = 10;

/// The call's cost in both forms, for one key type and one CA set size.
struct CallCost {
    kind: KeyKind,
    /// CA certificates passed.
    n: usize,
    /// A: the certificate form, B: the client hello form (ns per run of [`CALLS`] calls).
    p: Paired,
}

/// Times the call on `ca` against a server `SSL` paused in each callback: certificate
/// form (A) and client hello form (B) alternate. Checks which form each call took.
fn time_call_forms(
    bench: bool,
    (hello_ctx, cert_ctx): (&SslContext, &SslContext),
    client: &SslContext,
    ca: *mut c_void,
) -> Paired {
    let samples = if bench { scaled(21) } else { 1 };
    let target_ms = if bench {
        10.0 * stats::scale().min(1.0)
    } else {
        0.2
    };
    let hello_conn = paused_in_callback(hello_ctx, client_ssl(client, Some(HOST), None));
    let cert_conn = paused_in_callback(cert_ctx, client_ssl(client, Some(HOST), None));
    let (hello_ssl, cert_ssl) = (
        hello_conn.server.ssl().as_ptr(),
        cert_conn.server.ssl().as_ptr(),
    );
    let mut in_hello = || {
        for _ in 0..CALLS {
            // SAFETY: live server SSL paused in its client hello callback.
            unsafe { hook_request_client_certificate(black_box(hello_ssl), ca) };
        }
    };
    let mut in_cert = || {
        for _ in 0..CALLS {
            // SAFETY: live server SSL paused in its certificate callback.
            unsafe { hook_request_client_certificate(black_box(cert_ssl), ca) };
        }
    };
    in_hello();
    in_cert();
    // Which form each call took, by its visible effect: the certificate form sends no
    // TLS 1.3 ticket; the hello form binds and keeps the tickets.
    assert_eq!(
        hello_conn.server.ssl().num_tickets(),
        2,
        "hello form did not bind"
    );
    assert_eq!(
        cert_conn.server.ssl().num_tickets(),
        0,
        "certificate form kept tickets"
    );
    let per_sample = stats::calibrate(target_ms, &mut in_hello);
    Paired::run_alternating(samples, per_sample, &mut in_cert, &mut in_hello)
}

/// [`call_cost`], measure: one key type, with 1 and with 10 CA certificates.
fn measure_call_cost(bench: bool, keys: &Keys) -> Vec<CallCost> {
    let extra = pki::cas("bench extra CA", keys.kind, 9);
    let version = SslVersion::TLS1_3;
    let client = client_ctx(version, Some(&keys.client.direct_leaf), &[]);
    let paused_server = |at: Pause| {
        let ctx = server_builder(keys, version);
        set_pause(ctx.as_ptr(), at);
        ctx.build()
    };
    let (hello_ctx, cert_ctx) = (
        paused_server(Pause::ClientHello),
        paused_server(Pause::Certificate),
    );
    let mut costs = vec![];
    for n in [1, 10] {
        let certs: Vec<&X509> = std::iter::once(&keys.client.root.cert)
            .chain(extra.iter().take(n - 1))
            .collect();
        let p = time_call_forms(bench, (&hello_ctx, &cert_ctx), &client, ca_stack(&certs));
        costs.push(CallCost {
            kind: keys.kind,
            n,
            p,
        });
    }
    costs
}

/// The cost of one `request_client_certificate(ca)` call in each form, with 1 and with 10
/// CA certificates: repeated on a server `SSL` paused in its client hello callback (it
/// binds: the cached fingerprints of the server certificate and of each CA, one SHA-256)
/// and on one paused in its certificate callback (it makes the session unresumable, and
/// also fingerprints each CA, to compare with a binding made at ClientHello time).
fn call_cost(bench: bool, all_keys: &[Keys], out: &mut String, summary: &mut Vec<String>) {
    let samples = if bench { scaled(21) } else { 1 };
    let mut table = Table::new(&[
        "key type",
        "CA certificates",
        "certificate form, per call (median)",
        "client hello form, per call (median)",
        "hello / certificate (median)",
        "p25–p75",
    ]);
    let mut results = vec![];
    let per_call = |ns: f64| fmt_us(ns / CALLS as f64);
    for c in all_keys
        .iter()
        .flat_map(|keys| measure_call_cost(bench, keys))
    {
        let (kind, n) = (c.kind.label(), c.n);
        let [cert, hello, ratio, spread] = paired_cells(&c.p, &per_call, 3);
        say!("group 5 call cost {kind}, {n} CA: hello form {hello} / certificate form {cert} = {ratio}");
        table.row(&[kind.to_string(), n.to_string(), cert, hello, ratio, spread]);
        let plural = if n > 1 { "s" } else { "" };
        results.push(format!("{n} CA{plural}, {kind}: {:.2}", c.p.ratio()));
    }
    out.push_str(&format!(
        "\nThe call itself: `request_client_certificate(ca)` made {CALLS} times per timed run on one \
         server `SSL` paused in its client hello callback (the binding: the fingerprints OpenSSL \
         caches with the server certificate and each CA certificate, and one SHA-256) and on \
         one paused in its certificate callback (no binding; it fingerprints each CA too, to \
         refuse a different CA set after a hello-form call), as nginx leaves a connection while \
         a Lua handler yields. Neither builds the verify store and CA list: the next full \
         handshake does (a resumed one never needs them), and its cost is inside the CPU per \
         connection above. \
         Runs of the two alternate (A B B A …), {samples} samples; the first call on a \
         connection (which also creates the library's per-connection state) is not timed.\n\n{}",
        table.text
    ));
    let goal = Goal::reported(
        "one `request_client_certificate(ca)` call: client hello form / certificate form",
        results.join("; "),
    );
    summary.push(goal.summary_row("5"));
}

// Group 6 ------------------------------------------------------------------------------

/// The CA set sizes of group 6 (those whose names fit a CertificateRequest); issue 18's
/// goal is judged at [`CA_SET_JUDGED`], the others are reported.
const CA_SET_SIZES: [usize; 5] = [1, 10, 100, 600, 1000];
const CA_SET_JUDGED: [usize; 3] = [1, 100, 600];
/// Issue 18's target: ours / static, server CPU per full mutual-TLS handshake.
const CA_SET_TARGET: f64 = 1.05;
/// The library's limit on the CA names of one set (`MAX_CA_NAMES_BYTES`).
const CA_NAMES_LIMIT: usize = 64_512;
/// The label of the CAs added to the client's: short, so that 1000 names fit.
const CA_SET_LABEL: &str = "ca";
/// Where group 6 saves those CAs for its callgrind children (in the PKI directory).
const CA_SET_PEM: &str = "ca-set.pem";

/// How a group 6 server requests and verifies the client certificate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CaSetServer {
    Static,
    CertificateForm,
    HelloForm,
}

/// Each server: its id (`--instr6`, callgrind files), its name in the tables, what it
/// is. The static server first: the baseline.
const CA_SET_SERVERS: [(CaSetServer, &str, &str, &str); 3] = [
    (
        CaSetServer::Static,
        "static",
        "static (A)",
        "static `optional_no_ca`: the CAs as the context's verify store and client CA list, built once at context creation, verify PEER + accept-all callback, depth 0 (nginx's `ssl_verify_client optional_no_ca` + `ssl_client_certificate`)",
    ),
    (
        CaSetServer::CertificateForm,
        "cert",
        "certificate form (B)",
        "`request_client_certificate(ca)` in the certificate callback",
    ),
    (
        CaSetServer::HelloForm,
        "hello",
        "client hello form (C)",
        "`request_client_certificate(ca)` in the client hello callback",
    ),
];

/// The bytes the subject names of `cas` take in a CertificateRequest: each name's DER
/// and its 2-byte length, as the library counts them.
fn ca_names_bytes(cas: &[&X509]) -> usize {
    cas.iter()
        .map(|c| 2 + c.subject_name().to_der().unwrap().len())
        .sum()
}

/// The CA set of size `n`: `n - 1` of `extra`, then the client's CA (last in the store
/// and in the list).
fn ca_set<'a>(keys: &'a Keys, extra: &'a [X509], n: usize) -> Vec<&'a X509> {
    assert!(n >= 1 && n - 1 <= extra.len());
    extra[..n - 1]
        .iter()
        .chain(std::iter::once(&keys.client.root.cert))
        .collect()
}

/// No tickets and no session cache: every handshake is full and issues no ticket (the
/// certificate form makes sessions unresumable, which would otherwise spare it the
/// tickets the static server issues).
fn no_resumption(ctx: &mut SslContextBuilder) {
    ctx.set_num_tickets(0).unwrap();
    ctx.set_options(SslOptions::NO_TICKET);
    ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
}

/// A TLS 1.3 ECDSA server requesting a certificate issued by one of `cas`, as `server`
/// says; the two forms of our call get `stack` (the same `STACK_OF(X509)` of `cas` on
/// every connection). Every server runs a certificate and a client hello callback
/// (empty where it makes no call), as in group 1.
fn ca_set_server(
    keys: &Keys,
    server: CaSetServer,
    cas: &[&X509],
    stack: *mut c_void,
) -> SslContext {
    let mut ctx = server_builder(keys, SslVersion::TLS1_3);
    no_resumption(&mut ctx);
    let request: RawHook = hook_request_client_certificate;
    match server {
        CaSetServer::Static => server_ctx(
            static_optional_no_ca(ctx, cas),
            None,
            None,
            std::ptr::null_mut(),
        ),
        CaSetServer::CertificateForm => server_ctx(ctx, Some(request), None, stack),
        CaSetServer::HelloForm => server_ctx(ctx, None, Some(request), stack),
    }
}

/// The client: TLS 1.3, presents a certificate issued directly by its CA, keeps no
/// sessions.
fn ca_set_client(keys: &Keys) -> SslContext {
    let mut ctx =
        client_context_presenting(SslVersion::TLS1_3, Some(&keys.client.direct_leaf), &[]);
    ctx.set_options(SslOptions::NO_TICKET);
    ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
    ctx.build()
}

/// Checks one handshake of `server`: full, no ticket, the `n` names received by the
/// client, the client certificate verified.
fn check_ca_set(server: CaSetServer, ctx: &SslContext, client: &SslContext, n: usize) {
    let c = handshake(ctx, client);
    let s = c.server.ssl();
    assert!(!s.session_reused(), "{server:?}, {n} CAs: resumed");
    assert_eq!(s.num_tickets(), 0, "{server:?}, {n} CAs: issues tickets");
    assert!(
        s.peer_certificate().is_some(),
        "{server:?}, {n} CAs: no client certificate"
    );
    assert_eq!(
        s.verify_result().as_raw(),
        0,
        "{server:?}, {n} CAs: not verified"
    );
    // SAFETY: the list belongs to the live client SSL and is only read.
    let names = unsafe {
        let list = sys::SSL_get_client_CA_list(c.client.ssl().as_ptr());
        assert!(!list.is_null(), "{server:?}, {n} CAs: no CA names received");
        openssl::stack::StackRef::<X509Name>::from_ptr(list).len()
    };
    assert_eq!(names, n, "{server:?}: CA names received");
}

/// Runs `f` as server work: its thread CPU time is added to `ns`, and callgrind counts
/// its instructions (`--toggle-collect=*kct_measured_server_side*`).
#[inline(never)]
fn kct_measured_server_side<R>(ns: &mut u64, f: impl FnOnce() -> R) -> R {
    let t = stats::thread_cpu_ns();
    let r = f();
    *ns += stats::thread_cpu_ns() - t;
    r
}

/// A full handshake driven by memtls's `step_handshake` (client and server steps
/// alternating over in-memory pipes, one thread); returns the server's CPU time only:
/// its `SSL_new`, each of its `SSL_do_handshake` steps and its `SSL_free`.
fn server_timed_handshake(server: &SslContext, client: &SslContext) -> u64 {
    let mut ns = 0;
    let (s_end, c_end) = pipe();
    let mut c = SslStream::new(Ssl::new(client).unwrap(), c_end).unwrap();
    let mut s = kct_measured_server_side(&mut ns, || {
        SslStream::new(Ssl::new(server).unwrap(), s_end).unwrap()
    });
    step_handshake(&mut c, &mut s, false, |s| {
        kct_measured_server_side(&mut ns, || s.accept())
    });
    kct_measured_server_side(&mut ns, || drop(s));
    drop(c);
    ns
}

/// Group 6, one CA set size: the three servers in the same interleaved rounds.
struct CaSetRun {
    n: usize,
    names_bytes: usize,
    per_sample: usize,
    /// Server CPU ns per handshake, variants in [`CA_SET_SERVERS`] order.
    m: Interleaved,
}

impl CaSetRun {
    /// (median, p25–p75) of variant `b`'s time over the static server's, per sample.
    fn ratio(&self, b: usize) -> (f64, String) {
        let r = self.m.ratios(b, 0);
        (median(&r), stats::iqr(&r, &|x| format!("{x:.3}")))
    }
}

fn measure_ca_set(
    bench: bool,
    samples: usize,
    keys: &Keys,
    extra: &[X509],
    n: usize,
    client: &SslContext,
) -> CaSetRun {
    let cas = ca_set(keys, extra, n);
    let stack = ca_stack(&cas);
    let servers: Vec<SslContext> = CA_SET_SERVERS
        .iter()
        .map(|s| ca_set_server(keys, s.0, &cas, stack))
        .collect();
    for (s, ctx) in CA_SET_SERVERS.iter().zip(&servers) {
        check_ca_set(s.0, ctx, client, n);
    }
    let mut runs: Vec<Box<dyn FnMut() -> f64 + '_>> = servers
        .iter()
        .map(|s| {
            Box::new(move || server_timed_handshake(s, client) as f64) as Box<dyn FnMut() -> f64>
        })
        .collect();
    // A sample: about `target_ms` of CPU (both ends) for one handshake of each server.
    let target_ms = if bench {
        250.0 * stats::scale().min(1.0)
    } else {
        1.0
    };
    let (round, _) = stats::time_batch(2, &mut || {
        for r in runs.iter_mut() {
            r();
        }
    });
    let per_sample = ((target_ms * 1e6 / round).round() as usize).max(if bench { 5 } else { 1 });
    let mut each: Vec<&mut dyn FnMut() -> f64> = runs
        .iter_mut()
        .map(|r| &mut **r as &mut dyn FnMut() -> f64)
        .collect();
    let m = Interleaved::run_reported(samples, per_sample, &mut each);
    CaSetRun {
        n,
        names_bytes: ca_names_bytes(&cas),
        per_sample,
        m,
    }
}

/// One size's goal for one form: judged at [`CA_SET_JUDGED`], reported elsewhere.
fn ca_set_goal(n: usize, form: &str, ratio: f64) -> Goal {
    let comparison = if CA_SET_JUDGED.contains(&n) {
        Comparison::AtMost
    } else {
        Comparison::Reported
    };
    Goal::new(
        format!("{}: {form}", cas_text(n)),
        ratio,
        comparison,
        CA_SET_TARGET,
    )
    .shown(3, "")
}

/// "1 CA", "10 CAs".
fn cas_text(n: usize) -> String {
    if n == 1 {
        "1 CA".to_string()
    } else {
        format!("{n} CAs")
    }
}

/// A goal's table cell: the verdict where judged, "reported" elsewhere.
fn ca_set_cell(g: &Goal) -> String {
    if g.comparison == Comparison::Reported {
        "— (reported)".to_string()
    } else {
        g.verdict()
    }
}

/// The summary goal of one form: the worst of the judged sizes, then every size's value.
fn ca_set_summary(label: String, goals: &[(usize, Goal)]) -> Option<Goal> {
    let judged = goals.iter().filter(|(n, _)| CA_SET_JUDGED.contains(n));
    let worst = Goal::worst(judged.map(|g| &g.1))?;
    let at = goals.iter().find(|g| std::ptr::eq(&g.1, worst)).unwrap().0;
    let all: Vec<String> = goals
        .iter()
        .map(|(n, g)| format!("{} {:.3}", cas_text(*n), g.value))
        .collect();
    let text = format!(
        "worst {:.3} ({}); per CA set size: {}",
        worst.value,
        cas_text(at),
        all.join(", ")
    );
    Some(Goal::new(label, worst.value, Comparison::AtMost, CA_SET_TARGET).described(text))
}

/// The label of a form's summary goal, `measured` naming the measure.
fn ca_set_label(form: usize, measured: &str) -> String {
    format!(
        "server cost per full mutual-TLS handshake (TLS 1.3, ECDSA P-256; issue 18: {} CAs): {} / static `optional_no_ca` with the CAs on the context ({measured})",
        CA_SET_JUDGED.map(|n| n.to_string()).join(", "),
        CA_SET_SERVERS[form].3
    )
}

/// What group 6 tells the callgrind step.
struct CaSetOutcome {
    met: bool,
    /// The CA set sizes measured (those whose names fit).
    sizes: Vec<usize>,
}

/// Group 6 (issue 18): server CPU per full mutual-TLS handshake against the size of the
/// CA set, our call in both forms against the static configuration.
fn group6(
    bench: bool,
    all_keys: &[Keys],
    pki_dir: &std::path::Path,
    out: &mut String,
    summary: &mut Vec<String>,
) -> CaSetOutcome {
    let t0 = Instant::now();
    let keys = all_keys
        .iter()
        .find(|k| k.kind == KeyKind::EcdsaP256)
        .unwrap();
    let max = *CA_SET_SIZES.iter().max().unwrap();
    let extra = pki::cas(CA_SET_LABEL, keys.kind, max - 1);
    let (sizes, too_large): (Vec<usize>, Vec<usize>) = CA_SET_SIZES
        .iter()
        .partition(|&&n| ca_names_bytes(&ca_set(keys, &extra, n)) <= CA_NAMES_LIMIT);
    if bench {
        let pem: Vec<u8> = extra.iter().flat_map(|c| c.to_pem().unwrap()).collect();
        std::fs::create_dir_all(pki_dir).unwrap();
        std::fs::write(pki_dir.join(CA_SET_PEM), pem).unwrap();
    }
    let samples = if bench { scaled(31) } else { 1 };
    let client = ca_set_client(keys);
    let running = openssl::version::version();
    say!("group 6 on {running}: server CPU per full mTLS handshake against the CA set size (ours / static)");
    let runs: Vec<CaSetRun> = sizes
        .iter()
        .map(|&n| measure_ca_set(bench, samples, keys, &extra, n, &client))
        .collect();
    let mut table = Table::new(&[
        "CA certificates",
        "CA names (bytes)",
        "handshakes per sample",
        "static (A): server CPU / handshake",
        "certificate form (B)",
        "client hello form (C)",
        "B/A (median)",
        "p25–p75",
        "goal ≤ 1.05",
        "C/A (median)",
        "p25–p75",
        "goal ≤ 1.05",
    ]);
    let mut goals: [Vec<(usize, Goal)>; 2] = [vec![], vec![]];
    for run in &runs {
        let us = |v: usize| fmt_us(median(&run.m.cpu[v]));
        let mut cells = vec![
            run.n.to_string(),
            run.names_bytes.to_string(),
            run.per_sample.to_string(),
            us(0),
            us(1),
            us(2),
        ];
        for form in 1..3 {
            let (ratio, spread) = run.ratio(form);
            let g = ca_set_goal(run.n, CA_SET_SERVERS[form].2, ratio);
            cells.extend([format!("{ratio:.3}"), spread, ca_set_cell(&g)]);
            goals[form - 1].push((run.n, g));
        }
        say!(
            "  {:>8}: static {}, certificate form {}, client hello form {} (server CPU per handshake); B/A {}, C/A {}",
            cas_text(run.n),
            us(0),
            us(1),
            us(2),
            cells[6],
            cells[9]
        );
        table.row(&cells);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    say!("group 6: {elapsed:.0} s");
    out.push_str(&ca_set_text(running, samples, &too_large));
    out.push_str(&table.text);
    let mut met = true;
    for (form, g) in goals.iter().enumerate() {
        if let Some(s) = ca_set_summary(ca_set_label(form + 1, "server CPU time"), g) {
            met &= s.met();
            summary.push(s.summary_row("6"));
        }
    }
    CaSetOutcome { met, sizes }
}

/// Group 6's text before its table.
fn ca_set_text(running: &str, samples: usize, too_large: &[usize]) -> String {
    let mut text = format!(
        "Measured on {running}. Whole TLS 1.3 handshakes in memory in one thread, as in group 1 \
         (ECDSA P-256 server key), with no tickets and no session cache on either side, so that \
         every handshake is full and none issues a ticket. The client presents a certificate \
         issued directly by one CA of the set (depth 0), and each server verifies it: \
         (A) {}; (B) {}; (C) {}. A set of n is n − 1 self-signed CAs named \
         `O=kong-client-tls tests, CN={CA_SET_LABEL} <i>`, then the client's CA; B and C get the \
         same `STACK_OF(X509)` on every connection, parsed once, as a caller that parses its PEM \
         at init (`ngx.ssl.parse_pem_cert`) passes it. Only the server's CPU time is counted: \
         its `SSL_new`, each of its `SSL_do_handshake` steps and its `SSL_free`, not the \
         client's steps between them. A, B and C run in the same interleaved rounds \
         (A B C, C B A, …); a sample is each server's median over its handshakes of the \
         sample, {samples} samples per size; the ratios are taken within each sample \
         (median and spread over the samples). Issue 18's goal, B/A and C/A ≤ {CA_SET_TARGET}, \
         is judged at {} CAs; the other sizes are reported.",
        CA_SET_SERVERS[0].3,
        CA_SET_SERVERS[1].3,
        CA_SET_SERVERS[2].3,
        CA_SET_JUDGED.map(|n| n.to_string()).join(", "),
    );
    if !too_large.is_empty() {
        let list: Vec<String> = too_large.iter().map(|n| n.to_string()).collect();
        text.push_str(&format!(
            " Not measured: {} CAs, whose names take more than the {CA_NAMES_LIMIT} bytes the \
             library accepts.",
            list.join(", ")
        ));
    }
    text.push_str("\n\n");
    text
}

/// Child mode: `--instr6 SERVER N SIZE PKI_DIR`, run under callgrind: one checked
/// handshake (the warm-up), then N whose server side is counted.
fn instr6_child(args: &[String]) {
    let server = CA_SET_SERVERS.iter().find(|s| s.1 == args[0]).unwrap().0;
    let n: usize = args[1].parse().unwrap();
    let size: usize = args[2].parse().unwrap();
    let dir = std::path::Path::new(&args[3]);
    let kind = KeyKind::EcdsaP256;
    let keys = Keys {
        kind,
        server: Pki::load(dir, &format!("{}-server", kind_name(kind))),
        client: Pki::load(dir, &format!("{}-client", kind_name(kind))),
    };
    // Only the certificates the set needs: parsing one costs callgrind a few ms (OpenSSL 3
    // decodes its public key), all 999 of them some 6 s.
    let pem = std::fs::read_to_string(dir.join(CA_SET_PEM)).unwrap();
    let end = "-----END CERTIFICATE-----\n";
    let extra: Vec<X509> = pem
        .split_inclusive(end)
        .take(size - 1)
        .map(|block| X509::from_pem(block.as_bytes()).unwrap())
        .collect();
    let cas = ca_set(&keys, &extra, size);
    let ctx = ca_set_server(&keys, server, &cas, ca_stack(&cas));
    let client = ca_set_client(&keys);
    check_ca_set(server, &ctx, &client, size);
    for _ in 0..n {
        black_box(server_timed_handshake(&ctx, &client));
    }
}

fn ca_set_instr_file(dir: &std::path::Path, server: &str, n: usize) -> std::path::PathBuf {
    dir.join(format!("group6-{server}-{n}.out"))
}

/// Group 6's callgrind runs: each server at each size.
fn ca_set_runs(
    dir: &std::path::Path,
    pki_dir: &std::path::Path,
    sizes: &[usize],
) -> Vec<CallgrindRun> {
    let mut runs = vec![];
    // The largest first: the longest runs, so that the two at a time end together.
    for &n in sizes.iter().rev() {
        for (_, id, _, _) in CA_SET_SERVERS {
            runs.push(CallgrindRun {
                out: ca_set_instr_file(dir, id, n),
                toggles: &["*kct_measured_server_side*"],
                args: vec![
                    "--instr6".into(),
                    id.into(),
                    INSTR_HANDSHAKES.to_string(),
                    n.to_string(),
                    pki_dir.display().to_string(),
                ],
            });
        }
    }
    runs
}

/// Group 6 in instructions: the table, and the summary goal of each form.
fn ca_set_instructions(dir: &std::path::Path, sizes: &[usize], out: &mut String) -> Vec<Goal> {
    let mut table = Table::new(&[
        "CA certificates",
        "static (A): server instructions / handshake",
        "certificate form (B)",
        "client hello form (C)",
        "B/A",
        "goal ≤ 1.05",
        "C/A",
        "goal ≤ 1.05",
    ]);
    println!("group 6 (callgrind server instructions per handshake, ours / static):");
    let mut goals: [Vec<(usize, Goal)>; 2] = [vec![], vec![]];
    for &n in sizes {
        let counts: Vec<Option<f64>> = CA_SET_SERVERS
            .iter()
            .map(|s| instr_per_run(&ca_set_instr_file(dir, s.1, n)))
            .collect();
        let mut cells = vec![n.to_string()];
        cells.extend(
            counts
                .iter()
                .map(|c| c.map_or("failed".into(), |c| format!("{c:.0}"))),
        );
        for form in 1..3 {
            match (counts[0], counts[form]) {
                (Some(a), Some(b)) => {
                    let g = ca_set_goal(n, CA_SET_SERVERS[form].2, b / a);
                    cells.extend([format!("{:.4}", b / a), ca_set_cell(&g)]);
                    goals[form - 1].push((n, g));
                }
                _ => cells.extend(["", ""].map(String::from)),
            }
        }
        println!("  {:>8}: B/A {}, C/A {}", cas_text(n), cells[4], cells[6]);
        table.row(&cells);
    }
    out.push_str(&format!(
        "Instructions executed on the server side per full handshake (its `SSL_new`, \
         handshake steps and `SSL_free`), counted by `valgrind --tool=callgrind` over \
         {INSTR_HANDSHAKES} handshakes after one warm-up, one process per server and size.\n\n{}",
        table.text
    ));
    goals
        .iter()
        .enumerate()
        .filter_map(|(form, g)| {
            ca_set_summary(ca_set_label(form + 1, "callgrind server instructions"), g)
        })
        .collect()
}

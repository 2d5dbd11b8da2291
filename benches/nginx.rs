//! Group 3 of `make bench` (issue 5): the cost of our calls through a real nginx.
//!
//! One Debian nginx (1 worker, 127.0.0.1 only) serves every compared configuration at
//! once, each on its own port; this process is the load client (a second process). Each
//! comparison interleaves its configurations run by run (A B C, B C A, …), and reports
//! the median connections (or requests) per second, their spread, the nginx worker's CPU
//! time per connection (or request), and the worker's RSS before, during and after.
//!
//! `cargo bench --bench nginx` writes `target/bench/group3.md` (see `KCT_BENCH_DIR`).
//! Without `--bench` (as `cargo test --all-targets` runs it) it does nothing.

#[path = "support/pki.rs"]
mod pki;
#[path = "support/stats.rs"]
mod stats;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;

use pki::{KeyKind, Pki};
use stats::{median, scaled, Table};

const NGINX: &str = "/usr/sbin/nginx";
const MODULES: &str = "/usr/lib/nginx/modules";
const RESTY_CORE: &str = "/usr/share/lua/5.1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pem(cert: &X509) -> String {
    String::from_utf8(cert.to_pem().unwrap()).unwrap()
}

fn key_pem(key: &PKey<Private>) -> Vec<u8> {
    key.private_key_to_pem_pkcs8().unwrap()
}

// nginx ----------------------------------------------------------------------------------

struct Nginx {
    master: Option<Child>,
    dir: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, conf: &str, ports: &[u16]) -> Result<Nginx, String> {
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {NGINX}: {e}"))?;
        let mut n = Nginx {
            master: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(st) = n.master.as_mut().unwrap().try_wait().unwrap() {
                    return Err(format!("nginx exited ({st}):\n{}", n.error_log()));
                }
                if Instant::now() > deadline {
                    return Err(format!("port {port} never opened:\n{}", n.error_log()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(n)
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The single worker's pid (a child of the master).
    fn worker(&self) -> u32 {
        let master = self.master.as_ref().unwrap().id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no nginx worker");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.master.take() else {
            return;
        };
        // SAFETY: kill(2) of our own child, the nginx master (it stops its worker).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `n` distinct ports free on 127.0.0.1 a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// (CPU time in ns from /proc/PID/schedstat, VmRSS kB, VmHWM kB) of `pid`.
fn proc_usage(pid: u32) -> (f64, u64, u64) {
    let sched = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    let cpu_ns: f64 = sched.split_whitespace().next().unwrap().parse().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (cpu_ns, kb("VmRSS:"), kb("VmHWM:"))
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS; false when not permitted.
fn reset_peak_rss(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// The load client --------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// A new TLS connection, one `GET /` with `Connection: close`, read to the end.
    NewConnRequest,
    /// A new TLS connection offering ALPN h2 and http/1.1, handshake only, then closed.
    NewConnHandshake,
    /// Requests on one kept-alive connection per client thread.
    KeepAlive,
}

struct Client {
    ctx: SslContext,
}

impl Client {
    fn new(cert: Option<(&X509, &[&X509], &PKey<Private>)>, alpn: bool) -> Client {
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
        b.set_max_proto_version(Some(SslVersion::TLS1_3)).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        if let Some((leaf, chain, key)) = cert {
            b.set_certificate(leaf).unwrap();
            b.set_private_key(key).unwrap();
            for c in chain {
                b.add_extra_chain_cert((*c).clone()).unwrap();
            }
        }
        if alpn {
            b.set_alpn_protos(b"\x02h2\x08http/1.1").unwrap();
        }
        Client { ctx: b.build() }
    }

    fn connect(&self, port: u16) -> openssl::ssl::SslStream<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Ssl::new(&self.ctx).unwrap().connect(tcp).unwrap()
    }
}

/// Reads one HTTP/1.1 response with a Content-Length; returns its status.
fn read_response(s: &mut impl Read, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).unwrap().to_string();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("Content-Length");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    status
}

const THREADS: usize = 2;

type Stream = openssl::ssl::SslStream<TcpStream>;

/// One operation of `load`; `keep` holds the kept-alive connection.
fn one_op(client: &Client, port: u16, load: Load, buf: &mut Vec<u8>, keep: &mut Option<Stream>) {
    match load {
        Load::NewConnRequest => {
            let mut s = client.connect(port);
            s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut s, buf), 200);
            let _ = s.shutdown();
        }
        Load::NewConnHandshake => {
            let mut s = client.connect(port);
            let _ = s.shutdown();
        }
        Load::KeepAlive => {
            let s = keep.get_or_insert_with(|| client.connect(port));
            s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(s, buf), 200);
        }
    }
}

/// Runs `load` against `port` from `THREADS` threads for `dur` (and at most `max_ops`
/// operations); returns operations per second.
fn run_load(client: &Arc<Client>, port: u16, load: Load, dur: Duration, max_ops: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let client = client.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ops = 0usize;
                let mut buf = Vec::with_capacity(8192);
                let per_thread = max_ops / THREADS;
                let mut keep = None;
                while !stop.load(Ordering::Relaxed) && ops < per_thread {
                    one_op(&client, port, load, &mut buf, &mut keep);
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    while start.elapsed() < dur && !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let ops: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    ops as f64 / start.elapsed().as_secs_f64()
}

// Comparisons ------------------------------------------------------------------------

struct Config {
    label: &'static str,
    port: u16,
}

struct Measured {
    rates: Vec<f64>,
    cpu_per_op: Vec<f64>,
    rss_before: u64,
    rss_after: u64,
    peak: u64,
}

/// Interleaves `configs` run by run, rotating the order each round.
fn compare(
    worker: u32,
    client: &Arc<Client>,
    configs: &[Config],
    load: Load,
    rounds: usize,
    dur: Duration,
) -> Vec<Measured> {
    let max_ops = 200_000;
    let mut out: Vec<Measured> = configs
        .iter()
        .map(|_| Measured {
            rates: vec![],
            cpu_per_op: vec![],
            rss_before: 0,
            rss_after: 0,
            peak: 0,
        })
        .collect();
    // Warm-up (not counted): every configuration once, briefly.
    for c in configs {
        run_load(client, c.port, load, dur / 4, max_ops);
    }
    for round in 0..rounds {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let can_reset = reset_peak_rss(worker);
            let (cpu0, rss0, _) = proc_usage(worker);
            let t = Instant::now();
            let rate = run_load(client, configs[i].port, load, dur, max_ops);
            let ops = rate * t.elapsed().as_secs_f64();
            let (cpu1, rss1, hwm) = proc_usage(worker);
            let m = &mut out[i];
            if m.rates.is_empty() {
                m.rss_before = rss0;
            }
            m.rates.push(rate);
            m.cpu_per_op.push((cpu1 - cpu0) / ops);
            m.rss_after = rss1;
            m.peak = m.peak.max(if can_reset { hwm } else { rss1 });
        }
    }
    out
}

fn main() {
    if !stats::bench_mode() {
        println!("nginx bench: runs only under `cargo bench` (make bench)");
        return;
    }
    if let Err(e) = run() {
        eprintln!("nginx bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root().join(t) })
        .unwrap_or_else(|| root().join("target"));
    let lib = target.join("release/libkong_client_tls.so");
    if !lib.is_file() {
        return Err(format!("{} is missing (make build)", lib.display()));
    }
    for needed in [
        format!("{MODULES}/ngx_http_lua_module.so"),
        format!("{RESTY_CORE}/resty/core.lua"),
        NGINX.to_string(),
    ] {
        if !Path::new(&needed).exists() {
            return Err(format!("{needed} is missing (make deps)"));
        }
    }

    let server = Pki::new("nginx bench server", KeyKind::EcdsaP256);
    let client_pki = Pki::new("nginx bench client", KeyKind::EcdsaP256);
    let dir = std::env::temp_dir().join(format!("kct-bench-nginx-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    fs::write(dir.join("server.pem"), pem(&server.direct_leaf.cert)).unwrap();
    fs::write(dir.join("server.key"), key_pem(&server.direct_leaf.key)).unwrap();
    fs::write(dir.join("ca.pem"), pem(&client_pki.root.cert)).unwrap();

    let names = [
        "mtls_static",
        "mtls_ours",
        "mtls_verify_client",
        "chain_raw_cert",
        "chain_ours",
        "alpn_none",
        "alpn_empty",
        "alpn_ours",
    ];
    let ports = free_ports(names.len());
    let port = |name: &str| ports[names.iter().position(|n| *n == name).unwrap()];
    let conf = nginx_conf(&dir, &lib, &|n| port(n));
    // Profiling aid: write the config, certificates and client files, then stop.
    if let Some(keep) = std::env::var_os("KCT_BENCH_NGINX_CONF_ONLY") {
        let keep = PathBuf::from(keep);
        fs::create_dir_all(&keep).unwrap();
        for f in ["server.pem", "server.key", "ca.pem"] {
            fs::copy(dir.join(f), keep.join(f)).unwrap();
        }
        let conf = nginx_conf(&keep, &lib, &|n| port(n));
        fs::write(keep.join("nginx.conf"), conf).unwrap();
        fs::write(keep.join("client.pem"), pem(&client_pki.direct_leaf.cert)).unwrap();
        fs::write(
            keep.join("client.key"),
            key_pem(&client_pki.direct_leaf.key),
        )
        .unwrap();
        let ports: Vec<String> = names.iter().map(|n| format!("{n}={}", port(n))).collect();
        fs::write(keep.join("ports"), ports.join("\n") + "\n").unwrap();
        println!("nginx bench: config written to {}", keep.display());
        return Ok(());
    }
    let wait: Vec<u16> = names.iter().map(|n| port(n)).collect();
    let nginx = Nginx::start(&dir, &conf, &wait)?;
    let worker = nginx.worker();
    let t0 = Instant::now();

    let rounds = scaled(24);
    let dur = Duration::from_secs_f64(0.7 * stats::scale().min(1.0));
    let mut md = String::new();
    let mut ok = true;
    let mut summary: Vec<String> = vec![];
    let mut sum = |what: &str, r: f64, goal: f64| {
        summary.push(format!(
            "| 3 | {what} | {r:.3} | ≥ {goal} | {} |",
            stats::verdict(r >= goal)
        ));
    };

    // 3a. New mTLS connections per second.
    let mtls = Arc::new(Client::new(
        Some((
            &client_pki.direct_leaf.cert,
            &[],
            &client_pki.direct_leaf.key,
        )),
        false,
    ));
    let cfg = [
        Config {
            label:
                "(a) static `ssl_verify_client optional_no_ca` + `ssl_client_certificate ca.pem`",
            port: port("mtls_static"),
        },
        Config {
            label: "(b) `ngx.ssl.verify_client(ca, 0)` in `ssl_certificate_by_lua_block`",
            port: port("mtls_verify_client"),
        },
        Config {
            label: "ours: `tls.request_client_certificate(ca)` in `ssl_certificate_by_lua_block`",
            port: port("mtls_ours"),
        },
    ];
    let m = compare(worker, &mtls, &cfg, Load::NewConnRequest, rounds, dur);
    let r_a = paired_ratio(&m, 2, 0);
    let r_b = paired_ratio(&m, 2, 1);
    ok &= r_a >= 0.97 && r_b >= 1.0;
    sum(
        "new mTLS conns/s: `request_client_certificate(ca)` / static `optional_no_ca`",
        r_a,
        0.97,
    );
    sum(
        "new mTLS conns/s: `request_client_certificate(ca)` / `ngx.ssl.verify_client(ca, 0)`",
        r_b,
        1.0,
    );
    println!(
        "group 3a: new mTLS conns/s, ours / static optional_no_ca = {r_a:.3} (goal ≥ 0.97: {}), ours / verify_client = {r_b:.3} (goal ≥ 1.0: {})",
        met(r_a >= 0.97),
        met(r_b >= 1.0)
    );
    md.push_str("### 3a. New mTLS connections per second (TLS 1.3, client presents a certificate issued by the CA, one request per connection)\n\n");
    md.push_str(&table(
        &cfg,
        &m,
        "conns/s",
        "worker CPU / conn",
        &[(2, 0, 0.97, "ours / (a)"), (2, 1, 1.0, "ours / (b)")],
    ));

    // 3b. Keep-alive requests per second reading the chain in the access phase.
    let chain_client = Arc::new(Client::new(
        Some((
            &client_pki.leaf.cert,
            &[&client_pki.int2.cert, &client_pki.int1.cert],
            &client_pki.leaf.key,
        )),
        false,
    ));
    let cfg = [
        Config {
            label: "access phase reads nginx's `$ssl_client_raw_cert` (leaf only)",
            port: port("chain_raw_cert"),
        },
        Config {
            label: "ours: access phase calls `tls.get_full_client_certificate_chain()` (leaf + 2 intermediates)",
            port: port("chain_ours"),
        },
    ];
    let m = compare(worker, &chain_client, &cfg, Load::KeepAlive, rounds, dur);
    let r = paired_ratio(&m, 1, 0);
    ok &= r >= 0.98;
    sum(
        "keep-alive req/s: `get_full_client_certificate_chain()` / `$ssl_client_raw_cert`",
        r,
        0.98,
    );
    println!(
        "group 3b: keep-alive req/s, get_full_client_certificate_chain / $ssl_client_raw_cert = {r:.3} (goal ≥ 0.98: {})",
        met(r >= 0.98)
    );
    md.push_str(&format!("\n### 3b. Keep-alive requests per second ({THREADS} connections, TLS 1.3, client sends leaf + 2 intermediates)\n\n"));
    md.push_str(&table(
        &cfg,
        &m,
        "req/s",
        "worker CPU / req",
        &[(1, 0, 0.98, "ours / raw_cert")],
    ));

    // 3c. New connections per second with disable_http2_alpn in the client hello phase.
    let alpn_client = Arc::new(Client::new(None, true));
    for (name, want) in [
        ("alpn_none", &b"h2"[..]),
        ("alpn_empty", b"h2"),
        ("alpn_ours", b"http/1.1"),
    ] {
        let s = alpn_client.connect(port(name));
        let got = s.ssl().selected_alpn_protocol().unwrap_or(b"");
        if got != want {
            return Err(format!(
                "{name}: negotiated {:?}, expected {:?}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(want)
            ));
        }
    }
    let cfg = vec![
        Config {
            label: "no `ssl_client_hello_by_lua` (h2 negotiated)",
            port: port("alpn_none"),
        },
        Config {
            label: "empty `ssl_client_hello_by_lua_block` (h2 negotiated)",
            port: port("alpn_empty"),
        },
        Config {
            label: "ours: `tls.disable_http2_alpn()` in `ssl_client_hello_by_lua_block` (http/1.1 negotiated)",
            port: port("alpn_ours"),
        },
    ];
    let m = compare(
        worker,
        &alpn_client,
        &cfg,
        Load::NewConnHandshake,
        rounds,
        dur,
    );
    md.push_str("\n### 3c. New connections per second through the client hello phase (TLS 1.3, client offers h2 and http/1.1, handshake then close)\n\n");
    let r = paired_ratio(&m, 2, 1);
    ok &= r >= 0.97;
    sum(
        "new conns/s: `disable_http2_alpn()` / empty client hello block",
        r,
        0.97,
    );
    println!(
        "group 3c: new conns/s, disable_http2_alpn / empty client hello block = {r:.3} (goal ≥ 0.97: {}); empty block / no handler = {:.3}",
        met(r >= 0.97),
        paired_ratio(&m, 1, 0)
    );
    md.push_str(&table(
        &cfg,
        &m,
        "conns/s",
        "worker CPU / conn",
        &[
            (2, 1, 0.97, "ours / empty block"),
            (
                1,
                0,
                0.0,
                "empty block / no handler (cost of the Lua phase, information)",
            ),
        ],
    ));

    md.push_str(&format!(
        "\nEach configuration: {rounds} interleaved runs of {:.1} s from {THREADS} client threads (after one short warm-up run each); \
         a round runs every configuration of the comparison once, in rotating order, and the goal is judged on the median \
         of the per-round ratios (robust to the load of other processes drifting during the run); \
         worker CPU is the nginx worker's on-CPU time (/proc/PID/schedstat, ns) during the run divided by the operations of the run. \
         RSS: the worker's VmRSS before its first run and after its last run, and the highest VmHWM seen \
         during its runs (reset before each run through /proc/PID/clear_refs).\n",
        dur.as_secs_f64()
    ));
    let log = nginx.error_log();
    drop(nginx);

    // The same comparisons counted in instructions by callgrind (immune to noise).
    if std::env::var_os("KCT_BENCH_NO_CALLGRIND").is_none() {
        let cports = free_ports(names.len());
        let cport = |name: &str| cports[names.iter().position(|n| *n == name).unwrap()];
        let conf = nginx_conf(&dir, &lib, &|n| cport(n));
        let n_conn = scaled(60);
        let n_req = scaled(1500);
        let mut runs = vec![];
        for (label, load, client, ops) in [
            ("mtls_static", Load::NewConnRequest, &*mtls, n_conn),
            ("mtls_verify_client", Load::NewConnRequest, &*mtls, n_conn),
            ("mtls_ours", Load::NewConnRequest, &*mtls, n_conn),
            ("chain_raw_cert", Load::KeepAlive, &*chain_client, n_req),
            ("chain_ours", Load::KeepAlive, &*chain_client, n_req),
            ("alpn_none", Load::NewConnHandshake, &*alpn_client, n_conn),
            ("alpn_empty", Load::NewConnHandshake, &*alpn_client, n_conn),
            ("alpn_ours", Load::NewConnHandshake, &*alpn_client, n_conn),
        ] {
            runs.push(Counted {
                label,
                port: cport(label),
                load,
                client,
                ops,
            });
        }
        let t = Instant::now();
        md.push_str("\n### Instructions executed by the nginx worker (callgrind)\n\n");
        match count_instructions(&dir, &conf, &cports, &runs) {
            Ok(per_op) => {
                let get = |l: &str| per_op[runs.iter().position(|r| r.label == l).unwrap()];
                let mut t1 = Table::new(&[
                    "configuration",
                    "operation",
                    "operations counted (2 passes)",
                    "instructions / operation",
                ]);
                for (r, v) in runs.iter().zip(&per_op) {
                    t1.row(&[
                        format!("`{}`", r.label),
                        match r.load {
                            Load::NewConnRequest => "new mTLS connection + 1 request",
                            Load::NewConnHandshake => "new connection, handshake only",
                            Load::KeepAlive => "request on a kept-alive connection",
                        }
                        .to_string(),
                        format!("2 × {}", r.ops),
                        format!("{v:.0}"),
                    ]);
                }
                let mut t2 = Table::new(&[
                    "comparison",
                    "instructions ours / baseline",
                    "throughput bound baseline / ours",
                    "goal (throughput)",
                ]);
                for (what, ours, base, goal) in [
                    (
                        "`request_client_certificate(ca)` vs (a) static `optional_no_ca`",
                        "mtls_ours",
                        "mtls_static",
                        0.97,
                    ),
                    (
                        "`request_client_certificate(ca)` vs (b) `ngx.ssl.verify_client(ca, 0)`",
                        "mtls_ours",
                        "mtls_verify_client",
                        1.0,
                    ),
                    (
                        "`get_full_client_certificate_chain()` vs `$ssl_client_raw_cert`",
                        "chain_ours",
                        "chain_raw_cert",
                        0.98,
                    ),
                    (
                        "`disable_http2_alpn()` vs empty client hello block",
                        "alpn_ours",
                        "alpn_empty",
                        0.97,
                    ),
                    (
                        "empty client hello block vs no handler (information)",
                        "alpn_empty",
                        "alpn_none",
                        0.0,
                    ),
                ] {
                    let r = get(ours) / get(base);
                    let inv = 1.0 / r;
                    println!("group 3 (nginx worker instructions): {what}: ours/baseline {r:.4}");
                    t2.row(&[
                        what.to_string(),
                        format!("{r:.4}"),
                        format!("{inv:.4}"),
                        if goal > 0.0 {
                            format!("≥ {goal}: {}", stats::verdict(inv >= goal))
                        } else {
                            "—".into()
                        },
                    ]);
                    if goal > 0.0 {
                        summary.push(format!(
                            "| 3 | {what} (nginx worker instructions per operation, callgrind; throughput bound = baseline/ours) | {inv:.4} | ≥ {goal} | {} |",
                            stats::verdict(inv >= goal)
                        ));
                    }
                }
                md.push_str(&format!(
                    "The same configurations served by one nginx process (no master) run under \
                     `valgrind --tool=callgrind` with instrumentation off; for each configuration it is \
                     switched on, the operations are made one at a time by the same client, and the \
                     counters are dumped; all configurations run once forward and once in reverse \
                     order (after an uncounted warm-up), and the two counts are added. Instructions are what the CPU must execute, so \
                     baseline/ours bounds the throughput ratio a CPU-bound worker can reach.\n\n{}\n{}",
                    t1.text, t2.text
                ));
            }
            Err(e) => {
                println!("group 3 (callgrind): not measured: {e}");
                md.push_str(&format!("Not measured: {e}.\n"));
            }
        }
        println!("nginx under callgrind: {:.0} s", t.elapsed().as_secs_f64());
    }
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["[alert]", "[crit]", "[emerg]", "[error]", "signal"]
                .iter()
                .any(|b| l.contains(b))
        })
        .take(5)
        .collect();
    if !bad.is_empty() {
        md.push_str(&format!(
            "\nnginx error log (first lines):\n\n```\n{}\n```\n",
            bad.join("\n")
        ));
        println!("nginx logged errors:\n{}", bad.join("\n"));
    }
    let dirout = stats::out_dir();
    fs::write(dirout.join("group3.md"), md).unwrap();
    fs::write(dirout.join("summary-nginx.md"), summary.join("\n") + "\n").unwrap();
    fs::write(dirout.join("nginx.status"), format!("group3={ok}\n")).unwrap();
    println!("nginx bench: {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// The median over rounds of `m[a]`'s rate divided by `m[b]`'s in the same round.
fn paired_ratio(m: &[Measured], a: usize, b: usize) -> f64 {
    let per_round: Vec<f64> = m[a]
        .rates
        .iter()
        .zip(&m[b].rates)
        .map(|(x, y)| x / y)
        .collect();
    median(&per_round)
}

/// One configuration counted under callgrind: label, port, load, client, operations.
struct Counted<'a> {
    label: &'a str,
    port: u16,
    load: Load,
    client: &'a Client,
    ops: usize,
}

/// Runs a second nginx (no master: the one process is the worker) under callgrind with
/// instrumentation off; for each of `runs`, turns it on, performs the operations one by
/// one, dumps the counters and turns it off. Returns instructions per operation per
/// label, or why it could not.
fn count_instructions(
    dir: &Path,
    conf: &str,
    ports: &[u16],
    runs: &[Counted],
) -> Result<Vec<f64>, String> {
    let conf = conf.replace("master_process on;", "master_process off;");
    let cgdir = stats::out_dir().join("callgrind");
    fs::create_dir_all(&cgdir).unwrap();
    let out = cgdir.join("nginx.out");
    for e in fs::read_dir(&cgdir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("nginx.out") {
            let _ = fs::remove_file(e.path());
        }
    }
    fs::write(dir.join("nginx-cg.conf"), conf).unwrap();
    let child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx-cg.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let pid = child.id();
    // Reuses Nginx's stop-on-drop (SIGTERM, then SIGKILL) for the valgrind process.
    let guard = Nginx {
        master: Some(child),
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for &port in ports {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("nginx under valgrind never opened port {port}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let control = |args: &[&str]| -> Result<(), String> {
        let st = Command::new("callgrind_control")
            .args(args)
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("callgrind_control: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("callgrind_control {args:?} failed"))
        }
    };
    let mut buf = Vec::with_capacity(8192);
    // Warm-up, not counted: lazy initialisations must not land on the first configuration.
    for r in runs {
        let mut keep = None;
        for _ in 0..3 {
            one_op(r.client, r.port, r.load, &mut buf, &mut keep);
        }
    }
    // Two passes, forward then backward, so that no configuration always runs on the
    // heap and caches its predecessor left; the two dumps of each are added.
    let order: Vec<usize> = (0..runs.len()).chain((0..runs.len()).rev()).collect();
    for (k, &i) in order.iter().enumerate() {
        let r = &runs[i];
        let mut keep = None;
        if r.load == Load::KeepAlive {
            // The connection's handshake and first request are not counted.
            one_op(r.client, r.port, r.load, &mut buf, &mut keep);
        }
        control(&["-i", "on"])?;
        control(&["-z"])?;
        for _ in 0..r.ops {
            one_op(r.client, r.port, r.load, &mut buf, &mut keep);
        }
        control(&["-d", &format!("{}#{}", r.label, k / runs.len())])?;
        control(&["-i", "off"])?;
        drop(keep);
    }
    drop(guard);
    // Each dump is `nginx.out.N`, its "desc: Trigger: dump LABEL" naming the run.
    let mut totals = vec![(0.0f64, 0usize); runs.len()];
    for e in fs::read_dir(&cgdir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("nginx.out.") {
            continue;
        }
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let label = text
            .lines()
            .find_map(|l| l.strip_prefix("desc: Trigger: Client Request: dump "))
            .or_else(|| {
                text.lines()
                    .find_map(|l| l.strip_prefix("desc: Trigger: dump "))
            })
            .unwrap_or("")
            .trim()
            .split('#')
            .next()
            .unwrap_or("")
            .to_string();
        let total: Option<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("summary: "))
            .and_then(|v| v.trim().parse().ok());
        if let (Some(i), Some(t)) = (runs.iter().position(|r| r.label == label), total) {
            totals[i].0 += t;
            totals[i].1 += 1;
        }
    }
    if totals.iter().any(|t| t.1 != 2) {
        return Err("some callgrind dumps are missing".into());
    }
    Ok(totals
        .iter()
        .zip(runs)
        .map(|(t, r)| t.0 / (2 * r.ops) as f64)
        .collect())
}

fn met(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "MISSED"
    }
}

/// The table of one comparison; `ratios` are (numerator, denominator, goal, label).
fn table(
    cfg: &[Config],
    m: &[Measured],
    unit: &str,
    cpu_unit: &str,
    ratios: &[(usize, usize, f64, &str)],
) -> String {
    let mut t = Table::new(&[
        "configuration",
        &format!("median {unit}"),
        "p25–p75",
        &format!("median {cpu_unit}"),
        "worker RSS before → after (peak)",
    ]);
    for (c, m) in cfg.iter().zip(m) {
        t.row(&[
            c.label.to_string(),
            format!("{:.0}", median(&m.rates)),
            stats::iqr(&m.rates, &|x| format!("{x:.0}")),
            stats::fmt_us(median(&m.cpu_per_op)),
            format!(
                "{:.1} → {:.1} MiB ({:.1} MiB)",
                m.rss_before as f64 / 1024.0,
                m.rss_after as f64 / 1024.0,
                m.peak as f64 / 1024.0
            ),
        ]);
    }
    let mut r = Table::new(&[
        "ratio",
        &format!("{unit}: median of per-round ratios"),
        "per-round ratio p25–p75",
        &format!("{cpu_unit} (medians, inverse)"),
        "goal",
    ]);
    for &(a, b, goal, label) in ratios {
        let ra = paired_ratio(m, a, b);
        let per_round: Vec<f64> = m[a]
            .rates
            .iter()
            .zip(&m[b].rates)
            .map(|(x, y)| x / y)
            .collect();
        let cpu = median(&m[b].cpu_per_op) / median(&m[a].cpu_per_op);
        r.row(&[
            label.to_string(),
            format!("{ra:.3}"),
            stats::iqr(&per_round, &|x| format!("{x:.3}")),
            format!("{cpu:.3}"),
            if goal > 0.0 {
                format!("≥ {goal}: {}", stats::verdict(ra >= goal))
            } else {
                "—".to_string()
            },
        ]);
    }
    format!("{}\n{}", t.text, r.text)
}

fn nginx_conf(dir: &Path, lib: &Path, port: &dyn Fn(&str) -> u16) -> String {
    let d = dir.display();
    let root = root().display();
    let lib = lib.display();
    let tls = |p: &str, extra: &str| {
        format!(
            "    server {{\n        listen 127.0.0.1:{} ssl{extra};\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {d}/server.pem;\n        ssl_certificate_key {d}/server.key;\n        keepalive_requests 1000000;\n",
            port(p)
        )
    };
    let ok = "        location / { return 200 \"ok\\n\"; }\n    }\n";
    let chain_loc = |code: &str| {
        format!(
            "        location / {{\n            access_by_lua_block {{\n                {code}\n            }}\n            content_by_lua_block {{\n                ngx.header[\"Content-Length\"] = 3\n                ngx.print(\"ok\\n\")\n            }}\n        }}\n    }}\n"
        )
    };
    let mut servers = String::new();
    // 3a
    servers += &tls("mtls_static", "");
    servers += &format!("        ssl_verify_client optional_no_ca;\n        ssl_client_certificate {d}/ca.pem;\n        ssl_verify_depth 0;\n");
    servers += ok;
    servers += &tls("mtls_ours", "");
    servers += "        ssl_certificate_by_lua_block {\n            local ok, err = TLS.request_client_certificate(CA)\n            if not ok then ngx.log(ngx.ERR, err) return ngx.exit(ngx.ERROR) end\n        }\n";
    servers += ok;
    servers += &tls("mtls_verify_client", "");
    servers += "        ssl_certificate_by_lua_block {\n            local ok, err = SSL.verify_client(CA, 0)\n            if not ok then ngx.log(ngx.ERR, err) return ngx.exit(ngx.ERROR) end\n        }\n";
    servers += ok;
    // 3b: both request the certificate the same static way; only the access phase differs.
    for (p, code) in [
        (
            "chain_raw_cert",
            "local pem = ngx.var.ssl_client_raw_cert\n                if not pem then return ngx.exit(500) end",
        ),
        (
            "chain_ours",
            "local pem = TLS.get_full_client_certificate_chain()\n                if not pem then return ngx.exit(500) end",
        ),
    ] {
        servers += &tls(p, "");
        servers += &format!("        ssl_verify_client optional_no_ca;\n        ssl_client_certificate {d}/ca.pem;\n");
        servers += &chain_loc(code);
    }
    // 3c
    servers += &tls("alpn_none", " http2");
    servers += ok;
    servers += &tls("alpn_empty", " http2");
    servers += "        ssl_client_hello_by_lua_block {\n            local _ = 1\n        }\n";
    servers += ok;
    servers += &tls("alpn_ours", " http2");
    servers += "        ssl_client_hello_by_lua_block {\n            local ok, err = TLS.disable_http2_alpn()\n            if not ok then ngx.log(ngx.ERR, err) return ngx.exit(ngx.ERROR) end\n        }\n";
    servers += ok;
    format!(
        r#"# Generated by benches/nginx.rs (make bench).
load_module {MODULES}/ndk_http_module.so;
load_module {MODULES}/ngx_http_lua_module.so;
env KONG_CLIENT_TLS_LIB={lib};

daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    lua_package_path "{root}/lua/?.lua;{RESTY_CORE}/?.lua;;";

    init_by_lua_block {{
        TLS = require "kong_client_tls"
        SSL = require "ngx.ssl"
        local f = assert(io.open("{d}/ca.pem"))
        CA = assert(SSL.parse_pem_cert(f:read("*a")))
        f:close()
    }}

{servers}}}
"#
    )
}

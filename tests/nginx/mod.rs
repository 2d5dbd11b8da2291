//! Support for the end-to-end tests: a stock nginx (Debian's nginx with
//! lua-nginx-module and lua-resty-core) started from a generated config in a temp dir on
//! 127.0.0.1, stopped whatever happens, and real TLS clients to drive it.
//!
//! The nginx is the host's, or with `KCT_NGINX_ROOT=<dir>` the one of a Debian root made
//! by `tests/distro/make-root.sh` (another Debian release: its nginx, lua-nginx-module,
//! lua-resty-core, LuaJIT and libssl), run chrooted there with the library built on the
//! host. The clients always run on the host.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foreign_types::ForeignTypeRef;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslSession, SslVerifyMode, SslVersion};
use openssl::stack::StackRef;
use openssl::x509::{X509Name, X509};

use crate::common::Pki;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const MODULES: &str = "/usr/lib/nginx/modules";
pub const RESTY_CORE: &str = "/usr/share/lua/5.1";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The file `tests/distro/make-root.sh` writes last into a root it completed.
const ROOT_STAMP: &str = ".kct-root-complete";

/// `KCT_NGINX_ROOT`: the Debian root nginx runs in, `None` for the host's nginx.
pub fn nginx_root() -> Option<PathBuf> {
    let dir = std::env::var_os("KCT_NGINX_ROOT").filter(|d| !d.is_empty())?;
    let dir = PathBuf::from(dir);
    assert!(
        dir.is_absolute(),
        "KCT_NGINX_ROOT={} must be an absolute path",
        dir.display()
    );
    assert!(
        dir.join(ROOT_STAMP).is_file(),
        "KCT_NGINX_ROOT={}: not a complete root (no {ROOT_STAMP}); make it with \
         tests/distro/make-root.sh <suite> {}",
        dir.display(),
        dir.display()
    );
    Some(dir)
}

/// Where the nginx under test sees `path`: inside the root, if there is one.
pub fn nginx_path(path: &str) -> PathBuf {
    match nginx_root() {
        Some(r) => r.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// The version of the nginx under test (`nginx -v`), e.g. `(1, 22, 1)`.
pub fn nginx_version() -> (u32, u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(read_nginx_version)
}

fn read_nginx_version() -> (u32, u32, u32) {
    let mut command = match nginx_root() {
        Some(r) => {
            let mut c = Command::new("chroot");
            c.arg(r).arg(NGINX);
            c
        }
        None => Command::new(NGINX),
    };
    let out = command.arg("-v").output().expect("nginx -v runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let version = text
        .split("nginx/")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in `nginx -v`: {text}"));
    let mut parts = version.split('.').map(|n| n.parse::<u32>().unwrap());
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// The directory of the built `libkong_client_tls.so`; never skipped when missing.
pub fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root().join(t) })
        .unwrap_or_else(|| root().join("target"));
    let dir = target.join("release");
    assert!(
        dir.join("libkong_client_tls.so").is_file(),
        "{}/libkong_client_tls.so is missing: build it with `cargo build --release --lib` \
         (`make test` does)",
        dir.display()
    );
    let install = match nginx_root() {
        Some(r) => format!(
            "remake the root: rm -rf {0} && tests/distro/make-root.sh <suite> {0}",
            r.display()
        ),
        None => "install nginx, libnginx-mod-http-lua and lua-resty-core (`make deps`)".into(),
    };
    for needed in [
        NGINX.to_string(),
        format!("{MODULES}/ngx_http_lua_module.so"),
        format!("{RESTY_CORE}/resty/core.lua"),
    ] {
        let path = nginx_path(&needed);
        assert!(path.exists(), "{} is missing: {install}", path.display());
    }
    dir
}

/// Serialises port picking and nginx start-up inside one test binary.
static STARTING: Mutex<()> = Mutex::new(());

/// `n` ports that were free a moment ago (the listeners are closed on return).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A running nginx; dropping it stops it (SIGTERM, then SIGKILL).
pub struct Nginx {
    child: Option<Child>,
    pub dir: PathBuf,
    pub ports: Vec<u16>,
}

/// What the test puts into the config: the `http {}` body, given the ports.
pub type HttpBlock<'a> = &'a dyn Fn(&[u16]) -> String;

/// How nginx finds libkong_client_tls.so.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Discovery {
    /// `lua_package_cpath` holds `<target>/release/?.so` (found as `lib?.so`).
    Cpath,
    /// `env KONG_CLIENT_TLS_LIB=<target>/release/libkong_client_tls.so;`
    Env,
    /// Neither: loading must fail.
    Nowhere,
}

/// What a test may change in how nginx is started besides its `http {}` body; the
/// default is what [`Nginx::start`] does.
#[derive(Clone, Copy, Default, Debug)]
pub struct Setup<'a> {
    /// Environment variables set for the nginx process (in a root: for in-root.sh, which
    /// execs its way to nginx, so nginx has them too). nginx itself keeps its whole
    /// environment only until its configuration is loaded (`init_by_lua*` sees it); then,
    /// `master_process off` included, it keeps only `TZ` and what `env` directives name.
    pub env: &'a [(&'a str, &'a str)],
    /// Lines for the main context (e.g. `env NAME;`). nginx runs as one process
    /// (`master_process off; worker_processes 1;`) unless these lines name
    /// `master_process` or `worker_processes`, which then replace that default.
    pub main: &'a str,
    /// Plain nginx: no Lua module loaded, no `init_by_lua*`, only the test's `http {}`
    /// body (the discovery is then irrelevant).
    pub no_lua: bool,
}

impl Nginx {
    /// Writes `files` and an nginx.conf into a fresh temp dir, then starts nginx with
    /// `ports` ports (handed to `http`) and waits until every port accepts connections.
    pub fn start(
        name: &str,
        discovery: Discovery,
        ports: usize,
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Nginx {
        Self::start_with(name, discovery, Setup::default(), ports, files, http)
    }

    /// [`Nginx::start`] with a [`Setup`].
    pub fn start_with(
        name: &str,
        discovery: Discovery,
        setup: Setup,
        ports: usize,
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Nginx {
        match Self::try_start_with(name, discovery, setup, ports, files, http) {
            Ok(nginx) => nginx,
            Err(log) => panic!("nginx did not start; error log:\n{log}"),
        }
    }

    /// Like [`Nginx::start`], but returns the error log when nginx exits instead.
    pub fn try_start(
        name: &str,
        discovery: Discovery,
        ports: usize,
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Result<Nginx, String> {
        Self::try_start_with(name, discovery, Setup::default(), ports, files, http)
    }

    /// [`Nginx::try_start`] with a [`Setup`].
    pub fn try_start_with(
        name: &str,
        discovery: Discovery,
        setup: Setup,
        ports: usize,
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Result<Nginx, String> {
        let release = release_dir();
        let dir = std::env::temp_dir().join(format!("kct-nginx-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs")).unwrap();
        for (file, data) in files {
            fs::write(dir.join(file), data).unwrap();
        }
        let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let ports = free_ports(ports);
            let conf = config(&dir, &release, discovery, &setup, &http(&ports));
            fs::write(dir.join("nginx.conf"), conf).unwrap();
            let _ = fs::remove_file(dir.join("logs/error.log"));
            let mut command = nginx_command(&dir, &release);
            command.envs(setup.env.iter().copied());
            // SAFETY: prctl is async-signal-safe. nginx dies with the test thread that
            // started it even if the test binary is killed and no Drop runs. In a root,
            // in-root.sh, unshare and chroot each exec the next: the setting reaches nginx.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            // nginx writes to stderr only before its error log is open (and the root's
            // mounts may fail): kept for the message when it does not start.
            let stderr = fs::File::create(dir.join("logs/stderr.log")).unwrap();
            let child = command
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("logs/error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("nginx starts");
            let mut nginx = Nginx {
                child: Some(child),
                dir: dir.clone(),
                ports,
            };
            match nginx.wait_ready() {
                Ok(()) => return Ok(nginx),
                Err(log) => {
                    drop(nginx);
                    if !log.contains("Address already in use") {
                        return Err(log);
                    }
                    last_log = log;
                }
            }
        }
        Err(format!("nginx could not bind its ports:\n{last_log}"))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in self.ports.clone() {
            loop {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    let stderr =
                        fs::read_to_string(self.dir.join("logs/stderr.log")).unwrap_or_default();
                    return Err(format!(
                        "(nginx exited: {status})\n{stderr}{}",
                        self.error_log()
                    ));
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("(port {port} never opened)\n{}", self.error_log()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// `nginx -s reload`: SIGHUP to nginx (the master process, if it has one).
    pub fn reload(&self) {
        let pid = self.child.as_ref().expect("nginx running").id();
        // SAFETY: plain kill(2) of our own child.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill -HUP {pid}");
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops nginx and asserts it was still running, exited cleanly, and logged nothing
    /// at `[alert]`, `[crit]` or `[emerg]`, and no crashed process.
    pub fn finish(self) {
        self.finish_expecting(&[]);
    }

    /// [`Nginx::finish`], except that log lines containing one of `expected` (an
    /// `[alert]` the test provoked on purpose and checks itself) do not count.
    pub fn finish_expecting(mut self, expected: &[&str]) {
        let alive = self.child.as_mut().unwrap().try_wait().unwrap().is_none();
        let status = self.stop().expect("nginx status");
        let log = self.error_log();
        assert!(
            alive,
            "nginx died during the test ({status}); error log:\n{log}"
        );
        assert!(
            status.success(),
            "nginx exited with {status}; error log:\n{log}"
        );
        let unexpected: String = log
            .lines()
            .filter(|l| !expected.iter().any(|e| l.contains(e)))
            .collect::<Vec<_>>()
            .join("\n");
        for bad in [
            "[alert]",
            "[crit]",
            "[emerg]",
            "exited on signal",
            "core dumped",
        ] {
            assert!(!unexpected.contains(bad), "error log has {bad}:\n{log}");
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The command that runs nginx (its arguments follow): the host's `/usr/sbin/nginx`, or
/// with `KCT_NGINX_ROOT` the root's, through `tests/distro/in-root.sh`: chrooted, in a
/// mount namespace of its own where the clone, the test's temp dir and the library's
/// directory are bind-mounted at the same paths as on the host, so that the generated
/// config works unchanged. The mounts exist only in that namespace and end with nginx,
/// and the script execs its way to nginx, which keeps the pid (and PR_SET_PDEATHSIG).
fn nginx_command(dir: &Path, release: &Path) -> Command {
    let Some(chroot) = nginx_root() else {
        return Command::new(NGINX);
    };
    // Each path once; one inside another is already visible through it.
    let mut binds: Vec<&Path> = Vec::new();
    for path in [root(), dir, release] {
        if !binds.iter().any(|b| path.starts_with(b)) {
            binds.retain(|b| !b.starts_with(path));
            binds.push(path);
        }
    }
    let mut command = Command::new(root().join("tests/distro/in-root.sh"));
    command.arg(&chroot).args(binds).args(["--", NGINX]);
    command
}

fn config(dir: &Path, release: &Path, discovery: Discovery, setup: &Setup, http: &str) -> String {
    let main = setup.main;
    let mut processes = String::new();
    for default in ["master_process off;", "worker_processes 1;"] {
        if !main.contains(default.split(' ').next().unwrap()) {
            processes.push_str(default);
            processes.push('\n');
        }
    }
    let dir = dir.display();
    // The lua module and this project's Lua, unless the test wants a plain nginx.
    let (modules, lua) = if setup.no_lua {
        (String::new(), String::new())
    } else {
        let (env, cpath) = match discovery {
            Discovery::Cpath => (String::new(), format!("{}/?.so", release.display())),
            Discovery::Env => (
                format!(
                    "env KONG_CLIENT_TLS_LIB={}/libkong_client_tls.so;",
                    release.display()
                ),
                "/nonexistent/?.so".to_string(),
            ),
            Discovery::Nowhere => (String::new(), "/nonexistent/?.so".to_string()),
        };
        let root = root().display();
        (
            format!(
                "load_module {MODULES}/ndk_http_module.so;\n\
                 load_module {MODULES}/ngx_http_lua_module.so;\n{env}"
            ),
            format!(
                r#"    lua_package_path "{root}/lua/?.lua;{root}/tests/nginx/?.lua;{RESTY_CORE}/?.lua;;";
    lua_package_cpath "{cpath}";
    lua_shared_dict results 8m;

    init_by_lua_block {{
        E2E_DIR = "{dir}"
        -- What lua-resty-openssl declares: the older one-argument prototype, first. The
        -- module must keep working (it calls through its own function pointer type).
        require("ffi").cdef("void *ngx_http_lua_ffi_get_req_ssl_pointer(void *r);")
        require "kong_client_tls"
        require "kct_e2e"
    }}
"#
            ),
        )
    };
    format!(
        r#"# Generated by tests/nginx/mod.rs.
{modules}
{main}

daemon off;
{processes}pid {dir}/nginx.pid;
error_log {dir}/logs/error.log notice;

events {{
    worker_connections 512;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

{lua}
{http}
}}
"#
    )
}

/// The `listen` line of a TLS server block on `port` with HTTP/2 on: nginx 1.25.1 made
/// `http2` a directive of its own and logs a `[warn]` for the old `listen ... http2`.
pub fn listen_http2(port: u16) -> String {
    if nginx_version() >= (1, 25, 1) {
        format!("listen 127.0.0.1:{port} ssl;\n        http2 on;")
    } else {
        format!("listen 127.0.0.1:{port} ssl http2;")
    }
}

/// The `ssl_*` lines of a TLS server block using `server.pem`/`server.key`.
pub fn ssl_server(port: u16) -> String {
    format!(
        "listen 127.0.0.1:{port} ssl;\n        \
         ssl_protocols TLSv1.2 TLSv1.3;\n        \
         ssl_certificate server.pem;\n        \
         ssl_certificate_key server.key;"
    )
}

// Certificates ------------------------------------------------------------------------

pub fn pem(cert: &X509) -> String {
    String::from_utf8(cert.to_pem().unwrap()).unwrap()
}

pub fn key_pem(key: &PKey<Private>) -> Vec<u8> {
    key.private_key_to_pem_pkcs8().unwrap()
}

/// The server's files: `server.pem` (leaf + intermediate) and `server.key`.
pub fn server_files(server: &Pki) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("server.pem", server.chain_pem().into_bytes()),
        ("server.key", key_pem(&server.leaf.key)),
    ]
}

/// What a client presents: a certificate, the chain it sends after it, and the key.
#[derive(Clone)]
pub struct ClientCert {
    pub cert: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl ClientCert {
    /// leaf + intermediate of `pki`.
    pub fn leaf(pki: &Pki) -> ClientCert {
        ClientCert {
            cert: pki.leaf.cert.clone(),
            chain: vec![pki.intermediate.cert.clone()],
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

// The TLS client ----------------------------------------------------------------------

pub struct Request<'a> {
    pub port: u16,
    pub path: &'a str,
    pub version: SslVersion,
    pub sni: Option<&'a str>,
    pub cert: Option<&'a ClientCert>,
    pub session: Option<&'a SslSession>,
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

extern "C" {
    fn SSL_get_client_CA_list(ssl: *const openssl_sys::SSL)
        -> *mut openssl_sys::stack_st_X509_NAME;
}

/// One HTTP/1.0 request over TLS with exactly `req.version`.
pub fn get(req: &Request) -> Reply {
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_min_proto_version(Some(req.version)).unwrap();
    ctx.set_max_proto_version(Some(req.version)).unwrap();
    ctx.set_verify(SslVerifyMode::NONE);
    if let Some(c) = req.cert {
        ctx.set_certificate(&c.cert).unwrap();
        for extra in &c.chain {
            ctx.add_extra_chain_cert(extra.clone()).unwrap();
        }
        ctx.set_private_key(&c.key).unwrap();
    }
    let ctx = ctx.build();
    let mut ssl = Ssl::new(&ctx).unwrap();
    if let Some(sni) = req.sni {
        ssl.set_hostname(sni).unwrap();
    }
    if let Some(session) = req.session {
        // SAFETY: the session comes from a client of the same settings.
        unsafe { ssl.set_session(session).unwrap() };
    }
    let tcp = TcpStream::connect(("127.0.0.1", req.port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut stream = ssl
        .connect(tcp)
        .unwrap_or_else(|e| panic!("handshake with port {}: {e}", req.port));
    let host = req.sni.unwrap_or("localhost");
    write!(stream, "GET {} HTTP/1.0\r\nHost: {host}\r\n\r\n", req.path).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                // A peer closing without close_notify after the full response.
                let _ = e;
                break;
            }
            Err(e) => panic!("reading from port {}: {e}", req.port),
        }
    }
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
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
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

/// A plain-HTTP GET (for the dump endpoint and non-TLS checks).
pub fn get_plain(port: u16, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The probe results recorded under `prefix` (see `tests/nginx/kct_e2e.lua`).
pub fn results(dump_port: u16, prefix: &str) -> HashMap<String, String> {
    let (status, body) = get_plain(dump_port, &format!("/dump?prefix={prefix}"));
    assert_eq!(status, 200, "{body}");
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

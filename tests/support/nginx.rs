//! The one nginx harness of the tests, the benches and the soak: a stock nginx (Debian's
//! nginx with lua-nginx-module and lua-resty-core) started from a generated config in a
//! temp dir on 127.0.0.1, waited for until its ports accept connections, and stopped
//! whatever happens (SIGTERM, then SIGKILL, see [`ChildGuard`]). Ports are named; a test
//! ends with [`Nginx::finish`], which checks the error log.
//!
//! The nginx is the host's, or with `KCT_NGINX_ROOT=<dir>` the one of a Debian root made
//! by `tests/distro/make-root.sh` (another Debian release: its nginx, lua-nginx-module,
//! lua-resty-core, LuaJIT and libssl), run chrooted there with the library built on the
//! host. The clients ([`super::clients`]) always run on the host.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::kong::functions_lua_table;
use super::paths::{release_dir, repo_root, try_library};
use super::pki::{key_pem, Pki};
use super::process::ChildGuard;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const MODULES: &str = "/usr/lib/nginx/modules";
pub const RESTY_CORE: &str = "/usr/share/lua/5.1";

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

/// The built library and the nginx, Lua module and lua-resty-core it runs with; `Err`
/// says what is missing and how to get it.
pub fn check_prerequisites() -> Result<(), String> {
    try_library()?;
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
        if !path.exists() {
            return Err(format!("{} is missing: {install}", path.display()));
        }
    }
    Ok(())
}

/// The temp dir of the nginx named `name` (its config, files and logs).
pub fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kct-nginx-{name}-{}", std::process::id()))
}

/// Serialises port picking and nginx start-up inside one process.
static STARTING: Mutex<()> = Mutex::new(());

/// The ports of one nginx, by the names the caller gave them.
#[derive(Clone, Debug)]
pub struct Ports {
    named: Vec<(&'static str, u16)>,
}

impl Ports {
    /// Ports that were free a moment ago (their listeners are closed on return), one per
    /// name.
    pub fn free(names: &[&'static str]) -> Ports {
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "port name {name} given twice");
        }
        let listeners: Vec<TcpListener> = names
            .iter()
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let named = names
            .iter()
            .zip(&listeners)
            .map(|(n, l)| (*n, l.local_addr().unwrap().port()))
            .collect();
        Ports { named }
    }

    /// The port named `name`; panics for a name not given.
    pub fn get(&self, name: &str) -> u16 {
        self.named
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no port named {name} in {self:?}"))
    }

    /// (name, port) in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u16)> + '_ {
        self.named.iter().copied()
    }
}

/// What the test puts into the config: the `http {}` body, given the ports.
pub type HttpBlock<'a> = &'a dyn Fn(&Ports) -> String;

/// How nginx finds libkong_client_tls.so.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Discovery {
    /// `lua_package_cpath` holds `<target>/release/?.so` (found as `lib?.so`).
    #[default]
    Cpath,
    /// `env KONG_CLIENT_TLS_LIB=<target>/release/libkong_client_tls.so;`
    Env,
    /// Neither: loading must fail.
    Nowhere,
}

/// How nginx is started besides its `http {}` body; the default is what [`Nginx::start`]
/// does.
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// How nginx finds the library.
    pub discovery: Discovery,
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
    /// The body of `init_by_lua_block`; `None`: the tests' (`kong_client_tls` and
    /// `tests/nginx/kct_e2e.lua` loaded, `E2E_DIR` set to the temp dir).
    pub init_lua: Option<&'a str>,
    /// The level of the error log.
    pub log_level: &'a str,
    /// `worker_connections`.
    pub worker_connections: u32,
    /// A command nginx runs under (e.g. `["valgrind", "--tool=callgrind"]`), run where
    /// nginx runs (inside the root with `KCT_NGINX_ROOT`); its process is the one
    /// [`Nginx`] stops and [`Nginx::pid`] names.
    pub wrapper: &'a [&'a str],
    /// How long to wait for every port to accept connections.
    pub start_timeout: Duration,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            discovery: Discovery::Cpath,
            env: &[],
            main: "",
            no_lua: false,
            init_lua: None,
            log_level: "notice",
            worker_connections: 512,
            wrapper: &[],
            start_timeout: Duration::from_secs(20),
        }
    }
}

impl Setup<'_> {
    /// The default setup with another discovery.
    pub fn discovery(discovery: Discovery) -> Self {
        Setup {
            discovery,
            ..Setup::default()
        }
    }
}

/// A running nginx; dropping it stops it (SIGTERM, then SIGKILL).
pub struct Nginx {
    process: ChildGuard,
    pub dir: PathBuf,
    pub ports: Ports,
    /// `master_process on`: the process started is a master, its children the workers.
    with_master: bool,
}

/// The server's files: `server.pem` (leaf + intermediate) and `server.key`.
pub fn server_files(server: &Pki) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("server.pem", server.chain_pem().into_bytes()),
        ("server.key", key_pem(&server.leaf.key)),
    ]
}

impl Nginx {
    /// Writes `files` and an nginx.conf into a fresh temp dir ([`temp_dir`]), then starts
    /// nginx with the default [`Setup`] and one free port per name in `ports` (handed to
    /// `http`), and waits until every port accepts connections.
    pub fn start(
        name: &str,
        ports: &[&'static str],
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Nginx {
        Self::start_with(name, &Setup::default(), ports, files, http)
    }

    /// [`Nginx::start`] with a [`Setup`].
    pub fn start_with(
        name: &str,
        setup: &Setup,
        ports: &[&'static str],
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Nginx {
        match Self::try_start_with(name, setup, ports, files, http) {
            Ok(nginx) => nginx,
            Err(log) => panic!("nginx did not start; error log:\n{log}"),
        }
    }

    /// Like [`Nginx::start_with`], but returns the error log when nginx exits instead.
    pub fn try_start_with(
        name: &str,
        setup: &Setup,
        ports: &[&'static str],
        files: &[(&str, Vec<u8>)],
        http: HttpBlock,
    ) -> Result<Nginx, String> {
        check_prerequisites().unwrap_or_else(|e| panic!("{e}"));
        let dir = temp_dir(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs")).unwrap();
        for (file, data) in files {
            fs::write(dir.join(file), data).unwrap();
        }
        let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let ports = Ports::free(ports);
            fs::write(dir.join("nginx.conf"), config(&dir, setup, &http(&ports))).unwrap();
            let _ = fs::remove_file(dir.join("logs/error.log"));
            let mut process = spawn(&dir, setup);
            // Under an environment wrapper (valgrind) nginx starts many times slower.
            let timeout = match env_wrapper() {
                Some(_) if setup.wrapper.is_empty() => setup.start_timeout * 6,
                _ => setup.start_timeout,
            };
            match wait_ready(&mut process, &dir, &ports, timeout) {
                Ok(()) => {
                    return Ok(Nginx {
                        process,
                        dir,
                        ports,
                        with_master: setup.main.contains("master_process on"),
                    })
                }
                Err(log) => {
                    drop(process);
                    // The next attempt reuses the dir: removed only when giving up.
                    if !log.contains("Address already in use") {
                        let _ = fs::remove_dir_all(&dir);
                        return Err(log);
                    }
                    last_log = log;
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(format!("nginx could not bind its ports:\n{last_log}"))
    }

    /// The port named `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports.get(name)
    }

    /// The pid of the process started: nginx's master, or its only process with
    /// `master_process off` (or the wrapper's).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The processes that serve: a master's workers (waiting, as [`Nginx::worker`] does,
    /// for it to have started one), or nginx itself when it runs with `master_process off`.
    /// After a reload, old workers may still be listed until they exit.
    pub fn workers(&self) -> Vec<u32> {
        if !self.with_master {
            return vec![self.pid()];
        }
        self.worker();
        self.process.children()
    }

    /// The first worker's pid, waiting (up to 10 s) for a master to have started one.
    pub fn worker(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = self.process.children().first() {
                return *pid;
            }
            assert!(Instant::now() < deadline, "no nginx worker");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nginx -s reload`: SIGHUP to nginx (the master process, if it has one).
    pub fn reload(&self) {
        self.process.signal(libc::SIGHUP);
    }

    pub fn error_log(&self) -> String {
        error_log(&self.dir)
    }

    /// The error log once it has stopped growing for a second (at most 30 s): the
    /// handshakes of clients that just went away end, and log, a little after the
    /// clients do, more so on a loaded machine.
    pub fn settled_error_log(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut log = self.error_log();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.error_log();
            if now.len() == log.len() || Instant::now() >= deadline {
                return now;
            }
            log = now;
        }
    }

    /// Stops nginx (SIGTERM, then SIGKILL) and returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if env_wrapper().is_some() && self.process.running() {
            self.wake_to_exit();
        }
        self.process.stop()
    }

    /// Under valgrind, a SIGTERM does not interrupt nginx's `epoll_wait`: nginx logs it
    /// and exits only on its next event. A connection to each port is that event.
    fn wake_to_exit(&mut self) {
        self.process.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.process.running() && Instant::now() < deadline {
            for (_, port) in self.ports.iter() {
                let _ = TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
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
        let alive = self.process.try_wait().is_none();
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

fn error_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
}

/// Waits until every port accepts connections; `Err` with the logs when nginx exits
/// first or the time is up.
fn wait_ready(
    process: &mut ChildGuard,
    dir: &Path,
    ports: &Ports,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for (_, port) in ports.iter() {
        loop {
            if let Some(status) = process.try_wait() {
                let stderr = fs::read_to_string(dir.join("logs/stderr.log")).unwrap_or_default();
                return Err(format!(
                    "(nginx exited: {status})\n{stderr}{}",
                    error_log(dir)
                ));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("(port {port} never opened)\n{}", error_log(dir)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Starts nginx on `dir/nginx.conf` (under the setup's wrapper, if any), guarded, dying
/// with the thread that started it even if no Drop runs.
fn spawn(dir: &Path, setup: &Setup) -> ChildGuard {
    let from_env = env_wrapper();
    let env_words: Vec<&str> = from_env.iter().flat_map(|w| w.split_whitespace()).collect();
    let wrapper = if setup.wrapper.is_empty() {
        &env_words[..]
    } else {
        setup.wrapper
    };
    let mut command = nginx_command(dir, &release_dir(), wrapper);
    command.envs(setup.env.iter().copied());
    // nginx writes to stderr only before its error log is open (and the root's mounts may
    // fail): kept for the message when it does not start.
    let stderr = fs::File::create(dir.join("logs/stderr.log")).unwrap();
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SIGTERM, not SIGKILL, should the test binary die: a master stops its workers then.
    let guard = ChildGuard::spawn_dying_by(&mut command, libc::SIGTERM).unwrap_or_else(|e| {
        panic!(
            "{} runs: {e}",
            command.get_program().to_string_lossy().into_owned()
        )
    });
    if env_words.is_empty() || !setup.wrapper.is_empty() {
        return guard;
    }
    // valgrind checks for leaks at exit: give it time before SIGKILL.
    guard.with_grace(Duration::from_secs(120))
}

/// `KCT_NGINX_WRAPPER`: a command every nginx of a run goes under when its setup names
/// none (`make test-nginx-valgrind` puts the suites' nginx under valgrind this way).
pub fn env_wrapper() -> Option<String> {
    std::env::var("KCT_NGINX_WRAPPER")
        .ok()
        .filter(|w| !w.trim().is_empty())
}

/// The command that runs nginx (its arguments follow), under `wrapper` if not empty: the
/// host's `/usr/sbin/nginx`, or with `KCT_NGINX_ROOT` the root's, through
/// `tests/distro/in-root.sh`: chrooted, in a mount namespace of its own where the clone,
/// the test's temp dir and the library's directory are bind-mounted at the same paths as
/// on the host, so that the generated config works unchanged. The mounts exist only in
/// that namespace and end with nginx, and the script execs its way to the wrapper or
/// nginx, which keeps the pid (and PR_SET_PDEATHSIG).
fn nginx_command(dir: &Path, release: &Path, wrapper: &[&str]) -> Command {
    let program: Vec<&str> = wrapper.iter().copied().chain([NGINX]).collect();
    let Some(chroot) = nginx_root() else {
        let mut command = Command::new(program[0]);
        command.args(&program[1..]);
        return command;
    };
    // Each path once; one inside another is already visible through it.
    let mut binds: Vec<&Path> = Vec::new();
    for path in [repo_root(), dir, release] {
        if !binds.iter().any(|b| path.starts_with(b)) {
            binds.retain(|b| !b.starts_with(path));
            binds.push(path);
        }
    }
    let mut command = Command::new(repo_root().join("tests/distro/in-root.sh"));
    command.arg(&chroot).args(binds).arg("--").args(program);
    command
}

/// The nginx.conf of an nginx in `dir` with `setup` and the `http {}` body `http`.
pub fn config(dir: &Path, setup: &Setup, http: &str) -> String {
    let release = release_dir();
    let (main, log_level, worker_connections) =
        (setup.main, setup.log_level, setup.worker_connections);
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
        let (env, cpath) = match setup.discovery {
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
        let root = repo_root().display();
        // The tests' init (kct_e2e.lua records its probes in the `results` dict), or the
        // caller's.
        let (dict, init) = match setup.init_lua {
            Some(init) => ("", init.to_string()),
            None => (
                "lua_shared_dict results 8m;",
                format!(
                    r#"        E2E_DIR = "{dir}"
        KCT_FUNCTIONS = {functions}
        -- What lua-resty-openssl declares: the older one-argument prototype, first. The
        -- module must keep working (it calls through its own function pointer type).
        require("ffi").cdef("void *ngx_http_lua_ffi_get_req_ssl_pointer(void *r);")
        require "kong_client_tls"
        require "kct_e2e""#,
                    functions = functions_lua_table()
                ),
            ),
        };
        (
            format!(
                "load_module {MODULES}/ndk_http_module.so;\n\
                 load_module {MODULES}/ngx_http_lua_module.so;\n{env}"
            ),
            format!(
                r#"    lua_package_path "{root}/lua/?.lua;{root}/tests/nginx/?.lua;{RESTY_CORE}/?.lua;;";
    lua_package_cpath "{cpath}";
    {dict}

    init_by_lua_block {{
{init}
    }}
"#
            ),
        )
    };
    format!(
        r#"# Generated by tests/support/nginx.rs.
{modules}
{main}

daemon off;
{processes}pid {dir}/nginx.pid;
error_log {dir}/logs/error.log {log_level};

events {{
    worker_connections {worker_connections};
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

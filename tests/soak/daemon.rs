//! An nginx master that can be upgraded in place (USR2), for the soak's churn instance.
//!
//! nginx ignores USR2 while its parent is the process that started it
//! (`ngx_getppid() == ngx_parent`: with `daemon off`, the parent that would also get the
//! new binary's exit). So the churn nginx runs under [`WRAPPER`], which starts it in a
//! subshell that exits 2 s later (nginx is then re-parented) and stays itself as the
//! process the harness guards. [`Master`] follows the master through `nginx.pid` and
//! stops every master it knew on Drop (TERM, then KILL), since the re-parented nginx no
//! longer dies with the harness's process. Should the soak itself be killed, so that no
//! Drop runs, a watchdog ([`WATCHDOG`]) stops the masters a second later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `sh -c '( nginx … & sleep 2 ); exec sleep 1000000' sh nginx …`.
pub const WRAPPER: [&str; 4] = ["sh", "-c", "( \"$@\" & sleep 2 ); exec sleep 1000000", "sh"];

/// Outlives the soak's process (its own process group: a Ctrl-C to the soak does not
/// reach it) and waits for it to end; then TERMs the masters whose pid files are still
/// there (gone once Drop has stopped them and removed the directory), if they are nginx.
const WATCHDOG: &str = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
for f in "$2/nginx.pid" "$2/nginx.pid.oldbin"; do
  p=$(cat "$f" 2>/dev/null) || continue
  grep -qs nginx "/proc/$p/cmdline" && kill -TERM "$p"
done"#;

fn start_watchdog(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let spawned = std::process::Command::new("sh")
        .args(["-c", WATCHDOG, "sh", &std::process::id().to_string()])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "soak: no watchdog for {} ({e}): a killed soak leaves nginx running",
            dir.display()
        );
    }
}

pub struct Master {
    dir: PathBuf,
    pub pid: u32,
    /// Every master seen (the old one after an upgrade, until it exits).
    known: Vec<u32>,
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its new parent) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The children of `pid` (its workers, for a master).
pub fn children(pid: u32) -> Vec<u32> {
    crate::support::process::children_of(pid)
        .into_iter()
        .filter(|p| alive(*p))
        .collect()
}

impl Master {
    /// The master of the nginx in `dir`, from its pid file (waiting up to 10 s for it to
    /// be re-parented, i.e. out of the wrapper's subshell).
    pub fn new(dir: &Path) -> Master {
        let pidfile = dir.join("nginx.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = read_pid(&pidfile) {
                break pid;
            }
            assert!(Instant::now() < deadline, "no {}", pidfile.display());
            std::thread::sleep(Duration::from_millis(50));
        };
        start_watchdog(dir);
        let master = Master {
            dir: dir.to_path_buf(),
            pid,
            known: vec![pid],
        };
        // Until the subshell has exited, USR2 would be ignored.
        std::thread::sleep(Duration::from_millis(2500));
        master
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: a signal to the master's pid, read from its pid file.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    /// The first worker (waiting up to 10 s for one).
    pub fn worker(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(w) = children(self.pid).into_iter().max() {
                return w;
            }
            assert!(Instant::now() < deadline, "no worker of {}", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A worker other than `old`, waiting up to `timeout`.
    pub fn wait_worker_other_than(&self, old: u32, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(w) = children(self.pid).into_iter().find(|w| *w != old) {
                return Some(w);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The binary upgrade: USR2, wait for the new master's pid file (the old one's is
    /// renamed `nginx.pid.oldbin`) and its worker, QUIT to the old master, wait for it to
    /// exit.
    pub fn upgrade(&mut self) -> Result<String, String> {
        let old = self.pid;
        self.signal(libc::SIGUSR2);
        let deadline = Instant::now() + Duration::from_secs(15);
        let new = loop {
            if let Some(pid) = read_pid(&self.dir.join("nginx.pid")) {
                if pid != old && read_pid(&self.dir.join("nginx.pid.oldbin")) == Some(old) {
                    break pid;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no new master 15 s after USR2 to {old}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.known.push(new);
        while children(new).is_empty() {
            if Instant::now() > deadline {
                return Err(format!("new master {new} started no worker"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGQUIT);
        self.pid = new;
        let quit = Instant::now();
        while alive(old) {
            if quit.elapsed() > Duration::from_secs(30) {
                return Err(format!("old master {old} still running 30 s after QUIT"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The new master was the old one's child: once that exits, its parent changes,
        // and it could take another USR2.
        Ok(format!(
            "binary upgrade: USR2 to master {old}, new master {new} (worker {:?}), QUIT to {old}, which exited {:.1} s later",
            children(new),
            quit.elapsed().as_secs_f64()
        ))
    }

    /// Stops every master known (QUIT, then TERM, then KILL); (pid, exited after
    /// QUIT or was already gone) for each.
    pub fn stop(&mut self) -> Vec<(u32, bool)> {
        let mut result = Vec::new();
        for pid in std::mem::take(&mut self.known) {
            if !alive(pid) {
                if pid == self.pid {
                    result.push((pid, false));
                }
                continue;
            }
            let mut clean = false;
            for (sig, wait) in [(libc::SIGQUIT, 10), (libc::SIGTERM, 5), (libc::SIGKILL, 5)] {
                // SAFETY: a signal to an nginx master this soak started.
                unsafe { libc::kill(pid as i32, sig) };
                let deadline = Instant::now() + Duration::from_secs(wait);
                while alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !alive(pid) {
                    clean = sig == libc::SIGQUIT;
                    break;
                }
            }
            result.push((pid, clean));
        }
        result
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop();
    }
}

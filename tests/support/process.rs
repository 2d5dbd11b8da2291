//! Child processes that never outlive their test: [`ChildGuard`] stops its child when
//! dropped, pass or fail, and a child also dies with the thread that spawned it.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A running child; dropping it stops it: SIGTERM, then SIGKILL after the grace period
/// (10 s by default), and waits for it.
pub struct ChildGuard {
    child: Option<Child>,
    grace: Duration,
}

/// Makes the child of `command` get SIGKILL when the thread that spawns it ends, so that
/// it dies even when the test binary is killed and no Drop runs. A chain of execs (a
/// wrapper, `chroot`, `unshare`) keeps the setting.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    die_with_parent_by(command, libc::SIGKILL)
}

/// [`die_with_parent`] with another signal: SIGTERM for an nginx master, which then
/// stops its workers (a SIGKILLed master leaves them running).
pub fn die_with_parent_by(command: &mut Command, signal: libc::c_int) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        })
    }
}

impl ChildGuard {
    /// Spawns `command` (see [`die_with_parent`]) under a guard.
    pub fn spawn(command: &mut Command) -> io::Result<ChildGuard> {
        let child = die_with_parent(command).spawn()?;
        Ok(ChildGuard::new(child))
    }

    /// [`ChildGuard::spawn`], the child getting `signal` when the spawning thread ends.
    pub fn spawn_dying_by(command: &mut Command, signal: libc::c_int) -> io::Result<ChildGuard> {
        let child = die_with_parent_by(command, signal).spawn()?;
        Ok(ChildGuard::new(child))
    }

    /// Guards a child spawned elsewhere.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            grace: Duration::from_secs(10),
        }
    }

    /// How long a stop waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> ChildGuard {
        self.grace = grace;
        self
    }

    pub fn id(&self) -> u32 {
        self.child().id()
    }

    pub fn child(&self) -> &Child {
        self.child.as_ref().expect("child not stopped yet")
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child not stopped yet")
    }

    /// Whether the child is still there and running (not stopped, not exited).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child_mut().try_wait().expect("waitpid")
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.id();
        // SAFETY: plain kill(2) of our own child, not yet waited for.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill -{signal} {pid}");
    }

    /// The pids of the child's own children.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.id())
    }

    /// Stops the child (SIGTERM, then SIGKILL after the grace period); its exit status,
    /// `None` when it was already stopped.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: plain kill(2) of our own child, not yet waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + self.grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `input` to the child's piped stdin (then closes it), and waits for it to
    /// exit on its own, collecting its piped stdout and stderr. The child is still
    /// stopped if writing or reading panics.
    pub fn output(mut self, input: Option<&[u8]>) -> Output {
        if let Some(mut stdin) = self.child_mut().stdin.take() {
            if let Some(input) = input {
                stdin.write_all(input).expect("write to the child's stdin");
            }
        }
        let child = self.child.take().expect("child not stopped yet");
        child.wait_with_output().expect("child output")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `command` to its end under a guard, `input` on its stdin (none: stdin is
/// `/dev/null`), and returns what it printed.
pub fn run(command: &mut Command, input: Option<&[u8]>) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = command.get_program().to_string_lossy().into_owned();
    ChildGuard::spawn(command)
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
        .output(input)
}

/// The children of any process `pid` (`/proc/<pid>/task/<pid>/children`), e.g. of an
/// nginx master that is no longer our child after a binary upgrade.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What `/proc` says of a process: CPU time and memory.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU time in ns (`/proc/<pid>/schedstat`, first field).
    pub cpu_ns: f64,
    /// Resident set size, kB (`VmRSS`).
    pub rss_kb: u64,
    /// Peak resident set size, kB (`VmHWM`; see [`reset_peak_rss`]).
    pub peak_rss_kb: u64,
    /// The part of `rss_kb` that is shared memory, kB (`RssShmem`).
    pub shmem_rss_kb: u64,
}

impl Usage {
    /// `rss_kb` less shared memory. The pages of nginx's shared session cache count in a
    /// worker's VmRSS as sessions fill the zone, up to its size, and nothing that could
    /// leak lives there: the soak judges flatness on this.
    pub fn private_rss_kb(&self) -> u64 {
        self.rss_kb.saturating_sub(self.shmem_rss_kb)
    }
}

/// The CPU time and memory of `pid` now.
pub fn usage(pid: u32) -> Usage {
    let sched = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    let cpu_ns: f64 = sched.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu_ns,
        rss_kb: kb("VmRSS:"),
        peak_rss_kb: kb("VmHWM:"),
        shmem_rss_kb: kb("RssShmem:"),
    }
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS; false when not permitted.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

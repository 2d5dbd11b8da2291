//! Timing, medians and the markdown the benches write.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Nanoseconds of CPU time used by the calling thread (immune to time spent preempted by
/// the other processes on this shared machine).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` `n` times; returns (CPU ns per run, wall ns per run).
pub fn time_batch(n: usize, f: &mut dyn FnMut()) -> (f64, f64) {
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    for _ in 0..n {
        f();
    }
    let cpu = thread_cpu_ns() - cpu;
    let wall = wall.elapsed().as_nanos() as f64;
    (cpu as f64 / n as f64, wall / n as f64)
}

pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// "p25–p75" of `values`, formatted with `fmt`.
pub fn iqr(values: &[f64], fmt: &dyn Fn(f64) -> String) -> String {
    format!(
        "{}–{}",
        fmt(quantile(values, 0.25)),
        fmt(quantile(values, 0.75))
    )
}

/// Interleaved measurements of several variants: each round runs every variant once, in
/// order on even rounds and in reverse on odd ones (A B C, C B A, …), each run timed on
/// its own; a sample's value per variant is the median of its `per_sample` runs, which
/// drops the runs hit by an interrupt or a migration. Comparing two variants within each
/// sample cancels what the machine's load does to both.
pub struct Interleaved {
    /// CPU ns per run, `[variant][sample]`.
    pub cpu: Vec<Vec<f64>>,
    /// Wall-clock ns per run, `[variant][sample]`.
    pub wall: Vec<Vec<f64>>,
}

impl Interleaved {
    /// Each run of `fs` timed here: this thread's CPU time.
    pub fn run(samples: usize, per_sample: usize, fs: &mut [&mut dyn FnMut()]) -> Interleaved {
        Self::rounds(samples, per_sample, fs.len(), |v| {
            let c = thread_cpu_ns();
            fs[v]();
            (thread_cpu_ns() - c) as f64
        })
    }

    /// Each run of `fs` reports its own CPU ns (e.g. one side of a handshake only).
    pub fn run_reported(
        samples: usize,
        per_sample: usize,
        fs: &mut [&mut dyn FnMut() -> f64],
    ) -> Interleaved {
        Self::rounds(samples, per_sample, fs.len(), |v| fs[v]())
    }

    /// The rounds over `n` variants, `cpu_of(v)` running variant `v` once and giving its
    /// CPU ns; a short warm-up of each first.
    fn rounds(
        samples: usize,
        per_sample: usize,
        n: usize,
        mut cpu_of: impl FnMut(usize) -> f64,
    ) -> Interleaved {
        let mut one = |v: usize, cpu: &mut Vec<f64>, wall: &mut Vec<f64>| {
            let w = Instant::now();
            cpu.push(cpu_of(v));
            wall.push(w.elapsed().as_nanos() as f64);
        };
        let (mut x, mut y) = (vec![], vec![]);
        for _ in 0..per_sample.div_ceil(4).max(2) {
            for v in 0..n {
                one(v, &mut x, &mut y);
            }
        }
        let mut m = Interleaved {
            cpu: vec![vec![]; n],
            wall: vec![vec![]; n],
        };
        for _ in 0..samples {
            let (mut cpu, mut wall) = (vec![vec![]; n], vec![vec![]; n]);
            for i in 0..per_sample {
                for k in 0..n {
                    let v = if i % 2 == 0 { k } else { n - 1 - k };
                    one(v, &mut cpu[v], &mut wall[v]);
                }
            }
            for v in 0..n {
                m.cpu[v].push(median(&cpu[v]));
                m.wall[v].push(median(&wall[v]));
            }
        }
        m
    }

    /// Variant `b`'s CPU time over variant `a`'s, per sample.
    pub fn ratios(&self, b: usize, a: usize) -> Vec<f64> {
        self.cpu[b]
            .iter()
            .zip(&self.cpu[a])
            .map(|(b, a)| b / a)
            .collect()
    }

    /// The median of [`Interleaved::ratios`].
    pub fn ratio(&self, b: usize, a: usize) -> f64 {
        median(&self.ratios(b, a))
    }
}

/// Interleaved A/B measurements ([`Interleaved`] of two): the ratio B/A is taken within
/// each sample.
pub struct Paired {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub ratios: Vec<f64>,
    pub a_wall: Vec<f64>,
    pub b_wall: Vec<f64>,
}

impl Paired {
    /// A and B alternate one run at a time (A B B A …); see [`Interleaved::run`].
    pub fn run_alternating(
        samples: usize,
        per_sample: usize,
        a: &mut dyn FnMut(),
        b: &mut dyn FnMut(),
    ) -> Paired {
        let m = Interleaved::run(samples, per_sample, &mut [a, b]);
        let ratios = m.ratios(1, 0);
        let [a, b]: [Vec<f64>; 2] = m.cpu.try_into().unwrap();
        let [a_wall, b_wall]: [Vec<f64>; 2] = m.wall.try_into().unwrap();
        Paired {
            a,
            b,
            ratios,
            a_wall,
            b_wall,
        }
    }

    pub fn ratio(&self) -> f64 {
        median(&self.ratios)
    }

    pub fn ratio_spread(&self) -> String {
        iqr(&self.ratios, &|x| format!("{x:.3}"))
    }

    pub fn wall_ratio(&self) -> f64 {
        median(&self.b_wall) / median(&self.a_wall)
    }
}

/// Batch size so that one batch of `f` takes about `target_ms` of CPU time.
pub fn calibrate(target_ms: f64, f: &mut dyn FnMut()) -> usize {
    let (probe, _) = time_batch(3, f);
    ((target_ms * 1e6 / probe).round() as usize).max(1)
}

/// A multiplier for sample counts and durations: `KCT_BENCH_SCALE` (default 1).
pub fn scale() -> f64 {
    std::env::var("KCT_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

pub fn scaled(n: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(3)
}

/// Where the markdown fragments go: `KCT_BENCH_DIR` (default `target/bench`).
pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("KCT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn fmt_us(ns: f64) -> String {
    if ns >= 100_000.0 {
        format!("{:.0} µs", ns / 1000.0)
    } else if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A markdown table built row by row.
pub struct Table {
    pub text: String,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        let mut text = String::new();
        writeln!(text, "| {} |", headers.join(" | ")).unwrap();
        writeln!(
            text,
            "|{}",
            headers.iter().map(|_| "---|").collect::<String>()
        )
        .unwrap();
        Table { text }
    }

    pub fn row(&mut self, cells: &[String]) {
        writeln!(self.text, "| {} |", cells.join(" | ")).unwrap();
    }
}

/// `met` / `MISSED` for a goal.
pub fn verdict(met: bool) -> String {
    if met { "met" } else { "**MISSED**" }.to_string()
}

/// True when run by `cargo bench` (which passes `--bench`); `cargo test --all-targets`
/// runs bench binaries without it, and then they only smoke-test themselves.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

//! Shared test helpers.

use std::time::{Duration, Instant};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use hashrig::backend::selftest::{known_headers, KnownHeader};
use hashrig::pow::target::parse_target;
use hashrig::pow::KernelWork;
use rand::{Rng, SeedableRng};

pub fn mainnet() -> Vec<KnownHeader> {
    let headers = known_headers();
    assert_eq!(headers.len(), 4, "tests/data/mainnet_headers.txt");
    headers
}

/// Deterministic random headers.
pub fn random_headers(seed: u64, n: usize) -> Vec<Header> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| Header {
            version: Version::from_consensus(rng.random()),
            prev_blockhash: BlockHash::from_byte_array(rng.random()),
            merkle_root: TxMerkleNode::from_byte_array(rng.random()),
            time: rng.random(),
            bits: CompactTarget::from_consensus(rng.random()),
            nonce: 0,
        })
        .collect()
}

/// A target whose top word is `top` and the rest all ones.
pub fn loose_target(top: u32) -> Target {
    parse_target(&format!("{top:08x}{}", "f".repeat(56))).expect("valid target")
}

/// The candidates of a range by the reference algorithm, cross-checked
/// against rust-bitcoin for every one it reports.
pub fn reference_candidates(
    header: &Header,
    work: &KernelWork,
    start: u32,
    count: u64,
) -> Vec<u32> {
    let found: Vec<u32> = (u64::from(start)..u64::from(start) + count)
        .map(|n| n as u32)
        .filter(|n| work.is_candidate(*n))
        .collect();
    for n in &found {
        let hash = Header {
            nonce: *n,
            ..*header
        }
        .block_hash()
        .to_byte_array();
        let top = u32::from_le_bytes([hash[28], hash[29], hash[30], hash[31]]);
        assert!(
            top <= work.target_top,
            "reference disagrees with rust-bitcoin at nonce {n}"
        );
    }
    found
}

/// The `hashrig` binary with config, data and cache folders of its own
/// (fresh, empty), so that no test reads the user's config file, writes
/// to their found-blocks file or shares a kernel cache with a test running
/// beside it. Drivers keep their own caches ($XDG_CACHE_HOME), as a rig does.
pub fn hashrig_command() -> std::process::Command {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let home = std::env::temp_dir().join(format!(
        "hashrig-run-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&home);
    hashrig_command_in(&home)
}

/// The binary with its config, data and cache folders under `home`, for
/// runs that must see what an earlier run left (a stored tuning).
pub fn hashrig_command_in(home: &std::path::Path) -> std::process::Command {
    for sub in ["config", "data", "cache"] {
        std::fs::create_dir_all(home.join(sub)).expect("a folder for a run");
    }
    // HASHRIG_TEST_BINARY runs the tests against another build (an older
    // commit's, to see a test fail where the bug was).
    let binary = std::env::var_os("HASHRIG_TEST_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_hashrig").into());
    let mut command = std::process::Command::new(binary);
    command
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HASHRIG_CACHE_DIR", home.join("cache"));
    command
}

/// How long the tests wait for something that should happen in seconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` until it holds; fails naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `value` until it has not changed for `settle` (a device's last
/// batch has ended, say); fails naming `what` after [`PATIENCE`]. Returns
/// the value it settled at.
pub fn wait_until_unchanged(what: &str, settle: Duration, mut value: impl FnMut() -> u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    let mut last = value();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = value();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= settle {
            return last;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// What a lying device adds to its honest answer: the first nonce from
/// `start` that is not a candidate, for the scheduler's CPU check to catch.
pub fn add_a_false_candidate(found: &mut Vec<u32>, work: &KernelWork, start: u32) {
    if let Some(bogus) = (start..).take(1000).find(|n| !work.is_candidate(*n)) {
        found.push(bogus);
    }
}

/// A TCP connection to `to` from the loopback address `local` (Linux
/// answers all of 127/8), to be another client address.
pub fn connect_from(local: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((local, 0).into()).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Two CPU devices mining on `pools` in failover order, as a rig's
/// scheduler runs them, for the APIs to be put on; the first device sits in
/// PCI slot 0000:0a:00.0, the second has none (as a CPU has none).
pub struct CpuRig {
    pub stats: std::sync::Arc<hashrig::stats::Stats>,
    pub control: std::sync::Arc<hashrig::control::RigControl>,
    pub shutdown: hashrig::shutdown::Shutdown,
    scheduler: Option<hashrig::scheduler::Scheduler>,
}

impl CpuRig {
    pub fn start(pools: &[&crate::testpool::TestPool], user: &str) -> CpuRig {
        use hashrig::backend::cpu::{self, CpuDevice};
        use hashrig::backend::Device;
        use hashrig::job::stratum::{PoolConfig, StratumOptions, StratumSource, StratumTimeouts};
        use std::sync::Arc;
        let configs: Vec<PoolConfig> = pools
            .iter()
            .map(|p| PoolConfig {
                url: p.url().parse().unwrap(),
                user: user.into(),
                password: "x".into(),
                cert_fingerprint: None,
            })
            .collect();
        let mut options = StratumOptions::new(configs);
        options.timeouts = StratumTimeouts {
            connect: Duration::from_secs(3),
            backoff_max: Duration::from_millis(500),
            ..StratumTimeouts::default()
        };
        let stats = Arc::new(
            hashrig::stats::Stats::new(vec!["cpu0".into(), "cpu1".into()])
                .with_bus_ids(vec![Some("0000:0a:00.0".into()), None])
                .with_pools(pools.iter().map(|p| p.url()).collect()),
        );
        let control = Arc::new(hashrig::control::RigControl::new(2, pools.len()));
        let shutdown = hashrig::shutdown::Shutdown::new();
        let devices: Vec<Box<dyn Device>> = (0..2)
            .map(|_| {
                Box::new(
                    CpuDevice::new(cpu::info(), 1, cpu::default_path())
                        .expect("the CPU's default path"),
                ) as Box<dyn Device>
            })
            .collect();
        let (scheduler, _source) = hashrig::scheduler::Scheduler::start_with_source(
            Box::new(StratumSource::new(options)),
            devices,
            Arc::new(hashrig::work::WorkSource::new()),
            stats.clone(),
            shutdown.clone(),
            hashrig::scheduler::SchedulerConfig {
                batch_time: Duration::from_millis(50),
                control: control.clone(),
                ..hashrig::scheduler::SchedulerConfig::default()
            },
        );
        CpuRig {
            stats,
            control,
            shutdown,
            scheduler: Some(scheduler),
        }
    }
}

impl Drop for CpuRig {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.scheduler.take() {
            s.join();
        }
    }
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How a run of the binary ended, and the most memory it ever held.
#[derive(Debug)]
pub struct Measured {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The peak resident set (`VmHWM`), sampled from `/proc` while it ran.
    /// Not `wait4`'s `ru_maxrss`: the child is spawned with vfork, and at
    /// exec the kernel folds the peak of the memory it shared until then,
    /// the test process's own, into the child's account. That over-count
    /// is used only for a run too short to be sampled.
    pub peak_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end, calling `tick` every 20 ms while it runs;
/// kills it and fails past `limit`. Fails if its memory could never be
/// read: a memory bound that is not measured is not a bound.
pub fn run_measured(
    mut command: std::process::Command,
    limit: Duration,
    mut tick: impl FnMut(Duration),
) -> Measured {
    use std::process::Stdio;
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hashrig-measured-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let child = command
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .expect("run hashrig");
    let pid = child.id();
    let started = Instant::now();
    let mut sampled: Option<u64> = None;
    let (status, usage) = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            sampled = Some(sampled.unwrap_or(0).max(kib));
        }
        let mut status = 0;
        // SAFETY: all-zero is a valid rusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain out-parameters; the child is ours and not waited
        // on anywhere else.
        let reaped = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid as i32 {
            break (status, usage);
        }
        assert!(reaped == 0, "wait4: {}", std::io::Error::last_os_error());
        if started.elapsed() > limit {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!(
                "still running after {limit:?}: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        tick(started.elapsed());
        // VmHWM only grows: a sample every 20 ms misses at most the last
        // 20 ms of the run.
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(child);
    // A run that ends before the first sample (a refusal in a few ms, on
    // a loaded machine) is measured by wait4's ru_maxrss instead: it may
    // count the test process's own memory too (see `peak_rss_kib` above),
    // so it is an upper bound and the memory bound still holds. Neither
    // readable is a failure: a bound that is not measured is not a bound.
    let from_wait = u64::try_from(usage.ru_maxrss).ok().filter(|kib| *kib > 0);
    let sampled = sampled.or(from_wait).expect(
        "the process's memory could be read neither from /proc/PID/status VmHWM nor from wait4",
    );
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (None, Some(libc::WTERMSIG(status)))
    };
    let measured = Measured {
        code,
        signal,
        peak_rss_kib: sampled,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// The CPU backend on `threads` threads, on this CPU's default path.
pub fn cpu_device(threads: usize) -> hashrig::backend::cpu::CpuDevice {
    use hashrig::backend::cpu;
    cpu::CpuDevice::new(cpu::info(), threads, cpu::default_path()).expect("the CPU's default path")
}

//! Thermal limits and the watchdog, with a sensor and devices the tests
//! control: a hot device is throttled, stopped and resumed; a hung or
//! wrong-answering device is marked sick, reset once, then taken out; and
//! the other device keeps mining throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashrig::backend::cpu::{self, CpuDevice};
use hashrig::backend::{Device, DeviceError, DeviceInfo, DriverError};
use hashrig::control::{Health, Readings, RigControl};
use hashrig::found::{FoundSink, SINK_CAPACITY};
use hashrig::job::synthetic::synthetic_job;
use hashrig::job::Job;
use hashrig::pow::KernelWork;
use hashrig::scheduler::{Scheduler, SchedulerConfig, WatchdogConfig};
use hashrig::shutdown::Shutdown;
use hashrig::stats::Stats;
use hashrig::thermal::{Sensor, ThermalLimits};
use hashrig::work::WorkSource;

use crate::common::{loose_target, wait_until, wait_until_unchanged, PATIENCE};

/// Temperatures the test sets.
#[derive(Clone, Default)]
struct TestSensor(Arc<Mutex<Vec<f64>>>);

impl Sensor for TestSensor {
    fn read(&mut self, device: usize) -> Option<Readings> {
        let t = *self.0.lock().unwrap().get(device)?;
        Some(Readings {
            temperature_c: Some(t),
            power_w: Some(150.0),
            fan_percent: None,
        })
    }
}

/// A CPU device that can be made to hang (each scan waits `stall`), to
/// lie (each scan also reports a nonce that is no candidate), or to fail
/// (each scan an error, as a lost GPU's driver returns).
struct Faulty {
    inner: CpuDevice,
    stall: Arc<AtomicBool>,
    lie: bool,
    broken: Arc<AtomicBool>,
}

impl Faulty {
    fn new(stall: Arc<AtomicBool>, lie: bool) -> Self {
        Faulty {
            inner: CpuDevice::new(cpu::info(), 1, cpu::default_path())
                .expect("the CPU's default path"),
            stall,
            lie,
            broken: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Device for Faulty {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn granularity(&self) -> u64 {
        self.inner.granularity()
    }
    fn scan(&mut self, work: &KernelWork, start: u32, count: u64) -> Result<Vec<u32>, DeviceError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(DeviceError::Driver {
                device: "test".into(),
                operation: "clEnqueueNDRangeKernel",
                source: DriverError::reported(std::io::Error::other("CL_OUT_OF_RESOURCES")),
            });
        }
        if self.stall.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(700));
        }
        let mut found = self.inner.scan(work, start, count)?;
        if self.lie {
            crate::common::add_a_false_candidate(&mut found, work, start);
        }
        Ok(found)
    }
}

struct Rig {
    stats: Arc<Stats>,
    control: Arc<RigControl>,
    shutdown: Shutdown,
    scheduler: Option<Scheduler>,
    found: FoundSink,
}

impl Rig {
    fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.scheduler.take() {
            s.join();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A healthy CPU device, and `second`, on a job with shares one hash in 2^16.
fn start(second: Box<dyn Device>, watchdog: WatchdogConfig) -> Rig {
    let job = Job {
        share_target: loose_target(0x0000_ffff),
        ..synthetic_job()
    };
    start_devices(
        vec![
            Box::new(
                CpuDevice::new(cpu::info(), 1, cpu::default_path())
                    .expect("the CPU's default path"),
            ),
            second,
        ],
        job,
        watchdog,
    )
}

fn start_devices(devices: Vec<Box<dyn Device>>, job: Job, watchdog: WatchdogConfig) -> Rig {
    let names = ["healthy", "test"]
        .iter()
        .chain(std::iter::repeat(&"other"));
    let stats = Arc::new(Stats::new(
        names.take(devices.len()).map(|n| n.to_string()).collect(),
    ));
    let control = Arc::new(RigControl::new(devices.len(), 0));
    let work = Arc::new(WorkSource::new());
    work.publish(job);
    let shutdown = Shutdown::new();
    let sink = FoundSink::new(SINK_CAPACITY, None, stats.clone());
    let scheduler = Scheduler::start(
        devices,
        work,
        stats.clone(),
        &sink,
        shutdown.clone(),
        SchedulerConfig {
            batch_time: Duration::from_millis(50),
            control: control.clone(),
            watchdog,
            ..SchedulerConfig::default()
        },
    );
    Rig {
        stats,
        control,
        shutdown,
        scheduler: Some(scheduler),
        found: sink,
    }
}

impl Rig {
    fn nonces(&self, device: usize) -> u64 {
        self.stats.snapshot().devices[device].nonces
    }

    /// Whether `device` hashes during the next `window`.
    fn hashes(&self, device: usize, window: Duration) -> bool {
        let before = self.nonces(device);
        std::thread::sleep(window);
        self.nonces(device) > before
    }
}

#[test]
fn a_hot_device_is_throttled_stopped_and_resumed_while_the_other_mines() {
    let rig = start(
        Box::new(crate::common::cpu_device(1)),
        WatchdogConfig::default(),
    );
    let sensor = TestSensor(Arc::new(Mutex::new(vec![60.0, 60.0])));
    let temps = sensor.0.clone();
    let limits = ThermalLimits {
        target_c: Some(80.0),
        cutoff_c: Some(90.0),
        hysteresis_c: 5.0,
    };
    hashrig::thermal::spawn(
        rig.control.clone(),
        Box::new(sensor),
        limits,
        vec!["healthy".into(), "test".into()],
        Duration::from_millis(50),
        Duration::from_millis(20),
        rig.shutdown.clone(),
    )
    .unwrap();
    wait_until("readings", PATIENCE, || {
        rig.control.readings(1).temperature_c == Some(60.0)
    });

    temps.lock().unwrap()[1] = 85.0;
    wait_until("throttling", PATIENCE, || {
        rig.control.state(1) == "throttled"
    });
    temps.lock().unwrap()[1] = 95.0;
    wait_until("the cutoff", PATIENCE, || rig.control.state(1) == "cut-off");
    wait_until_unchanged("its last batch", Duration::from_millis(300), || {
        rig.stats.snapshot().devices[1].nonces
    });
    assert!(
        !rig.hashes(1, Duration::from_millis(500)),
        "a cut-off device hashed"
    );
    assert!(
        rig.hashes(0, Duration::from_millis(500)),
        "the cool device stopped"
    );

    temps.lock().unwrap()[1] = 78.0;
    // A negative check, over a while: it stays cut off.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        rig.control.state(1),
        "cut-off",
        "inside the hysteresis band"
    );
    temps.lock().unwrap()[1] = 60.0;
    wait_until("full speed again", PATIENCE, || {
        rig.control.state(1) == "mining"
    });
    assert!(rig.hashes(1, Duration::from_millis(500)));
}

fn hook_file(name: &str) -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!("hashrig-hook-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let command = format!(
        "echo \"$HASHRIG_DEVICE $HASHRIG_HEALTH\" >> {}",
        path.display()
    );
    (path, command)
}

#[test]
fn a_hung_device_is_reset_once_then_taken_out() {
    let stall = Arc::new(AtomicBool::new(false));
    let (hook, command) = hook_file("hung");
    let rig = start(
        Box::new(Faulty::new(stall.clone(), false)),
        WatchdogConfig {
            slow_factor: 4,
            slow_floor: Duration::from_millis(300),
            on_sick: Some(command),
            ..WatchdogConfig::default()
        },
    );
    wait_until("both devices mining", PATIENCE, || {
        rig.nonces(1) > 0 && rig.nonces(0) > 0
    });
    stall.store(true, Ordering::SeqCst);
    wait_until("sick", PATIENCE, || {
        rig.control.health(1) != Health::Healthy
    });
    assert!(
        rig.hashes(0, Duration::from_millis(300)),
        "the healthy device waits on the hung one"
    );
    // Still hanging after its reset: out of rotation.
    wait_until("failed", PATIENCE, || {
        rig.control.health(1) == Health::Failed
    });
    assert_eq!(rig.control.resets(1), 1);
    assert_eq!(rig.control.state(1), "failed");
    assert!(rig.hashes(0, Duration::from_millis(300)));
    wait_until("the hook's lines", PATIENCE, || {
        std::fs::read_to_string(&hook).is_ok_and(|t| t.contains("1 sick") && t.contains("1 failed"))
    });
    let _ = std::fs::remove_file(hook);
}

#[test]
fn a_device_answering_wrong_is_reset_then_taken_out() {
    let rig = start(
        Box::new(Faulty::new(Arc::new(AtomicBool::new(false)), true)),
        WatchdogConfig {
            hw_errors: 4,
            ..WatchdogConfig::default()
        },
    );
    // Its reset runs the self-test, which a lying device fails.
    wait_until("failed", PATIENCE, || {
        rig.control.health(1) == Health::Failed
    });
    assert!(rig.stats.snapshot().devices[1].hw_errors >= 4);
    let errors = rig.stats.snapshot().devices[1].hw_errors;
    assert!(
        rig.hashes(0, Duration::from_millis(500)),
        "the healthy device stopped"
    );
    // A negative check, over a while: no more errors from it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rig.stats.snapshot().devices[1].hw_errors,
        errors,
        "a failed device kept mining"
    );
}

#[test]
fn a_device_whose_scans_fail_is_reset_then_failed_visibly() {
    let faulty = Faulty::new(Arc::new(AtomicBool::new(false)), false);
    let broken = faulty.broken.clone();
    let (hook, command) = hook_file("broken");
    let rig = start(
        Box::new(faulty),
        WatchdogConfig {
            on_sick: Some(command),
            ..WatchdogConfig::default()
        },
    );
    wait_until("both devices mining", PATIENCE, || {
        rig.nonces(1) > 0 && rig.nonces(0) > 0
    });
    broken.store(true, Ordering::SeqCst);
    // Its reset's self-test fails too: out, with the driver's words.
    wait_until("failed", PATIENCE, || {
        rig.control.health(1) == Health::Failed
    });
    assert_eq!(rig.control.resets(1), 1);
    assert_eq!(rig.control.state(1), "failed");
    let reason = rig.control.health_reason(1).unwrap_or_default();
    assert!(reason.contains("CL_OUT_OF_RESOURCES"), "{reason}");
    let metrics = hashrig::api::metrics::render(&rig.stats.snapshot(), &rig.control);
    assert!(
        metrics.contains("hashrig_device_enabled{device=\"1\",state=\"failed\"} 0"),
        "{metrics}"
    );
    assert!(!rig.control.all_failed(), "device 0 still mines");
    assert!(rig.hashes(0, Duration::from_millis(300)));
    wait_until("the hook's lines", PATIENCE, || {
        std::fs::read_to_string(&hook).is_ok_and(|t| t.contains("1 sick") && t.contains("1 failed"))
    });
    let _ = std::fs::remove_file(hook);
}

#[test]
fn when_every_device_fails_the_rig_says_so() {
    let first = Faulty::new(Arc::new(AtomicBool::new(false)), false);
    let second = Faulty::new(Arc::new(AtomicBool::new(false)), false);
    let (broken_first, broken_second) = (first.broken.clone(), second.broken.clone());
    let mut rig = start_devices(
        vec![Box::new(first), Box::new(second)],
        synthetic_job(),
        WatchdogConfig::default(),
    );
    wait_until("both devices mining", PATIENCE, || {
        rig.nonces(0) > 0 && rig.nonces(1) > 0
    });
    broken_first.store(true, Ordering::SeqCst);
    broken_second.store(true, Ordering::SeqCst);
    wait_until("every device failed", PATIENCE, || rig.control.all_failed());
    for i in 0..2 {
        assert_eq!(rig.control.state(i), "failed");
        assert!(rig
            .control
            .health_reason(i)
            .is_some_and(|r| r.contains("CL_OUT_OF_RESOURCES")));
    }
    rig.stop();
    assert!(
        rig.found.is_drained(),
        "the workers ended and the sink closed"
    );
}

//! What each cgminer API command answers, from the rig's counters and
//! controls, with the field names farm tools parse (cgminer's `api.c`,
//! sgminer's GPU fields). Every mining device is a `GPU` here, as in
//! sgminer: farm tools know no other kind on a GPU rig.

use super::reply::{Code, Record, Reply, Section};
use super::request::Command;
use super::{Context, SourceKind};
use crate::control::Health;
use crate::stats::{DeviceSnapshot, Snapshot};

/// cgminer's API version whose layout this follows.
pub const API_VERSION: &str = "3.7";

/// What to do once the reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    Quit,
    Restart,
}

fn mhs(hashes_per_second: f64) -> f64 {
    hashes_per_second / 1e6
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn per_minute(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count * 60.0 / seconds
    } else {
        0.0
    }
}

/// What an index parameter names, for cgminer's replies refusing one.
#[derive(Debug, Clone, Copy)]
enum Indexed {
    Gpu,
    Pool,
}

/// An index parameter below `count`, or cgminer's reply refusing it
/// (missing, none to name, out of range or not a number).
fn index(parameter: Option<&str>, count: usize, of: Indexed) -> Result<usize, Reply> {
    let (missing, none, invalid) = match of {
        Indexed::Gpu => (
            (Code::MissingDeviceId, "Missing device id parameter"),
            (Code::NoGpus, "No GPUs"),
            (Code::InvalidGpu, "GPU"),
        ),
        Indexed::Pool => (
            (Code::MissingPoolId, "Missing pool id parameter"),
            (Code::NoPools, "No pools"),
            (Code::InvalidPoolId, "pool"),
        ),
    };
    let Some(text) = parameter.map(str::trim).filter(|p| !p.is_empty()) else {
        return Err(Reply::status(missing.0, missing.1));
    };
    if count == 0 {
        return Err(Reply::status(none.0, none.1));
    }
    match text.parse::<usize>() {
        Ok(i) if i < count => Ok(i),
        _ => Err(Reply::status(
            invalid.0,
            format!(
                "Invalid {} id {text} - range is 0 - {}",
                invalid.1,
                count - 1
            ),
        )),
    }
}

impl Context {
    /// Answers one command; `privileged` says whether the caller may use
    /// the commands that change something.
    pub fn answer(
        &self,
        command: Command,
        parameter: Option<&str>,
        privileged: bool,
    ) -> (Reply, After) {
        if command.is_privileged() && !privileged {
            let denied = Reply::status(
                Code::AccessDenied,
                format!("Access denied to '{}' command", command.name()),
            );
            return (denied, After::Nothing);
        }
        let snap = self.stats.snapshot();
        let reply = match command {
            Command::Version => self.version(),
            Command::Config => self.config(&snap),
            Command::Summary => self.summary(&snap),
            Command::Devs | Command::Edevs => self.devs(&snap),
            Command::Pools => self.pools(&snap),
            Command::DevDetails => self.devdetails(),
            Command::Stats | Command::Estats => self.stats_section(&snap),
            Command::Coin => self.coin(&snap),
            Command::Check => check(parameter, privileged),
            Command::GpuCount => {
                count_reply(Code::GpuCount, "GPU count", "GPUS", snap.devices.len())
            }
            Command::AscCount => count_reply(Code::AscCount, "ASC count", "ASCS", 0),
            Command::PgaCount => count_reply(Code::PgaCount, "PGA count", "PGAS", 0),
            Command::Gpu => match index(parameter, snap.devices.len(), Indexed::Gpu) {
                Ok(i) => Reply::with_section(
                    Code::Gpu,
                    format!("GPU{i}"),
                    Section::list("GPU", vec![self.device_record(&snap, i)]),
                ),
                Err(refused) => refused,
            },
            Command::Privileged => Reply::status(Code::AccessOk, "Privileged access OK"),
            Command::GpuEnable | Command::GpuDisable => {
                self.set_device(command == Command::GpuEnable, parameter, snap.devices.len())
            }
            Command::SwitchPool | Command::EnablePool | Command::DisablePool => {
                self.set_pool(command, parameter, &snap)
            }
            Command::Quit => {
                tracing::warn!("cgminer API: quit");
                return (Reply::status(Code::AccessOk, "BYE"), After::Quit);
            }
            Command::Restart => {
                tracing::warn!("cgminer API: restart");
                return (Reply::status(Code::AccessOk, "RESTART"), After::Restart);
            }
        };
        (reply, After::Nothing)
    }

    fn version(&self) -> Reply {
        Reply::with_section(
            Code::Version,
            "CGMiner versions",
            Section::single(
                "VERSION",
                Record::default()
                    .with("Miner", self.description.as_str())
                    .with("hashrig", env!("CARGO_PKG_VERSION"))
                    .with("API", API_VERSION),
            ),
        )
    }

    fn config(&self, snap: &Snapshot) -> Reply {
        Reply::with_section(
            Code::Config,
            "CGMiner config",
            Section::single(
                "CONFIG",
                Record::default()
                    .with("GPU Count", snap.devices.len())
                    .with("ASC Count", 0u64)
                    .with("PGA Count", 0u64)
                    .with("Pool Count", snap.pools.len())
                    .with("Strategy", "Failover")
                    .with("Log Interval", 5u64)
                    .with("Device Code", "GPU")
                    .with("OS", std::env::consts::OS)
                    .with("Hotplug", "None"),
            ),
        )
    }

    fn summary(&self, snap: &Snapshot) -> Reply {
        let accepted = snap.count(|d| d.accepted);
        let rejected = snap.count(|d| d.rejected);
        let stale = snap.count(|d| d.stale);
        let hw = snap.count(|d| d.hw_errors);
        let difficulty: f64 = snap.pools.iter().map(|p| p.accepted_difficulty).sum();
        let elapsed = snap.uptime_s;
        let record = Record::default()
            .with("Elapsed", elapsed as u64)
            .real("MHS av", mhs(snap.total(|d| d.hashrate_avg)), 2)
            .real("MHS 5s", mhs(snap.total(|d| d.hashrate_5s)), 2)
            .real("MHS 1m", mhs(snap.total(|d| d.hashrate_1m)), 2)
            .real("MHS 15m", mhs(snap.total(|d| d.hashrate_15m)), 2)
            .with("Found Blocks", snap.count(|d| d.blocks))
            .with("Accepted", accepted)
            .with("Rejected", rejected)
            .with("Hardware Errors", hw)
            .real("Utility", per_minute(accepted as f64, elapsed), 2)
            .with("Stale", stale)
            .real("Total MH", snap.count(|d| d.nonces) as f64 / 1e6, 4)
            .real("Work Utility", per_minute(difficulty, elapsed), 2)
            .real("Difficulty Accepted", difficulty, 8)
            .real("Best Share", snap.best_share, 0)
            .real("Device Hardware%", percent(hw, hw + accepted), 4)
            .real(
                "Device Rejected%",
                percent(rejected, accepted + rejected),
                4,
            )
            .real(
                "Pool Rejected%",
                percent(rejected, accepted + rejected + stale),
                4,
            )
            .real(
                "Pool Stale%",
                percent(stale, accepted + rejected + stale),
                4,
            );
        Reply::with_section(Code::Summary, "Summary", Section::single("SUMMARY", record))
    }

    fn device_status(&self, index: usize) -> &'static str {
        match self.control.health(index) {
            Health::Healthy => "Alive",
            Health::Sick => "Sick",
            Health::Failed => "Dead",
        }
    }

    fn device_record(&self, snap: &Snapshot, index: usize) -> Record {
        let d: &DeviceSnapshot = &snap.devices[index];
        let readings = self.control.readings(index);
        let details = self.devices.get(index);
        let active_pool = snap.pools.iter().position(|p| p.active);
        Record::default()
            .with("GPU", index)
            .with("Name", d.name.as_str())
            .with(
                "Enabled",
                if self.control.is_enabled(index) {
                    "Y"
                } else {
                    "N"
                },
            )
            .with("Status", self.device_status(index))
            .real("Temperature", readings.temperature_c.unwrap_or(0.0), 2)
            .real("Fan Percent", readings.fan_percent.unwrap_or(0.0), 0)
            .real("GPU Power", readings.power_w.unwrap_or(0.0), 2)
            .real("MHS av", mhs(d.hashrate_avg), 2)
            .real("MHS 5s", mhs(d.hashrate_5s), 2)
            .real("MHS 1m", mhs(d.hashrate_1m), 2)
            .with("Accepted", d.accepted)
            .with("Rejected", d.rejected)
            .with("Stale", d.stale)
            .with("Hardware Errors", d.hw_errors)
            .real("Utility", per_minute(d.accepted as f64, snap.uptime_s), 2)
            .with(
                "Last Share Pool",
                active_pool
                    .filter(|_| d.last_share_unix.is_some())
                    .map_or(-1, |p| p as i64),
            )
            .with("Last Share Time", d.last_share_unix.unwrap_or(0))
            .real("Total MH", d.nonces as f64 / 1e6, 4)
            .real(
                "Device Hardware%",
                percent(d.hw_errors, d.hw_errors + d.accepted),
                4,
            )
            .real(
                "Device Rejected%",
                percent(d.rejected, d.accepted + d.rejected),
                4,
            )
            .with("Device Elapsed", snap.uptime_s as u64)
            .with(
                "PCI Bus",
                details
                    .and_then(|x| x.pci_bus_id.clone())
                    .unwrap_or_default(),
            )
            .with("State", self.control.state(index))
    }

    fn devs(&self, snap: &Snapshot) -> Reply {
        if snap.devices.is_empty() {
            return Reply::status(Code::NoGpus, "No GPUs");
        }
        let records = (0..snap.devices.len())
            .map(|i| self.device_record(snap, i))
            .collect();
        Reply::with_section(
            Code::Devs,
            format!("{} GPU(s)", snap.devices.len()),
            Section::list("DEVS", records),
        )
    }

    fn pools(&self, snap: &Snapshot) -> Reply {
        if snap.pools.is_empty() {
            return Reply::status(Code::NoPools, "No pools");
        }
        let stratum = self.source == SourceKind::Stratum;
        let records = snap
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let status = if !self.control.is_pool_enabled(i) {
                    "Disabled"
                } else if p.connected {
                    "Alive"
                } else {
                    "Dead"
                };
                let shares = p.accepted + p.rejected + p.stale;
                Record::default()
                    .with("POOL", i)
                    .with("URL", p.name.as_str())
                    .with("Status", status)
                    .with("Priority", i)
                    .with("Quota", 1u64)
                    .with("Long Poll", "N")
                    .with("Accepted", p.accepted)
                    .with("Rejected", p.rejected)
                    .with("Stale", p.stale)
                    .with("Last Share Time", p.last_share_unix.unwrap_or(0))
                    .real("Difficulty Accepted", p.accepted_difficulty, 8)
                    .real(
                        "Last Share Difficulty",
                        snap.share_difficulty.filter(|_| p.active).unwrap_or(0.0),
                        8,
                    )
                    .with("Has Stratum", stratum)
                    .with("Stratum Active", stratum && p.active && p.connected)
                    .with(
                        "Stratum URL",
                        if stratum && p.active && p.connected {
                            p.name.as_str()
                        } else {
                            ""
                        },
                    )
                    .with("Has GBT", self.source == SourceKind::Node)
                    .real("Pool Rejected%", percent(p.rejected, shares), 4)
                    .real("Pool Stale%", percent(p.stale, shares), 4)
                    .real("Latency ms", p.latency_ms.unwrap_or(0.0), 1)
            })
            .collect();
        Reply::with_section(
            Code::Pools,
            format!("{} Pool(s)", snap.pools.len()),
            Section::list("POOLS", records),
        )
    }

    fn devdetails(&self) -> Reply {
        let records = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Record::default()
                    .with("DEVDETAILS", i)
                    .with("Name", "GPU")
                    .with("ID", i)
                    .with("Driver", d.driver.as_str())
                    .with("Kernel", d.kernel.as_str())
                    .with("Model", d.name.as_str())
                    .with("Device Path", d.pci_bus_id.clone().unwrap_or_default())
            })
            .collect();
        Reply::with_section(
            Code::DevDetails,
            "Device Details",
            Section::list("DEVDETAILS", records),
        )
    }

    /// Miner-specific statistics (cgminer's README: "may change"): per
    /// device, then per pool.
    fn stats_section(&self, snap: &Snapshot) -> Reply {
        let elapsed = snap.uptime_s as u64;
        let devices = snap.devices.iter().enumerate().map(|(i, d)| {
            Record::default()
                .with("STATS", i)
                .with("ID", format!("GPU{i}"))
                .with("Elapsed", elapsed)
                .with("Nonces", d.nonces)
                .real("Device Busy%", d.device_busy.unwrap_or(0.0) * 100.0, 2)
                .with("Dropped", d.dropped)
                .with("Resets", u64::from(self.control.resets(i)))
                .real(
                    "Throttle ms",
                    self.control.pause(i).as_secs_f64() * 1000.0,
                    1,
                )
        });
        let pools = snap.pools.iter().enumerate().map(|(j, p)| {
            Record::default()
                .with("STATS", snap.devices.len() + j)
                .with("ID", format!("POOL{j}"))
                .with("Elapsed", elapsed)
                .real("Pool Latency ms", p.latency_ms.unwrap_or(0.0), 1)
                .with("Unanswered", p.unanswered)
                .with("Throttled", p.throttled)
                .with("Bad Messages", p.bad_messages)
                .with("Blocks Submitted", p.blocks_submitted)
                .with("Blocks Accepted", p.blocks_accepted)
        });
        Reply::with_section(
            Code::Stats,
            "CGMiner stats",
            Section::list("STATS", devices.chain(pools).collect()),
        )
    }

    fn coin(&self, snap: &Snapshot) -> Reply {
        Reply::with_section(
            Code::Coin,
            "CGMiner coin",
            Section::single(
                "COIN",
                Record::default()
                    .with("Hash Method", "sha256")
                    .with("LP", false)
                    .real(
                        "Network Difficulty",
                        snap.network_difficulty.unwrap_or(0.0),
                        8,
                    ),
            ),
        )
    }

    fn set_device(&self, enable: bool, parameter: Option<&str>, count: usize) -> Reply {
        let index = match index(parameter, count, Indexed::Gpu) {
            Ok(i) => i,
            Err(refused) => return refused,
        };
        if self.control.is_enabled(index) == enable {
            return if enable {
                Reply::status(
                    Code::GpuAlreadyEnabled,
                    format!("GPU {index} already enabled"),
                )
            } else {
                Reply::status(
                    Code::GpuAlreadyDisabled,
                    format!("GPU {index} already disabled"),
                )
            };
        }
        if enable && self.control.health(index) == Health::Failed {
            return Reply::status(
                Code::GpuMustRestart,
                format!("GPU {index} must be restarted first"),
            );
        }
        if self.control.set_enabled(index, enable).is_err() {
            return Reply::status(Code::InvalidGpu, format!("Invalid GPU id {index}"));
        }
        tracing::warn!(
            "cgminer API: device {index} {}",
            if enable { "enabled" } else { "disabled" }
        );
        if enable {
            Reply::status(Code::GpuEnabled, format!("GPU {index} sent enable message"))
        } else {
            Reply::status(Code::GpuDisabled, format!("GPU {index} set disable flag"))
        }
    }

    fn set_pool(&self, command: Command, parameter: Option<&str>, snap: &Snapshot) -> Reply {
        let index = match index(parameter, snap.pools.len(), Indexed::Pool) {
            Ok(i) => i,
            Err(refused) => return refused,
        };
        let url = &snap.pools[index].name;
        let result = match command {
            Command::SwitchPool => self.control.request_pool(index).map(|()| true),
            Command::EnablePool => self.control.set_pool_enabled(index, true),
            _ => self.control.set_pool_enabled(index, false),
        };
        let reply = match (command, result) {
            (_, Err(crate::control::ControlError::LastEnabledPool { .. })) => {
                return Reply::status(
                    Code::LastPool,
                    format!("Cannot disable last active pool {index}:'{url}'"),
                )
            }
            (_, Err(e)) => return Reply::status(Code::InvalidPoolId, e.to_string()),
            (Command::SwitchPool, Ok(_)) => Reply::status(
                Code::SwitchPool,
                format!("Switching to pool {index}:'{url}'"),
            ),
            (Command::EnablePool, Ok(false)) => Reply::status(
                Code::PoolAlreadyEnabled,
                format!("Pool {index}:'{url}' already enabled"),
            ),
            (Command::EnablePool, Ok(true)) => {
                Reply::status(Code::EnablePool, format!("Enabling pool {index}:'{url}'"))
            }
            (_, Ok(false)) => Reply::status(
                Code::PoolAlreadyDisabled,
                format!("Pool {index}:'{url}' already disabled"),
            ),
            (_, Ok(true)) => {
                Reply::status(Code::DisablePool, format!("Disabling pool {index}:'{url}'"))
            }
        };
        tracing::warn!("cgminer API: {}", reply.status.message);
        reply
    }
}

fn count_reply(code: Code, message: &str, section: &'static str, count: usize) -> Reply {
    Reply::with_section(
        code,
        message,
        Section::single(section, Record::default().with("Count", count)),
    )
}

/// `check|cmd`: whether hashrig has the command and the caller may use it.
fn check(parameter: Option<&str>, privileged: bool) -> Reply {
    let Some(name) = parameter.map(str::trim).filter(|p| !p.is_empty()) else {
        return Reply::status(Code::MissingCheck, "Missing check cmd");
    };
    let command = Command::from_name(name);
    let access = command.is_some_and(|c| privileged || !c.is_privileged());
    let yes_no = |b: bool| if b { "Y" } else { "N" };
    Reply::with_section(
        Code::Check,
        "Check command",
        Section::single(
            "CHECK",
            Record::default()
                .with("Exists", yes_no(command.is_some()))
                .with("Access", yes_no(access)),
        ),
    )
}

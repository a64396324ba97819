//! The config file (TOML): what the flags say, for a rig run unattended.
//! Flags given on the command line override it. `--config FILE`, or
//! `$XDG_CONFIG_HOME/hashrig/config.toml` when that exists.
//!
//! ```toml
//! found_blocks = "/var/lib/hashrig/found-blocks.jsonl"
//! shutdown_grace = 10            # seconds to go on submitting once stopping
//! [stratum]
//! min_difficulty = 0.0001        # a pool asking for less gets this
//! max_submit_rate = 50           # shares per second per pool
//! [[pool]]                       # failover order
//! url = "stratum+tcp://pool.example.com:3333"
//! user = "WALLET.rig1"
//! pass = "x"
//! [solo]
//! rpc_url = "http://127.0.0.1:8332"
//! rpc_cookie = "/home/btc/.bitcoin/.cookie"
//! address = "bc1q…"
//! [devices]
//! backend = "all"                # cpu | opencl | vulkan | all
//! select = "0,2"
//! batch_ms = 100
//! [[device]]                     # per device, by `hashrig devices` index
//! index = 2
//! enabled = false
//! [api]
//! bind = "127.0.0.1:4028"
//! keys_file = "/etc/hashrig/api-keys.toml"
//! [thermal]
//! temp_target = 80
//! temp_cutoff = 90
//! [watchdog]
//! on_sick = "logger hashrig device $HASHRIG_DEVICE is $HASHRIG_HEALTH"
//! [power]
//! watts = 1450
//! kwh_price = 0.12
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};
use serde::{Deserialize, Serialize};

use super::mine::RunArgs;
use super::rig::RigArgs;
use super::{BackendChoice, DeviceArgs, MineArgs, NodeArgs, SoloArgs};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub url: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StratumEntry {
    pub min_difficulty: Option<f64>,
    pub max_submit_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoloEntry {
    pub rpc_url: Option<String>,
    pub rpc_user: Option<String>,
    pub rpc_pass: Option<String>,
    pub rpc_cookie: Option<PathBuf>,
    pub address: Option<String>,
    pub coinbase_sig: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesEntry {
    pub backend: Option<String>,
    pub select: Option<String>,
    pub cpu_threads: Option<usize>,
    pub opencl_cpu: Option<bool>,
    pub vulkan_cpu: Option<bool>,
    pub worksize: Option<usize>,
    pub vectors: Option<u32>,
    pub vulkan_nonces: Option<u32>,
    pub batch_ms: Option<u64>,
}

/// Per-device settings, by the index `hashrig devices` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOverride {
    pub index: usize,
    pub enabled: Option<bool>,
    pub batch_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiEntry {
    pub bind: Option<String>,
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalEntry {
    pub temp_target: Option<f64>,
    pub temp_cutoff: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogEntry {
    pub on_sick: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerEntry {
    pub watts: Option<f64>,
    pub kwh_price: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_blocks: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stratum: Option<StratumEntry>,
    #[serde(default, rename = "pool", skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solo: Option<SoloEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DevicesEntry>,
    #[serde(default, rename = "device", skip_serializing_if = "Vec::is_empty")]
    pub device_overrides: Vec<DeviceOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal: Option<ThermalEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<WatchdogEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerEntry>,
}

/// The default config file, if there is one.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("hashrig").join("config.toml"))
        .filter(|p| p.exists())
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("config {}: cannot read", path.display()))?;
    if text.len() > 1 << 20 {
        bail!("config {}: larger than 1 MiB", path.display());
    }
    let config: Config =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    config
        .validate()
        .with_context(|| format!("config {}", path.display()))?;
    Ok(config)
}

/// Whether a flag was given on the command line (it then wins).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.try_get_raw(id).ok().flatten().is_some()
        && matches.value_source(id) == Some(ValueSource::CommandLine)
}

fn fill<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
    if target.is_none() {
        target.clone_from(value);
    }
}

impl Config {
    /// Checks every value the flags would check, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (i, p) in self.pools.iter().enumerate() {
            let url: hashrig::job::stratum::PoolUrl =
                p.url.parse().with_context(|| format!("pool[{i}].url"))?;
            if p.user.is_empty() {
                bail!("pool[{i}].user: empty");
            }
            if let Some(fp) = &p.cert_sha256 {
                if hashrig::job::stratum::transport::parse_fingerprint(fp).is_none() {
                    bail!("pool[{i}].cert_sha256 {fp:?}: not 64 hexadecimal digits");
                }
                if !url.tls {
                    bail!("pool[{i}].cert_sha256: only stratum+ssl/tls pools have certificates");
                }
            }
        }
        if let Some(g) = self.shutdown_grace {
            if !(g.is_finite() && g > 0.0 && g <= 600.0) {
                bail!("shutdown_grace {g}: must be a number of seconds above 0 and at most 600");
            }
        }
        if let Some(st) = &self.stratum {
            if let Some(d) = st.min_difficulty.filter(|d| !(d.is_finite() && *d > 0.0)) {
                bail!("stratum.min_difficulty {d}: must be a positive number");
            }
            if let Some(r) = st
                .max_submit_rate
                .filter(|r| !(r.is_finite() && (0.01..=100_000.0).contains(r)))
            {
                bail!("stratum.max_submit_rate {r}: must be between 0.01 and 100000");
            }
        }
        if let Some(d) = &self.devices {
            if let Some(b) = &d.backend {
                if BackendChoice::from_str(b, true).is_err() {
                    bail!("devices.backend {b:?}: must be cpu, opencl, vulkan or all");
                }
            }
            if let Some(v) = d.vectors.filter(|v| ![1, 2, 4, 8, 16].contains(v)) {
                bail!("devices.vectors {v}: must be 1, 2, 4, 8 or 16");
            }
            if let Some(ms) = d.batch_ms.filter(|ms| !(1..=60_000).contains(ms)) {
                bail!("devices.batch_ms {ms}: must be between 1 and 60000");
            }
        }
        for (i, o) in self.device_overrides.iter().enumerate() {
            if let Some(ms) = o.batch_ms.filter(|ms| !(1..=60_000).contains(ms)) {
                bail!("device[{i}].batch_ms {ms}: must be between 1 and 60000");
            }
            if self.device_overrides[..i]
                .iter()
                .any(|p| p.index == o.index)
            {
                bail!("device[{i}].index {}: listed twice", o.index);
            }
        }
        if let Some(s) = &self.solo {
            if let Some(a) = &s.address {
                if a.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
                    .is_err()
                {
                    bail!("solo.address {a:?}: not an address");
                }
            }
        }
        // The rest is checked as the flags are.
        let mut rig = RigArgs::default();
        self.fill_rig(&mut rig);
        rig.api_keys = None;
        let bind = rig.api_bind.take();
        if let Some(b) = bind {
            b.parse::<std::net::SocketAddr>()
                .map_err(|_| anyhow::anyhow!("api.bind {b:?}: not ADDR:PORT"))?;
        }
        rig.settings().map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string()
                    .replace("--temp-", "thermal.temp_")
                    .replace("--power-watts", "power.watts")
                    .replace("--kwh-price", "power.kwh_price")
            )
        })?;
        Ok(())
    }

    /// The configuration as TOML, passwords masked.
    pub fn masked(&self) -> String {
        let mut shown = self.clone();
        for p in &mut shown.pools {
            if p.pass.as_deref().is_some_and(|p| p != "x") {
                p.pass = Some("********".into());
            }
        }
        if let Some(s) = &mut shown.solo {
            if s.rpc_pass.is_some() {
                s.rpc_pass = Some("********".into());
            }
        }
        toml::to_string(&shown).unwrap_or_default()
    }

    fn fill_rig(&self, rig: &mut RigArgs) {
        if let Some(api) = &self.api {
            fill(&mut rig.api_bind, &api.bind);
            fill(&mut rig.api_keys, &api.keys_file);
        }
        if let Some(t) = &self.thermal {
            fill(&mut rig.temp_target, &t.temp_target);
            fill(&mut rig.temp_cutoff, &t.temp_cutoff);
        }
        if let Some(w) = &self.watchdog {
            fill(&mut rig.on_sick, &w.on_sick);
        }
        if let Some(p) = &self.power {
            fill(&mut rig.power_watts, &p.watts);
            fill(&mut rig.kwh_price, &p.kwh_price);
        }
        rig.device_overrides.clone_from(&self.device_overrides);
    }

    pub fn apply_rig(&self, rig: &mut RigArgs) {
        self.fill_rig(rig);
    }

    pub fn apply_devices(&self, args: &mut DeviceArgs, m: &ArgMatches) {
        let Some(d) = &self.devices else { return };
        if !given(m, "backend") {
            if let Some(b) = d
                .backend
                .as_deref()
                .and_then(|b| BackendChoice::from_str(b, true).ok())
            {
                args.backend = b;
            }
        }
        fill(&mut args.device, &d.select);
        fill(&mut args.cpu_threads, &d.cpu_threads);
        fill(&mut args.worksize, &d.worksize);
        fill(&mut args.vectors, &d.vectors);
        fill(&mut args.vulkan_nonces, &d.vulkan_nonces);
        if !given(m, "opencl_cpu") {
            args.opencl_cpu |= d.opencl_cpu.unwrap_or(false);
        }
        if !given(m, "vulkan_cpu") {
            args.vulkan_cpu |= d.vulkan_cpu.unwrap_or(false);
        }
    }

    /// The batch time the file sets, when the flag was not given.
    pub fn batch_ms(&self, m: &ArgMatches) -> Option<u64> {
        (!given(m, "batch_ms"))
            .then(|| self.devices.as_ref().and_then(|d| d.batch_ms))
            .flatten()
    }

    pub fn apply_run(&self, run: &mut RunArgs, m: &ArgMatches) {
        if let Some(ms) = self.batch_ms(m) {
            run.batch_ms = ms;
        }
        fill(&mut run.found_blocks, &self.found_blocks);
        fill(&mut run.shutdown_grace, &self.shutdown_grace);
    }

    pub fn apply_mine(&self, args: &mut MineArgs, m: &ArgMatches) {
        self.apply_devices(&mut args.devices, m);
        self.apply_run(&mut args.run, m);
        self.apply_rig(&mut args.rig);
        if let Some(st) = &self.stratum {
            fill(&mut args.min_difficulty, &st.min_difficulty);
            fill(&mut args.max_submit_rate, &st.max_submit_rate);
        }
        if args.pools.is_empty() {
            args.pools = self.pools.iter().map(|p| p.url.clone()).collect();
            args.users = self.pools.iter().map(|p| p.user.clone()).collect();
            args.passwords = self
                .pools
                .iter()
                .map(|p| p.pass.clone().unwrap_or_else(|| "x".into()))
                .collect();
            args.fingerprints = self
                .pools
                .iter()
                .map(|p| p.cert_sha256.clone().unwrap_or_else(|| "-".into()))
                .collect();
        }
    }

    pub fn apply_solo(&self, args: &mut SoloArgs, m: &ArgMatches) {
        self.apply_devices(&mut args.devices, m);
        self.apply_run(&mut args.run, m);
        self.apply_rig(&mut args.rig);
        self.apply_node(&mut args.node);
        let Some(s) = &self.solo else { return };
        fill(&mut args.address, &s.address);
        fill(&mut args.coinbase_sig, &s.coinbase_sig);
    }

    /// The node of `[solo]`, under the flags given.
    pub fn apply_node(&self, node: &mut NodeArgs) {
        let Some(s) = &self.solo else { return };
        fill(&mut node.rpc_url, &s.rpc_url);
        if node.rpc_user.is_none() && node.rpc_pass.is_none() && node.rpc_cookie.is_none() {
            node.rpc_user.clone_from(&s.rpc_user);
            node.rpc_pass.clone_from(&s.rpc_pass);
            node.rpc_cookie.clone_from(&s.rpc_cookie);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_full_config_parses_and_masks_secrets() {
        let config = parse(
            r#"
found_blocks = "/tmp/found.jsonl"
shutdown_grace = 5
[stratum]
min_difficulty = 0.001
max_submit_rate = 20
[[pool]]
url = "stratum+tcp://pool.example.com:3333"
user = "wallet.rig"
pass = "secret"
[[pool]]
url = "stratum+ssl://backup.example.com:443"
user = "wallet.rig"
[solo]
rpc_url = "http://127.0.0.1:8332"
rpc_user = "u"
rpc_pass = "hunter2"
[devices]
backend = "opencl"
batch_ms = 200
[[device]]
index = 1
enabled = false
[api]
bind = "127.0.0.1:4028"
keys_file = "/tmp/keys.toml"
[thermal]
temp_target = 80
temp_cutoff = 90
[power]
watts = 1450
kwh_price = 0.12
"#,
        )
        .unwrap();
        assert_eq!(config.pools.len(), 2);
        let masked = config.masked();
        assert!(
            !masked.contains("secret") && !masked.contains("hunter2"),
            "{masked}"
        );
        assert!(masked.contains("********"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = parse("[thermal]\ntemp_target = 80\ntemp_limit = 90\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("temp_limit") && err.contains("line 3"),
            "{err}"
        );
        let err = parse("[[pool]]\nurl = \"stratum+tcp://p\"\nuser = \"u\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("pool[0].url"), "{err:#}");
        let err = parse("[devices]\nbackend = \"cuda\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("devices.backend"), "{err}");
        let err = parse("[thermal]\ntemp_target = 90\ntemp_cutoff = 80\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("thermal.temp_cutoff"), "{err}");
        let err = parse("[devices]\nbatch_ms = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_ms") && err.contains("line 2"), "{err}");
        let err = parse("[stratum]\nmin_difficulty = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("stratum.min_difficulty -1"), "{err}");
        let err = parse("[stratum]\nmax_submit_rate = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("stratum.max_submit_rate 0"), "{err}");
        let err = parse("shutdown_grace = 0\n").unwrap_err().to_string();
        assert!(err.contains("shutdown_grace 0"), "{err}");
    }
}

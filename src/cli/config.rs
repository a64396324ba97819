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
//! kernel_variant = "auto"        # auto | generic | nvidia | nvidia-wide | amd
//! cpu_path = "avx512"            # avx512 | sha-ni | avx2 | scalar (default: tuned, else the CPU's best)
//! batch_ms = 100
//! [[device]]                     # per device, by `hashrig devices` index
//! index = 2
//! enabled = false
//! [api]
//! bind = "127.0.0.1:4029"
//! keys_file = "/etc/hashrig/api-keys.toml"
//! [cgminer_api]                  # what farm tools read
//! bind = "127.0.0.1:4028"
//! allow = "W:127.0.0.1/32"       # privileged commands from here only
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
use hashrig::backend::CpuPath;
use serde::{Deserialize, Serialize};

use super::devices::MAX_DEVICE_INDEX;
use super::mine::RunArgs;
use super::rig_services::{DeviceOverride, RigArgs};
use super::terms::Terms;
use super::{
    defaults, BackendChoice, Command, DeviceArgs, MineArgs, NodeArgs, SoloArgs, VariantChoice,
};

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
    pub kernel_variant: Option<String>,
    pub cpu_path: Option<String>,
    pub batch_ms: Option<u64>,
    /// The tuning file (`--tuning-file`).
    pub tuning_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiEntry {
    pub bind: Option<String>,
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgminerApiEntry {
    pub bind: Option<String>,
    pub allow: Option<String>,
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
    pub cgminer_api: Option<CgminerApiEntry>,
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

/// The config file given, else the default one when it exists.
pub fn load_given_or_default(given: Option<&Path>) -> anyhow::Result<Option<Config>> {
    match (given, default_path()) {
        (Some(path), _) => Ok(Some(load(path)?)),
        (None, Some(path)) => {
            tracing::info!("config: {}", path.display());
            Ok(Some(load(&path)?))
        }
        (None, None) => Ok(None),
    }
}

/// Config files are small; anything bigger is not one.
const MAX_CONFIG: u64 = 1 << 20;

/// Reads and checks a config file: its type and size first (a FIFO must
/// not block, a huge file must not be read), then every value, the way a
/// start checks its flags.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = hashrig::untrusted_files::read_text(path, MAX_CONFIG).context("config")?;
    let config: Config = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config {}: {}", path.display(), describe(&e, &text)))?;
    config
        .validate()
        .with_context(|| format!("config {}", path.display()))?;
    Ok(config)
}

/// A TOML error as its place and message, without the quoted line the
/// error would show: that line may hold a password.
fn describe(error: &toml::de::Error, text: &str) -> String {
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return error.message().to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: {}", error.message())
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
    /// Checks every value the flags would check, naming the key; run on
    /// every config file loaded (flags may complete it: see
    /// [`Config::check_as_start`]).
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
        if let Some(d) = &self.devices {
            if let Some(b) = &d.backend {
                if BackendChoice::from_str(b, true).is_err() {
                    bail!("devices.backend {b:?}: must be cpu, opencl, vulkan or all");
                }
            }
            if let Some(v) = &d.kernel_variant {
                if VariantChoice::from_str(v, true).is_err() {
                    bail!("devices.kernel_variant {v:?}: must be auto, generic, nvidia, nvidia-wide or amd");
                }
            }
            if let Some(p) = &d.cpu_path {
                if CpuPath::from_str(p, true).is_err() {
                    bail!("devices.cpu_path {p:?}: must be avx512, sha-ni, avx2 or scalar");
                }
            }
        }
        for (i, o) in self.device_overrides.iter().enumerate() {
            if o.index > MAX_DEVICE_INDEX {
                bail!(
                    "device[{i}].index {}: not a device index (0 to {MAX_DEVICE_INDEX}, as `hashrig devices` numbers them)",
                    o.index
                );
            }
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
        // The rest is checked as the flags are, by the same code, on the
        // command lines `mine` and `solo` would have with this file.
        let (Command::Mine(mut mine), matches) = defaults("mine")? else {
            bail!("internal: no mine command");
        };
        self.apply_mine(&mut mine, &matches);
        let terms = Terms::Config;
        mine.devices.settings(terms)?;
        mine.run.settings(terms)?;
        mine.rig.check_values(terms)?;
        mine.stratum(terms)?;
        let (Command::Solo(mut solo), matches) = defaults("solo")? else {
            bail!("internal: no solo command");
        };
        self.apply_solo(&mut solo, &matches);
        solo.check(terms)?;
        Ok(())
    }

    /// What a start with this file and no flags adds to
    /// [`Config::validate`] (which [`load`] ran): settings that need each
    /// other (the API's address and keys), and the keys file, read as a
    /// start reads it.
    pub fn check_as_start(&self) -> anyhow::Result<()> {
        let mut rig = RigArgs::default();
        self.fill_rig(&mut rig);
        rig.check(Terms::Config)?;
        if let Some(keys) = &rig.api_keys {
            hashrig::api::keys::KeyStore::load(keys).context("api.keys_file")?;
        }
        Ok(())
    }

    /// The configuration as TOML, passwords masked.
    pub fn masked(&self) -> String {
        use hashrig::redact::{mask_url, MASK};
        let mut shown = self.clone();
        for p in &mut shown.pools {
            if p.pass.as_deref().is_some_and(|p| p != "x") {
                p.pass = Some(MASK.into());
            }
            p.url = mask_url(&p.url);
        }
        if let Some(s) = &mut shown.solo {
            if s.rpc_pass.is_some() {
                s.rpc_pass = Some(MASK.into());
            }
            s.rpc_url = s.rpc_url.as_deref().map(mask_url);
        }
        toml::to_string(&shown).unwrap_or_default()
    }

    fn fill_rig(&self, rig: &mut RigArgs) {
        if let Some(api) = &self.api {
            fill(&mut rig.api_bind, &api.bind);
            fill(&mut rig.api_keys, &api.keys_file);
        }
        if let Some(cg) = &self.cgminer_api {
            fill(&mut rig.cgminer_api, &cg.bind);
            fill(&mut rig.cgminer_api_allow, &cg.allow);
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
        if args.device.is_none() && d.select.is_some() {
            args.device.clone_from(&d.select);
            args.select_from_config = true;
        }
        fill(&mut args.cpu_threads, &d.cpu_threads);
        fill(&mut args.shape.worksize, &d.worksize);
        fill(&mut args.shape.vectors, &d.vectors);
        fill(&mut args.shape.vulkan_nonces, &d.vulkan_nonces);
        fill(&mut args.tuning_file, &d.tuning_file);
        if args.shape.kernel_variant.is_none() {
            args.shape.kernel_variant = d
                .kernel_variant
                .as_deref()
                .and_then(|v| VariantChoice::from_str(v, true).ok());
        }
        if args.shape.cpu_path.is_none() {
            args.shape.cpu_path = d
                .cpu_path
                .as_deref()
                .and_then(|p| CpuPath::from_str(p, true).ok());
        }
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
        config.check_as_start()?;
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
keys_file = "/nonexistent-hashrig/keys.toml"
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

    /// Values a start refuses are refused by the check, by the same code,
    /// named by their keys.
    #[test]
    fn the_check_refuses_what_a_start_would() {
        for (text, named) in [
            (
                "[devices]\nselect = \"0,,-1,abc\"\n",
                "devices.select \"0,,-1,abc\"",
            ),
            (
                "[devices]\nworksize = 0\n",
                "devices.worksize: a work-group of 0",
            ),
            ("[devices]\ncpu_threads = 0\n", "devices.cpu_threads 0"),
            (
                "[devices]\nvulkan_nonces = 0\n",
                "devices.vulkan_nonces: 0 nonces",
            ),
            (
                "[devices]\nkernel_variant = \"cuda\"\n",
                "devices.kernel_variant \"cuda\"",
            ),
            (
                "[devices]\ncpu_path = \"sse4\"\n",
                "devices.cpu_path \"sse4\": must be avx512, sha-ni, avx2 or scalar",
            ),
            (
                "[api]\nbind = \"127.0.0.1:4028\"\n",
                "api.bind 127.0.0.1:4028: needs api.keys_file",
            ),
            (
                "[api]\nbind = \"localhost\"\nkeys_file = \"/k\"\n",
                "api.bind \"localhost\"",
            ),
            (
                "[[device]]\nindex = 18446744073709551615\n",
                "device[0].index 18446744073709551615",
            ),
            ("[solo]\nrpc_url = \"ftp://node\"\n", "solo.rpc_url"),
            ("[solo]\ncoinbase_sig = \"{81}\"\n", "solo.coinbase_sig"),
            ("[devices]\nbatch_ms = 0\n", "devices.batch_ms 0"),
            (
                "[solo]\nrpc_url = \"http://n:8332\"\nrpc_user = \"u\"\n",
                "solo.rpc_user: needs solo.rpc_pass",
            ),
            (
                "[cgminer_api]\nallow = \"W:127.0.0.1/32\"\n",
                "cgminer_api.allow: needs cgminer_api.bind",
            ),
            (
                "[thermal]\ntemp_target = 90\ntemp_cutoff = 80\n",
                "thermal.temp_cutoff 80: must be above thermal.temp_target 90",
            ),
            (
                "[[pool]]\nurl = \"stratum+tcp://p:3333\"\nuser = \"{300}\"\n",
                "pool.user",
            ),
        ] {
            let text = text
                .replace("{81}", &"x".repeat(81))
                .replace("{300}", &"x".repeat(300));
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(named), "{text}: {err}");
            // Checked as a file, the error speaks the file's terms only.
            assert!(!err.contains("--"), "{text}: {err}");
        }
    }

    /// Flags may complete a file: a start with `--api-bind` takes a file
    /// that names only the keys; `config check` (a start without flags)
    /// does not.
    #[test]
    fn settings_that_need_each_other_are_checked_as_a_start_would() {
        let text = "[api]\nkeys_file = \"/nonexistent-hashrig/keys.toml\"\n";
        let config: Config = toml::from_str(text).unwrap();
        config.validate().unwrap();
        let err = config.check_as_start().unwrap_err().to_string();
        assert!(err.contains("api.keys_file: needs api.bind"), "{err}");
    }

    #[test]
    fn syntax_errors_do_not_quote_the_line() {
        let text =
            "[[pool]]\nurl = \"stratum+tcp://p:3333\"\nuser = \"w\"\npass = \"hunter2\" oops\n";
        let err = toml::from_str::<Config>(text).unwrap_err();
        let shown = describe(&err, text);
        assert!(shown.starts_with("line 4, column "), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn passwords_in_addresses_are_masked() {
        let config = parse(
            "[[pool]]\nurl = \"stratum+tcp://pool.example.com:3333\"\nuser = \"w\"\n[solo]\nrpc_url = \"http://u:secret@127.0.0.1:8332\"\n",
        )
        .unwrap();
        let masked = config.masked();
        assert!(!masked.contains("secret"), "{masked}");
        assert!(
            masked.contains("http://u:********@127.0.0.1:8332"),
            "{masked}"
        );
        let err = format!(
            "{:#}",
            parse("[[pool]]\nurl = \"stratum+tcp://w:secret@pool:3333\"\nuser = \"w\"\n")
                .unwrap_err()
        );
        assert!(
            !err.contains("secret") && err.contains("pool[0].url"),
            "{err}"
        );
    }
}

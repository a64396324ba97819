//! How an error names a setting: by its flag when the command line is
//! checked, by its key when a config file is. The same checks serve both
//! (a file is refused for what a start would refuse), so each check takes
//! the [`Terms`] it speaks in and names settings through them.

/// The words an error uses for the settings it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terms {
    /// A command line's: `--worksize`, `--api-keys FILE`.
    Flags,
    /// A config file's: `devices.worksize`, `api.keys_file`.
    Config,
}

/// A setting that a flag and a config key both set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    flag: &'static str,
    /// The flag's value as `--help` shows it, for "needs --api-keys FILE".
    value: &'static str,
    key: &'static str,
}

impl Terms {
    /// The setting's name: `--worksize` or `devices.worksize`.
    pub fn name(self, setting: Setting) -> &'static str {
        match self {
            Terms::Flags => setting.flag,
            Terms::Config => setting.key,
        }
    }

    /// What to give when a setting is missing: `--api-keys FILE` or
    /// `api.keys_file`.
    pub fn wanted(self, setting: Setting) -> String {
        match self {
            Terms::Flags => format!("{} {}", setting.flag, setting.value),
            Terms::Config => setting.key.to_owned(),
        }
    }
}

const fn setting(flag: &'static str, value: &'static str, key: &'static str) -> Setting {
    Setting { flag, value, key }
}

// `[devices]` and the device flags.
pub const DEVICE: Setting = setting("--device", "SEL", "devices.select");
pub const CPU_THREADS: Setting = setting("--cpu-threads", "N", "devices.cpu_threads");
pub const WORKSIZE: Setting = setting("--worksize", "N", "devices.worksize");
pub const VECTORS: Setting = setting("--vectors", "N", "devices.vectors");
pub const CPU_PATH: Setting = setting("--cpu-path", "PATH", "devices.cpu_path");
pub const VULKAN_NONCES: Setting = setting("--vulkan-nonces", "N", "devices.vulkan_nonces");
pub const BATCH_MS: Setting = setting("--batch-ms", "MS", "devices.batch_ms");
pub const TUNING_FILE: Setting = setting("--tuning-file", "FILE", "devices.tuning_file");

// Top-level keys and the run flags.
pub const FOUND_BLOCKS: Setting = setting("--found-blocks", "FILE", "found_blocks");
pub const SHUTDOWN_GRACE: Setting = setting("--shutdown-grace", "S", "shutdown_grace");

// `[[pool]]` and `[stratum]`.
pub const POOL: Setting = setting("--pool", "URL", "pool.url");
pub const USER: Setting = setting("--user", "USER", "pool.user");
pub const POOL_CERT: Setting = setting("--pool-cert-sha256", "HEX", "pool.cert_sha256");
pub const MIN_DIFFICULTY: Setting = setting("--min-difficulty", "DIFF", "stratum.min_difficulty");
pub const MAX_SUBMIT_RATE: Setting = setting("--max-submit-rate", "N", "stratum.max_submit_rate");

// `[solo]` and the node flags.
pub const RPC_URL: Setting = setting("--rpc-url", "URL", "solo.rpc_url");
pub const RPC_USER: Setting = setting("--rpc-user", "USER", "solo.rpc_user");
pub const RPC_PASS: Setting = setting("--rpc-pass", "PASS", "solo.rpc_pass");
pub const RPC_COOKIE: Setting = setting("--rpc-cookie", "FILE", "solo.rpc_cookie");
pub const ADDRESS: Setting = setting("--address", "ADDR", "solo.address");
pub const COINBASE_SIG: Setting = setting("--coinbase-sig", "TEXT", "solo.coinbase_sig");

// The rig's services: `[api]`, `[cgminer_api]`, `[thermal]`, `[power]`.
pub const API_BIND: Setting = setting("--api-bind", "ADDR:PORT", "api.bind");
pub const API_KEYS: Setting = setting("--api-keys", "FILE", "api.keys_file");
pub const CGMINER_API: Setting = setting("--cgminer-api", "ADDR:PORT", "cgminer_api.bind");
pub const CGMINER_API_ALLOW: Setting = setting("--cgminer-api-allow", "LIST", "cgminer_api.allow");
pub const TEMP_TARGET: Setting = setting("--temp-target", "C", "thermal.temp_target");
pub const TEMP_CUTOFF: Setting = setting("--temp-cutoff", "C", "thermal.temp_cutoff");
pub const POWER_WATTS: Setting = setting("--power-watts", "W", "power.watts");
pub const KWH_PRICE: Setting = setting("--kwh-price", "PRICE", "power.kwh_price");

/// Every setting, for the test that holds them to clap's flags.
#[cfg(test)]
const ALL: &[Setting] = &[
    DEVICE,
    CPU_THREADS,
    WORKSIZE,
    VECTORS,
    VULKAN_NONCES,
    BATCH_MS,
    TUNING_FILE,
    FOUND_BLOCKS,
    SHUTDOWN_GRACE,
    POOL,
    USER,
    POOL_CERT,
    MIN_DIFFICULTY,
    MAX_SUBMIT_RATE,
    RPC_URL,
    RPC_USER,
    RPC_PASS,
    RPC_COOKIE,
    ADDRESS,
    COINBASE_SIG,
    API_BIND,
    API_KEYS,
    CGMINER_API,
    CGMINER_API_ALLOW,
    TEMP_TARGET,
    TEMP_CUTOFF,
    POWER_WATTS,
    KWH_PRICE,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the config file has `key`: a value of the wrong type is
    /// refused as such, an unknown key as unknown.
    fn config_knows(key: &str) -> bool {
        let text = match key.split_once('.') {
            Some(("pool", field)) => format!("[[pool]]\n{field} = 0\n"),
            Some((table, field)) => format!("[{table}]\n{field} = 0\n"),
            None => format!("{key} = 0\n"),
        };
        match toml::from_str::<crate::cli::config::Config>(&text) {
            Ok(_) => true,
            Err(e) => !e.to_string().contains("unknown field"),
        }
    }

    /// Each setting's flag is one that `mine` or `solo` takes, with the
    /// value name its `--help` shows, and its key one the config file
    /// knows: an error never names what does not exist.
    #[test]
    fn every_setting_names_a_real_flag_and_key() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let commands: Vec<&clap::Command> = ["mine", "solo"]
            .iter()
            .filter_map(|name| cli.find_subcommand(name))
            .collect();
        assert_eq!(commands.len(), 2);
        for setting in ALL {
            let long = setting.flag.trim_start_matches("--");
            let arg = commands
                .iter()
                .flat_map(|c| c.get_arguments())
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("{}: no such flag", setting.flag));
            let value_names: Vec<String> = arg
                .get_value_names()
                .map(|names| names.iter().map(|n| n.to_string()).collect())
                .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
            assert_eq!(value_names, [setting.value], "{}", setting.flag);
            assert!(config_knows(setting.key), "{}: no such key", setting.key);
        }
    }

    #[test]
    fn a_setting_is_named_in_the_terms_asked_for() {
        assert_eq!(Terms::Flags.name(API_KEYS), "--api-keys");
        assert_eq!(Terms::Config.name(API_KEYS), "api.keys_file");
        assert_eq!(Terms::Flags.wanted(API_KEYS), "--api-keys FILE");
        assert_eq!(Terms::Config.wanted(API_KEYS), "api.keys_file");
    }
}

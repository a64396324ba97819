//! A command line and the config file under it, made into one command's
//! valid settings. This is the one place where flags and keys meet and are
//! checked; `commands/` receives an [`Invocation`] and parses no text.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ArgMatches;
use hashrig::job::gbt::rpc::NodeRpc;

use super::config::Config;
use super::devices::tuning_path;
use super::terms::Terms;
use super::{
    ApiKeyCommand, BenchSettings, Command, ConfigCommand, FoundBlocksCommand, MineSettings,
    ScanSettings, SoloSettings, TuneSettings,
};

/// What to run, with its settings checked.
#[derive(Debug)]
pub enum Invocation {
    Devices(DevicesSettings),
    Bench(BenchSettings),
    Scan(ScanSettings),
    Tune(TuneSettings),
    Mine(MineSettings),
    Solo(SoloSettings),
    /// Its flags are parsed by clap; the keys file is what it checks.
    ApiKey(ApiKeyCommand),
    /// `config check FILE`.
    CheckConfig(PathBuf),
    FoundBlocks(FoundBlocksSettings),
}

/// Validated `devices` settings.
#[derive(Debug, Clone)]
pub struct DevicesSettings {
    pub json: bool,
    /// The tuning file whose entries are shown, if there is a data
    /// directory (or one was given).
    pub tuning_file: Option<PathBuf>,
}

/// Validated `found-blocks submit` settings.
#[derive(Debug, Clone)]
pub struct FoundBlocksSettings {
    /// The node; `None` only for a dry run given none.
    pub node: Option<NodeRpc>,
    pub file: PathBuf,
    pub dry_run: bool,
}

/// How long one block's submission waits for the node.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

impl Invocation {
    /// The command's settings: its flags, with `config`'s keys under the
    /// flags not given (`matches`, the subcommand's, tell which were).
    pub fn new(
        command: Command,
        matches: &ArgMatches,
        config: Option<&Config>,
    ) -> anyhow::Result<Self> {
        let config_devices = config.and_then(|c| c.devices.as_ref());
        Ok(match command {
            Command::Devices { json, tuning_file } => Invocation::Devices(DevicesSettings {
                json,
                tuning_file: tuning_path(
                    tuning_file.or_else(|| config_devices.and_then(|d| d.tuning_file.clone())),
                ),
            }),
            Command::Bench(mut args) => {
                if let Some(c) = config {
                    c.apply_devices(&mut args.devices, matches);
                    c.apply_rig(&mut args.rig);
                    if let Some(ms) = c.batch_ms(matches) {
                        args.batch_ms = ms;
                    }
                }
                Invocation::Bench(args.settings()?)
            }
            Command::Scan(args) => Invocation::Scan(args.settings()?),
            Command::Tune(mut args) => {
                if let Some(c) = config {
                    c.apply_devices(&mut args.devices, matches);
                }
                Invocation::Tune(args.settings()?)
            }
            Command::Mine(mut args) => {
                if let Some(c) = config {
                    c.apply_mine(&mut args, matches);
                }
                Invocation::Mine(args.settings()?)
            }
            Command::Solo(mut args) => {
                if let Some(c) = config {
                    c.apply_solo(&mut args, matches);
                }
                Invocation::Solo(args.settings()?)
            }
            Command::ApiKey(command) => Invocation::ApiKey(command),
            Command::Config(ConfigCommand::Check { file }) => Invocation::CheckConfig(file),
            Command::FoundBlocks(FoundBlocksCommand::Submit {
                mut node,
                found_blocks,
                dry_run,
            }) => {
                if let Some(c) = config {
                    c.apply_node(&mut node);
                }
                let file = found_blocks
                    .or_else(|| config.and_then(|c| c.found_blocks.clone()))
                    .or_else(hashrig::found::journal::FoundBlockLog::default_path)
                    .context(
                        "no data directory for the found-blocks file; give --found-blocks FILE",
                    )?;
                // A dry run sends nothing, so it needs no node; one given
                // is checked all the same.
                let node = match (&node.rpc_url, dry_run) {
                    (None, true) => None,
                    _ => Some(node.rpc(SUBMIT_TIMEOUT, Terms::Flags)?),
                };
                Invocation::FoundBlocks(FoundBlocksSettings {
                    node,
                    file,
                    dry_run,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::{CommandFactory, FromArgMatches};

    /// `hashrig ARGS` with `config_text` as its config file.
    fn invoke(args: &[&str], config_text: &str) -> anyhow::Result<Invocation> {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        let config: Config = toml::from_str(config_text)?;
        config.validate()?;
        let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(&matches);
        Invocation::new(cli.command, sub, Some(&config))
    }

    const CONFIG: &str = "[[pool]]\nurl = \"stratum+tcp://file.example:3333\"\nuser = \"w\"\n\
        [devices]\nworksize = 64\nbatch_ms = 250\nselect = \"7\"\n";

    #[test]
    fn the_file_fills_what_the_flags_leave_out() {
        let Invocation::Mine(settings) = invoke(&["hashrig", "mine"], CONFIG).unwrap() else {
            panic!("not mine");
        };
        assert_eq!(settings.devices.shape.worksize, Some(64));
        assert_eq!(settings.run.batch_time, Duration::from_millis(250));
        assert!(settings.stratum.pools[0]
            .url
            .to_string()
            .contains("file.example"));
    }

    #[test]
    fn flags_win_over_the_file() {
        let args = [
            "hashrig",
            "mine",
            "--pool",
            "stratum+tcp://flag.example:3333",
            "--user",
            "u",
            "--worksize",
            "128",
            "--batch-ms",
            "50",
        ];
        let Invocation::Mine(settings) = invoke(&args, CONFIG).unwrap() else {
            panic!("not mine");
        };
        assert_eq!(settings.devices.shape.worksize, Some(128));
        assert_eq!(settings.run.batch_time, Duration::from_millis(50));
        assert_eq!(settings.stratum.pools.len(), 1);
        assert!(settings.stratum.pools[0]
            .url
            .to_string()
            .contains("flag.example"));
    }

    /// A selection is matched to the installed devices only when the
    /// command runs; its error then names it where it was given.
    #[test]
    fn a_selection_is_named_where_it_was_given() {
        let empty = hashrig::backend::Inventory {
            devices: Vec::new(),
            notes: Vec::new(),
        };
        for (args, named) in [
            (&["hashrig", "mine"][..], "devices.select 7: no such device"),
            (
                &["hashrig", "mine", "--device", "7"][..],
                "--device 7: no such device",
            ),
        ] {
            let Invocation::Mine(settings) = invoke(args, CONFIG).unwrap() else {
                panic!("not mine");
            };
            let err = crate::cli::select_devices(&settings.devices, &empty).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    /// A flag's bad value is refused while the settings are made, in the
    /// flag's name, before any command starts.
    #[test]
    fn bad_flags_are_refused_by_their_names() {
        for (args, named) in [
            (
                &["hashrig", "mine", "--cpu-threads", "0"][..],
                "--cpu-threads 0",
            ),
            (&["hashrig", "bench", "--batch-ms", "0"][..], "--batch-ms 0"),
            (&["hashrig", "tune", "--vectors", "3"][..], "--vectors"),
            (
                &["hashrig", "found-blocks", "submit", "--rpc-url", "ftp://n"][..],
                "--rpc-url",
            ),
        ] {
            let err = format!("{:#}", invoke(args, CONFIG).unwrap_err());
            assert!(err.contains(named), "{args:?}: {err}");
        }
    }
}

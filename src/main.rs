//! `hashrig`: parse the command line, run, map errors to exit codes.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;
mod commands;
mod failure;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything else: a SIGHUP now (a service manager reloading a
    // unit that just started) waits for its handler instead of killing us.
    commands::hold_hangup();
    // SAFETY: first thing in main, before any other thread exists.
    let mut driver_settings = unsafe { hashrig::backend::vulkan::widen_software_driver() };
    // SAFETY: as above.
    driver_settings.extend(unsafe { hashrig::backend::vulkan::private_runtime_dir() });
    let (cli, matches) = cli::parse();
    match commands::run(cli, &matches, &driver_settings) {
        Ok(code) if commands::restart_requested() => restart(code),
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            match error.downcast_ref::<failure::Failure>() {
                Some(failure) => failure.exit_code(),
                // The command line, the config file or a setting.
                None => ExitCode::from(2),
            }
        }
    }
}

/// Runs this program again with the same arguments in this process (as
/// cgminer's `restart` does), once everything has stopped cleanly; if that
/// fails, exits with `code` and says why.
fn restart(code: ExitCode) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = match std::env::current_exe() {
            Ok(program) => {
                eprintln!("restarting as asked");
                std::process::Command::new(program)
                    .args(std::env::args_os().skip(1))
                    .exec()
            }
            Err(e) => e,
        };
        eprintln!("error: restart: {error}");
    }
    code
}

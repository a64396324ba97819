//! `hashrig`: parse the command line, run, map errors to exit codes.

mod cli;
mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, matches) = cli::parse();
    match commands::run(cli, &matches) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

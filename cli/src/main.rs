//! `mqttctl`: the admin command-line client of an mqttd cluster. It speaks
//! the control plane's gRPC admin API (`proto::admin`) to any member.
//!
//! Code map: `args.rs` is the command line as parsed; `connection.rs`
//! validates the global options, connects, bounds every call by
//! `--timeout` and turns failures into one sentence; `commands/` has one
//! module per command group, each answering an [`output::Output`];
//! `output.rs` renders it as text or as one JSON object.
//!
//! Architecture invariants: this crate depends on `proto` only, never on
//! the planes; commands never print, `main` alone writes to stdout and
//! stderr and picks the exit code (0 on success, 1 with exactly one line on
//! stderr on failure, 2 for a command line clap refuses).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod args;
mod commands;
mod connection;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::connection::{one_line, Connection, Target};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let result = Target::new(&cli.global).and_then(|target| {
        // One request at a time: a current-thread runtime starts fastest.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let connection = Connection::open(target).await?;
            commands::run(cli.command, &connection).await
        })
    });
    match result {
        Ok(output) => print(&output.render(json)),
        Err(error) => {
            eprintln!("mqttctl: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Writes the output; a reader that went away (`mqttctl users list | head`)
/// is not an error.
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mqttctl: cannot write the output: {}", one_line(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

//! The `certmesh` binary: server roles (`server`), schema and token administration (`migrate`,
//! `token`), and the operator CLI (`cert`, `profile`, `approval`, `principal`, `ceremony`,
//! `ca`, `fleet`, `discovery`, `notify`), a gRPC client of the gateway.

mod admin;
mod cli;
mod client;
mod dev;
mod mesh;
mod roles;
mod server;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    certmesh_kit::tls::install_crypto_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(*args).await,
            Command::Migrate(db) => admin::migrate(&db).await,
            Command::Mesh { command } => mesh::command(command),
            Command::Token { command } => client::token(command).await,
            Command::Principal { client, command } => client::principal(&client, command).await,
            Command::Tenant { command } => admin::tenant(command).await,
            Command::Audit { command } => admin::audit(command).await,
            Command::Cert { client, command } => client::cert(&client, command).await,
            Command::Profile { client, command } => client::profile(&client, command).await,
            Command::Approval { client, command } => client::approval(&client, command).await,
            Command::Ceremony { client, command } => client::ceremony(&client, command).await,
            Command::Ca { client, command } => client::ca(&client, command).await,
            Command::Fleet { client, command } => client::fleet(&client, command).await,
            Command::Discovery { client, command } => client::discovery(&client, command).await,
            Command::Notify { client, command } => client::notify(&client, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

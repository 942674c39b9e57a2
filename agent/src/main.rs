//! The `certmesh-agent` binary: parse, load settings, run one subcommand, exit. `run` stops on
//! SIGTERM or Ctrl-C after the job in progress, and exits 0 when the server retires the agent.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use certmesh_agent::clock::{Clock, SystemClock};
use certmesh_agent::config::Settings;
use certmesh_agent::session::{self, RunEnd};
use certmesh_agent::state::StateDir;
use certmesh_agent::{Result, enroll, status};
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
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
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let settings = Settings::load(&cli.config, cli.flags.into_layer())?;
    let clock = Arc::new(SystemClock);
    match cli.command {
        Command::Enroll {
            if_not_enrolled: true,
            ..
        } if StateDir::new(&settings.state_dir).is_enrolled() => {
            println!(
                "{} holds an identity already; not enrolling again",
                settings.state_dir.display()
            );
        }
        Command::Enroll { force, .. } => {
            let agent = enroll::enroll(&settings, force).await?;
            println!(
                "enrolled as {} ({}), tenant {}, group {}; identity valid until {}",
                agent.agent_id, agent.spiffe_id, agent.tenant_id, agent.group, agent.not_after
            );
        }
        Command::Run => {
            let (stop, shutdown) = watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                let _ = stop.send(true);
            });
            match session::run(&settings, clock, shutdown).await? {
                RunEnd::Retired => tracing::info!("Retired: exiting with status 0."),
                RunEnd::Shutdown => tracing::info!("Stopped."),
            }
        }
        Command::Status => {
            let state = StateDir::new(&settings.state_dir);
            print!("{}", status::report(&state, clock.now())?);
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! `herald serve` and `herald check-config`: run the service from a
//! configuration file (or the embedded defaults), or only validate one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use herald_policy::SystemClock;
use herald_server::Reload;
use herald_server::config::Config;
use herald_server::reload::ConfigSource;

use crate::exit::Failure;
use crate::logging::{self, LogFormat};
use crate::otlp;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (TOML; see docs/configuration.md). Without
    /// one, every default applies: SQLite in ./herald.db, the file outbox,
    /// and API keys from HERALD_API_KEYS.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// The configuration file to validate.
    file: PathBuf,
}

pub(crate) fn load(path: Option<&std::path::Path>) -> Result<Config, Failure> {
    match path {
        Some(path) => Config::load(path).map_err(Failure::input),
        None => Config::from_toml_str("", &|name| std::env::var(name).ok()).map_err(Failure::input),
    }
}

pub(crate) fn serve(args: ServeArgs, log_format: LogFormat) -> Result<ExitCode, Failure> {
    let config = load(args.config.as_deref())?;
    // Before any file is created (the database, its WAL, the outbox): what
    // herald writes is for its own user only, unless the operator says
    // otherwise (`server.umask`).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        config.server.umask,
    ));
    if config.auth.api_keys.is_empty() {
        return Err(Failure::input(
            "auth.api_keys: no API key configured (set auth.api_keys in the config file or HERALD_API_KEYS)",
        ));
    }
    let (export_layer, export) = otlp::layer(&config.tracing)
        .map_err(|e| Failure::input(format!("{e:#}")))?
        .unzip();
    let exporting = export_layer.is_some();
    logging::init_with(log_format, export_layer);
    herald_server::trace::export::set_exporting(exporting);
    if let Some(url) = config.tracing.redacted_traces_url() {
        tracing::info!(
            endpoint = %url,
            sample_ratio = config.tracing.sample_ratio,
            "exporting spans over OTLP/HTTP"
        );
    }
    let served = run(config, args.config);
    // The global subscriber is never dropped: the last spans are sent now.
    if let Some(export) = export {
        export.shutdown();
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

fn run(config: Config, path: Option<PathBuf>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // First of all: SIGHUP's default would end the process.
        let (ask, requests) = tokio::sync::mpsc::channel(1);
        on_hangup(ask)?;
        // A reload reads what `serve` read at start, and fails as
        // `check-config` does.
        let source: ConfigSource = Arc::new(move || match &path {
            Some(path) => Config::load(path),
            None => Config::from_toml_str("", &|name| std::env::var(name).ok()),
        });
        let reload = Reload { source, requests };
        let store = herald_server::open_store(&config)
            .await
            .map_err(|e| Failure::Fault(e.into()))?;
        let listener = tokio::net::TcpListener::bind(config.server.http_listen)
            .await
            .with_context(|| format!("binding {}", config.server.http_listen))?;
        herald_server::serve_reloadable(
            config,
            store,
            listener,
            shutdown_signal(),
            SystemClock::shared(),
            Some(reload),
        )
        .await
        .map_err(|e| Failure::Fault(e.into()))
    })
}

/// Asks for a reload on every SIGHUP. Signals that come while one is
/// pending are merged with it.
#[cfg(unix)]
fn on_hangup(ask: tokio::sync::mpsc::Sender<&'static str>) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = ask.try_send("SIGHUP") {
                return;
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn on_hangup(_ask: tokio::sync::mpsc::Sender<&'static str>) -> Result<(), Failure> {
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

pub(crate) fn check_config(args: CheckConfigArgs) -> Result<ExitCode, Failure> {
    let config = load(Some(&args.file))?;
    let relays: Vec<_> = config
        .relays
        .iter()
        .map(|r| {
            format!(
                "{} ({}:{}, tls {})",
                r.name,
                r.client.host,
                r.client.port,
                r.client.tls.as_str()
            )
        })
        .collect();
    println!("{}: ok", args.file.display());
    println!("listen      {}", config.server.http_listen);
    println!("store       {}", config.store.redacted_url());
    let keys: Vec<String> = config
        .auth
        .api_keys
        .iter()
        .map(|k| format!("{} {:?}", k.name(), k.scopes()))
        .collect();
    println!("api keys    {} ({})", keys.len(), keys.join(", "));
    if relays.is_empty() {
        println!(
            "relays      none: delivery goes to the file outbox {}",
            config.outbox.dir.display()
        );
    } else {
        println!("relays      {}", relays.join(", "));
    }
    match &config.submission {
        Some(sub) => {
            let mut listeners = Vec::new();
            if let Some(addr) = sub.listen {
                listeners.push(format!("STARTTLS on {addr}"));
            }
            if let Some(addr) = sub.implicit_tls_listen {
                listeners.push(format!("implicit TLS on {addr}"));
            }
            println!(
                "submission  {} (certificate {}, up to {} bytes, {} recipients)",
                listeners.join(", "),
                sub.cert_file.display(),
                sub.max_message_bytes,
                sub.max_recipients
            );
        }
        None => println!("submission  off"),
    }
    match config.tracing.redacted_traces_url() {
        Some(url) => println!(
            "tracing     OTLP/HTTP to {url} (sample ratio {})",
            config.tracing.sample_ratio
        ),
        None => println!("tracing     off"),
    }
    for channel in &config.alerts.channels {
        println!(
            "alerts      {} ({}) to {}{}",
            channel.name,
            channel.kind.as_str(),
            herald_server::redact::url(&channel.url),
            if channel.secret.is_some() {
                ", signed with ***"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

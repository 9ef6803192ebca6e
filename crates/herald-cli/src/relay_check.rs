//! `herald relay-check`: connect to a relay exactly as `send` would and
//! report what it offers — the "telnet smtp.example.com 587" check, done
//! properly: banner, capabilities, TLS, and whether AUTH works.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use herald_smtp::{Connection, Ctx, TlsMode};

use crate::exit::Failure;
use crate::relay::RelayArgs;

#[derive(Debug, Args)]
pub(crate) struct RelayCheckArgs {
    #[command(flatten)]
    relay: RelayArgs,
}

pub(crate) fn run(args: RelayCheckArgs) -> Result<ExitCode, Failure> {
    let file = args.relay.file()?;
    let client = args.relay.client_config(file.as_ref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let target = format!(
        "{}:{} (tls: {})",
        client.host,
        client.port,
        client.tls.as_str()
    );
    let has_credentials = client.credentials.is_some();
    let plain_mode = client.tls == TlsMode::None;
    println!("relay       {target}");
    if let Some(entry) = args.relay.entry(file.as_ref())? {
        if let Some(provider) = &entry.provider {
            println!("preset      {provider}");
        }
        println!("limits      {}", limits(entry));
    }
    let result = runtime.block_on(async {
        let conn = Connection::open(Arc::new(client), &Ctx::default()).await?;
        Ok::<_, herald_smtp::Error>(conn)
    });
    let conn = match result {
        Ok(conn) => conn,
        Err(error) => {
            println!("result      FAILED: {error}");
            return Err(Failure::Fault(anyhow::anyhow!(
                "relay check failed: {error}"
            )));
        }
    };
    println!("banner      {}", conn.banner());
    let caps = conn.capabilities();
    if caps.helo_only {
        println!("ehlo        not supported (HELO only)");
    }
    for line in &caps.lines {
        println!("capability  {line}");
    }
    match conn.tls_info() {
        Some(tls) => {
            println!("tls         {} {}", tls.version, tls.cipher);
            println!(
                "certificate {}",
                tls.subject.as_deref().unwrap_or("(unknown subject)")
            );
            println!(
                "issuer      {}",
                tls.issuer.as_deref().unwrap_or("(unknown)")
            );
            println!(
                "expires     {}",
                tls.not_after.as_deref().unwrap_or("(unknown)")
            );
        }
        None if plain_mode => println!("tls         none (plain text, as configured)"),
        None => println!("tls         none (server did not offer STARTTLS)"),
    }
    match conn.authenticated() {
        Some(mechanism) => println!("auth        succeeded ({})", mechanism.as_str()),
        None if has_credentials => println!("auth        not attempted"),
        None => println!("auth        not configured"),
    }
    runtime.block_on(conn.quit());
    println!("result      OK");
    Ok(ExitCode::SUCCESS)
}

/// A relay's rate and quota in words.
fn limits(relay: &herald_server::config::RelayConfig) -> String {
    let rate = match relay.rate {
        Some(limit) => format!("rate {} (burst {})", limit.rate, limit.burst),
        None => "no rate limit".to_owned(),
    };
    let quota = match relay.daily_quota {
        Some(quota) => format!("daily quota {} (resets {})", quota.limit, quota.reset),
        None => "no daily quota".to_owned(),
    };
    format!("{rate}, {quota}")
}

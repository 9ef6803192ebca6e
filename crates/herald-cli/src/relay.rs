//! Which relay to talk to and how: from flags, or from a `[[relays]]` entry
//! of a herald configuration file (validated by the service's own config
//! module), flags overriding. Shared by `send` and `relay-check`, so both
//! connect exactly the same way.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use herald_server::config::{Config, RelayConfig};
use herald_smtp::{ClientConfig, Credentials, Mechanism, Timeouts, TlsMode, system_tls_config};

use crate::exit::Failure;

/// How to reach the relay.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// A herald configuration file; its first `[[relays]]` entry (or the one
    /// named by --relay) is used. Flags given as well override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which `[[relays]]` entry of --config to use.
    #[arg(long, value_name = "NAME", requires = "config")]
    relay: Option<String>,
    /// The relay's host name or IP address.
    #[arg(long, value_name = "HOST")]
    relay_host: Option<String>,
    /// The relay's port (default: 465 for implicit TLS, 587 for STARTTLS,
    /// 25 otherwise).
    #[arg(long, value_name = "PORT")]
    relay_port: Option<u16>,
    /// none | starttls | opportunistic | implicit (default starttls).
    #[arg(long, value_name = "MODE")]
    tls: Option<TlsMode>,
    /// User name for AUTH.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Name of the environment variable holding the password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Name of the environment variable holding an OAuth 2.0 access token
    /// (AUTH XOAUTH2).
    #[arg(long, value_name = "VAR", conflicts_with = "password_env")]
    oauth2_token_env: Option<String>,
    /// Force an AUTH mechanism: plain, login or xoauth2.
    #[arg(long, value_name = "MECHANISM")]
    auth_mechanism: Option<String>,
    /// An extra CA certificate (PEM) to trust, besides the system's.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Allow AUTH on an unencrypted connection (sends the password in clear).
    #[arg(long)]
    allow_insecure_auth: bool,
    /// The name to give in EHLO (default: this machine's host name).
    #[arg(long, value_name = "NAME")]
    helo_name: Option<String>,
    /// Connect timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    connect_timeout: Option<Duration>,
    /// Timeout of every command phase (EHLO, AUTH, MAIL, RCPT, DATA).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    command_timeout: Option<Duration>,
    /// Timeout for sending the body and the final reply.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    data_timeout: Option<Duration>,
}

/// `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{raw:?} is not a duration ({e})"))
}

impl RelayArgs {
    /// Reads and validates --config, if given.
    pub(crate) fn file(&self) -> Result<Option<Config>, Failure> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        Config::load(path)
            .map(Some)
            .map_err(|e| Failure::input(format!("--config: {}: {e}", path.display())))
    }

    /// The `[[relays]]` entry of --config chosen (none without --config).
    pub(crate) fn entry<'a>(
        &self,
        file: Option<&'a Config>,
    ) -> Result<Option<&'a RelayConfig>, Failure> {
        file.map(|file| pick_relay(file, self.relay.as_deref()))
            .transpose()
    }

    /// The client configuration: the chosen relay of --config (if any),
    /// with every flag given taking precedence.
    pub(crate) fn client_config(&self, file: Option<&Config>) -> Result<ClientConfig, Failure> {
        let relay = match file {
            Some(file) => Some(pick_relay(file, self.relay.as_deref())?),
            None => None,
        };
        let base = relay.map(|r| r.client.clone());
        let host = self
            .relay_host
            .clone()
            .or_else(|| base.as_ref().map(|c| c.host.clone()))
            .ok_or_else(|| Failure::input("--relay-host: required (or give --config)"))?;
        let tls = self
            .tls
            .or_else(|| base.as_ref().map(|c| c.tls))
            .unwrap_or(TlsMode::StartTls);
        let port = self
            .relay_port
            .or_else(|| base.as_ref().map(|c| c.port))
            .unwrap_or(match tls {
                TlsMode::Implicit => 465,
                TlsMode::StartTls => 587,
                TlsMode::None | TlsMode::Opportunistic => 25,
            });
        let tls_config = match (&self.ca_file, &base) {
            (Some(ca), _) => system_tls_config(Some(ca))
                .map_err(|e| Failure::input(format!("--ca-file: {e}")))?,
            (None, Some(base)) => base.tls_config.clone(),
            (None, None) => {
                system_tls_config(None).map_err(|e| Failure::input(format!("--ca-file: {e}")))?
            }
        };

        let mut config = ClientConfig::new(host, port, tls, tls_config);
        config.credentials = match self.credentials()? {
            Some(credentials) => Some(credentials),
            None => base.as_ref().and_then(|c| c.credentials.clone()),
        };
        config.allow_insecure_auth =
            self.allow_insecure_auth || base.as_ref().is_some_and(|c| c.allow_insecure_auth);
        if let Some(name) = self
            .helo_name
            .clone()
            .or_else(|| base.as_ref().map(|c| c.helo_name.clone()))
        {
            config.helo_name = name;
        }
        config.timeouts = self.timeouts(base.as_ref().map(|c| c.timeouts));
        Ok(config)
    }

    fn credentials(&self) -> Result<Option<Credentials>, Failure> {
        let Some(user) = self.user.clone() else {
            if self.password_env.is_some() || self.oauth2_token_env.is_some() {
                return Err(Failure::input(
                    "--user: required with --password-env or --oauth2-token-env",
                ));
            }
            return Ok(None);
        };
        let mut credentials = if let Some(var) = &self.oauth2_token_env {
            Credentials::oauth2(user, env_secret("--oauth2-token-env", var)?)
        } else if let Some(var) = &self.password_env {
            Credentials::password(user, env_secret("--password-env", var)?)
        } else {
            return Err(Failure::input(
                "--user: needs --password-env or --oauth2-token-env (passwords are never taken as flags)",
            ));
        };
        credentials.mechanism = self
            .auth_mechanism
            .as_deref()
            .map(|m| match m.to_ascii_lowercase().as_str() {
                "plain" => Ok(Mechanism::Plain),
                "login" => Ok(Mechanism::Login),
                "xoauth2" => Ok(Mechanism::Xoauth2),
                other => Err(Failure::input(format!(
                    "--auth-mechanism: unknown mechanism {other:?} (plain, login, xoauth2)"
                ))),
            })
            .transpose()?;
        Ok(Some(credentials))
    }

    fn timeouts(&self, base: Option<Timeouts>) -> Timeouts {
        base.unwrap_or_default().with_settings(
            self.connect_timeout,
            self.command_timeout,
            self.data_timeout,
        )
    }
}

fn pick_relay<'a>(file: &'a Config, name: Option<&str>) -> Result<&'a RelayConfig, Failure> {
    match name {
        Some(name) => {
            file.relays.iter().find(|r| r.name == name).ok_or_else(|| {
                Failure::input(format!("--relay: no relay named {name:?} in --config"))
            })
        }
        None => file
            .relays
            .first()
            .ok_or_else(|| Failure::input("--config: no [[relays]] entry")),
    }
}

fn env_secret(flag: &str, var: &str) -> Result<String, Failure> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(Failure::input(format!(
            "{flag}: environment variable {var} is not set"
        ))),
    }
}

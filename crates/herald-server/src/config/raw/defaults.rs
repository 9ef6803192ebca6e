//! Every default in one place, named after its field, so the file format,
//! `Config::default_embedded` and docs/configuration.md can be checked
//! against each other.

use super::*;
use herald_policy::{BreakerConfig, RetryPolicy};
use herald_smtp::PoolConfig;

pub(crate) fn http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
pub(crate) fn drain_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
pub(crate) fn header_read_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
pub(crate) fn body_read_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn idle_timeout_http() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn max_connections_http() -> usize {
    1024
}
pub(crate) fn umask() -> String {
    "077".to_owned()
}
pub(crate) fn store_url() -> String {
    "sqlite://herald.db".to_owned()
}
pub(crate) fn api_keys() -> Vec<String> {
    Vec::new()
}
pub(crate) fn api_keys_env() -> Option<String> {
    None
}
// The retry defaults are herald-policy's, so there is one source.
pub(crate) fn initial_delay() -> Dur {
    Dur(RetryPolicy::default().initial_delay)
}
pub(crate) fn multiplier() -> f64 {
    RetryPolicy::default().multiplier
}
pub(crate) fn max_delay() -> Dur {
    Dur(RetryPolicy::default().max_delay)
}
pub(crate) fn max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}
pub(crate) fn max_age() -> Dur {
    Dur(RetryPolicy::default().max_age)
}
pub(crate) fn jitter() -> Named<Jitter> {
    Named(RetryPolicy::default().jitter)
}
pub(crate) fn concurrency() -> usize {
    16
}
pub(crate) fn connect_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
pub(crate) fn command_timeout() -> Dur {
    Dur(Duration::from_secs(5 * 60))
}
pub(crate) fn data_timeout() -> Dur {
    Dur(Duration::from_secs(10 * 60))
}
pub(crate) fn lease() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn max_lost_leases() -> u32 {
    3
}
pub(crate) fn pool_size() -> usize {
    16
}
pub(crate) fn retention() -> Dur {
    Dur(Duration::from_secs(30 * 24 * 60 * 60))
}
pub(crate) fn event_retention() -> Dur {
    Dur(Duration::from_secs(7 * 24 * 60 * 60))
}
pub(crate) fn lapsed_retention() -> Dur {
    Dur(Duration::from_secs(30 * 24 * 60 * 60))
}
pub(crate) fn poll_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
pub(crate) fn helo_name() -> Option<String> {
    None
}
pub(crate) fn max_message_bytes() -> usize {
    25 * 1024 * 1024
}
pub(crate) fn max_batch() -> usize {
    1000
}
pub(crate) fn max_queue_depth() -> u64 {
    1_000_000
}
pub(crate) fn max_recipients() -> usize {
    100
}
pub(crate) fn outbox_dir() -> PathBuf {
    PathBuf::from("outbox")
}
pub(crate) fn port() -> Option<u16> {
    None
}
pub(crate) fn tls() -> Named<TlsMode> {
    Named(TlsMode::StartTls)
}
pub(crate) fn username() -> Option<String> {
    None
}
pub(crate) fn password() -> Option<String> {
    None
}
pub(crate) fn password_env() -> Option<String> {
    None
}
pub(crate) fn oauth2_token_env() -> Option<String> {
    None
}
pub(crate) fn auth_mechanism() -> Option<Named<Mechanism>> {
    None
}
pub(crate) fn ca_file() -> Option<PathBuf> {
    None
}
pub(crate) fn allow_insecure_auth() -> bool {
    false
}
pub(crate) fn relay_helo_name() -> Option<String> {
    None
}
pub(crate) fn rate() -> Option<String> {
    None
}
pub(crate) fn burst() -> u32 {
    1
}
pub(crate) fn daily_quota() -> Option<u64> {
    None
}
/// Midnight UTC, unless a provider preset says otherwise.
pub(crate) fn quota_reset() -> Option<String> {
    None
}
pub(crate) fn provider() -> Option<String> {
    None
}
pub(crate) fn region() -> Option<String> {
    None
}
pub(crate) fn host() -> Option<String> {
    None
}
/// STARTTLS, unless a provider preset says otherwise.
pub(crate) fn relay_tls() -> Option<Named<TlsMode>> {
    None
}
// Pool and breaker defaults are their crates', so there is one source.
pub(crate) fn max_connections() -> usize {
    PoolConfig::default().max_connections
}
pub(crate) fn max_messages_per_connection() -> usize {
    PoolConfig::default().max_messages_per_connection
}
pub(crate) fn idle_timeout() -> Dur {
    Dur(PoolConfig::default().idle_timeout)
}
pub(crate) fn failure_threshold() -> u32 {
    BreakerConfig::default().failure_threshold
}
pub(crate) fn open_for() -> Dur {
    Dur(BreakerConfig::default().open_for)
}
pub(crate) fn max_open_for() -> Dur {
    Dur(BreakerConfig::default().max_open_for)
}
pub(crate) fn half_open_calls() -> u32 {
    BreakerConfig::default().half_open_calls
}
pub(crate) fn failure_rate() -> f64 {
    BreakerConfig::default().failure_rate
}
pub(crate) fn slow_call() -> Dur {
    Dur(BreakerConfig::default().slow_call)
}
pub(crate) fn slow_rate() -> f64 {
    BreakerConfig::default().slow_rate
}
pub(crate) fn min_calls() -> u32 {
    BreakerConfig::default().min_calls
}
pub(crate) fn breaker_window() -> Dur {
    Dur(BreakerConfig::default().window)
}
pub(crate) fn otlp_endpoint() -> Option<String> {
    None
}
pub(crate) fn service_name() -> String {
    "herald".to_owned()
}
pub(crate) fn sample_ratio() -> f64 {
    1.0
}

/// The usual port for a TLS mode.
pub(crate) fn port_for(tls: TlsMode) -> u16 {
    match tls {
        TlsMode::Implicit => 465,
        TlsMode::StartTls => 587,
        TlsMode::None | TlsMode::Opportunistic => 25,
    }
}

pub(crate) fn oauth2_timeout() -> Dur {
    Dur(crate::oauth2::DEFAULT_REQUEST_TIMEOUT)
}

pub(crate) fn oauth2_refresh_margin() -> Dur {
    Dur(crate::oauth2::DEFAULT_REFRESH_MARGIN)
}

//! What the commands that talk to a running server share: a typed API
//! client for `--server` with `--api-key`, and a runtime to drive it.

use std::time::Duration;

use herald_client::Client;
use tokio::runtime::Runtime;

use crate::exit::Failure;

/// How long one request to the server may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the server at `server` with `api_key` (a missing key is an
/// input error naming the flag), and a single-threaded runtime for it.
pub(crate) fn connect(server: &str, api_key: Option<&str>) -> Result<(Client, Runtime), Failure> {
    let key =
        api_key.ok_or_else(|| Failure::input("--api-key: required (or set HERALD_API_KEY)"))?;
    let client = Client::builder(server, key)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| Failure::input(format!("--server: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Fault(anyhow::anyhow!("starting the async runtime: {e}")))?;
    Ok((client, runtime))
}

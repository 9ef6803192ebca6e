//! A herald running in-process on a port-0 socket with a real SQLite file,
//! delivering to a testkit SMTP server (or its outbox directory).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use herald_server::config::Config;
use herald_server::{ServeError, open_store, serve};
use herald_testkit::TestServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const KEY: &str = "client-test-key-0123456789";

/// The secret of the webhooks a test configures (`secret_env =
/// "WEBHOOK_SECRET"`): Standard Webhooks' test vector.
pub(crate) const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) struct Herald {
    pub(crate) base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-client-{}", herald_message::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Herald {
    /// A herald sending to `relay` (its outbox without one), with `extra`
    /// TOML appended.
    pub(crate) async fn start(relay: Option<&TestServer>, extra: &str) -> Herald {
        let dir = temp_dir();
        let relay = relay
            .map(|r| {
                format!(
                    "[[relays]]\nname = \"test\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
                    r.port()
                )
            })
            .unwrap_or_default();
        let text = format!(
            r#"
[server]
http_listen = "127.0.0.1:0"
drain_timeout = "5s"
[store]
url = "sqlite://{dir}/herald.db"
[auth]
api_keys = ["{KEY}"]
[delivery]
poll_interval = "50ms"
[outbox]
dir = "{dir}/outbox"
{extra}
{relay}
"#,
            dir = dir.display()
        );
        let env = |name: &str| (name == "WEBHOOK_SECRET").then(|| WEBHOOK_SECRET.to_owned());
        let config = Config::from_toml_str(&text, &env).unwrap();
        let store = open_store(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(serve(config, store, listener, shutdown));
        Herald {
            base,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

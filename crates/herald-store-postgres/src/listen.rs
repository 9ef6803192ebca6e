//! Waking idle nodes: one connection per listener, outside the pool,
//! `LISTEN`ing on the `herald_work` channel that enqueues, retries,
//! releases and reclaims notify inside their transactions. A dropped
//! connection is reopened with growing pauses; `wake` is called after
//! every (re)connection too, since what was notified meanwhile is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_postgres::AsyncMessage;

use super::open::Target;

/// The first pause before reconnecting; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two attempts to reconnect.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// What to call when work may be due.
pub(crate) type Wake = Arc<dyn Fn() + Send + Sync>;

/// Starts listening for `target`; the task runs until aborted.
pub(crate) fn spawn(target: Target, wake: Wake) -> AbortHandle {
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            match listen(&target, &wake).await {
                // It was up: the next failure starts the pauses again.
                Ok(()) => pause = FIRST_PAUSE,
                Err(e) => tracing::warn!(error = %e, "listening for herald_work"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    })
    .abort_handle()
}

/// One connection's life: `LISTEN`, then `wake` for each notification,
/// until the connection ends. `Ok` if it was listening at some point.
async fn listen(target: &Target, wake: &Wake) -> Result<(), String> {
    let (client, mut connection) = target.connect().await.map_err(|e| e.to_string())?;
    let listening = client.batch_execute("LISTEN herald_work");
    tokio::pin!(listening);
    let mut started = false;
    loop {
        tokio::select! {
            done = &mut listening, if !started => {
                done.map_err(|e| target.scrub(super::codec::db("listen")(e)).to_string())?;
                started = true;
                wake();
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake(),
                Some(Ok(_)) => {}
                Some(Err(e)) if started => {
                    tracing::warn!(error = %super::codec::describe(&e), "the herald_work listener lost its connection");
                    return Ok(());
                }
                Some(Err(e)) => return Err(super::codec::describe(&e)),
                None if started => return Ok(()),
                None => return Err("the connection closed before LISTEN".to_owned()),
            },
        }
    }
}

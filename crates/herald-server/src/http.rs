//! The HTTP listener: hyper's HTTP/1 connections under limits that no
//! client can stretch. A connection waits at most `idle_timeout` for a
//! request, a request's headers take at most `header_read_timeout` from
//! their first byte, its body at most `body_read_timeout`; at most
//! `max_connections` are open at once (more wait in the kernel's backlog);
//! and shutdown takes at most `drain_timeout`, whatever clients do.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How connections are bounded (`[server]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it is serving, and
/// closes whatever is still open after `drain_timeout`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pass, and try
                    // again shortly rather than spin.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Reap finished connections as we go, so the set stays small.
        while connections.try_join_next().is_some() {}
        let (app, stop) = (app.clone(), stop.clone());
        connections.spawn(async move {
            connection(stream, app, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("HTTP listener closed; finishing the requests being served");
    stop.cancel();
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after drain_timeout; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// What the watchdog of one connection knows, in milliseconds since the
/// connection was accepted (`NONE`: not since the last request).
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Requests being served (headers read, answer not yet returned).
    in_flight: AtomicUsize,
    /// When the connection last became idle (accepted, or answered).
    idle_since: AtomicU64,
    /// When the first byte after that arrived.
    read_since: AtomicU64,
    changed: Notify,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            read_since: AtomicU64::new(NONE),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.read_since.store(NONE, Ordering::SeqCst);
        self.changed.notify_one();
    }

    fn request_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(self.now(), Ordering::SeqCst);
        }
        self.changed.notify_one();
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self
                .read_since
                .compare_exchange(NONE, self.now(), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// When the connection is to be closed if nothing changes: `None`
    /// while a request is served (its body has its own deadline).
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        match self.read_since.load(Ordering::SeqCst) {
            NONE => Some(self.at(self.idle_since.load(Ordering::SeqCst)) + limits.idle_timeout),
            first_byte => Some(self.at(first_byte) + limits.header_read_timeout),
        }
    }
}

/// Serves one connection until it closes, times out, or shutdown asks it
/// to finish.
async fn connection(stream: TcpStream, app: Router, limits: HttpLimits, stop: CancellationToken) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        app.map_request(move |request: Request<Incoming>| {
            request.map(|body| Body::new(Deadline::new(body, limits.body_read_timeout)))
        })
        .map_future(move |future| {
            let guard = InFlight::new(activity.clone());
            async move {
                let answer = future.await;
                drop(guard);
                answer
            }
        })
    };
    let builder = hyper::server::conn::http1::Builder::new();
    let conn = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits);
        let timed_out = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = timed_out => {
                if activity.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// Counts a request as served from when hyper hands it over (its headers
/// are complete) until its answer is returned.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// The socket, noting when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must arrive whole within its time.
struct Deadline {
    inner: Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

/// The error a body that came too slowly ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
struct BodyTimedOut(Duration);

impl hyper::body::Body for Deadline {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

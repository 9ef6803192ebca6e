//! Pipelining: the statements of one step of an operation are sent
//! together on one connection, `BEGIN` and `COMMIT` included, and their
//! answers read together, so a transaction costs one round trip per
//! decision it waits for rather than one per statement. tokio-postgres
//! sends a query when its future is first polled and answers them in
//! order; [`Conn::pipeline`] polls them in order, once each, before
//! waiting for any.
//!
//! A statement that fails aborts the transaction; those after it in the
//! same pipeline then fail too ("current transaction is aborted"), and a
//! `COMMIT` at the end rolls back. The first error is the one reported.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::codec::{db, pool as pool_error};
use herald_store::StoreError;

/// A statement parameter.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// One statement of a pipeline with its parameters.
#[derive(Debug)]
pub(crate) struct Step<'a> {
    pub(crate) sql: &'a str,
    pub(crate) params: Vec<Param<'a>>,
}

/// A [`Step`]: `step!(SQL, a, b)` binds `&a`, `&b` as `$1`, `$2`.
macro_rules! step {
    ($sql:expr $(, $param:expr)* $(,)?) => {
        $crate::pipeline::Step {
            sql: $sql,
            params: vec![$(&$param as $crate::pipeline::Param<'_>),*],
        }
    };
}
pub(crate) use step;

/// A connection from the pool, lent to one operation.
pub(crate) struct Conn {
    conn: Object,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl Conn {
    /// A connection from `pool`.
    pub(crate) async fn get(pool: &Pool) -> Result<Self, StoreError> {
        Ok(Self {
            conn: pool.get().await.map_err(pool_error)?,
        })
    }

    /// Runs `steps` pipelined, each in its own implicit transaction; the
    /// rows of each, or the first error.
    pub(crate) async fn pipeline(
        &self,
        steps: &[Step<'_>],
        context: &'static str,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        run(&self.conn, None, steps, None)
            .await
            .map_err(db(context))
    }

    /// Starts a transaction; its `BEGIN` goes with its first statements.
    pub(crate) fn begin(self) -> Tx {
        Tx {
            conn: Some(self.conn),
            state: State::Idle,
        }
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Idle,
    /// `BEGIN` sent; not ended.
    Open,
    /// Committed or rolled back.
    Ended,
}

/// A transaction on a pooled connection. Dropped before it ended (an
/// error, a panic), it is rolled back before its connection goes back to
/// the pool; if that cannot be done, the connection is closed instead.
pub(crate) struct Tx {
    conn: Option<Object>,
    state: State,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("state", &self.state).finish()
    }
}

impl Tx {
    /// A transaction on a connection from `pool`.
    pub(crate) async fn begin(pool: &Pool) -> Result<Self, StoreError> {
        Ok(Conn::get(pool).await?.begin())
    }

    /// The connection, for statements outside a pipeline (migrations run
    /// as simple queries of several statements each).
    pub(crate) fn client(&self) -> Result<&tokio_postgres::Client, StoreError> {
        Ok(self.conn()?)
    }

    fn conn(&self) -> Result<&Object, StoreError> {
        self.conn
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("postgres: transaction already ended".into()))
    }

    /// Runs `steps` in the transaction (after its `BEGIN`, if not sent yet).
    pub(crate) async fn run(
        &mut self,
        steps: &[Step<'_>],
        context: &'static str,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let begin = (self.state == State::Idle).then_some("BEGIN");
        self.state = State::Open;
        run(self.conn()?, begin, steps, None)
            .await
            .map_err(db(context))
    }

    /// Runs `steps` and commits, all in one pipeline.
    pub(crate) async fn commit(
        mut self,
        steps: &[Step<'_>],
        context: &'static str,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let begin = (self.state == State::Idle).then_some("BEGIN");
        self.state = State::Open;
        let result = run(self.conn()?, begin, steps, Some("COMMIT")).await;
        // Whatever failed, the COMMIT ended the transaction (a COMMIT of a
        // failed transaction rolls it back), unless the connection broke,
        // which the pool sees for itself.
        self.state = State::Ended;
        result.map_err(db(context))
    }

    /// Ends the transaction without keeping anything.
    pub(crate) async fn rollback(mut self) {
        if self.state != State::Open {
            return;
        }
        if let Some(conn) = self.conn.take()
            && conn.batch_execute("ROLLBACK").await.is_err()
        {
            discard(conn);
        }
        self.state = State::Ended;
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.state != State::Open {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        discard(conn);
                    }
                });
            }
            Err(_) => discard(conn),
        }
    }
}

/// Takes `conn` out of the pool and closes it.
fn discard(conn: Object) {
    drop(Object::take(conn));
}

/// Sends `begin`, `steps` and `end` in order, then waits for every answer.
async fn run(
    conn: &Object,
    begin: Option<&'static str>,
    steps: &[Step<'_>],
    end: Option<&'static str>,
) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
    // Statements are prepared once per connection; the first use of one
    // on a connection costs a round trip (shared by all those prepared).
    let prepares = steps
        .iter()
        .map(|step| Box::pin(conn.prepare_cached(step.sql)) as Boxed<'_, _>)
        .collect();
    let statements = in_order(prepares)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    let client: &tokio_postgres::Client = conn;
    let command = |sql: &'static str| -> Boxed<'_, _> {
        Box::pin(async move { client.batch_execute(sql).await.map(|()| Vec::new()) })
    };
    let mut pending: Vec<Boxed<'_, Result<Vec<Row>, tokio_postgres::Error>>> =
        Vec::with_capacity(steps.len() + 2);
    pending.extend(begin.map(command));
    for (step, statement) in steps.iter().zip(&statements) {
        pending.push(Box::pin(client.query(statement, &step.params)));
    }
    pending.extend(end.map(command));

    let mut answers = in_order(pending).await.into_iter();
    if begin.is_some() {
        answers.next().transpose()?;
    }
    let mut rows = Vec::with_capacity(steps.len());
    for _ in steps {
        rows.push(answers.next().transpose()?.unwrap_or_default());
    }
    if end.is_some() {
        answers.next().transpose()?;
    }
    Ok(rows)
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `futures` to completion, polling each for the first time in
/// order (which, for the driver's queries, is the order they are sent
/// in) before waiting on any; their outputs, in order.
async fn in_order<T>(mut futures: Vec<Boxed<'_, T>>) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

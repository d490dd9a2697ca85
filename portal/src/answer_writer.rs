//! Where customers' answers are written.
//!
//! PostgreSQL: on a pooled connection; row locks let many writers run at once.
//!
//! SQLite has one write lock per database file, which a nightly `cvm-etl
//! load` holds for its whole (atomic) transaction. Pooled connections
//! racing for it would sleep in SQLite's busy handler (latency spikes under
//! load) and give up after the busy timeout with "database is locked". So
//! on SQLite one writer thread with its own connection writes every answer:
//! it takes the queued answers, writes them in one `BEGIN IMMEDIATE`
//! transaction (one savepoint each, so one failing answer fails alone) and
//! answers each request after the commit. While a load holds the lock, the
//! writer keeps waiting its turn (up to [`WAIT_FOR_LOCK`]) and the answers
//! queue in memory, their requests waiting for the commit: an answer is
//! acknowledged only once it is in the database, never lost, never
//! "database is locked". The writer does not checkpoint the WAL itself (an
//! fsync stalls every queued answer); a second thread checkpoints beside it.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use cvm_shared::db::models::answers::{self, Answer};
use cvm_shared::db::{Backend, DbConnection, DbError, DbPool, DbUrl, lock_for_write};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use tokio::sync::oneshot;

use crate::db;
use crate::graphql::errors::ApiError;

/// How long the SQLite writer waits for a load to release the write lock
/// before it fails the answers it holds (a load is minutes at most).
pub const WAIT_FOR_LOCK: Duration = Duration::from_secs(600);

/// How often the SQLite WAL is checkpointed beside the writer.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Answers written in one SQLite transaction, at most.
const MAX_BATCH: usize = 512;

/// Answers waiting for the SQLite writer, at most (beyond: refused, retry).
const MAX_QUEUED: usize = 100_000;

/// One answer to store (already checked: the invitation is open).
#[derive(Debug, Clone)]
pub struct AnswerWrite {
    /// The invitation answered.
    pub invitation_id: i64,
    /// NPS 0-10.
    pub score: i32,
    /// CSAT 1-5.
    pub csat: Option<i32>,
    /// Comment, verbatim (None: none).
    pub comment: Option<String>,
    /// The submission time (UTC).
    pub at: NaiveDateTime,
}

type Reply = oneshot::Sender<Result<(Answer, bool), DbError>>;

/// Writes answers: on the pool (PostgreSQL) or through the SQLite writer thread.
#[derive(Clone)]
pub enum AnswerWriter {
    /// Straight on a pooled connection.
    Pooled(DbPool),
    /// Queued for the one SQLite writer.
    Queued(SyncSender<(AnswerWrite, Reply)>),
}

impl AnswerWriter {
    /// The writer for the database at `url` (`pool` is its pool).
    pub fn start(url: &DbUrl, pool: &DbPool) -> Result<AnswerWriter, DbError> {
        if url.backend == Backend::Postgres {
            return Ok(AnswerWriter::Pooled(pool.clone()));
        }
        let mut conn = DbConnection::open_for_write(url)?;
        // The writer never checkpoints (a checkpoint fsyncs: hundreds of ms
        // on some disks, during which every queued answer would wait); the
        // checkpointer thread does, beside it, without blocking it.
        conn.batch_execute("PRAGMA wal_autocheckpoint = 0")
            .map_err(DbError::query(
                "(pragma)",
                "turn off the writer's checkpoints",
            ))?;
        let mut checkpoints = DbConnection::open(url)?;
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    // PASSIVE: copies what no reader still needs; never waits.
                    if let Err(e) = checkpoints.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::debug!(error = %e, "WAL checkpoint failed; retried later");
                    }
                }
            })
            .map_err(|e| DbError::Connect {
                url: url.to_string(),
                message: format!("cannot start the checkpoint thread: {e}"),
            })?;
        let (tx, rx) = sync_channel(MAX_QUEUED);
        std::thread::Builder::new()
            .name("answer-writer".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(|e| DbError::Connect {
                url: url.to_string(),
                message: format!("cannot start the answer writer thread: {e}"),
            })?;
        Ok(AnswerWriter::Queued(tx))
    }

    /// Stores `w` (inserted, or replacing the invitation's earlier answer);
    /// returns the stored answer and whether an earlier one was replaced.
    pub async fn write(&self, w: AnswerWrite) -> Result<(Answer, bool), ApiError> {
        match self {
            AnswerWriter::Pooled(pool) => db::run(pool, move |c| upsert(c, &w)).await,
            AnswerWriter::Queued(tx) => {
                let (reply, done) = oneshot::channel();
                tx.try_send((w, reply)).map_err(|e| match e {
                    TrySendError::Full(_) => ApiError::internal(
                        "the answer queue is full (the database is not taking writes)",
                    ),
                    TrySendError::Disconnected(_) => {
                        ApiError::internal("the answer writer stopped")
                    }
                })?;
                done.await
                    .map_err(|_| ApiError::internal("the answer writer stopped"))?
                    .map_err(ApiError::from)
            }
        }
    }
}

fn upsert(c: &mut DbConnection, w: &AnswerWrite) -> Result<(Answer, bool), DbError> {
    answers::upsert(
        c,
        w.invitation_id,
        w.score,
        w.csat,
        w.comment.as_deref(),
        w.at,
    )
}

/// The SQLite writer: batches of queued answers, one transaction each.
fn write_loop(mut conn: DbConnection, rx: Receiver<(AnswerWrite, Reply)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let writes: Vec<&AnswerWrite> = batch.iter().map(|(w, _)| w).collect();
        let results = write_batch(&mut conn, &writes);
        for ((_, reply), result) in batch.into_iter().zip(results) {
            // The request may have gone (client closed): its answer is stored anyway.
            let _ = reply.send(result);
        }
    }
}

/// Writes `batch` in one transaction, waiting for the write lock as long as
/// [`WAIT_FOR_LOCK`]; one result per answer.
fn write_batch(
    conn: &mut DbConnection,
    batch: &[&AnswerWrite],
) -> Vec<Result<(Answer, bool), DbError>> {
    let started = Instant::now();
    loop {
        let mut results = Vec::with_capacity(batch.len());
        let committed = conn.transaction::<_, DbError, _>(|c| {
            lock_for_write(c)?;
            results = batch
                .iter()
                .map(|w| c.transaction(|c| upsert(c, w)))
                .collect();
            Ok(())
        });
        match committed {
            Ok(()) => return results,
            Err(e) if e.is_busy() && started.elapsed() < WAIT_FOR_LOCK => {
                tracing::info!(
                    queued = batch.len(),
                    waited_s = started.elapsed().as_secs(),
                    "answers wait for the database's write lock (a load is writing)"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, answers = batch.len(), "cannot write answers");
                let message = e.to_string();
                return batch
                    .iter()
                    .map(|_| {
                        Err(DbError::Checkout {
                            message: message.clone(),
                        })
                    })
                    .collect();
            }
        }
    }
}

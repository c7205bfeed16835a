//! Per-record completion: every record of a batch shares one
//! [`BatchShared`]; a [`RecordFuture`] is that handle plus the record's index,
//! so enqueueing a record costs one reference-count increment.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::error::{ClientError, Result};

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The record's offset; -1 when sent with `acks=none`.
    pub offset: i64,
    /// The record's timestamp (ms since the Unix epoch).
    pub timestamp: i64,
}

/// The outcome of one batch, shared by its records.
#[derive(Debug)]
pub(crate) struct BatchShared {
    pub topic: Arc<str>,
    pub partition: u32,
    result: OnceLock<(Result<i64>, Instant)>,
    wakers: Mutex<Vec<Waker>>,
}

impl BatchShared {
    pub fn new(topic: Arc<str>, partition: u32) -> Arc<Self> {
        Arc::new(Self {
            topic,
            partition,
            result: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// Resolves every record of the batch: `Ok(base_offset)` or an error.
    /// Later calls are ignored.
    pub fn complete(&self, r: Result<i64>) {
        if self.result.set((r, Instant::now())).is_err() {
            return;
        }
        let wakers = match self.wakers.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_complete(&self) -> bool {
        self.result.get().is_some()
    }
}

/// Resolves to the [`RecordMetadata`] of one sent record once its batch is
/// acknowledged, or to the error that failed the batch.
#[derive(Debug)]
#[must_use = "a record future does nothing unless awaited or checked; dropping it does not cancel the send"]
pub struct RecordFuture {
    shared: Arc<BatchShared>,
    index: u32,
    timestamp: i64,
    slot: Option<usize>,
}

impl RecordFuture {
    pub(crate) fn new(shared: Arc<BatchShared>, index: u32, timestamp: i64) -> Self {
        Self {
            shared,
            index,
            timestamp,
            slot: None,
        }
    }

    /// The result if the batch is already done, without registering a waker.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.shared.result.get().map(|(r, _)| self.metadata(r))
    }

    /// When the batch was acknowledged (or failed), once it is done.
    pub fn completed_at(&self) -> Option<Instant> {
        self.shared.result.get().map(|(_, at)| *at)
    }

    /// Whether the record's batch is done (acknowledged or failed).
    pub fn is_done(&self) -> bool {
        self.shared.is_complete()
    }

    fn metadata(&self, r: &Result<i64>) -> Result<RecordMetadata> {
        match r {
            Ok(base) => Ok(RecordMetadata {
                topic: Arc::clone(&self.shared.topic),
                partition: self.shared.partition,
                offset: if *base < 0 {
                    -1
                } else {
                    base + i64::from(self.index)
                },
                timestamp: self.timestamp,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for RecordFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some((r, _)) = self.shared.result.get() {
            return Poll::Ready(self.metadata(r));
        }
        let shared = Arc::clone(&self.shared);
        let mut wakers = match shared.wakers.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        // Re-check under the lock: `complete` sets the result before it
        // takes the wakers, so a result missed above is visible now.
        if let Some((r, _)) = shared.result.get() {
            drop(wakers);
            return Poll::Ready(self.metadata(r));
        }
        match self.slot {
            Some(i) if i < wakers.len() => {
                if !wakers[i].will_wake(cx.waker()) {
                    wakers[i] = cx.waker().clone();
                }
            }
            _ => {
                wakers.push(cx.waker().clone());
                let i = wakers.len() - 1;
                drop(wakers);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_resolve_from_the_batch_base_offset() {
        let b = BatchShared::new(Arc::from("t"), 3);
        let f0 = RecordFuture::new(Arc::clone(&b), 0, 10);
        let f2 = RecordFuture::new(Arc::clone(&b), 2, 12);
        assert!(f0.try_result().is_none());
        assert!(f0.completed_at().is_none());
        let waiter = tokio::spawn(f2);
        tokio::task::yield_now().await;
        b.complete(Ok(100));
        let m = waiter.await.expect("join").expect("ok");
        assert_eq!((m.partition, m.offset, m.timestamp), (3, 102, 12));
        assert!(f0.completed_at().is_some());
        assert_eq!(f0.await.expect("ok").offset, 100);
    }

    #[tokio::test]
    async fn errors_and_acks_none() {
        let b = BatchShared::new(Arc::from("t"), 0);
        let f = RecordFuture::new(Arc::clone(&b), 1, 0);
        b.complete(Err(ClientError::Timeout));
        b.complete(Ok(5));
        assert!(matches!(f.await, Err(ClientError::Timeout)));
        let b = BatchShared::new(Arc::from("t"), 0);
        b.complete(Ok(-1));
        let f = RecordFuture::new(b, 7, 0);
        assert_eq!(
            f.try_result().map(|r| r.map(|m| m.offset).ok()),
            Some(Some(-1))
        );
    }
}

//! The shell every remote sink shares: a bounded queue, batching, retries with capped
//! exponential backoff, counting, and a flush within the shutdown deadline.
//!
//! Cameras call [`Publisher::publish`], which only pushes onto the queue (never
//! blocks). One task per sink takes batches of up to the sink's limit, waits a short
//! linger so a quiet camera's event still goes out promptly, and hands the batch to the
//! [`Sink`]. What the sink could not deliver goes back to the front of the queue and
//! is retried after a backoff, until it is delivered; an event is given up only when
//! the queue overflows (oldest first) or the shutdown deadline passes, and every
//! give-up is counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{PublishError, Published, Publisher, PublisherReport};
use crate::backoff::Backoff;
use crate::telemetry::SinkMetrics;
use crate::BoxFuture;

/// How long the first event of a batch waits for company before it is sent.
pub const LINGER: Duration = Duration::from_millis(200);
/// Longest pause between attempts while a sink is failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause after a failed attempt.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// What one attempt at a batch achieved.
#[derive(Debug, Default)]
pub struct Attempt {
    /// Items not delivered; they are retried.
    pub failed: Vec<Published>,
    /// Why they failed, for the log.
    pub error: Option<String>,
    /// Quick retries the sink made inside this attempt.
    pub retries: u64,
    /// API calls made.
    pub calls: u64,
}

/// One remote sink's I/O: deliver a batch, report what failed.
pub trait Sink: Send + 'static {
    /// The sink's name (`kds`, `s3`, `ddb`).
    fn name(&self) -> &'static str;

    /// Most items per attempt.
    fn max_batch(&self) -> usize;

    /// Tries to deliver `batch`.
    fn send(&mut self, batch: Vec<Published>) -> BoxFuture<'_, Attempt>;

    /// Checks the sink's resource once at start-up and logs clearly when it cannot be
    /// used (events still queue and are retried).
    fn check(&self) -> BoxFuture<'static, ()>;
}

#[derive(Default)]
struct Counts {
    published: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
    batches: AtomicU64,
    calls: AtomicU64,
}

struct Queue {
    items: VecDeque<Published>,
    closed: bool,
    deadline: Option<Instant>,
}

struct Shared {
    name: &'static str,
    capacity: usize,
    queue: Mutex<Queue>,
    wake: Notify,
    counts: Counts,
    metrics: SinkMetrics,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`Publisher`] in front of a [`Sink`].
pub struct BatchingPublisher {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl BatchingPublisher {
    /// Starts the sink's task on the current runtime with a queue of `capacity` events.
    pub fn start<S: Sink>(sink: S, capacity: usize, metrics: SinkMetrics) -> Self {
        let shared = Arc::new(Shared {
            name: sink.name(),
            capacity: capacity.max(1),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
                deadline: None,
            }),
            wake: Notify::new(),
            counts: Counts::default(),
            metrics,
        });
        let task = tokio::spawn(run(sink, shared.clone()));
        Self {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// Events waiting to be delivered.
    pub fn queued(&self) -> usize {
        self.shared.lock().items.len()
    }

    fn report(&self) -> PublisherReport {
        let c = &self.shared.counts;
        PublisherReport {
            published: c.published.load(Ordering::Relaxed),
            snapshots: 0,
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            calls: c.calls.load(Ordering::Relaxed),
        }
    }
}

impl Publisher for BatchingPublisher {
    fn name(&self) -> &'static str {
        self.shared.name
    }

    fn publish(&self, item: Published) -> Result<(), PublishError> {
        let overflow = {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(PublishError::Closed {
                    sink: self.shared.name,
                });
            }
            let overflow = (queue.items.len() >= self.shared.capacity)
                .then(|| queue.items.pop_front())
                .flatten();
            queue.items.push_back(item);
            overflow
        };
        self.shared.wake.notify_one();
        match overflow {
            Some(oldest) => {
                self.shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = self.shared.name, event_id = %oldest.event.event_id, capacity = self.shared.capacity, "Queue full; the oldest event was given up.");
                Err(PublishError::QueueFull {
                    sink: self.shared.name,
                    event_id: oldest.event.event_id.clone(),
                })
            }
            None => Ok(()),
        }
    }

    fn close(&self, deadline: Instant) -> BoxFuture<'_, PublisherReport> {
        Box::pin(async move {
            {
                let mut queue = self.shared.lock();
                queue.closed = true;
                queue.deadline = Some(deadline);
            }
            self.shared.wake.notify_one();
            let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                // The task honours the deadline itself; allow it a moment to report.
                let grace =
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
                if tokio::time::timeout(grace, task).await.is_err() {
                    tracing::error!(sink = self.shared.name, "Publisher did not stop in time.");
                }
            }
            self.report()
        })
    }
}

/// How a failing batch is retried: from [`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`].
const BACKOFF: Backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);

async fn run<S: Sink>(mut sink: S, shared: Arc<Shared>) {
    let mut failures = 0u32;
    loop {
        // Wait for work, or for the close with nothing left.
        let (len, closed) = {
            let q = shared.lock();
            (q.items.len(), q.closed)
        };
        if len == 0 {
            if closed {
                break;
            }
            shared.wake.notified().await;
            continue;
        }
        if !closed && len < sink.max_batch() {
            tokio::time::sleep(LINGER).await;
        }
        let (batch, deadline) = {
            let mut q = shared.lock();
            let n = q.items.len().min(sink.max_batch());
            (q.items.drain(..n).collect::<Vec<_>>(), q.deadline)
        };
        if batch.is_empty() {
            continue;
        }
        let sent = batch.len();
        let attempt = sink.send(batch).await;
        let c = &shared.counts;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.calls.fetch_add(attempt.calls, Ordering::Relaxed);
        c.retried.fetch_add(attempt.retries, Ordering::Relaxed);
        c.published
            .fetch_add((sent - attempt.failed.len()) as u64, Ordering::Relaxed);
        if attempt.failed.is_empty() {
            failures = 0;
            continue;
        }
        failures += 1;
        c.failed.fetch_add(1, Ordering::Relaxed);
        shared.metrics.failures(1);
        tracing::warn!(
            sink = shared.name,
            attempt = failures,
            undelivered = attempt.failed.len(),
            error = attempt.error.as_deref().unwrap_or("unknown"),
            "Publish attempt failed; the events stay queued and are retried."
        );
        {
            let mut q = shared.lock();
            for item in attempt.failed.into_iter().rev() {
                q.items.push_front(item);
            }
        }
        let pause = BACKOFF.delay(failures);
        match deadline {
            Some(deadline) if Instant::now() + pause >= deadline => {
                tokio::time::sleep_until(deadline.into()).await;
                break;
            }
            _ => {
                // A close during the pause shortens nothing: the deadline is checked above.
                tokio::time::sleep(pause).await;
            }
        }
        let q = shared.lock();
        if q.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    // Whatever is still queued now is given up, and counted.
    let left = shared.lock().items.drain(..).count();
    if left > 0 {
        shared
            .counts
            .dropped
            .fetch_add(left as u64, Ordering::Relaxed);
        tracing::error!(
            sink = shared.name,
            events = left,
            "Shutdown deadline passed; undelivered events given up."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::event::sample;
    use crate::telemetry::Telemetry;

    /// A sink that fails its first `failures` attempts, then delivers.
    struct Flaky {
        failures: usize,
        delivered: Arc<Mutex<Vec<String>>>,
    }

    impl Sink for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn max_batch(&self) -> usize {
            10
        }
        fn check(&self) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
        fn send(&mut self, batch: Vec<Published>) -> BoxFuture<'_, Attempt> {
            Box::pin(async move {
                if self.failures > 0 {
                    self.failures -= 1;
                    return Attempt {
                        failed: batch,
                        error: Some("down".into()),
                        retries: 0,
                        calls: 1,
                    };
                }
                let mut d = self.delivered.lock().unwrap();
                d.extend(batch.iter().map(|p| p.event.event_id.clone()));
                Attempt {
                    calls: 1,
                    ..Attempt::default()
                }
            })
        }
    }

    fn item(n: i64) -> Published {
        Published {
            event: Arc::new(sample("cam", n)),
            frame: None,
        }
    }

    #[tokio::test]
    async fn failed_batches_are_retried_in_order_until_delivered() {
        let telemetry = Telemetry::new().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let p = BatchingPublisher::start(
            Flaky {
                failures: 3,
                delivered: delivered.clone(),
            },
            100,
            telemetry.metrics().sink("flaky"),
        );
        for n in 0..25 {
            p.publish(item(n)).unwrap();
        }
        let report = p.close(Instant::now() + Duration::from_secs(20)).await;
        assert_eq!(report.published, 25);
        assert_eq!(report.failed, 3);
        assert_eq!(report.dropped, 0);
        let ids = delivered.lock().unwrap().clone();
        let want: Vec<String> = (0..25).map(|n| sample("cam", n).event_id).collect();
        assert_eq!(ids, want, "delivered once each, in order");
        assert!(telemetry
            .render()
            .unwrap()
            .contains("publisher_failures_total{sink=\"flaky\"} 3"));
    }

    #[tokio::test]
    async fn overflow_gives_up_the_oldest_and_the_deadline_the_rest_counted() {
        let telemetry = Telemetry::new().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let p = BatchingPublisher::start(
            Flaky {
                failures: usize::MAX,
                delivered,
            },
            5,
            telemetry.metrics().sink("flaky"),
        );
        let mut full = 0;
        for n in 0..8 {
            if p.publish(item(n)).is_err() {
                full += 1;
            }
        }
        assert!(full >= 3, "8 into a queue of 5");
        let report = p.close(Instant::now() + Duration::from_millis(600)).await;
        assert_eq!(report.published, 0);
        assert_eq!(report.dropped, 8, "3 overflowed + 5 at the deadline");
        assert!(matches!(
            p.publish(item(9)),
            Err(PublishError::Closed { .. })
        ));
    }
}

//! The local sink: one JSON line per event appended to `<dir>/events.jsonl`, and (unless
//! `save_snapshots = false`) a JPEG snapshot with boxes drawn at
//! `<dir>/snapshots/<camera_id>/<ts_ms>_<event_id>.jpg` (the event's `snapshot` field
//! holds that path, relative to `<dir>`).
//!
//! Events go through a bounded queue to a writer on a blocking thread, so a slow disk
//! or JPEG encoding never blocks a camera. Each batch of lines is written, flushed and
//! fsynced. A write that fails is retried with backoff, counted in
//! `publisher_failures_total{sink="local"}`, and given up (counted) after a few tries.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::snapshot::{render, safe_segment, write_jpeg};
use super::{Event, PublishError, Published, Publisher, PublisherReport};
use crate::telemetry::SinkMetrics;
use crate::BoxFuture;

const SINK: &str = "local";
/// Events the queue holds before the oldest are refused.
pub const LOCAL_QUEUE_CAPACITY: usize = 4096;
const WRITE_ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(50);
/// JPEG quality of local snapshots.
pub const LOCAL_JPEG_QUALITY: u8 = 90;

#[derive(Default)]
struct Counts {
    published: AtomicU64,
    snapshots: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// Appends events as JSON lines under a directory.
pub struct LocalPublisher {
    tx: Mutex<Option<mpsc::Sender<Published>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counts: Arc<Counts>,
    metrics: SinkMetrics,
    events_path: PathBuf,
    save_snapshots: bool,
}

impl LocalPublisher {
    /// Creates `dir` (and `dir/snapshots`) and opens `events.jsonl` for appending;
    /// snapshots are saved when `save_snapshots`. Must be called inside a tokio runtime.
    pub fn open(dir: &Path, save_snapshots: bool, metrics: SinkMetrics) -> io::Result<Self> {
        fs::create_dir_all(dir.join("snapshots"))?;
        let events_path = dir.join("events.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events_path)?;
        let (tx, rx) = mpsc::channel(LOCAL_QUEUE_CAPACITY);
        let counts = Arc::new(Counts::default());
        let writer = {
            let counts = counts.clone();
            let metrics = metrics.clone();
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || write_loop(rx, file, &dir, &counts, &metrics))
        };
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            counts,
            metrics,
            events_path,
            save_snapshots,
        })
    }

    /// The file events are appended to.
    pub fn events_path(&self) -> &Path {
        &self.events_path
    }

    fn report(&self) -> PublisherReport {
        PublisherReport {
            published: self.counts.published.load(Ordering::Relaxed),
            snapshots: self.counts.snapshots.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            retried: 0,
            batches: 0,
            calls: 0,
        }
    }
}

fn write_loop(
    mut rx: mpsc::Receiver<Published>,
    file: File,
    dir: &Path,
    counts: &Counts,
    metrics: &SinkMetrics,
) {
    let mut out = BufWriter::new(file);
    while let Some(first) = rx.blocking_recv() {
        // Take whatever else is queued, write it as one batch, then flush once.
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let mut lines = Vec::with_capacity(batch.len() * 512);
        for item in &batch {
            let event = with_snapshot(item, dir, counts, metrics);
            // Serializing our own struct cannot fail; a failure would be a bug worth a log.
            match serde_json::to_writer(&mut lines, &event) {
                Ok(()) => lines.push(b'\n'),
                Err(e) => {
                    tracing::error!(event_id = %event.event_id, error = %e, "Event could not be serialized.")
                }
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match out
                .write_all(&lines)
                .and_then(|()| out.flush())
                .and_then(|()| out.get_ref().sync_data())
            {
                Ok(()) => {
                    counts
                        .published
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    metrics.failures(1);
                    tracing::warn!(sink = SINK, attempt, error = %e, "Writing events failed.");
                    if attempt >= WRITE_ATTEMPTS {
                        counts
                            .dropped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        tracing::error!(
                            sink = SINK,
                            events = batch.len(),
                            "Events given up after retries."
                        );
                        // Discard what was buffered for this batch; the next may succeed.
                        let (file, _unwritten) = out.into_parts();
                        out = BufWriter::new(file);
                        break;
                    }
                    std::thread::sleep(RETRY_DELAY * attempt);
                }
            }
        }
    }
}

/// The event to write: with its snapshot saved and named, when it has a frame.
fn with_snapshot(item: &Published, dir: &Path, counts: &Counts, metrics: &SinkMetrics) -> Event {
    let mut event = (*item.event).clone();
    let Some(frame) = &item.frame else {
        return event;
    };
    let relative = PathBuf::from("snapshots")
        .join(safe_segment(&event.camera_id))
        .join(format!(
            "{}_{}.jpg",
            event.ts_ms,
            safe_segment(&event.event_id)
        ));
    let path = dir.join(&relative);
    let written = path
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            write_jpeg(&render(frame, &event), LOCAL_JPEG_QUALITY, &path).map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => {
            counts.snapshots.fetch_add(1, Ordering::Relaxed);
            event.snapshot = Some(relative.display().to_string());
        }
        Err(e) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            metrics.failures(1);
            tracing::warn!(sink = SINK, event_id = %event.event_id, error = %e, "Snapshot not saved; the event is kept without it.");
        }
    }
    event
}

impl Publisher for LocalPublisher {
    fn name(&self) -> &'static str {
        SINK
    }

    fn publish(&self, mut item: Published) -> Result<(), PublishError> {
        // Without snapshots the frame is let go here, not held while the event queues.
        if !self.save_snapshots {
            item.frame = None;
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(PublishError::Closed { sink: SINK });
        };
        tx.try_send(item).map_err(|e| {
            let item = match e {
                mpsc::error::TrySendError::Full(it) | mpsc::error::TrySendError::Closed(it) => it,
            };
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.failures(1);
            PublishError::QueueFull {
                sink: SINK,
                event_id: item.event.event_id.clone(),
            }
        })
    }

    fn close(&self, deadline: Instant) -> BoxFuture<'_, PublisherReport> {
        Box::pin(async move {
            // Dropping the sender lets the writer drain the queue and finish.
            drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
            let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(writer) = writer {
                let timeout = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(timeout, writer).await.is_err() {
                    tracing::error!(
                        sink = SINK,
                        "Flush deadline passed with events still queued."
                    );
                }
            }
            self.report()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::event::sample;
    use crate::telemetry::Telemetry;

    fn published(n: i64) -> Published {
        Published {
            event: Arc::new(sample("cam", n)),
            frame: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kvs-infer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn events_are_appended_as_json_lines_and_flushed_on_close() {
        let dir = temp_dir("local-append");
        let telemetry = Telemetry::new().unwrap();
        let publisher = LocalPublisher::open(&dir, true, telemetry.metrics().sink(SINK)).unwrap();
        for n in 0..100 {
            publisher.publish(published(n)).unwrap();
        }
        let report = publisher
            .close(Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(
            report,
            PublisherReport {
                published: 100,
                ..PublisherReport::default()
            }
        );
        let text = fs::read_to_string(dir.join("events.jsonl")).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 100);
        assert_eq!(events[42], sample("cam", 42));
        assert!(dir.join("snapshots").is_dir());
        assert!(matches!(
            publisher.publish(published(101)),
            Err(PublishError::Closed { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn reopening_appends_rather_than_truncates() {
        let dir = temp_dir("local-reopen");
        let telemetry = Telemetry::new().unwrap();
        for round in 0..2 {
            let p = LocalPublisher::open(&dir, true, telemetry.metrics().sink(SINK)).unwrap();
            p.publish(published(round)).unwrap();
            p.close(Instant::now() + Duration::from_secs(5)).await;
        }
        let text = fs::read_to_string(dir.join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_frame_becomes_a_jpeg_snapshot_named_in_the_event() {
        use crate::decode::Frame;
        let dir = temp_dir("local-snapshot");
        let telemetry = Telemetry::new().unwrap();
        let p = LocalPublisher::open(&dir, true, telemetry.metrics().sink(SINK)).unwrap();
        let frame = Frame::flat(64, 48, 100, 128, 128);
        let mut event = sample("../cam", 7);
        event.detections[0].bbox = [4.0, 4.0, 30.0, 30.0];
        p.publish(Published {
            event: Arc::new(event.clone()),
            frame: Some(Arc::new(frame)),
        })
        .unwrap();
        let report = p.close(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(
            (report.published, report.snapshots, report.failed),
            (1, 1, 0)
        );
        let line = fs::read_to_string(dir.join("events.jsonl")).unwrap();
        let written: Event = serde_json::from_str(line.trim()).unwrap();
        let snapshot = written.snapshot.clone().unwrap();
        assert_eq!(
            snapshot,
            format!("snapshots/.._cam/{}_.._cam-7.jpg", event.ts_ms)
        );
        let jpeg = fs::read(dir.join(&snapshot)).unwrap();
        let mut decoder = jpeg_decoder::Decoder::new(&jpeg[..]);
        let pixels = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        assert_eq!(
            (info.width, info.height, pixels.len()),
            (64, 48, 64 * 48 * 3)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn without_snapshots_the_event_is_written_and_no_jpeg() {
        use crate::decode::Frame;
        let dir = temp_dir("local-no-snapshot");
        let telemetry = Telemetry::new().unwrap();
        let p = LocalPublisher::open(&dir, false, telemetry.metrics().sink(SINK)).unwrap();
        p.publish(Published {
            event: Arc::new(sample("cam", 3)),
            frame: Some(Arc::new(Frame::flat(64, 48, 100, 128, 128))),
        })
        .unwrap();
        let report = p.close(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(
            (report.published, report.snapshots, report.failed),
            (1, 0, 0)
        );
        let line = fs::read_to_string(dir.join("events.jsonl")).unwrap();
        let written: Event = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(written, sample("cam", 3));
        assert_eq!(fs::read_dir(dir.join("snapshots")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! One camera's ingest thread: source → decoder → scheduler, supervised with
//! exponential backoff (its results task is in [`super::results`]).
//!
//! The ingest thread blocks on reads and decoding, so it is an OS thread, not a task.
//! It stops when intake is cancelled.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Readiness;
use crate::backoff::Backoff;
use crate::config::{CameraConfig, SourceRef};
use crate::decode::{DecodePlan, Decoder, Frame, FrameSelector};
use crate::ingest::file::FileSource;
use crate::ingest::kvs;
use crate::ingest::live::SharedCursor;
use crate::ingest::rtsp::RtspSource;
use crate::ingest::synthetic::SyntheticFrames;
use crate::ingest::{FrameSource, IngestError};
use crate::scheduler::{DropNotice, Input, Job, ModelQueue, Reply, SharedInput};
use crate::telemetry::CameraMetrics;

/// Attempts at a file source before the camera is marked failed.
const FILE_MAX_ATTEMPTS: u32 = 3;
/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Everything one camera's ingest thread needs.
pub struct Ingest {
    /// Camera index in the pipeline.
    pub index: usize,
    /// Camera id from the config.
    pub id: String,
    /// Its config.
    pub config: CameraConfig,
    /// How its video is decoded.
    pub decode: DecodePlan,
    /// Frames sent so far: the last frame's number, so its results can be taken in
    /// order (`super::order`).
    pub(super) sent: Cell<u64>,
    /// The queues of the models its detectors use.
    pub queues: Vec<ModelQueue>,
    /// Where its results come back.
    pub reply: Reply,
    /// Its instruments.
    pub metrics: CameraMetrics,
    /// Marks it started at the first frame.
    pub readiness: Arc<Readiness>,
    /// Cancelled when intake stops.
    pub stop: CancellationToken,
    /// The runtime, for the few async waits the thread makes.
    pub runtime: Handle,
}

enum Outcome {
    /// A finite source reached its end.
    Ended,
    /// Intake was cancelled.
    Stopped,
}

impl Ingest {
    /// Runs until intake stops, a finite source ends, or the camera gives up.
    pub fn run(self) {
        let source_kind = self.config.source().map_or("none", |s| s.kind());
        let _span =
            tracing::info_span!("camera", camera_id = %self.id, source = source_kind).entered();
        // Live sources' clients spawn tasks (an RTSP teardown on drop, say): give this
        // thread the runtime's context.
        let _runtime = self.runtime.enter();
        for queue in &self.queues {
            queue.add_camera();
        }
        // Offline sources wait for a free slot per model rather than being replaced.
        // Recorded video (a file read as fast as possible, KVS on demand) is offline.
        let offline = match self.config.source() {
            Some(SourceRef::File(f)) => !f.realtime,
            Some(SourceRef::Kvs(k)) => k.end_timestamp_ms.is_some(),
            _ => false,
        };
        let slots: Vec<Arc<Semaphore>> = self
            .queues
            .iter()
            .map(|_| Arc::new(Semaphore::new(1)))
            .collect();
        let policy = RetryPolicy::of(self.config.source());
        let cursor = SharedCursor::default();
        let mut failures = 0u32;
        loop {
            // A bug in a parser or client library must cost one connection, not the
            // camera: a panic is a failure like any other, and the camera reconnects.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run_once(
                    offline.then_some(&slots[..]),
                    &mut failures,
                    &policy,
                    &cursor,
                )
            }))
            .unwrap_or_else(|panic| Err(Failure::panicked(&*panic)));
            self.metrics.alive(false);
            match result {
                Ok(Outcome::Stopped) => break,
                Ok(Outcome::Ended) => {
                    tracing::info!("Source ended.");
                    break;
                }
                Err(Failure { reason, message }) => {
                    self.metrics.ingest_error(reason);
                    failures += 1;
                    if policy.max_attempts.is_some_and(|max| failures >= max) {
                        tracing::error!(attempts = failures, error = %message, "Camera failed; giving up on it. Other cameras go on.");
                        break;
                    }
                    let delay = policy.backoff.delay(failures);
                    tracing::warn!(attempt = failures, delay_ms = delay.as_millis() as u64, error = %message, "Stream failed; reconnecting.");
                    let stopped = self.runtime.block_on(async {
                        tokio::select! {
                            () = self.stop.cancelled() => true,
                            () = tokio::time::sleep(delay) => false,
                        }
                    });
                    if stopped {
                        break;
                    }
                }
            }
        }
        // During shutdown the queues drain everything; otherwise stop waiting for us.
        if !self.stop.is_cancelled() {
            for queue in &self.queues {
                queue.remove_camera();
            }
        }
    }

    fn run_once(
        &self,
        slots: Option<&[Arc<Semaphore>]>,
        failures: &mut u32,
        policy: &RetryPolicy,
        cursor: &SharedCursor,
    ) -> Result<Outcome, Failure> {
        let selector = FrameSelector::new(self.config.fps_target);
        let mut source: Box<dyn FrameSource> = match self.config.source() {
            Some(SourceRef::File(f)) => {
                let source =
                    FileSource::open(&f.path, f.loop_, f.realtime).map_err(Failure::stream)?;
                tracing::info!(path = %f.path.display(), codec = ?source.info().codec, fps = source.info().fps, "Source opened.");
                Box::new(source)
            }
            Some(SourceRef::Kvs(k)) => {
                let open = kvs::open(k, cursor.clone(), self.metrics.clone());
                match self.live(open, policy.stall)? {
                    Some(source) => source,
                    None => return Ok(Outcome::Stopped),
                }
            }
            Some(SourceRef::Rtsp(r)) => {
                let open = async {
                    let source = RtspSource::open(r, cursor.clone(), self.metrics.clone()).await?;
                    Ok(Box::new(source) as Box<dyn FrameSource>)
                };
                match self.live(open, policy.stall)? {
                    Some(source) => source,
                    None => return Ok(Outcome::Stopped),
                }
            }
            Some(SourceRef::Synthetic(s)) => {
                let mut frames = SyntheticFrames::new(s.width, s.height, s.fps);
                let mut selector = selector;
                loop {
                    if self.stop.is_cancelled() {
                        return Ok(Outcome::Stopped);
                    }
                    let frame = frames.next_frame();
                    if selector.keep(frame.pts_90k) && !self.submit(frame, slots, failures) {
                        return Ok(Outcome::Stopped);
                    }
                }
            }
            None => return Err(Failure::stream("no source configured")),
        };
        let mut decoder = self
            .decode
            .open(source.info(), selector)
            .map_err(Failure::stream)?;
        self.pump(
            source.as_mut(),
            decoder.as_mut(),
            slots,
            failures,
            policy.stall,
        )
    }

    /// Awaits `future` on the runtime unless intake stops (`None`) or it takes longer
    /// than `stall` (a stall failure).
    fn live<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, IngestError>>,
        stall: Option<Duration>,
    ) -> Result<Option<T>, Failure> {
        self.runtime.block_on(async {
            let timed = async {
                match stall {
                    Some(limit) => tokio::time::timeout(limit, future)
                        .await
                        .map_err(|_| Failure::stall(limit))?
                        .map_err(Failure::stream),
                    None => future.await.map_err(Failure::stream),
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => Ok(None),
                r = timed => r.map(Some),
            }
        })
    }

    fn pump(
        &self,
        source: &mut dyn FrameSource,
        decoder: &mut dyn Decoder,
        slots: Option<&[Arc<Semaphore>]>,
        failures: &mut u32,
        stall: Option<Duration>,
    ) -> Result<Outcome, Failure> {
        // A source that delivers bytes whose frames ingest throws away is as blind as
        // one that delivers nothing.
        let mut blind = stall.map(|limit| Blind::new(limit, self.config.fps_target));
        loop {
            if self.stop.is_cancelled() {
                return Ok(Outcome::Stopped);
            }
            let Some(unit) = self.live(source.next_access_unit(), stall)? else {
                return Ok(Outcome::Stopped);
            };
            let frames = match &unit {
                Some(unit) => decoder.decode(unit).map_err(Failure::stream)?,
                None => decoder.flush().map_err(Failure::stream)?,
            };
            if let Some(blind) = &mut blind {
                blind.check(!frames.is_empty(), Instant::now())?;
            }
            for frame in frames {
                if !self.submit(frame, slots, failures) {
                    return Ok(Outcome::Stopped);
                }
            }
            if unit.is_none() {
                return Ok(Outcome::Ended);
            }
        }
    }

    /// Sends a frame to every model queue; false once intake has stopped.
    fn submit(&self, frame: Frame, slots: Option<&[Arc<Semaphore>]>, failures: &mut u32) -> bool {
        if *failures > 0 || !self.readiness.is_started(&self.id) {
            *failures = 0;
            self.metrics.alive(true);
            self.readiness.mark_started(&self.id);
            tracing::info!(
                width = frame.width,
                height = frame.height,
                "Frames flowing."
            );
        }
        let frame = Arc::new(frame);
        let seq = self.sent.get() + 1;
        self.sent.set(seq);
        // Several models with one input size share the letterboxed tensor.
        let shared = (self.queues.len() > 1).then(|| Arc::new(SharedInput::default()));
        for (i, queue) in self.queues.iter().enumerate() {
            let permit = match slots {
                Some(slots) => {
                    let slot = slots[i].clone();
                    let permit = self.runtime.block_on(async {
                        tokio::select! {
                            p = slot.acquire_owned() => p.ok(),
                            () = self.stop.cancelled() => None,
                        }
                    });
                    match permit {
                        Some(p) => Some(p),
                        None => return false,
                    }
                }
                None => None,
            };
            let job = Job {
                key: self.index,
                camera: self.index,
                frame: frame.clone(),
                input: Input::Frame(shared.clone()),
                reply: self.reply.clone(),
                permit,
                // Every frame comes back, run or dropped, so results go in order.
                tag: seq,
                notice: Some(DropNotice::new(
                    self.reply.clone(),
                    queue.model(),
                    frame.clone(),
                    seq,
                )),
            };
            if queue.submit(job).is_err() {
                return false;
            }
        }
        true
    }
}

/// Why one connection of a camera ended in failure.
#[derive(Debug)]
struct Failure {
    /// The `ingest_errors_total` reason: `stream` or `stall`.
    reason: &'static str,
    message: String,
}

impl Failure {
    fn stream(e: impl std::fmt::Display) -> Self {
        Self {
            reason: "stream",
            message: e.to_string(),
        }
    }

    fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Self {
            reason: "stream",
            message: format!("the source panicked: {text}"),
        }
    }

    fn stall(limit: Duration) -> Self {
        Self {
            reason: "stall",
            message: format!("no frame for {:.1} s", limit.as_secs_f64()),
        }
    }
}

/// How long a live camera has gone without a frame although its source delivers units
/// (all filtered out by timeline, replay or frame selection, or undecodable).
struct Blind {
    /// The longest stretch allowed: the stall timeout, or two selection intervals when
    /// `fps_target` is slower than that.
    limit: Duration,
    since: Option<Instant>,
}

impl Blind {
    fn new(stall: Duration, fps_target: f64) -> Self {
        let interval = if fps_target > 0.0 {
            Duration::from_secs_f64((2.0 / fps_target).min(3600.0))
        } else {
            Duration::ZERO
        };
        Self {
            limit: stall.max(interval),
            since: None,
        }
    }

    /// Notes a unit that did (`yielded`) or did not give a frame, at `now`; a stall
    /// failure once none has for longer than the limit.
    fn check(&mut self, yielded: bool, now: Instant) -> Result<(), Failure> {
        if yielded {
            self.since = None;
            return Ok(());
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) > self.limit {
            return Err(Failure {
                reason: "stall",
                message: format!(
                    "the source delivers data but no frame came of it for {:.1} s",
                    self.limit.as_secs_f64()
                ),
            });
        }
        Ok(())
    }
}

/// How a camera's source is retried.
struct RetryPolicy {
    /// Connections tried before the camera is marked failed; unlimited when `None`.
    max_attempts: Option<u32>,
    /// Pauses between attempts: from the source's retry delay, doubling to a minute.
    backoff: Backoff,
    /// No access unit for this long is a failure (live sources only).
    stall: Option<Duration>,
}

impl RetryPolicy {
    fn of(source: Option<SourceRef<'_>>) -> Self {
        match source {
            Some(SourceRef::Kvs(k)) => Self {
                max_attempts: k.max_retries.map(|r| r + 1),
                backoff: Backoff::new(Duration::from_secs_f64(k.retry_delay_sec), MAX_BACKOFF),
                stall: Some(Duration::from_secs_f64(k.stall_timeout_sec)),
            },
            Some(SourceRef::Rtsp(r)) => Self {
                max_attempts: r.max_retries.map(|r| r + 1),
                backoff: Backoff::new(Duration::from_secs_f64(r.retry_delay_sec), MAX_BACKOFF),
                stall: Some(Duration::from_secs_f64(r.stall_timeout_sec)),
            },
            Some(SourceRef::File(_)) => Self {
                max_attempts: Some(FILE_MAX_ATTEMPTS),
                backoff: Backoff::new(Duration::from_secs(1), MAX_BACKOFF),
                stall: None,
            },
            _ => Self {
                max_attempts: None,
                backoff: Backoff::new(Duration::from_secs(1), MAX_BACKOFF),
                stall: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_whose_units_yield_no_frame_stalls_after_the_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut blind = Blind::new(s(6), 2.0);
        assert!(blind.check(false, t0).is_ok());
        assert!(blind.check(false, t0 + s(6)).is_ok());
        // A frame resets the clock.
        assert!(blind.check(true, t0 + s(6)).is_ok());
        assert!(blind.check(false, t0 + s(7)).is_ok());
        assert!(blind.check(false, t0 + s(12)).is_ok());
        let failure = blind.check(false, t0 + s(14)).unwrap_err();
        assert_eq!(failure.reason, "stall");
        // A camera at one frame a minute is not stalled between its frames.
        let mut slow = Blind::new(s(6), 1.0 / 60.0);
        assert!(slow.check(false, t0).is_ok());
        assert!(slow.check(false, t0 + s(100)).is_ok());
        assert!(slow.check(false, t0 + s(121)).is_err());
    }
}

//! A fake Kinesis Video Streams of our own (moto does not serve KVS media): the control
//! plane's `GetDataEndpoint`, archived media's `GetHLSStreamingSessionURL` with a live
//! sliding-window HLS playlist (MPEG-TS or fragmented MP4 segments), and `GetMedia`
//! streaming KVS-shaped MKV fragments in real time, all with the real API's paths and
//! JSON shapes so the real binary talks to it through the real AWS SDK.
//!
//! Media are cut with ffmpeg from a fixture clip (looped to 60 s, with an audio track)
//! into 2-second pieces, and a live stream never runs out: each stream's [`Producer`]
//! says where its timeline has got to, and pieces are served again and again with
//! their timestamps moved there. Producers behave as real ones do: they restart with
//! timecodes at 0 again, repeat timecodes, go quiet for seconds, or send no KVS tags.
//! Faults are switched on by the tests: playlists that 404, damaged segments or
//! fragments, sessions that expire, and the whole server going away and coming back.

#![allow(dead_code)]
// Handlers return an early `Response` as their error: that is what axum answers with.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

/// Segments in a live playlist's window.
const WINDOW: usize = 3;

#[path = "kvs_media.rs"]
mod media;
use media::{fragment_index, fragment_number, rfc3339};
pub use media::{Media, Producer, BASE_EPOCH_MS, PIECE_MS};

#[path = "kvs_faults.rs"]
mod faults;
pub use faults::{Damage, Faults, Seen};

struct Shared {
    media: Media,
    /// Each stream and how its producer behaves (tests change it as it runs).
    streams: Mutex<HashMap<String, Producer>>,
    start: Instant,
    /// The wall clock at `start`, epoch ms: when the first frame met the glass.
    start_wall_ms: i64,
    addr: Mutex<SocketAddr>,
    faults: Mutex<Faults>,
    seen: Mutex<Seen>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Cancelled when the server goes down: open GetMedia bodies end.
    down: Mutex<CancellationToken>,
}

/// One HLS session.
#[derive(Clone)]
struct Session {
    stream: String,
    created: Instant,
    container: String,
    /// ON_DEMAND: the pieces in its timestamp range (first, end exclusive).
    range: Option<(usize, usize)>,
    /// LIVE_REPLAY: the piece it starts from.
    replay_from: Option<usize>,
}

/// The running fake.
pub struct FakeKvs {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeKvs {
    /// Serves `media` for the named streams on a free local port; the live clock starts now.
    pub fn start(media: Media, streams: &[&str]) -> FakeKvs {
        let streams: Vec<_> = streams.iter().map(|s| (*s, Producer::default())).collect();
        Self::start_with(media, &streams)
    }

    /// Serves `media` for streams whose producers behave as given.
    pub fn start_with(media: Media, streams: &[(&str, Producer)]) -> FakeKvs {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let shared = Arc::new(Shared {
            media,
            streams: Mutex::new(
                streams
                    .iter()
                    .map(|(s, p)| (s.to_string(), p.clone()))
                    .collect(),
            ),
            start: Instant::now(),
            start_wall_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
            addr: Mutex::new(listener.local_addr().unwrap()),
            faults: Mutex::new(Faults::default()),
            seen: Mutex::new(Seen::default()),
            sessions: Mutex::new(HashMap::new()),
            down: Mutex::new(CancellationToken::new()),
        });
        let mut fake = FakeKvs {
            runtime,
            shared,
            server: None,
        };
        fake.serve(listener);
        fake
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let token = CancellationToken::new();
        *self.shared.down.lock().unwrap() = token.clone();
        let app = Router::new()
            .route("/getDataEndpoint", post(data_endpoint))
            .route("/getHLSStreamingSessionURL", post(hls_session))
            .route("/getMedia", post(get_media))
            .route("/hls/v1/getHLSMasterPlaylist.m3u8", get(master))
            .route("/hls/v1/getHLSMediaPlaylist.m3u8", get(media_playlist))
            .route("/hls/v1/getMP4InitFragment.mp4", get(init))
            .route("/hls/v1/getTSFragment.ts", get(ts_segment))
            .route("/hls/v1/getMP4MediaFragment.mp4", get(fmp4_segment))
            .with_state(self.shared.clone());
        self.server = Some(self.runtime.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        }));
    }

    /// The endpoint to put in `endpoint_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr.lock().unwrap())
    }

    /// When the frame with producer time `producer_ms` was recorded, on this machine's
    /// wall clock (epoch ms): the "glass" of glass-to-event latency.
    pub fn glass_ms(&self, producer_ms: i64) -> i64 {
        self.shared.start_wall_ms + (producer_ms - BASE_EPOCH_MS)
    }

    /// The fragment `stream`'s producer is recording now.
    pub fn recording(&self, stream: &str) -> usize {
        self.shared.available(stream)
    }

    /// Changes how `stream`'s producer behaves from now on (set only fragments after
    /// [`FakeKvs::recording`]: what was recorded stays as it was).
    pub fn producer(&self, stream: &str, change: impl FnOnce(&mut Producer)) {
        let mut streams = self.shared.streams.lock().unwrap();
        change(streams.get_mut(stream).expect("a stream the fake serves"));
    }

    /// Switches faults on or off.
    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared.faults.lock().unwrap()
    }

    /// What the fake has seen so far.
    pub fn seen(&self) -> Seen {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The server goes away: the port closes and open streams end.
    pub fn stop(&mut self) {
        self.shared.down.lock().unwrap().cancel();
        if let Some(server) = self.server.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
        }
    }

    /// The server comes back on the same port.
    pub fn restart(&mut self) {
        let addr = *self.shared.addr.lock().unwrap();
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        self.serve(listener);
    }
}

impl Drop for FakeKvs {
    fn drop(&mut self) {
        self.shared.down.lock().unwrap().cancel();
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", kind),
            (header::CONTENT_TYPE.as_str(), "application/json"),
        ],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

impl Shared {
    /// Fragments of `stream` complete on the live clock.
    fn available(&self, stream: &str) -> usize {
        self.producer(stream)
            .available(self.start.elapsed().as_millis() as i64)
    }

    fn producer(&self, stream: &str) -> Producer {
        let streams = self.streams.lock().unwrap();
        streams.get(stream).cloned().unwrap_or_default()
    }

    fn known(&self, body: &serde_json::Value) -> Result<(), Response> {
        let name = body["StreamName"].as_str().unwrap_or("");
        if self.streams.lock().unwrap().contains_key(name) {
            return Ok(());
        }
        self.seen.lock().unwrap().unknown_streams += 1;
        Err(error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("The requested stream {name} is not found or not active."),
        ))
    }

    /// The session, or a 403 once it has expired.
    fn session(&self, query: &HashMap<String, String>) -> Result<Session, Response> {
        let token = query.get("SessionToken").cloned().unwrap_or_default();
        let sessions = self.sessions.lock().unwrap();
        let Some(session) = sessions.get(&token) else {
            return Err(error(
                StatusCode::FORBIDDEN,
                "NotAuthorizedException",
                "Unknown session token.",
            ));
        };
        let ttl = self.faults.lock().unwrap().session_ttl;
        if ttl.is_some_and(|ttl| session.created.elapsed() > ttl) {
            self.seen.lock().unwrap().refused_403s += 1;
            return Err(error(
                StatusCode::FORBIDDEN,
                "NotAuthorizedException",
                "The session has expired.",
            ));
        }
        Ok(session.clone())
    }

    /// Piece `index`, damaged if a fault says so.
    fn piece(&self, bytes: Vec<u8>, index: usize) -> Vec<u8> {
        let damage = self.faults.lock().unwrap().damaged.get(&index).copied();
        let mut out = bytes;
        match damage {
            None => return out,
            Some(Damage::Truncate) => out.truncate(out.len() / 2),
            Some(Damage::Garbage) => {
                let (a, b) = (out.len() / 3, out.len() * 2 / 3);
                let mut x = 0x2545_F491_4F6C_DD1Du64 ^ index as u64;
                for byte in &mut out[a..b] {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *byte = x as u8;
                }
            }
        }
        self.seen.lock().unwrap().damaged_served += 1;
        out
    }
}

async fn data_endpoint(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Err(r) = s.known(&body) {
        return r;
    }
    let api = body["APIName"].as_str().unwrap_or("").to_owned();
    s.seen.lock().unwrap().endpoints.push(api);
    let url = format!("http://{}", s.addr.lock().unwrap());
    json(serde_json::json!({ "DataEndpoint": url }))
}

async fn hls_session(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Err(r) = s.known(&body) {
        return r;
    }
    let mode = body["PlaybackMode"].as_str().unwrap_or("LIVE").to_owned();
    let container = body["ContainerFormat"]
        .as_str()
        .unwrap_or("FRAGMENTED_MP4")
        .to_owned();
    let stream = body["StreamName"].as_str().unwrap_or("").to_owned();
    let producer = s.producer(&stream);
    // The first fragment at or after a timestamp of the request's range (epoch seconds).
    let piece = |key: &str| {
        let secs = body["HLSFragmentSelector"]["TimestampRange"][key]
            .as_f64()
            .unwrap_or(0.0);
        producer.at_or_after((secs * 1000.0) as i64)
    };
    // ON_DEMAND serves the recorded fragments whose producer time is in the range, then
    // ends.
    let range = (mode == "ON_DEMAND").then(|| {
        let end = piece("EndTimestamp").min(s.available(&stream));
        (piece("StartTimestamp").min(end), end)
    });
    // LIVE_REPLAY lists everything recorded since its start, and goes on live.
    let replay_from = (mode == "LIVE_REPLAY").then(|| piece("StartTimestamp"));
    let token = {
        let mut sessions = s.sessions.lock().unwrap();
        let token = format!("CiVzZXNzaW9u{}", sessions.len() + 1);
        sessions.insert(
            token.clone(),
            Session {
                stream: stream.clone(),
                created: Instant::now(),
                container: container.clone(),
                range,
                replay_from,
            },
        );
        token
    };
    s.seen.lock().unwrap().sessions.push((mode, container));
    let url = format!(
        "http://{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}",
        s.addr.lock().unwrap()
    );
    json(serde_json::json!({ "HLSStreamingSessionURL": url }))
}

async fn master(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let q = query(&uri);
    let container = match s.session(&q) {
        Ok(session) => session.container,
        Err(r) => return r,
    };
    let codecs = if container == "MPEG_TS" {
        "avc1.640028"
    } else {
        "avc1.640028,mp4a.40.2"
    };
    let token = &q["SessionToken"];
    let text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=4000000,CODECS=\"{codecs}\",RESOLUTION=1280x720\ngetHLSMediaPlaylist.m3u8?SessionToken={token}\n"
    );
    (
        [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
        text,
    )
        .into_response()
}

async fn media_playlist(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let q = query(&uri);
    let session = match s.session(&q) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let container = session.container;
    {
        let mut faults = s.faults.lock().unwrap();
        if faults.playlist_404 > 0 {
            faults.playlist_404 -= 1;
            s.seen.lock().unwrap().playlist_404s += 1;
            return error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "No fragments found.",
            );
        }
    }
    let token = &q["SessionToken"];
    // Live: a sliding window over what is recorded; on demand: the whole range, ended.
    let available = s.available(&session.stream);
    let (first, available) = match (session.range, session.replay_from) {
        (Some(range), _) => range,
        (None, Some(from)) => (from.min(available), available),
        (None, None) => (available.saturating_sub(WINDOW), available),
    };
    let producer = s.producer(&session.stream);
    let ts = container == "MPEG_TS";
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:{}\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
        if ts { 3 } else { 7 }
    );
    if !ts {
        text.push_str(&format!(
            "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken={token}\"\n"
        ));
    }
    for i in first..available {
        let date = rfc3339(producer.producer_ms(i));
        let (path, ext) = if ts {
            ("getTSFragment", "ts")
        } else {
            ("getMP4MediaFragment", "mp4")
        };
        text.push_str(&format!(
            "#EXT-X-PROGRAM-DATE-TIME:{date}\n#EXTINF:2.000,\n{path}.{ext}?SessionToken={token}&FragmentNumber={}\n",
            fragment_number(i)
        ));
    }
    if session.range.is_some() {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    (
        [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
        text,
    )
        .into_response()
}

async fn init(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let q = query(&uri);
    if let Err(r) = s.session(&q) {
        return r;
    }
    (
        [(header::CONTENT_TYPE, "video/mp4")],
        s.media.fmp4_init.clone(),
    )
        .into_response()
}

fn segment(s: &Shared, q: &HashMap<String, String>, ts: bool) -> Response {
    let session = match s.session(q) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let producer = s.producer(&session.stream);
    let index = q.get("FragmentNumber").and_then(|n| fragment_index(n));
    match index.filter(|&i| i < s.available(&session.stream)) {
        Some(i) => {
            let (kind, piece) = if ts {
                ("video/mp2t", s.media.ts_segment(&producer, i))
            } else {
                ("video/mp4", s.media.fmp4_segment(&producer, i))
            };
            ([(header::CONTENT_TYPE, kind)], s.piece(piece, i)).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "No such fragment.",
        ),
    }
}

async fn ts_segment(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let q = query(&uri);
    segment(&s, &q, true)
}

async fn fmp4_segment(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let q = query(&uri);
    segment(&s, &q, false)
}

async fn get_media(State(s): State<Arc<Shared>>, _headers: HeaderMap, body: Bytes) -> Response {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Err(r) = s.known(&body) {
        return r;
    }
    let selector = &body["StartSelector"];
    let kind = selector["StartSelectorType"]
        .as_str()
        .unwrap_or("NOW")
        .to_owned();
    let stream = body["StreamName"].as_str().unwrap_or("").to_owned();
    // The fragment being recorded now.
    let live_edge = s.available(&stream);
    let (start, detail) = match kind.as_str() {
        "EARLIEST" => (0, None),
        "PRODUCER_TIMESTAMP" => {
            let secs = selector["StartTimestamp"].as_f64().unwrap_or(0.0);
            (
                s.producer(&stream).at_or_after((secs * 1000.0) as i64),
                None,
            )
        }
        "CONTINUATION_TOKEN" => {
            let token = selector["ContinuationToken"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (
                fragment_index(&token).map_or(live_edge, |i| i + 1),
                Some(token),
            )
        }
        "FRAGMENT_NUMBER" => {
            let number = selector["AfterFragmentNumber"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (fragment_index(&number).unwrap_or(live_edge), Some(number))
        }
        _ => (live_edge, None),
    };
    s.seen.lock().unwrap().get_media.push((kind, detail));
    let down = s.down.lock().unwrap().clone();
    let shared = s.clone();
    // KVS streams a fragment while the producer uploads it: fragment i goes out in
    // CHUNKS parts over its 2 s of recording (at once, if that is past). The connection
    // stays open, without end, while the producer has nothing new.
    const CHUNKS: usize = 10;
    let body = futures::stream::unfold((start, 0usize, Vec::new()), move |(i, k, mut bytes)| {
        let shared = shared.clone();
        let down = down.clone();
        let stream = stream.clone();
        async move {
            let producer = shared.producer(&stream);
            if k == 0 {
                bytes = shared.piece(shared.media.mkv_fragment(&producer, i), i);
            }
            let offset_ms = producer.live_ms(i) + (k as i64 + 1) * PIECE_MS / CHUNKS as i64;
            let due = shared.start + Duration::from_millis(offset_ms as u64);
            tokio::select! {
                () = down.cancelled() => return None,
                () = tokio::time::sleep_until(due.into()) => {}
            }
            let (a, b) = (bytes.len() * k / CHUNKS, bytes.len() * (k + 1) / CHUNKS);
            let chunk = Bytes::copy_from_slice(&bytes[a..b]);
            let next = if k + 1 == CHUNKS {
                (i + 1, 0, Vec::new())
            } else {
                (i, k + 1, bytes)
            };
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    (
        [(header::CONTENT_TYPE, "video/webm")],
        Body::from_stream(body),
    )
        .into_response()
}

/// A URL's query parameters (values are URL-safe here: tokens and numbers).
fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

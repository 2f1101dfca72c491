//! The AWS publishers against a real local AWS server (moto, started here, never mocked
//! in-process): every event reaches Kinesis, S3 and DynamoDB; an outage loses nothing
//! and is counted; a SIGTERM with a full buffer delivers it before exit; a missing
//! stream or bucket is a clear error while the server keeps running.
//!
//! Outages are made with a small TCP proxy between the server and moto, so moto keeps
//! its state while the server sees real connection failures.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_kinesis::types::ShardIteratorType;
use common::{fixture, get, metric, read_events, repo, skip, temp_dir, Server};

const STREAM: &str = "detection-events";
const BUCKET: &str = "detection-snapshots";
const TABLE: &str = "events-table";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto server on a free port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        let bin = repo().join(".cache/venv/bin/moto_server");
        if !bin.is_file() {
            skip("moto_server not found (scripts/setup.sh --test installs moto[server] into .cache/venv)");
            return None;
        }
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy that can be cut: while down it closes every connection it has and
/// every new one at once.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                o.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Proxy { port, down, open }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Test-side AWS clients straight to moto.
struct Aws {
    runtime: tokio::runtime::Runtime,
    kinesis: aws_sdk_kinesis::Client,
    s3: aws_sdk_s3::Client,
    ddb: aws_sdk_dynamodb::Client,
}

impl Aws {
    fn new(endpoint: &str) -> Aws {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sdk = runtime.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .endpoint_url(endpoint)
                .load(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        Aws {
            kinesis: aws_sdk_kinesis::Client::new(&sdk),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            s3,
            runtime,
        }
    }

    fn create_all(&self) {
        self.runtime.block_on(async {
            self.kinesis
                .create_stream()
                .stream_name(STREAM)
                .shard_count(2)
                .send()
                .await
                .unwrap();
            self.s3.create_bucket().bucket(BUCKET).send().await.unwrap();
            let key = |name: &str, kind| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .unwrap()
            };
            let attr = |name: &str, ty| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ty)
                    .build()
                    .unwrap()
            };
            self.ddb
                .create_table()
                .table_name(TABLE)
                .key_schema(key("event_id", KeyType::Hash))
                .key_schema(key("ts_ms", KeyType::Range))
                .attribute_definitions(attr("event_id", ScalarAttributeType::S))
                .attribute_definitions(attr("ts_ms", ScalarAttributeType::N))
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .unwrap();
        });
    }

    /// Every record in the stream, as JSON envelopes.
    fn kinesis_events(&self) -> Vec<serde_json::Value> {
        self.runtime.block_on(async {
            let mut out: Vec<serde_json::Value> = Vec::new();
            let shards = self
                .kinesis
                .list_shards()
                .stream_name(STREAM)
                .send()
                .await
                .unwrap();
            for shard in shards.shards() {
                let mut iterator = self
                    .kinesis
                    .get_shard_iterator()
                    .stream_name(STREAM)
                    .shard_id(shard.shard_id())
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .unwrap()
                    .shard_iterator
                    .unwrap();
                loop {
                    let page = self
                        .kinesis
                        .get_records()
                        .shard_iterator(&iterator)
                        .limit(1000)
                        .send()
                        .await
                        .unwrap();
                    for record in page.records() {
                        out.push(serde_json::from_slice(record.data().as_ref()).unwrap());
                        // The partition key is the camera id.
                        assert_eq!(
                            record.partition_key(),
                            out.last().unwrap()["camera_id"].as_str()
                        );
                    }
                    match page.next_shard_iterator() {
                        Some(next) if !page.records().is_empty() => iterator = next.to_owned(),
                        _ => break,
                    }
                }
            }
            out
        })
    }

    /// Every item in the table: (event_id, expires_at).
    fn ddb_items(&self) -> Vec<(String, i64)> {
        self.runtime.block_on(async {
            let page = self.ddb.scan().table_name(TABLE).send().await.unwrap();
            page.items()
                .iter()
                .map(|item| {
                    let AttributeValue::S(id) = &item["event_id"] else {
                        panic!("event_id is S")
                    };
                    let AttributeValue::N(expires) = &item["expires_at"] else {
                        panic!("expires_at is N")
                    };
                    (id.clone(), expires.parse().unwrap())
                })
                .collect()
        })
    }

    fn s3_object(&self, key: &str) -> Vec<u8> {
        self.runtime.block_on(async {
            let object = self
                .s3
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap();
            object.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }
}

/// A config with `cameras` file cameras on the clip, all three AWS sinks at
/// `endpoint`, and the local sink.
fn config(dir: &Path, endpoint: &str, cameras: usize, realtime: bool) -> Option<String> {
    let clip = fixture("video/person-motorcycle-720p.mp4")?;
    let model = fixture("models/yolov8n-coco.onnx")?;
    let mut text = format!(
        r#"
[scheduler]
max_staleness_ms = 30000
[publishers.local]
dir = {out:?}
[publishers.kds]
region = "us-east-1"
stream_name = "{STREAM}"
endpoint_url = "{endpoint}"
[publishers.s3]
region = "us-east-1"
bucket = "{BUCKET}"
prefix = "snapshots"
endpoint_url = "{endpoint}"
[publishers.ddb]
region = "us-east-1"
table_name = "{TABLE}"
ttl_days = 30
endpoint_url = "{endpoint}"
[shutdown]
deadline_ms = 30000
"#,
        out = dir.join("out").display().to_string()
    );
    for c in 0..cameras {
        text.push_str(&format!(
            "[cameras.cam_{c}]\nfps_target = 2\nfile = {{ path = {clip:?}, loop = {realtime}, realtime = {realtime} }}\n\
             detectors = [{{ type = \"yolo\", params = {{ model_path = {model:?}, classes = [\"person\"], conf_threshold = 0.5, cooldown_sec = 0 }} }}]\n",
            clip = clip.display().to_string(),
            model = model.display().to_string(),
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    Some(path.display().to_string())
}

fn start(config: &str, dir: &Path) -> Server {
    Server::start_with_env(
        &["--config", config],
        dir,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
}

/// Every event in events.jsonl is in Kinesis, DynamoDB (with a TTL) and has its
/// snapshot in S3, decodable as JPEG; returns how many there were.
fn assert_all_delivered(aws: &Aws, out: &Path) -> usize {
    let local = read_events(out);
    let ids = |events: &[serde_json::Value]| -> BTreeSet<String> {
        events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let local_ids = ids(&local);
    assert!(!local_ids.is_empty(), "no events at all");
    let kinesis = aws.kinesis_events();
    assert_eq!(kinesis.len(), local.len(), "each event once in Kinesis");
    assert_eq!(
        ids(&kinesis),
        local_ids,
        "Kinesis holds exactly the local events"
    );
    let items = aws.ddb_items();
    let item_ids: BTreeSet<String> = items.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        item_ids, local_ids,
        "DynamoDB holds exactly the local events"
    );
    let now_sec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (id, expires) in &items {
        assert!(
            (expires - (now_sec + 30 * 86_400)).abs() < 600,
            "{id}: expires_at {expires}"
        );
    }
    for (n, event) in kinesis.iter().enumerate() {
        let uri = event["snapshot"]
            .as_str()
            .expect("the envelope names the S3 snapshot");
        let key = uri.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
        assert!(
            key.starts_with(&format!(
                "snapshots/{}/",
                event["camera_id"].as_str().unwrap()
            )),
            "{key}"
        );
        // Every object exists; a few are decoded in full.
        let bytes = aws.s3_object(key);
        if n < 3 {
            let mut decoder = jpeg_decoder::Decoder::new(&bytes[..]);
            decoder.decode().expect("snapshot is a JPEG");
            assert_eq!(decoder.info().unwrap().width, 1280);
        } else {
            assert_eq!(&bytes[..2], [0xFF, 0xD8], "JPEG magic");
        }
    }
    local.len()
}

#[test]
fn every_event_reaches_kinesis_s3_and_dynamodb() {
    let Some(moto) = Moto::start() else { return };
    let dir = temp_dir("aws-all");
    let Some(config) = config(&dir, &moto.url(), 2, false) else {
        return;
    };
    let aws = Aws::new(&moto.url());
    aws.create_all();
    let mut server = start(&config, &dir);
    assert!(server
        .wait_for_count("Source ended.", 2, Duration::from_secs(120))
        .is_some());
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)).unwrap().code(),
        Some(0)
    );
    let n = assert_all_delivered(&aws, &dir.join("out"));
    assert!(n >= 10, "{n} events");
    // Final per-sink figures are logged at shutdown.
    for sink in ["local", "kds", "s3", "ddb"] {
        let closed = server
            .log
            .iter()
            .find(|l| l["message"] == "Publisher closed." && l["sink"] == sink)
            .unwrap_or_else(|| panic!("no final figures for {sink}"));
        assert_eq!(closed["dropped"], 0, "{closed}");
        assert_eq!(
            closed["published"].as_u64().unwrap() as usize,
            n,
            "{closed}"
        );
    }
}

#[test]
fn an_outage_loses_nothing_and_every_failed_attempt_is_counted() {
    let Some(moto) = Moto::start() else { return };
    let proxy = Proxy::start(moto.port);
    let dir = temp_dir("aws-outage");
    let Some(config) = config(&dir, &proxy.url(), 2, true) else {
        return;
    };
    let aws = Aws::new(&moto.url());
    aws.create_all();
    let mut server = start(&config, &dir);
    assert!(server
        .wait_for_count("Event.", 4, Duration::from_secs(60))
        .is_some());
    proxy.set_down(true);
    // Events keep coming while AWS is unreachable; they wait in the queues.
    let before = server
        .log
        .iter()
        .filter(|l| l["message"] == "Event.")
        .count();
    assert!(server
        .wait_for_count("Event.", before + 8, Duration::from_secs(60))
        .is_some());
    let (_, _, metrics) = get(server.addr, "/metrics");
    for sink in ["kds", "s3", "ddb"] {
        let failures = metric(
            &metrics,
            &format!("publisher_failures_total{{sink=\"{sink}\"}}"),
        )
        .unwrap();
        assert!(
            failures >= 1.0,
            "{sink}: {failures} failures counted during the outage"
        );
    }
    proxy.set_down(false);
    std::thread::sleep(Duration::from_secs(8));
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)).unwrap().code(),
        Some(0)
    );
    assert_all_delivered(&aws, &dir.join("out"));
    assert!(server.logged("Publish attempt failed; the events stay queued and are retried."));
}

#[test]
fn sigterm_with_a_full_buffer_delivers_it_before_exit() {
    let Some(moto) = Moto::start() else { return };
    let proxy = Proxy::start(moto.port);
    let dir = temp_dir("aws-sigterm");
    let Some(config) = config(&dir, &proxy.url(), 2, true) else {
        return;
    };
    let aws = Aws::new(&moto.url());
    aws.create_all();
    let mut server = start(&config, &dir);
    proxy.set_down(true);
    assert!(server
        .wait_for_count("Event.", 6, Duration::from_secs(60))
        .is_some());
    server.signal(libc::SIGTERM);
    // AWS comes back while the server is flushing.
    std::thread::sleep(Duration::from_millis(1500));
    proxy.set_down(false);
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("exit within the deadline");
    assert_eq!(status.code(), Some(0));
    assert!(assert_all_delivered(&aws, &dir.join("out")) >= 6);
}

#[test]
fn a_missing_stream_and_bucket_are_clear_errors_and_the_server_keeps_running() {
    let Some(moto) = Moto::start() else { return };
    let dir = temp_dir("aws-missing");
    let Some(config) = config(&dir, &moto.url(), 1, true) else {
        return;
    };
    // Nothing can be delivered: a short deadline keeps the shutdown quick.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("deadline_ms = 30000", "deadline_ms = 3000");
    std::fs::write(&config, text).unwrap();
    let mut server = start(&config, &dir);
    let kds = server
        .wait_for_count(
            "Kinesis stream is not usable; events queue and are retried.",
            1,
            Duration::from_secs(30),
        )
        .expect("a clear Kinesis error");
    assert_eq!(kds["stream"], STREAM);
    assert!(
        kds["error"].as_str().unwrap().contains("ResourceNotFound"),
        "{kds}"
    );
    let s3 = server
        .wait_for_count(
            "S3 bucket is not usable; snapshots queue and are retried.",
            1,
            Duration::from_secs(30),
        )
        .expect("a clear S3 error");
    assert_eq!(s3["bucket"], BUCKET);
    assert!(server
        .wait_for_count("Event.", 3, Duration::from_secs(60))
        .is_some());
    let (status, _, _) = get(server.addr, "/healthz");
    assert_eq!(status, 200);
    server.signal(libc::SIGTERM);
    // Undeliverable events are given up at the deadline, counted, and exit is clean.
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)).unwrap().code(),
        Some(0)
    );
    assert!(
        !read_events(&dir.join("out")).is_empty(),
        "the local sink still has them"
    );
    let kds_closed = server
        .log
        .iter()
        .find(|l| l["message"] == "Publisher closed." && l["sink"] == "kds")
        .unwrap();
    assert!(kds_closed["dropped"].as_u64().unwrap() > 0, "{kds_closed}");
}

//! Live ingest end to end: the real binary reads Kinesis Video Streams from our fake KVS
//! (tests/common/fake_kvs.rs) through the real AWS SDK calls, over HLS (fragmented MP4
//! and MPEG-TS) and GetMedia, runs YOLOv8n and writes events; and it survives the
//! faults a live stream has, counting each, without touching other cameras.

mod common;
#[path = "common/fake_kvs.rs"]
mod fake_kvs;
#[path = "common/kvs_setup.rs"]
mod kvs_setup;

use std::time::Duration;

use common::{fixture, get, labels, temp_dir, wait_until, worker_alive, Server};
use fake_kvs::{Damage, FakeKvs, Producer, BASE_EPOCH_MS};
use kvs_setup::{
    assets, camera, events_of, ingest_errors, kvs, wait_events, write_config, AWS_ENV,
};

#[test]
fn hls_fmp4_hls_ts_and_getmedia_cameras_all_produce_detections() {
    let Some((model, media)) = assets() else {
        return;
    };
    let fake = FakeKvs::start(media, &["front-door", "parking-lot", "lobby"]);
    let dir = temp_dir("kvs-modes");
    let url = fake.url();
    let config = write_config(
        &dir,
        &[
            camera("fmp4", "kvs", &kvs("front-door", &url, ""), &model),
            camera(
                "mpegts",
                "kvs",
                &kvs("parking-lot", &url, "container = \"mpegts\""),
                &model,
            ),
            camera(
                "getmedia",
                "kvs",
                &kvs("lobby", &url, "mode = \"getmedia\""),
                &model,
            ),
        ],
    );
    let mut server = Server::start_with_env(&["--config", &config], &dir, &AWS_ENV);
    let all = ["fmp4", "mpegts", "getmedia"];
    let flowed = wait_events(&dir, &all, 3, Duration::from_secs(90));
    let (_, _, metrics) = get(server.addr, "/metrics");
    server.signal(libc::SIGTERM);
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(60))
            .and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        flowed,
        "not every camera produced events; log:\n{}",
        server.log_text()
    );

    for id in all {
        let events = events_of(&dir, id);
        let labels = labels(&events);
        assert!(
            labels.contains("person") && labels.contains("motorcycle"),
            "{id}: {labels:?}"
        );
        // Frame time is the producer's clock (program date time or MKV tags), which
        // the fake starts at BASE_EPOCH_MS, and it advances with the stream's pts.
        let offset = events[0]["ts_ms"].as_i64().unwrap() - events[0]["pts_ms"].as_i64().unwrap();
        for e in &events {
            let ts = e["ts_ms"].as_i64().unwrap();
            let pts = e["pts_ms"].as_i64().unwrap();
            assert!(
                (BASE_EPOCH_MS..BASE_EPOCH_MS + 600_000).contains(&ts),
                "{id}: ts_ms {ts} is not a producer time"
            );
            assert!(
                (ts - pts - offset).abs() <= 100,
                "{id}: ts_ms {ts} drifts from pts_ms {pts}"
            );
        }
        assert_eq!(worker_alive(&metrics, id), Some(1.0), "{id}");
    }
    let seen = fake.seen();
    assert!(seen
        .endpoints
        .iter()
        .any(|a| a == "GET_HLS_STREAMING_SESSION_URL"));
    assert!(seen.endpoints.iter().any(|a| a == "GET_MEDIA"));
    let containers: std::collections::BTreeSet<_> =
        seen.sessions.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(containers, ["FRAGMENTED_MP4", "MPEG_TS"].into());
    assert!(seen.sessions.iter().all(|s| s.0 == "LIVE"));
    assert_eq!(seen.get_media[0].0, "NOW");
}

#[test]
fn recorded_video_on_demand_reads_its_range_and_the_camera_then_ends() {
    let Some((model, media)) = assets() else {
        return;
    };
    // Half a minute was recorded before the test began: an archive to read on demand.
    let archive = Producer {
        history_ms: 30_000,
        ..Producer::default()
    };
    let fake = FakeKvs::start_with(media, &[("archive", archive)]);
    let dir = temp_dir("kvs-on-demand");
    let (start, end) = (BASE_EPOCH_MS + 10_000, BASE_EPOCH_MS + 20_000);
    let config = write_config(
        &dir,
        &[camera(
            "archive",
            "kvs",
            &kvs(
                "archive",
                &fake.url(),
                &format!("start_timestamp_ms = {start}\nend_timestamp_ms = {end}\ncontainer = \"mpegts\""),
            ),
            &model,
        )],
    );
    let mut server = Server::start_with_env(&["--config", &config], &dir, &AWS_ENV);
    let ended = server.wait_for_message("Source ended.", Duration::from_secs(90));
    server.signal(libc::SIGTERM);
    let code = server
        .wait_exit(Duration::from_secs(60))
        .and_then(|s| s.code());
    assert!(
        ended.is_some(),
        "the camera did not end; log:\n{}",
        server.log_text()
    );
    assert_eq!(code, Some(0));
    let seen = fake.seen();
    assert_eq!(
        seen.sessions,
        [("ON_DEMAND".to_owned(), "MPEG_TS".to_owned())]
    );
    // 10 s of recorded video at fps_target 2, as fast as the engine goes: every frame
    // of the range and none outside it.
    let events = events_of(&dir, "archive");
    let ts: Vec<i64> = events
        .iter()
        .map(|e| e["ts_ms"].as_i64().unwrap())
        .collect();
    assert!(ts.iter().all(|t| (start..end).contains(t)), "{ts:?}");
    assert!((18..=21).contains(&events.len()), "{} events", events.len());
}

#[test]
fn live_replay_starts_in_the_past_and_carries_on_live() {
    let Some((model, media)) = assets() else {
        return;
    };
    // 6 s were recorded before the camera starts; it asks for everything since then.
    let recorded = Producer {
        history_ms: 6000,
        ..Producer::default()
    };
    let fake = FakeKvs::start_with(media, &[("replay", recorded)]);
    let dir = temp_dir("kvs-replay");
    let config = write_config(
        &dir,
        &[camera(
            "replay",
            "kvs",
            &kvs(
                "replay",
                &fake.url(),
                &format!("start_timestamp_ms = {BASE_EPOCH_MS}"),
            ),
            &model,
        )],
    );
    let mut server = Server::start_with_env(&["--config", &config], &dir, &AWS_ENV);
    // Producer time of what was live when the camera started.
    let live_at = BASE_EPOCH_MS + 6_000;
    let caught_up = wait_until(Duration::from_secs(60), || {
        events_of(&dir, "replay")
            .iter()
            .any(|e| e["ts_ms"].as_i64().unwrap() > live_at + 2_000)
    });
    server.signal(libc::SIGTERM);
    let code = server
        .wait_exit(Duration::from_secs(60))
        .and_then(|s| s.code());
    assert!(
        caught_up,
        "replay never reached live video; log:\n{}",
        server.log_text()
    );
    assert_eq!(code, Some(0));
    assert_eq!(fake.seen().sessions[0].0, "LIVE_REPLAY");
    let first = events_of(&dir, "replay")
        .iter()
        .map(|e| e["ts_ms"].as_i64().unwrap())
        .min()
        .unwrap();
    assert!(
        first < BASE_EPOCH_MS + 2_000,
        "replay started at {first}, not at the start"
    );
}

#[test]
fn faults_are_survived_counted_and_kept_to_their_camera() {
    let Some((model, media)) = assets() else {
        return;
    };
    let clip = fixture("video/person-motorcycle-720p.mp4").unwrap();
    let mut fake = FakeKvs::start(media, &["hls-cam", "gm-cam"]);
    {
        let mut f = fake.faults();
        f.playlist_404 = 2;
        f.damaged.insert(2, Damage::Garbage);
        f.damaged.insert(3, Damage::Truncate);
        f.session_ttl = Some(Duration::from_secs(5));
    }
    let dir = temp_dir("kvs-faults");
    let url = fake.url();
    let config = write_config(
        &dir,
        &[
            camera(
                "hls",
                "kvs",
                &kvs("hls-cam", &url, "container = \"mpegts\""),
                &model,
            ),
            camera(
                "gm",
                "kvs",
                &kvs("gm-cam", &url, "mode = \"getmedia\""),
                &model,
            ),
            camera(
                "missing",
                "kvs",
                &kvs("no-such-stream", &url, "max_retries = 1"),
                &model,
            ),
            camera(
                "file",
                "file",
                &format!("path = {:?}\nloop = true", clip.display().to_string()),
                &model,
            ),
        ],
    );
    let mut server = Server::start_with_env(&["--config", &config], &dir, &AWS_ENV);

    // Past the 404s, the damaged pieces and at least one expired session.
    let first = wait_events(&dir, &["hls", "gm", "file"], 2, Duration::from_secs(60));
    let faults_served = wait_until(Duration::from_secs(90), || {
        let seen = fake.seen();
        seen.refused_403s >= 1 && seen.damaged_served >= 3
    });
    assert!(faults_served, "{:?}", fake.seen());
    let file_before = events_of(&dir, "file").len();

    // The server disappears for a while, then comes back.
    fake.stop();
    let went_down = server.wait_metrics(Duration::from_secs(30), |m| {
        ["hls", "gm"]
            .iter()
            .all(|id| worker_alive(m, id) == Some(0.0))
    });
    // The outage lasts a while (a minimum, not a wait for anything to happen).
    std::thread::sleep(Duration::from_secs(3));
    // Sessions stop expiring, so the HLS camera settles (alive) once it is back.
    fake.faults().session_ttl = None;
    fake.restart();
    let restarted_ms = kvs_infer::ingest::now_epoch_ms();
    // Events of frames read after the restart (not a backlog from before the outage).
    let back = wait_until(Duration::from_secs(60), || {
        ["hls", "gm"].iter().all(|id| {
            events_of(&dir, id)
                .iter()
                .filter(|e| e["detected_at_ms"].as_i64().unwrap() > restarted_ms)
                .count()
                >= 2
        })
    });
    // Every camera alive again (polled: a reconnect in flight reads 0 for a moment).
    let all_alive = server.wait_metrics(Duration::from_secs(30), |m| {
        ["hls", "gm", "file"]
            .iter()
            .all(|id| worker_alive(m, id) == Some(1.0))
    });
    let (_, _, after) = get(server.addr, "/metrics");
    server.signal(libc::SIGTERM);
    let code = server
        .wait_exit(Duration::from_secs(60))
        .and_then(|s| s.code());
    assert!(
        first,
        "cameras never produced events; log:\n{}",
        server.log_text()
    );
    assert!(
        went_down,
        "worker_alive did not drop to 0 in the outage; log:\n{}",
        server.log_text()
    );
    assert!(
        back,
        "events did not resume after the server came back; log:\n{}",
        server.log_text()
    );
    assert_eq!(code, Some(0));

    let seen = fake.seen();
    assert_eq!(seen.playlist_404s, 2);
    assert!(seen.refused_403s >= 1, "no session expired: {seen:?}");
    assert!(seen.damaged_served >= 3, "{seen:?}");
    // GetMedia resumed after the last fragment it read, not from the live edge.
    assert!(
        seen.get_media
            .iter()
            .any(|(kind, token)| kind == "CONTINUATION_TOKEN" && token.is_some()),
        "{:?}; log:\n{}",
        seen.get_media,
        server.log_text()
    );
    // Counted: the damage, the failed connections; worker_alive went 0 then 1.
    assert!(ingest_errors(&after, "hls", "corrupt") >= 1.0, "{after}");
    assert!(ingest_errors(&after, "gm", "corrupt") >= 1.0, "{after}");
    assert!(
        ingest_errors(&after, "hls", "stream") >= 3.0,
        "404s, expiry, outage: {after}"
    );
    assert!(ingest_errors(&after, "gm", "stream") >= 1.0, "{after}");
    assert!(
        all_alive,
        "worker_alive did not return to 1 for every camera: {after}"
    );
    // The missing stream gave up after its retries; the file camera never noticed.
    assert!(server.logged("Camera failed; giving up on it. Other cameras go on."));
    assert_eq!(ingest_errors(&after, "missing", "stream"), 2.0);
    assert_eq!(worker_alive(&after, "missing"), Some(0.0));
    assert!(
        events_of(&dir, "file").len() > file_before,
        "the file camera stalled"
    );
    for reason in ["stream", "stall", "segment", "corrupt"] {
        assert_eq!(
            ingest_errors(&after, "file", reason),
            0.0,
            "file camera {reason}"
        );
    }
    // No frame is delivered twice across reconnects: per camera, pts never repeats.
    for id in ["hls", "gm"] {
        let mut pts: Vec<i64> = events_of(&dir, id)
            .iter()
            .map(|e| e["pts_ms"].as_i64().unwrap())
            .collect();
        let n = pts.len();
        pts.sort_unstable();
        pts.dedup();
        assert_eq!(pts.len(), n, "{id} repeated frames after a reconnect");
    }
    assert!(!server.log.iter().any(|l| l["level"] == "ERROR"
        && l["message"] != "Camera failed; giving up on it. Other cameras go on."));
}

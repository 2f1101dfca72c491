//! Real camera timelines through the real binary and the fake KVS: producers that
//! restart with timecodes at 0 again (GetMedia with and without KVS tags, HLS over
//! MPEG-TS and fMP4), timecodes that repeat, and streams that go quiet for seconds all
//! keep yielding frames at `fps_target`, with every reset counted and no frame run
//! twice; a camera that receives bytes but yields no frames is marked stalled.

mod common;
#[path = "common/fake_kvs.rs"]
mod fake_kvs;
#[path = "common/kvs_setup.rs"]
mod kvs_setup;

use std::time::Duration;

use common::{get, metric, temp_dir, wait_until, worker_alive, Server};
use fake_kvs::{FakeKvs, Producer};
use kvs_setup::{
    assets, camera_at, check_rate, dropped, events_of, ingest_errors, kvs, wait_events,
    write_config, AWS_ENV,
};

/// Frames per second each camera selects.
const FPS: f64 = 1.0;
/// How long the sparse stream goes without a fragment: less than its stall timeout.
const GAP_MS: i64 = 4000;

/// `ingest_timeline_resets_total` for `camera`.
fn resets(metrics: &str, camera: &str) -> f64 {
    metric(
        metrics,
        &format!("ingest_timeline_resets_total{{camera_id=\"{camera}\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn restarts_repeats_and_gaps_keep_frames_flowing_at_fps_target() {
    let Some((model, media)) = assets() else {
        return;
    };
    // (camera, stream, source table extra lines, restarts?)
    let cameras = [
        ("gm", "gm-restart", "mode = \"getmedia\"", true),
        ("gm_untagged", "gm-untagged", "mode = \"getmedia\"", true),
        ("hls_ts", "hls-ts-restart", "container = \"mpegts\"", true),
        ("hls_fmp4", "hls-fmp4-restart", "", true),
        ("gm_repeat", "gm-repeat", "mode = \"getmedia\"", true),
        ("gm_sparse", "gm-sparse", "mode = \"getmedia\"", false),
    ];
    let untagged = Producer {
        untagged: true,
        ..Producer::default()
    };
    let streams: Vec<_> = cameras
        .iter()
        .map(|c| {
            let p = if c.1 == "gm-untagged" {
                untagged.clone()
            } else {
                Producer::default()
            };
            (c.1, p)
        })
        .collect();
    let fake = FakeKvs::start_with(media, &streams);
    let dir = temp_dir("timeline");
    let url = fake.url();
    let tables: Vec<String> = cameras
        .iter()
        .map(|(id, stream, extra, _)| camera_at(FPS, id, "kvs", &kvs(stream, &url, extra), &model))
        .collect();
    let config = write_config(&dir, &tables);
    let mut server = Server::start_with_env(&["--config", &config], &dir, &AWS_ENV);
    let ids: Vec<&str> = cameras.iter().map(|c| c.0).collect();
    let flowing = wait_events(&dir, &ids, 2, Duration::from_secs(120));

    // Now that every camera streams, its producer misbehaves from the next fragment but
    // one: a restart (timecodes from 0 again), a repeat, or four seconds of nothing.
    let mut changed_at_ms = 0;
    for (_, stream, _, _) in &cameras {
        let next = fake.recording(stream) + 2;
        fake.producer(stream, |p| match *stream {
            "gm-repeat" => p.repeat_at = Some(next),
            "gm-sparse" => p.gap_after = Some((next, GAP_MS)),
            _ => p.restart_at = Some(next),
        });
        changed_at_ms = changed_at_ms.max(fake.glass_ms(Producer::default().producer_ms(next)));
    }
    // Twenty seconds of media after the change, on every camera.
    let after = changed_at_ms + 20_000 + GAP_MS;
    let went_on = wait_until(Duration::from_secs(180), || {
        ids.iter().all(|id| {
            events_of(&dir, id)
                .iter()
                .any(|e| e["detected_at_ms"].as_i64().unwrap() > after)
        })
    });
    let (_, _, metrics) = get(server.addr, "/metrics");
    server.signal(libc::SIGTERM);
    let code = server
        .wait_exit(Duration::from_secs(150))
        .and_then(|s| s.code());
    assert!(
        flowing,
        "cameras never produced events; log:\n{}",
        server.log_text()
    );
    assert!(
        went_on,
        "frames stopped after the producers misbehaved: {:?}; log:\n{}",
        ids.iter()
            .map(|id| (id, events_of(&dir, id).len()))
            .collect::<Vec<_>>(),
        server.log_text()
    );
    assert_eq!(code, Some(0));
    for (id, _, _, restarts) in cameras {
        let events = events_of(&dir, id);
        let gap = if id == "gm_sparse" { GAP_MS } else { 0 };
        if let Err(e) = check_rate(id, &events, dropped(&metrics, id), FPS, gap) {
            panic!("{e}\n{metrics}");
        }
        if restarts {
            assert!(
                resets(&metrics, id) >= 1.0,
                "{id}: no reset counted\n{metrics}"
            );
        } else {
            assert_eq!(resets(&metrics, id), 0.0, "{id}: a gap is not a reset");
        }
        for reason in ["stream", "stall", "corrupt", "segment"] {
            assert_eq!(
                ingest_errors(&metrics, id, reason),
                0.0,
                "{id}: {reason}\n{metrics}"
            );
        }
        assert_eq!(worker_alive(&metrics, id), Some(1.0), "{id}");
    }
    assert!(server.logged(
        "The stream's timecodes jumped (a producer restart?); a new timeline segment starts."
    ));
}

#[test]
fn a_camera_that_receives_bytes_but_yields_no_frames_is_stalled() {
    let Some((model, media)) = assets() else {
        return;
    };
    let fake = FakeKvs::start(media, &["broken", "healthy"]);
    let dir = temp_dir("timeline-blind");
    let url = fake.url();
    let config = write_config(
        &dir,
        &[
            camera_at(
                FPS,
                "broken",
                "kvs",
                &kvs("broken", &url, "mode = \"getmedia\""),
                &model,
            ),
            camera_at(
                FPS,
                "healthy",
                "kvs",
                &kvs("healthy", &url, "mode = \"getmedia\""),
                &model,
            ),
        ],
    );
    let mut server = Server::start_with_env(&["--config", &config], &dir, &AWS_ENV);
    let flowing = wait_events(&dir, &["broken", "healthy"], 2, Duration::from_secs(120));
    // From the next fragment but one, the broken camera's video holds no picture: bytes
    // keep coming, frames do not.
    let next = fake.recording("broken") + 2;
    fake.producer("broken", |p| p.undecodable_from = Some(next));
    let stalled = server.wait_metrics(Duration::from_secs(90), |m| {
        ingest_errors(m, "broken", "stall") >= 1.0 && worker_alive(m, "broken") == Some(0.0)
    });
    let (_, _, metrics) = get(server.addr, "/metrics");
    let healthy_before = events_of(&dir, "healthy").len();
    let healthy_on = wait_events(
        &dir,
        &["healthy"],
        healthy_before + 2,
        Duration::from_secs(60),
    );
    server.signal(libc::SIGTERM);
    let code = server
        .wait_exit(Duration::from_secs(150))
        .and_then(|s| s.code());
    assert!(flowing, "no events; log:\n{}", server.log_text());
    assert!(
        stalled,
        "the camera without frames was not marked stalled: {metrics}\nlog:\n{}",
        server.log_text()
    );
    assert!(
        healthy_on,
        "the healthy camera stopped beside the broken one"
    );
    assert_eq!(worker_alive(&metrics, "healthy"), Some(1.0));
    assert_eq!(ingest_errors(&metrics, "healthy", "stall"), 0.0);
    assert_eq!(
        ingest_errors(&metrics, "broken", "corrupt"),
        0.0,
        "{metrics}"
    );
    assert!(server.logged("Stream failed; reconnecting."));
    assert_eq!(code, Some(0));
}

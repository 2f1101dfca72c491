//! The scheduler's batching rules, driven by a simulated clock.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn limits() -> Limits {
    Limits {
        max_batch_size: 4,
        preferred_batch_size: 3,
        max_queue_delay: 50 * MS,
        max_staleness: 500 * MS,
    }
}

/// A state with `cameras` active cameras, and the clock's start.
fn state(cameras: usize) -> (State<u32>, Instant) {
    let mut s = State::new(limits());
    for _ in 0..cameras {
        s.add_camera();
    }
    (s, Instant::now())
}

type Step = (Option<Vec<usize>>, Vec<(usize, DropReason)>);

fn batch(s: &mut State<u32>, now: Instant) -> Step {
    let mut dropped = Vec::new();
    let b = s.next_batch(now, |_| false, &mut dropped);
    (
        b.map(|b| b.into_iter().map(|e| e.camera).collect()),
        dropped
            .into_iter()
            .map(|d| (d.entry.camera, d.reason))
            .collect(),
    )
}

#[test]
fn fills_to_the_preferred_size_without_waiting() {
    let (mut s, t0) = state(10);
    s.push(0, 0, t0, t0);
    s.push(1, 0, t0, t0);
    assert_eq!(
        batch(&mut s, t0).0,
        None,
        "2 < preferred 3 and no timeout yet"
    );
    s.push(2, 0, t0, t0);
    assert_eq!(batch(&mut s, t0).0, Some(vec![0, 1, 2]));
    assert!(s.is_empty());
}

#[test]
fn a_partial_batch_goes_when_the_oldest_has_waited_max_queue_delay() {
    let (mut s, t0) = state(10);
    s.push(7, 0, t0, t0);
    s.push(3, 0, t0 + 20 * MS, t0 + 20 * MS);
    assert_eq!(s.next_deadline(), Some(t0 + 50 * MS));
    assert_eq!(batch(&mut s, t0 + 49 * MS).0, None);
    assert_eq!(batch(&mut s, t0 + 50 * MS).0, Some(vec![3, 7]));
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn never_waits_when_every_active_camera_has_a_frame_pending() {
    let (mut s, t0) = state(2);
    s.push(0, 0, t0, t0);
    assert_eq!(batch(&mut s, t0).0, None);
    s.push(1, 0, t0, t0);
    assert_eq!(
        batch(&mut s, t0).0,
        Some(vec![0, 1]),
        "no third camera can come"
    );
}

#[test]
fn batches_are_capped_and_round_robin_is_fair_to_every_camera() {
    let (mut s, t0) = state(6);
    let mut served = [0u32; 6];
    let mut now = t0;
    for _round in 0..30 {
        // Every camera always has a frame pending (camera 0 floods: it pushes thrice).
        for c in 0..6 {
            s.push(c, 0, now, now);
        }
        s.push(0, 1, now, now);
        s.push(0, 2, now, now);
        let b = batch(&mut s, now).0.expect("a full batch");
        assert_eq!(b.len(), 4, "capped at max_batch_size");
        for c in b {
            served[c] += 1;
        }
        now += 10 * MS;
    }
    // 30 batches × 4 = 120 slots over 6 cameras: 20 each, flooding or not.
    assert_eq!(served, [20; 6]);
}

#[test]
fn round_robin_resumes_after_the_camera_served_last() {
    let (mut s, t0) = state(10);
    for c in [0, 1, 2, 3, 4, 5] {
        s.push(c, 0, t0, t0);
    }
    assert_eq!(batch(&mut s, t0).0, Some(vec![0, 1, 2, 3]));
    for c in [0, 1] {
        s.push(c, 0, t0, t0);
    }
    // 4 and 5 waited; they go first, then wrap to 0 and 1.
    assert_eq!(batch(&mut s, t0).0, Some(vec![4, 5, 0, 1]));
}

#[test]
fn the_newest_frame_replaces_an_older_queued_one() {
    let (mut s, t0) = state(10);
    assert!(s.push(0, 1, t0, t0).is_none());
    let replaced = s.push(0, 2, t0 + 40 * MS, t0 + 40 * MS).unwrap();
    assert_eq!(
        (replaced.entry.item, replaced.reason),
        (1, DropReason::Replaced)
    );
    assert_eq!(s.len(), 1);
    let mut dropped = Vec::new();
    let b = s
        .next_batch(t0 + 200 * MS, |_| false, &mut dropped)
        .unwrap();
    assert_eq!(b[0].item, 2);
    assert!(dropped.is_empty());
}

#[test]
fn frames_older_than_max_staleness_are_dropped_not_run() {
    let (mut s, t0) = state(10);
    // Born long before it was queued (a slow decoder, say).
    s.push(0, 0, t0, t0 + 450 * MS);
    s.push(1, 0, t0 + 450 * MS, t0 + 450 * MS);
    let (b, dropped) = batch(&mut s, t0 + 501 * MS);
    assert_eq!(dropped, [(0, DropReason::Stale)]);
    assert_eq!(
        b,
        Some(vec![1]),
        "the survivor waited 51 ms > max_queue_delay"
    );
}

#[test]
fn the_deadline_wakes_the_actor_for_staleness_too() {
    let limits = Limits {
        max_queue_delay: 400 * MS,
        max_staleness: 100 * MS,
        ..limits()
    };
    let mut s = State::new(limits);
    s.add_camera();
    s.add_camera();
    let t0 = Instant::now();
    s.push(0, 0, t0, t0);
    assert_eq!(s.next_deadline(), Some(t0 + 101 * MS));
}

#[test]
fn a_camera_that_goes_away_is_not_waited_for_and_its_closed_entries_are_cancelled() {
    let (mut s, t0) = state(3);
    s.push(0, 0, t0, t0);
    s.push(1, 0, t0, t0);
    // Camera 1 stops sending; its queued frame still runs.
    s.remove_camera();
    assert_eq!(s.len(), 2);
    // Two cameras remain active and both have a frame pending: no reason to wait.
    assert_eq!(batch(&mut s, t0).0, Some(vec![0, 1]));
    // An entry whose reply route has closed is dropped when the batch is built.
    s.push(2, 99, t0, t0);
    let mut dropped = Vec::new();
    let b = s.next_batch(t0 + 60 * MS, |item| *item == 99, &mut dropped);
    assert_eq!(b, None);
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        (dropped[0].entry.camera, dropped[0].reason),
        (2, DropReason::Cancelled)
    );
    assert!(s.is_empty());
}

#[test]
fn with_no_active_camera_left_whatever_is_pending_goes_at_once() {
    let (mut s, t0) = state(2);
    s.push(0, 0, t0, t0);
    assert_eq!(batch(&mut s, t0).0, None);
    s.remove_camera();
    s.remove_camera();
    assert_eq!(batch(&mut s, t0).0, Some(vec![0]));
}

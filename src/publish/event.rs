//! The event envelope (DESIGN §4): the same JSON for every sink.

use serde::{Deserialize, Serialize};

/// The envelope's schema tag.
pub const EVENT_SCHEMA: &str = "kvs-infer/1.0";

/// A unique, stable event id: frame time, a per-process random tag, and a process-wide
/// sequence number, hex-encoded.
pub fn new_event_id(ts_ms: i64) -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PROCESS_TAG: OnceLock<u32> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tag = *PROCESS_TAG.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32);
    format!("{:011x}-{tag:08x}-{seq:06x}", ts_ms.max(0))
}

/// One confirmed event. Delivery is at-least-once; `event_id` is stable so consumers
/// can de-duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable unique id.
    pub event_id: String,
    /// Always [`EVENT_SCHEMA`].
    pub schema: String,
    /// The camera id from the config.
    pub camera_id: String,
    /// `weapon`, `fire`, `smoke`, `alpr`, `yolo`, …
    #[serde(rename = "type")]
    pub event_type: String,
    /// Frame time, epoch ms (KVS producer time, or the ingest clock).
    pub ts_ms: i64,
    /// The frame's presentation time within its stream, ms.
    pub pts_ms: i64,
    /// When detections were ready, epoch ms.
    pub detected_at_ms: i64,
    /// The detections that make the event, in source pixels.
    pub detections: Vec<EventDetection>,
    /// The plate read, for `alpr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<Plate>,
    /// The model file that produced the detections.
    pub model: String,
    /// Where the snapshot was saved, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// One detection inside an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDetection {
    /// Class name.
    pub label: String,
    /// Score in 0..=1.
    pub confidence: f32,
    /// `[x1, y1, x2, y2]` in source pixels.
    pub bbox: [f32; 4],
}

/// A recognised plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plate {
    /// Text, filtered to `[A-Z0-9]`.
    pub text: String,
    /// Mean character confidence in 0..=1.
    pub confidence: f32,
}

#[cfg(test)]
pub(crate) fn sample(camera_id: &str, n: i64) -> Event {
    Event {
        event_id: format!("{camera_id}-{n}"),
        schema: EVENT_SCHEMA.to_owned(),
        camera_id: camera_id.to_owned(),
        event_type: "weapon".to_owned(),
        ts_ms: 1_700_000_000_000 + n,
        pts_ms: n * 40,
        detected_at_ms: 1_700_000_000_050 + n,
        detections: vec![EventDetection {
            label: "knife".to_owned(),
            confidence: 0.875,
            bbox: [1.0, 2.0, 30.5, 40.0],
        }],
        plate: None,
        model: "weapon.onnx".to_owned(),
        snapshot: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_and_safe_as_keys() {
        let a = new_event_id(1_700_000_000_000);
        let b = new_event_id(1_700_000_000_000);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{a}");
    }

    #[test]
    fn envelope_uses_the_contract_field_names() {
        let json = serde_json::to_value(sample("cam", 1)).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = [
            "event_id",
            "schema",
            "camera_id",
            "type",
            "ts_ms",
            "pts_ms",
            "detected_at_ms",
            "detections",
            "model",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(
            json["detections"][0]["bbox"],
            serde_json::json!([1.0, 2.0, 30.5, 40.0])
        );
        assert_eq!(json["schema"], "kvs-infer/1.0");
    }
}

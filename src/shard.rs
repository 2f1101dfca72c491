//! Camera sharding across replicas (DESIGN §6): `--shard INDEX/COUNT` makes each
//! replica serve a disjoint subset of the enabled cameras.
//!
//! Ownership is rendezvous (highest-random-weight) hashing of the camera id with a
//! fixed hash: it depends on nothing but the id and COUNT, so it is stable under config
//! reordering, every replica computes the same answer without talking to the others,
//! and growing COUNT by one moves only about 1/COUNT of the cameras.
//!
//! INDEX may be `hostname`: the trailing number of `$HOSTNAME`, which is the pod
//! ordinal in a Kubernetes StatefulSet (`kvs-infer-3` → 3).

use std::fmt;
use std::str::FromStr;

/// This replica's shard: index in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This replica's index.
    pub index: u32,
    /// How many replicas share the cameras.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `--shard` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--shard {0:?}: {1}")]
pub struct ShardError(String, String);

impl Shard {
    /// Parses `INDEX/COUNT`, where INDEX may be `hostname`; `hostname` is the value of
    /// `$HOSTNAME` (passed in so this stays pure).
    pub fn parse(text: &str, hostname: Option<&str>) -> Result<Self, ShardError> {
        let err = |why: &str| ShardError(text.to_owned(), why.to_owned());
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| err("expected INDEX/COUNT, like 2/8 or hostname/8"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| err("COUNT is not a number"))?;
        if count == 0 || count > 10_000 {
            return Err(err("COUNT must be in 1..=10000"));
        }
        let index: u32 = if index.trim() == "hostname" {
            let host = hostname.ok_or_else(|| err("INDEX is hostname but $HOSTNAME is not set"))?;
            let digits: String = host
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits
                .parse()
                .map_err(|_| err(&format!("$HOSTNAME {host:?} does not end in a number")))?
        } else {
            index
                .trim()
                .parse()
                .map_err(|_| err("INDEX is not a number"))?
        };
        if index >= count {
            return Err(err(&format!("INDEX {index} must be below COUNT {count}")));
        }
        Ok(Self { index, count })
    }

    /// Whether this replica serves `camera_id`.
    pub fn owns(&self, camera_id: &str) -> bool {
        owner(camera_id, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Shard::parse(s, std::env::var("HOSTNAME").ok().as_deref())
    }
}

/// The replica in `0..count` that owns `camera_id`.
pub fn owner(camera_id: &str, count: u32) -> u32 {
    (0..count)
        .max_by_key(|&replica| weight(camera_id, replica))
        .unwrap_or(0)
}

/// FNV-1a over the id and the replica number, then a 64-bit finaliser (splitmix64) so
/// nearby inputs spread: fixed forever, unlike std's randomly keyed hasher.
fn weight(camera_id: &str, replica: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in camera_id.bytes().chain(replica.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("camera_{i}")).collect()
    }

    #[test]
    fn every_camera_is_owned_by_exactly_one_replica_for_counts_1_to_8() {
        let cameras = ids(200);
        for count in 1..=8 {
            for id in &cameras {
                let owners: Vec<u32> = (0..count)
                    .filter(|&index| Shard { index, count }.owns(id))
                    .collect();
                assert_eq!(owners.len(), 1, "{id} with {count} replicas: {owners:?}");
            }
        }
    }

    #[test]
    fn shards_are_balanced_and_growing_moves_few_cameras() {
        let cameras = ids(800);
        let per: Vec<usize> = (0..4)
            .map(|i| cameras.iter().filter(|c| owner(c, 4) == i).count())
            .collect();
        assert!(per.iter().all(|&n| (150..=250).contains(&n)), "{per:?}");
        let moved = cameras
            .iter()
            .filter(|c| owner(c, 4) != owner(c, 5))
            .count();
        // Ideal is 1/5 of the cameras; allow slack.
        assert!(moved < 800 / 5 + 60, "{moved} moved");
    }

    #[test]
    fn ownership_depends_only_on_the_id() {
        assert_eq!(owner("front-door", 8), owner("front-door", 8));
        // Pinned: a change of hash would silently move every camera between replicas.
        let pinned: Vec<u32> = ["camera_1", "camera_2", "camera_3", "lobby"]
            .iter()
            .map(|c| owner(c, 8))
            .collect();
        assert_eq!(pinned, PINNED_OWNERS);
    }

    const PINNED_OWNERS: [u32; 4] = [3, 3, 2, 5];

    #[test]
    fn parsing_accepts_numbers_and_a_statefulset_hostname() {
        assert_eq!(
            Shard::parse("2/8", None).unwrap(),
            Shard { index: 2, count: 8 }
        );
        assert_eq!(
            Shard::parse("hostname/4", Some("kvs-infer-3")).unwrap(),
            Shard { index: 3, count: 4 }
        );
        for (bad, why) in [
            ("8/8", "INDEX 8 must be below COUNT 8"),
            ("1", "expected INDEX/COUNT"),
            ("a/2", "INDEX is not a number"),
            ("0/0", "COUNT must be in"),
        ] {
            let err = Shard::parse(bad, None).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = Shard::parse("hostname/4", Some("kvs-infer"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not end in a number"), "{err}");
        assert_eq!(Shard::default().to_string(), "0/1");
    }
}

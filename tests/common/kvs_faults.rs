//! What a test switches on in the fake KVS ([`Faults`]) and what it reads back of what
//! the fake saw ([`Seen`]).

use std::collections::HashMap;
use std::time::Duration;

/// How a piece is damaged when served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Damage {
    /// Only its first half is sent.
    Truncate,
    /// Its middle third is overwritten with pseudo-random bytes.
    Garbage,
}

/// The faults a test switches on.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next N media playlist requests answer 404.
    pub playlist_404: u32,
    /// Pieces (by index) served damaged, for HLS segments and GetMedia fragments alike.
    pub damaged: HashMap<usize, Damage>,
    /// Sessions refuse requests (403) this long after they were created.
    pub session_ttl: Option<Duration>,
}

/// What the fake saw, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// `GetDataEndpoint` API names asked for.
    pub endpoints: Vec<String>,
    /// `GetHLSStreamingSessionURL` requests: (playback mode, container).
    pub sessions: Vec<(String, String)>,
    /// `GetMedia` start selectors: (type, token or fragment number).
    pub get_media: Vec<(String, Option<String>)>,
    /// Playlists answered 404, and requests refused 403.
    pub playlist_404s: u32,
    pub refused_403s: u32,
    /// Damaged pieces served.
    pub damaged_served: u32,
    /// Streams asked for that do not exist.
    pub unknown_streams: u32,
}

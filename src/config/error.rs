//! Config errors: one problem with its path, and the ways loading a file can fail.

use std::fmt;
use std::path::PathBuf;

/// One problem in a config, located by its dotted path
/// (`cameras.camera_1.detectors[0].params.conf_threshold`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is; empty for the document as a whole.
    pub path: String,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config file could not be turned into a valid [`super::Config`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The extension names no format we read.
    #[error("config file {} must end in .toml, .yaml or .yml", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file was read but has problems; every one is listed.
    #[error("config file {} has {} problem(s)", path.display(), errors.len())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        errors: Vec<ConfigError>,
    },
}

/// Appends a map key to a dotted path, quoting keys that would read ambiguously.
pub fn join_key(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_path_and_message() {
        let e = ConfigError::new("a.b", "is wrong");
        assert_eq!(e.to_string(), "a.b: is wrong");
        assert_eq!(ConfigError::new("", "whole").to_string(), "whole");
    }

    #[test]
    fn keys_with_dots_or_spaces_are_quoted() {
        assert_eq!(join_key("cameras", "cam_1"), "cameras.cam_1");
        assert_eq!(join_key("cameras", "front door"), "cameras.\"front door\"");
        assert_eq!(join_key("cameras", "a.b"), "cameras.\"a.b\"");
        assert_eq!(join_key("", "engine"), "engine");
    }
}

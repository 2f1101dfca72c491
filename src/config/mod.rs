//! Configuration: the schema, loading TOML or the seed's YAML, and pure validation.
//!
//! [`load_file`] is the only function that touches the file system. Everything else
//! takes text or values, so tests and `check-config` exercise exactly what the server
//! runs. The embedded default is the shipped demo config, `config/demo.toml`.

mod camera;
mod error;
mod load;
mod schema;
mod validate;

pub use camera::*;
pub use error::{join_key, ConfigError, LoadError};
pub use load::{load_file, parse_str, Format};
pub use schema::*;
pub use validate::{validate, KDS_MAX_BATCH, MAX_BATCH_SIZE_LIMIT};

/// The demo config compiled into the binary: used when `--config` is not given.
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("../../config/demo.toml");

/// Parses the embedded default config.
pub fn embedded_default() -> Result<Config, Vec<ConfigError>> {
    parse_str(EMBEDDED_DEFAULT_TOML, Format::Toml)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_default_is_valid() {
        super::embedded_default().expect("config/demo.toml must stay valid");
    }
}

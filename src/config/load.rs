//! Turning config text (TOML or the seed's YAML) into a [`Config`], collecting every error.
//!
//! serde stops at the first error of a value, so the document is first read into a
//! generic tree and each section, publisher, camera and detector is then deserialized
//! on its own: a mistake in one does not hide a mistake in another. Everything here is
//! pure except [`load_file`], which only reads the file.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{join_key, ConfigError, LoadError};
use super::validate::{validate, validate_detector};
use super::{
    AlprParams, CameraConfig, Config, DetectorConfig, FireSmokeParams, WeaponParams, YoloParams,
};

/// The config file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML, the primary format.
    Toml,
    /// The seed's YAML format.
    Yaml,
}

impl Format {
    /// The format a file's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let format = Format::from_path(path).ok_or_else(|| LoadError::UnknownFormat {
        path: path.to_owned(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(&text, format).map_err(|errors| LoadError::Invalid {
        path: path.to_owned(),
        errors,
    })
}

/// Parses and validates config text; returns every problem found, sorted by path.
pub fn parse_str(text: &str, format: Format) -> Result<Config, Vec<ConfigError>> {
    let tree = match format {
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| toml_syntax_error(text, &e)),
        Format::Yaml => serde_yaml::from_str::<Value>(text)
            .map_err(|e| ConfigError::new("", format!("YAML syntax error: {e}"))),
    }
    .map_err(|e| vec![e])?;

    let mut errors = Vec::new();
    let config = from_tree(tree, &mut errors);
    errors.extend(validate(&config));
    // One stable order, whatever stage found each problem: by path.
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn toml_syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim_end();
    let location = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line} column {column}")
        })
        .unwrap_or_default();
    ConfigError::new("", format!("TOML syntax error{location}: {message}"))
}

const SECTIONS: [&str; 6] = [
    "scheduler",
    "engine",
    "decode",
    "publishers",
    "shutdown",
    "cameras",
];
const PUBLISHERS: [&str; 4] = ["local", "kds", "s3", "ddb"];

fn from_tree(tree: Value, errors: &mut Vec<ConfigError>) -> Config {
    let mut config = Config::default();
    let Some(top) = as_map(tree, "", errors) else {
        return config;
    };
    for (key, value) in top {
        match key.as_str() {
            "scheduler" => {
                if let Some(v) = section(value, "scheduler", errors) {
                    config.scheduler = v;
                }
            }
            "engine" => {
                if let Some(v) = section(value, "engine", errors) {
                    config.engine = v;
                }
            }
            "decode" => {
                if let Some(v) = section(value, "decode", errors) {
                    config.decode = v;
                }
            }
            "shutdown" => {
                if let Some(v) = section(value, "shutdown", errors) {
                    config.shutdown = v;
                }
            }
            "publishers" => {
                for (name, value) in as_map(value, "publishers", errors).unwrap_or_default() {
                    let path = join_key("publishers", &name);
                    let p = &mut config.publishers;
                    match name.as_str() {
                        "local" => p.local = section(value, &path, errors),
                        "kds" => p.kds = section(value, &path, errors),
                        "s3" => p.s3 = section(value, &path, errors),
                        "ddb" => p.ddb = section(value, &path, errors),
                        _ => errors.push(unknown_key(&path, &PUBLISHERS)),
                    }
                }
            }
            "cameras" => {
                for (id, value) in as_map(value, "cameras", errors).unwrap_or_default() {
                    if let Some(camera) = camera(value, &join_key("cameras", &id), errors) {
                        config.cameras.insert(id, camera);
                    }
                }
            }
            _ => errors.push(unknown_key(&key, &SECTIONS)),
        }
    }
    config
}

fn camera(value: Value, path: &str, errors: &mut Vec<ConfigError>) -> Option<CameraConfig> {
    let mut map = as_map(value, path, errors)?;
    let detectors = map.remove("detectors");
    let mut camera: Option<CameraConfig> = section(Value::Object(map), path, errors);
    let detectors_path = format!("{path}.detectors");
    let items = match detectors {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(ConfigError::new(
                &detectors_path,
                format!("expected a list of detectors, found {}", kind(&other)),
            ));
            Vec::new()
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let item_path = format!("{detectors_path}[{i}]");
        let Some(parsed) = detector(item, &item_path, errors) else {
            continue;
        };
        match camera.as_mut() {
            Some(camera) => camera.detectors.push(parsed),
            // The camera table itself is broken, so `validate` will not see this
            // detector: check it here, or its own mistakes would go unreported.
            None => errors.extend(validate_detector(&format!("{item_path}.params"), &parsed)),
        }
    }
    camera
}

fn detector(value: Value, path: &str, errors: &mut Vec<ConfigError>) -> Option<DetectorConfig> {
    let mut map = as_map(value, path, errors)?;
    let type_name = match map.remove("type") {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(ConfigError::new(
                format!("{path}.type"),
                format!("expected a string, found {}", kind(&other)),
            ));
            None
        }
        None => {
            errors.push(ConfigError::new(
                format!("{path}.type"),
                format!(
                    "missing; expected one of {}",
                    DetectorConfig::TYPES.join(", ")
                ),
            ));
            None
        }
    };
    let params = map
        .remove("params")
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| Value::Object(Map::new()));
    for key in map.keys() {
        errors.push(unknown_key(&join_key(path, key), &["type", "params"]));
    }
    let params_path = format!("{path}.params");
    match type_name?.as_str() {
        "weapon" => {
            section::<WeaponParams>(params, &params_path, errors).map(DetectorConfig::Weapon)
        }
        "fire_smoke" => {
            section::<FireSmokeParams>(params, &params_path, errors).map(DetectorConfig::FireSmoke)
        }
        "alpr" => section::<AlprParams>(params, &params_path, errors).map(DetectorConfig::Alpr),
        "yolo" => section::<YoloParams>(params, &params_path, errors).map(DetectorConfig::Yolo),
        other => {
            errors.push(ConfigError::new(
                format!("{path}.type"),
                format!(
                    "unknown detector type {other:?}; expected one of {}",
                    DetectorConfig::TYPES.join(", ")
                ),
            ));
            None
        }
    }
}

/// Deserializes one value, reporting the first error with its full path.
fn section<T: DeserializeOwned>(
    value: Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // An empty YAML table (`local:`) reads as null: treat it as an empty table.
    let value = if value.is_null() {
        Value::Object(Map::new())
    } else {
        value
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut full = path.to_owned();
            for segment in e.path().iter() {
                use serde_path_to_error::Segment;
                match segment {
                    Segment::Seq { index } => full.push_str(&format!("[{index}]")),
                    Segment::Map { key } => full = join_key(&full, key),
                    Segment::Enum { variant } => full = join_key(&full, variant),
                    Segment::Unknown => {}
                }
            }
            errors.push(ConfigError::new(full, e.into_inner().to_string()));
            None
        }
    }
}

fn as_map(value: Value, path: &str, errors: &mut Vec<ConfigError>) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        Value::Null => Some(Map::new()),
        other => {
            errors.push(ConfigError::new(
                path,
                format!("expected a table, found {}", kind(&other)),
            ));
            None
        }
    }
}

fn unknown_key(path: &str, expected: &[&str]) -> ConfigError {
    ConfigError::new(
        path,
        format!("unknown key; expected one of {}", expected.join(", ")),
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str, format: Format) -> Vec<String> {
        parse_str(text, format)
            .expect_err("config should be invalid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn empty_documents_are_valid_and_take_defaults() {
        let c = parse_str("", Format::Toml).unwrap();
        assert_eq!(c, Config::default());
        let c = parse_str("", Format::Yaml).unwrap();
        assert_eq!(c.scheduler.max_batch_size, 8);
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("a.toml")), Some(Format::Toml));
        assert_eq!(Format::from_path(Path::new("a.YML")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("a.yaml")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("a.json")), None);
        assert_eq!(Format::from_path(Path::new("toml")), None);
    }

    #[test]
    fn unknown_keys_anywhere_are_errors_with_paths() {
        let text = r#"
            colour = "red"
            [scheduler]
            max_batch = 4
            [publishers.ftp]
            host = "x"
            [cameras.c1]
            fps = 3
            [cameras.c1.file]
            path = "a.mp4"
            [[cameras.c1.detectors]]
            type = "yolo"
            params = { model_path = "m.onnx", colour = 1 }
            extra = true
        "#;
        let errs = errors(text, Format::Toml);
        let joined = errs.join("\n");
        assert!(joined.contains("colour: unknown key"), "{joined}");
        assert!(
            joined.contains("scheduler.max_batch: unknown field `max_batch`"),
            "{joined}"
        );
        assert!(joined.contains("publishers.ftp: unknown key"), "{joined}");
        assert!(
            joined.contains("cameras.c1.fps: unknown field `fps`"),
            "{joined}"
        );
        assert!(
            joined.contains("cameras.c1.detectors[0].params.colour: unknown field"),
            "{joined}"
        );
        assert!(
            joined.contains("cameras.c1.detectors[0].extra: unknown key"),
            "{joined}"
        );
        assert_eq!(errs.len(), 6, "{joined}");
    }

    #[test]
    fn type_errors_and_bad_detector_types_are_located() {
        let text = r#"
            [engine]
            backend = "opencl"
            [cameras.c1]
            fps_target = "fast"
            [[cameras.c2.detectors]]
            type = "telepathy"
            [[cameras.c2.detectors]]
            params = {}
        "#;
        let joined = errors(text, Format::Toml).join("\n");
        assert!(
            joined.contains("engine.backend: unknown variant `opencl`"),
            "{joined}"
        );
        assert!(
            joined.contains("cameras.c1.fps_target: invalid type"),
            "{joined}"
        );
        assert!(
            joined.contains("cameras.c2.detectors[0].type: unknown detector type \"telepathy\""),
            "{joined}"
        );
        assert!(
            joined.contains("cameras.c2.detectors[1].type: missing"),
            "{joined}"
        );
    }

    #[test]
    fn syntax_errors_give_a_location() {
        let errs = errors("[scheduler\nmax_batch_size = 1", Format::Toml);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("TOML syntax error at line 1"),
            "{}",
            errs[0]
        );
        let errs = errors("cameras: [unclosed", Format::Yaml);
        assert!(errs[0].starts_with("YAML syntax error"), "{}", errs[0]);
    }

    #[test]
    fn odd_camera_ids_are_quoted_in_paths() {
        let text = "[cameras.\"front door\"]\nfps_target = \"x\"\n";
        let joined = errors(text, Format::Toml).join("\n");
        assert!(
            joined.contains("cameras.\"front door\".fps_target"),
            "{joined}"
        );
    }

    #[test]
    fn toml_and_yaml_give_the_same_config() {
        let toml_text = r#"
            [publishers.local]
            dir = "out"
            [cameras.cam]
            fps_target = 2
            [cameras.cam.file]
            path = "clip.mp4"
            loop = true
            [[cameras.cam.detectors]]
            type = "yolo"
            params = { model_path = "m.onnx", classes = ["person"] }
        "#;
        let yaml_text = r#"
publishers:
  local:
    dir: out
cameras:
  cam:
    fps_target: 2
    file: {path: clip.mp4, loop: true}
    detectors:
      - type: yolo
        params:
          model_path: m.onnx
          classes: [person]
"#;
        let a = parse_str(toml_text, Format::Toml).unwrap();
        let b = parse_str(yaml_text, Format::Yaml).unwrap();
        assert_eq!(a, b);
        let cam = &a.cameras["cam"];
        assert!(cam.file.as_ref().unwrap().loop_);
        assert!(cam.file.as_ref().unwrap().realtime);
        assert_eq!(cam.detectors.len(), 1);
        assert!(a.publishers.local.as_ref().unwrap().enabled);
    }
}

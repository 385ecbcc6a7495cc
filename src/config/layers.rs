//! The layers a configuration is read from (a TOML file, `CARDIO_*`
//! variables) as figment providers, and what a refusal says: the setting,
//! where its value came from, and the value only when it is not a secret.

use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{env_name, setting_names, ConfigError, Env};

/// The settings of a TOML file.
pub(super) struct FileSettings {
    path: PathBuf,
    values: Dict,
}

impl FileSettings {
    pub(super) fn read(path: &Path) -> Result<FileSettings, ConfigError> {
        let failed = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        // Not toml's `Display`: it quotes the offending line.
        let values: Dict = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => failed(format!("line {line}: {}", e.message())),
                None => failed(e.message().to_owned()),
            }
        })?;
        Ok(FileSettings {
            path: path.to_owned(),
            values,
        })
    }
}

impl Provider for FileSettings {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The `CARDIO_*` variables that name a setting.
pub(super) struct EnvSettings(Dict);

impl EnvSettings {
    pub(super) fn read(env: &dyn Env) -> EnvSettings {
        let values = setting_names()
            .iter()
            .filter_map(|key| {
                let value = env.get(&env_name(key))?;
                Some((key.to_string(), Value::from(value.trim().to_owned())))
            })
            .collect();
        EnvSettings(values)
    }
}

impl Provider for EnvSettings {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| env_name(&keys.join("_")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// Where the value of `setting` came from: its variable (`CARDIO_SHARDS`),
/// its key in the file (`shards in /etc/cardio.toml`), or its default.
pub(super) fn source_of(layers: &Figment, setting: &str) -> String {
    if !setting_names().contains(&setting) {
        return setting.to_owned();
    }
    match layers.find_metadata(setting) {
        Some(md) => match md.source.as_ref().and_then(|s| s.file_path()) {
            Some(path) => format!("{setting} in {}", path.display()),
            None => md.interpolate(&Profile::Default, &[setting]),
        },
        None => format!("{setting} (default)"),
    }
}

/// A value serde would not take, as a [`ConfigError`] naming its source.
/// Secrets' own `Deserialize` never quotes them, so what serde says about a
/// value may be shown.
pub(super) fn refused(e: figment::Error, layers: &Figment, file: Option<&Path>) -> ConfigError {
    if let Kind::UnknownField(key, known) = &e.kind {
        // Variables are read by name, so only the file has unknown keys.
        return ConfigError::UnknownKey {
            path: file.map(Path::to_path_buf).unwrap_or_default(),
            key: key.clone(),
            known: known.join(", "),
        };
    }
    let setting = e.path.join(".");
    let source_name = if setting.is_empty() {
        "configuration".to_owned()
    } else {
        source_of(layers, &setting)
    };
    let whole = |expected: &str| matches!(expected, "u8" | "u16" | "u32" | "u64" | "usize");
    let message = match &e.kind {
        Kind::InvalidValue(actual, expected) if whole(expected) => {
            format!("{} is out of range", shown(actual))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = match expected.as_str() {
                e if whole(e) => "a whole number",
                "a boolean" => "true or false",
                "a duration" => "a duration like 30s or 15m",
                e => e,
            };
            format!("{} is not {expected}", shown(actual))
        }
        Kind::UnknownVariant(found, expected) => match expected.split_last() {
            Some((last, rest)) if !rest.is_empty() => {
                format!("{found:?} is not {} or {last}", rest.join(", "))
            }
            _ => format!("{found:?} is not one of {expected:?}"),
        },
        other => other.to_string(),
    };
    ConfigError::Invalid {
        source_name,
        message,
    }
}

/// A value serde quotes: text in quotes, a number as it is.
fn shown(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(f) => f.to_string(),
        other => format!("a {other}"),
    }
}

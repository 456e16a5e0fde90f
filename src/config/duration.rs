//! Durations in the config file as strings such as `"500ms"` or `"1h 30m"`.
//!
//! humantime-serde does the same job, but its error for a bad value is only "expected a
//! duration"; an operator editing a file by hand is better served by the unit hint below, so
//! this small adapter over `humantime` stays.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;
use std::time::Duration;

/// Writes the duration as e.g. `"1h 30m"`.
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

/// Reads a duration string such as `"500ms"` or `"1h 30m"`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

/// Accepts only strings, so a bare number (which has no unit) gets a helpful error.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"2s\", \"500ms\" or \"1h 30m\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "invalid duration {text:?}: {e}; write e.g. \"2s\", \"500ms\" or \"1h 30m\""
            ))
        })
    }
}

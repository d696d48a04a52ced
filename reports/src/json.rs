//! `report.json`: the report model as pretty JSON, and back, refusing a
//! schema version this build does not read.

use crate::model::{LoadReport, REPORT_VERSION};
use serde::Deserialize;
use std::fmt;

/// Why a `report.json` could not be read.
#[derive(Debug)]
pub enum ReportError {
    /// Not JSON, or not shaped like a report (the message names the field,
    /// line and column).
    Malformed(serde_json::Error),
    /// No `version` field: probably not a Stampede report at all.
    MissingVersion,
    /// Written with a schema version this build does not read.
    UnsupportedVersion {
        /// The version in the file.
        found: u64,
        /// The version this build reads ([`REPORT_VERSION`]).
        expected: u32,
    },
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Malformed(e) => write!(f, "not a valid Stampede report: {e}"),
            ReportError::MissingVersion => write!(
                f,
                "not a Stampede report: no `version` field (this build reads version {REPORT_VERSION})"
            ),
            ReportError::UnsupportedVersion { found, expected } => write!(
                f,
                "report schema version {found} is not supported: this build reads version \
                 {expected}; re-render it with the Stampede that wrote it, or re-run the load"
            ),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

/// `r` as pretty-printed JSON, ending in a newline: the `report.json` format.
pub fn render_json(r: &LoadReport) -> String {
    // Cannot fail: every map key is a string and no Serialize impl is hand-written.
    // (Non-finite floats become `null`; `parse_json` then refuses them.)
    let mut text = serde_json::to_string_pretty(r).expect("a LoadReport always serialises");
    text.push('\n');
    text
}

/// Reads a `report.json`. The version is checked first, so a report from
/// another schema version is refused by name rather than by whichever of
/// its fields happens not to fit.
pub fn parse_json(text: &str) -> Result<LoadReport, ReportError> {
    // Just the version first; a top level that is not an object has none.
    let value: serde_json::Value = serde_json::from_str(text).map_err(ReportError::Malformed)?;
    let version = match value.get("version") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(u64::deserialize(v).map_err(ReportError::Malformed)?),
    };
    match version {
        None => return Err(ReportError::MissingVersion),
        Some(found) if found != u64::from(REPORT_VERSION) => {
            return Err(ReportError::UnsupportedVersion {
                found,
                expected: REPORT_VERSION,
            });
        }
        Some(_) => {}
    }
    serde_json::from_str(text).map_err(ReportError::Malformed)
}

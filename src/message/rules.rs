//! The rules a request is judged by, as `[validation]` configures them. They belong to the
//! code that applies them ([`RequestValidator`](super::RequestValidator), the processor's
//! known-application check); `config` only deserialises the section into them.

use std::time::Duration;

use serde::Deserialize;

use super::prid::{PridFormat, PridRules};

/// `[validation]`. Unknown keys are refused, like every configuration section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRules {
    pub prid_format: PridFormat,
    #[serde(default)]
    pub prid_rules: PridRules,
    pub require_known_application: bool,
    #[serde(default, with = "humantime_serde")]
    pub max_request_age: Option<Duration>,
    pub max_body_bytes: usize,
    pub max_ids: usize,
}

#[cfg(test)]
impl ValidationRules {
    /// The contract's rules, for unit tests across the crate.
    pub(crate) fn contract_defaults() -> ValidationRules {
        ValidationRules {
            prid_format: PridFormat::Mosip,
            prid_rules: PridRules::default(),
            require_known_application: true,
            max_request_age: None,
            max_body_bytes: 1_048_576,
            max_ids: 10_000,
        }
    }
}

//! Deserialisers of the values TOML has no type for: cron schedules, duration lists, regexes.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error};

pub(super) fn optional_cron_schedule<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<cron::Schedule>, D::Error> {
    cron_schedule(d).map(Some)
}

/// A six-field cron expression; the seven-field form (with year) is accepted too. One that
/// names no time to come (`0 0 0 31 2 *`, a year gone by) is refused: the job it schedules would
/// silently never run.
pub(super) fn cron_schedule<'de, D: Deserializer<'de>>(d: D) -> Result<cron::Schedule, D::Error> {
    let raw = String::deserialize(d)?;
    let fields = raw.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(D::Error::custom(format!(
            "`{raw}` has {fields} fields; six are expected (sec min hour day month weekday)"
        )));
    }
    let schedule: cron::Schedule = raw
        .parse()
        .map_err(|e| D::Error::custom(format!("`{raw}`: {e}")))?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err(D::Error::custom(format!(
            "`{raw}` never fires: it names no date and time still to come"
        )));
    }
    Ok(schedule)
}

/// A list of humantime durations.
pub(super) fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let wrapped = Vec::<humantime_serde::Serde<Duration>>::deserialize(d)?;
    Ok(wrapped
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

/// `serde` glue for an optional regex given as a string.
pub(super) mod optional_regex {
    use regex::Regex;
    use serde::{Deserialize, Deserializer, de::Error};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|pattern| Regex::new(&pattern).map_err(D::Error::custom))
            .transpose()
    }
}

//! `prereg-sync report` arguments: which days, and the printed summary.

use chrono::{DateTime, Days, NaiveDate, Utc};
use clap::Args;

use super::{Output, usage_unless};
use crate::{config::Settings, dlq, jobs::report, storage};

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// One UTC day, YYYY-MM-DD (default: yesterday).
    #[arg(long, conflicts_with_all = ["since", "until"])]
    date: Option<NaiveDate>,
    /// From this time: every UTC day from the one holding it (RFC 3339, or a duration ago: 7d).
    #[arg(long, value_parser = dlq::parse_time)]
    since: Option<DateTime<Utc>>,
    /// Until this time (exclusive), to the UTC day holding its last instant (default: now).
    #[arg(long, value_parser = dlq::parse_time, requires = "since")]
    until: Option<DateTime<Utc>>,
}

impl ReportArgs {
    /// The first and last UTC day asked for.
    fn days(&self) -> (NaiveDate, NaiveDate) {
        match (self.date, self.since, self.until) {
            (Some(date), _, _) => (date, date),
            (None, Some(since), until) => (
                since.date_naive(),
                (until.unwrap_or_else(Utc::now) - chrono::Duration::milliseconds(1)).date_naive(),
            ),
            _ => {
                let yesterday = Utc::now().date_naive() - Days::new(1);
                (yesterday, yesterday)
            }
        }
    }

    pub(super) async fn execute(self, settings: &Settings) -> anyhow::Result<Output> {
        let (first, last) = self.days();
        if let Err(why) = report::day_count(first, last) {
            usage_unless(false, why)?;
        }
        let pool = storage::build_pool(&settings.database)?;
        let days = report::day_reports(&pool, first, last).await?;
        let text: Vec<String> = days.iter().map(ToString::to_string).collect();
        Output::new(text.join("\n"), &days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(date: Option<&str>, since: Option<&str>, until: Option<&str>) -> ReportArgs {
        ReportArgs {
            date: date.map(|d| d.parse().unwrap()),
            since: since.map(|t| dlq::parse_time(t).unwrap()),
            until: until.map(|t| dlq::parse_time(t).unwrap()),
        }
    }

    #[test]
    fn days_asked_for() {
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        assert_eq!(
            args(Some("2026-11-22"), None, None).days(),
            (day("2026-11-22"), day("2026-11-22"))
        );
        assert_eq!(
            args(
                None,
                Some("2026-11-20T00:00:00Z"),
                Some("2026-11-23T00:00:00Z")
            )
            .days(),
            (day("2026-11-20"), day("2026-11-22")),
            "until is exclusive"
        );
        assert_eq!(
            args(
                None,
                Some("2026-11-20T13:00:00Z"),
                Some("2026-11-22T01:00:00Z")
            )
            .days(),
            (day("2026-11-20"), day("2026-11-22"))
        );
        let yesterday = Utc::now().date_naive() - Days::new(1);
        assert_eq!(args(None, None, None).days(), (yesterday, yesterday));
        assert_eq!(
            args(None, Some("2026-11-20T13:00:00Z"), None).days(),
            (day("2026-11-20"), Utc::now().date_naive()),
            "--since alone runs until now"
        );
    }
}

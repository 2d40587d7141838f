//! Progress of long operator commands (`dlq replay`/`delete`/`export`, `consumed-job run`,
//! `loadgen`): a bar on stderr when it is a terminal, and nothing at all otherwise (output piped
//! or redirected, `--json`, or work inside `run`), so logs and scripts never see escape codes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or nothing. Cloning shares the same bar; the default shows nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar labelled `what`, when `wanted` (not `--json`) and stderr is a terminal.
    pub(crate) fn new(wanted: bool, what: &'static str) -> Progress {
        Self::for_terminal(wanted && std::io::stderr().is_terminal(), what)
    }

    fn for_terminal(shown: bool, what: &'static str) -> Progress {
        if !shown {
            return Progress(None);
        }
        let style = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .expect("the template is valid");
        let bar = ProgressBar::no_length()
            .with_style(style)
            .with_message(what);
        Progress(Some(bar))
    }

    /// How much work there is, once known.
    pub(crate) fn set_total(&self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }

    pub(crate) fn inc(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(done);
        }
    }

    /// Removes the bar, so the command's result is printed on a clean line.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }

    pub(crate) fn is_shown(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_shown_for_json_or_off_a_terminal() {
        assert!(!Progress::new(false, "x").is_shown(), "--json");
        assert!(!Progress::for_terminal(false, "x").is_shown());
        assert!(!Progress::default().is_shown());
        let shown = Progress::for_terminal(true, "x");
        assert!(shown.is_shown());
        shown.set_total(2);
        shown.inc(2);
        shown.finish();
    }
}

//! An error and its causes on one line, each cause once. Libraries often put their source's
//! text into their own message as well (lapin: `IO error: Connection refused (os error 111)`,
//! whose source is `Connection refused (os error 111)`), so anyhow's `{:#}` repeated it.

use std::error::Error;

/// `err: cause: cause…`, leaving out a cause whose text the line already ends with.
pub fn error_text(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        next = cause.source();
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused (os 111)");
        let err = anyhow::Error::new(io)
            .context("IO error: refused (os 111)")
            .context("connecting to RabbitMQ (node 1 of 1 in amqp.url)");
        assert_eq!(
            error_text(err.as_ref()),
            "connecting to RabbitMQ (node 1 of 1 in amqp.url): IO error: refused (os 111)"
        );
    }

    #[test]
    fn distinct_causes_are_all_shown() {
        let err = anyhow::anyhow!("denied").context("reading the file");
        assert_eq!(error_text(err.as_ref()), "reading the file: denied");
    }
}

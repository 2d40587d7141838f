//! Credentials out of URLs, so a URL can reach a log line or an error message.

/// A URL with its password replaced by `***`; anything unparsable is hidden whole, because it
/// might be a credential typed into the wrong variable. Handles both kinds of list: several
/// URLs separated by commas (`amqp.url` naming a cluster) and one URL with several hosts
/// (`postgres://u:pw@h1:5432,h2:5432/db`), which the `url` crate cannot parse.
pub(crate) fn redact_url(raw: &str) -> String {
    let mut urls: Vec<String> = Vec::new();
    for part in raw.split(',') {
        match urls.last_mut() {
            // A part without a scheme continues the previous URL's host list.
            Some(previous) if !part.contains("://") => {
                previous.push(',');
                previous.push_str(part);
            }
            _ => urls.push(part.to_owned()),
        }
    }
    urls.iter()
        .map(|url| redact_one(url))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(raw: &str) -> String {
    if let Ok(mut url) = url::Url::parse(raw) {
        if url.password().is_some() {
            #[allow(
                clippy::let_underscore_must_use,
                reason = "a URL that has a password can take another one"
            )]
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "***".into()
                    } else {
                        value
                    };
                    (key.into_owned(), value.into_owned())
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return url.to_string();
    }
    // A multi-host URL: `scheme://[user[:password]@]host:port,host:port/...`. Only the user
    // part and the path are kept around the host list; a query is dropped whole (it may hold
    // `password=`).
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, "?…"),
        None => (rest, ""),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{user_info}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert_eq!(redact_url("s3cret"), "<unparsable URL>");
    }

    #[test]
    fn redaction_covers_every_node_of_a_list() {
        assert_eq!(
            redact_url("amqp://u:s3cret@a:5681/v,amqp://u:s3cret@b:5682/v"),
            "amqp://u:***@a:5681/v,amqp://u:***@b:5682/v"
        );
        let multi_host = "postgres://u:s3cret@h1:5433,h2:5434/db?target_session_attrs=read-write&password=s3cret";
        let redacted = redact_url(multi_host);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(
            redacted.starts_with("postgres://u:***@h1:5433,h2:5434/db"),
            "{redacted}"
        );
        let in_query = redact_url("postgres://h/db?user=u&password=s3cret");
        assert!(!in_query.contains("s3cret"), "{in_query}");
    }
}

//! `amqp.url` as a list of broker nodes: one URL, or the nodes of one cluster separated by
//! commas. Parsed here, with the settings, so a bad entry fails loading the configuration;
//! [`crate::amqp::nodes`] walks the parsed list.

use lapin::uri::AMQPUri;
use secrecy::{ExposeSecret, SecretString};

/// Why `amqp.url` cannot be used. Never carries the URL: it holds the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NodeListError {
    #[error("amqp.url: entry {position} of {count} is not a valid AMQP URL")]
    Invalid { position: usize, count: usize },
}

/// The nodes of `amqp.url`, in the order listed. Deliberately not `Debug`: the URIs hold
/// passwords.
pub(crate) struct NodeList(Vec<AMQPUri>);

impl NodeList {
    /// Parses the comma-separated list.
    pub(crate) fn parse(urls: &SecretString) -> Result<NodeList, NodeListError> {
        #[allow(
            clippy::disallowed_methods,
            reason = "parsed into URIs that connect; a URI with an error is reported by its position only"
        )]
        let entries: Vec<&str> = urls.expose_secret().split(',').map(str::trim).collect();
        let count = entries.len();
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                // An empty entry (a stray comma) would parse as lapin's default URL.
                (!entry.is_empty())
                    .then(|| entry.parse::<AMQPUri>().ok())
                    .flatten()
                    .ok_or(NodeListError::Invalid {
                        position: i + 1,
                        count,
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(NodeList)
    }

    /// How many nodes are listed (at least one).
    pub(crate) fn count(&self) -> usize {
        self.0.len()
    }

    /// The node at `index` (0-based, below [`NodeList::count`]).
    pub(crate) fn get(&self, index: usize) -> &AMQPUri {
        &self.0[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &str) -> Result<NodeList, NodeListError> {
        NodeList::parse(&SecretString::from(list))
    }

    #[test]
    fn entries_keep_their_order() {
        let nodes = parse("amqp://u:p@a:5681/v, amqp://u:p@b:5682/v").unwrap();
        assert_eq!(nodes.count(), 2);
        assert_eq!(nodes.get(0).authority.host, "a");
        assert_eq!(nodes.get(1).authority.port, 5682);
    }

    #[test]
    fn a_bad_entry_is_named_by_position_never_by_content() {
        let err = parse("amqp://u:s3cret@a/v,,amqp://u:s3cret@c/v")
            .err()
            .unwrap();
        assert_eq!(
            err,
            NodeListError::Invalid {
                position: 2,
                count: 3
            }
        );
        let err = parse("amqp://u:s3cret@a/v,http://u:s3cret@b")
            .err()
            .unwrap();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("entry 2 of 2"), "{err}");
    }
}

//! `amqp.url` as a list of broker nodes: one URL, or the nodes of one cluster separated by
//! commas. Parsed once, while the settings are deserialised, so a bad entry fails loading the
//! configuration and everything after holds nodes that parsed; [`crate::amqp::nodes`] walks
//! the list.

use lapin::uri::AMQPUri;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, de::Error};

use super::redact_url;

/// Why `amqp.url` cannot be used. Never carries the URL: it holds the password. The
/// configuration loader appends the key (`for key `amqp.url``).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NodeListError {
    #[error("entry {position} of {count} is not a valid AMQP URL")]
    Invalid { position: usize, count: usize },
}

/// The nodes of `amqp.url`, in the order listed (at least one). `Debug` shows only how many:
/// the URIs hold passwords.
#[derive(Clone)]
pub struct NodeList {
    /// `amqp.url` as written, kept for [`NodeList::redacted`] only.
    urls: SecretString,
    nodes: Vec<AMQPUri>,
}

impl std::fmt::Debug for NodeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeList")
            .field("count", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// `deserialize_with` glue: `amqp.url` read as a secret and parsed into its nodes.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeList, D::Error> {
    NodeList::parse(SecretString::deserialize(d)?).map_err(D::Error::custom)
}

impl NodeList {
    /// Parses the comma-separated list.
    fn parse(urls: SecretString) -> Result<NodeList, NodeListError> {
        #[allow(
            clippy::disallowed_methods,
            reason = "parsed into URIs that connect; a URI with an error is reported by its position only"
        )]
        let entries: Vec<&str> = urls.expose_secret().split(',').map(str::trim).collect();
        let count = entries.len();
        let nodes = entries
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
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NodeList { urls, nodes })
    }

    /// How many nodes are listed (at least one).
    pub(crate) fn count(&self) -> usize {
        self.nodes.len()
    }

    /// The node at `index` (0-based, below [`NodeList::count`]).
    pub(crate) fn get(&self, index: usize) -> &AMQPUri {
        &self.nodes[index]
    }

    /// The list as written with every password replaced (`redact_url`), for the start-up log.
    pub(crate) fn redacted(&self) -> String {
        #[allow(
            clippy::disallowed_methods,
            reason = "the URLs are exposed only to be redacted"
        )]
        let urls = self.urls.expose_secret();
        redact_url(urls)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A list parsed as `amqp.url` would be, for unit tests across the crate.
    pub(crate) fn parse(list: &str) -> Result<NodeList, NodeListError> {
        NodeList::parse(SecretString::from(list))
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

    #[test]
    fn debug_and_redacted_never_show_a_password() {
        let nodes = parse("amqp://u:s3cret@a/v,amqp://u:s3cret@b/v").unwrap();
        assert_eq!(format!("{nodes:?}"), "NodeList { count: 2, .. }");
        assert_eq!(nodes.redacted(), "amqp://u:***@a/v,amqp://u:***@b/v");
    }
}

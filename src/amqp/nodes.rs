//! Which broker node of `amqp.url` the worker uses (the list itself is parsed with the settings,
//! [`NodeList`]).
//!
//! Every process starts at a random node, so the connections of many replicas (and the channel
//! processes and consumers they carry) spread over the cluster instead of piling onto the first
//! node listed. After losing a node it moves on to the next one: the node just lost is the one
//! least likely to answer soon. Any node of a cluster serves every queue (RabbitMQ forwards to
//! the quorum queue's leader), so which one is in use only matters for load.

use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::uri::AMQPUri;

use crate::config::NodeList;

/// The configured nodes and the one in use. Deliberately not `Debug`: the URIs hold passwords.
pub(crate) struct Nodes {
    list: NodeList,
    current: AtomicUsize,
}

impl Nodes {
    /// Starts at a random node of `list`.
    pub(crate) fn new(list: NodeList) -> Nodes {
        Nodes {
            current: AtomicUsize::new(rand::random_range(0..list.count())),
            list,
        }
    }

    /// How many nodes are configured.
    pub(crate) fn count(&self) -> usize {
        self.list.count()
    }

    /// The node to connect to: its index in the list (a bounded metric label) and its URI.
    pub(crate) fn current(&self) -> (usize, AMQPUri) {
        let index = self.current.load(Ordering::Relaxed);
        (index, self.list.get(index).clone())
    }

    /// Moves on to the next node (wrapping round); `true` when that is another node.
    pub(crate) fn advance(&self) -> bool {
        let count = self.count();
        #[allow(
            clippy::let_underscore_must_use,
            reason = "the update always returns `Some`, so it cannot fail"
        )]
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| {
                Some((i + 1) % count)
            });
        count > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &str) -> Result<Nodes, crate::config::node_list::NodeListError> {
        crate::config::node_list::tests::parse(list).map(Nodes::new)
    }

    #[test]
    fn one_url_is_a_cluster_of_one() {
        let nodes = nodes("amqp://u:p@h:5672/%2f").unwrap();
        assert_eq!(nodes.count(), 1);
        assert_eq!(nodes.current().0, 0);
        assert!(!nodes.advance(), "no other node to go to");
        assert_eq!(nodes.current().1.authority.host, "h");
    }

    #[test]
    fn a_list_is_walked_round_from_anywhere() {
        let nodes = nodes("amqp://u:p@a:5681/v, amqp://u:p@b:5682/v,amqp://u:p@c:5683/v").unwrap();
        assert_eq!(nodes.count(), 3);
        let first = nodes.current().0;
        let mut seen = vec![nodes.current().1.authority.host];
        for step in 1..=3 {
            assert!(nodes.advance());
            assert_eq!(nodes.current().0, (first + step) % 3);
            seen.push(nodes.current().1.authority.host);
        }
        assert_eq!(seen[0], seen[3], "back where it started");
        seen.truncate(3);
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(
            nodes.current().1.authority.port,
            5681 + nodes.current().0 as u16
        );
    }

    #[test]
    fn starting_points_spread() {
        let starts: std::collections::HashSet<usize> = (0..64)
            .map(|_| nodes("amqp://a,amqp://b,amqp://c").unwrap().current().0)
            .collect();
        assert!(starts.len() > 1, "64 processes all started at one node");
    }
}

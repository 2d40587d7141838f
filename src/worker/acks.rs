//! Coalesced acknowledgements: one `basic.ack` with `multiple` for the finished deliveries
//! below the oldest one still in flight, so a quorum queue settles many messages with one
//! command instead of one each (docs/performance.md, round two).
//!
//! The rule that keeps the guarantee: an ack with `multiple` on tag T settles every
//! unacknowledged delivery up to T, so T is only ever chosen below the lowest tag still in
//! flight. A delivery that is running, waiting for the database, held as a suspect or left
//! unacked for redelivery is never covered. Finished deliveries above that tag are acked one by
//! one in the same flush, so one slow delivery never holds the others' prefetch slots.
//!
//! Flushes are serialised: a later flush's `multiple` ack may cover a tag an earlier flush acks
//! alone, and acking a tag twice closes the channel, so every ack of one flush is handed to the
//! channel before the next flush looks at the state. Each delivery's task still waits for its
//! own ack to be written before it counts the message finished, as with a single ack.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use lapin::{Acker, options::BasicAckOptions};
use tokio::sync::oneshot;

/// The acks of one consuming channel: made with the session, dropped with it (delivery tags
/// are per channel).
#[derive(Clone, Default)]
pub(super) struct AckCoalescer {
    state: Arc<Mutex<State>>,
    /// Held while one flush's acks are handed to the channel.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct State {
    /// Delivered and not yet finished.
    in_flight: BTreeSet<u64>,
    /// Finished, waiting for the next flush: the delivery's acker and whom to tell.
    finished: BTreeMap<u64, (Acker, oneshot::Sender<bool>)>,
    /// A task has taken on the next flush: the others only leave their ack.
    flush_called: bool,
}

/// The tag a `multiple` ack may be sent on: the highest finished one below every delivery still
/// in flight (`finished` is ascending).
fn multiple_ack_tag(in_flight: &BTreeSet<u64>, finished: impl Iterator<Item = u64>) -> Option<u64> {
    let oldest_in_flight = in_flight.first().copied().unwrap_or(u64::MAX);
    finished.take_while(|&tag| tag < oldest_in_flight).last()
}

impl AckCoalescer {
    /// Called by the dispatcher, in delivery order, before the delivery's task starts.
    pub(super) fn delivered(&self, tag: u64) {
        self.state.lock().expect("ack state").in_flight.insert(tag);
    }

    /// Acks a finished delivery, together with the others finished at the same moment. Returns
    /// whether the ack was written (false: the channel is gone and the broker will redeliver).
    pub(super) async fn ack(&self, tag: u64, acker: Acker) -> bool {
        let (written, written_rx) = oneshot::channel();
        let leads_flush = {
            let mut state = self.state.lock().expect("ack state");
            state.in_flight.remove(&tag);
            state.finished.insert(tag, (acker, written));
            !std::mem::replace(&mut state.flush_called, true)
        };
        if leads_flush {
            // One group commit answers many deliveries at once: let them leave their acks
            // before this flush takes the lot.
            tokio::task::yield_now().await;
            self.flush().await;
        }
        written_rx.await.unwrap_or(false)
    }

    async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        let (covered, singles) = {
            let mut state = self.state.lock().expect("ack state");
            state.flush_called = false;
            let last = multiple_ack_tag(&state.in_flight, state.finished.keys().copied());
            let finished = std::mem::take(&mut state.finished);
            let (covered, singles): (Vec<_>, Vec<_>) = finished
                .into_iter()
                .partition(|(tag, _)| last.is_some_and(|last| *tag <= last));
            (covered, singles)
        };
        if let Some((_, (acker, _))) = covered.last() {
            let options = BasicAckOptions { multiple: true };
            let written = matches!(acker.ack(options).await, Ok(true));
            for (_, (_, tell)) in covered {
                let _ = tell.send(written);
            }
        }
        for (_, (acker, tell)) in singles {
            let written = matches!(acker.ack(BasicAckOptions::default()).await, Ok(true));
            let _ = tell.send(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn finished_below_the_oldest_in_flight_share_one_ack() {
        let in_flight = BTreeSet::from([4, 9]);
        assert_eq!(
            multiple_ack_tag(&in_flight, [1, 2, 3, 5, 7].into_iter()),
            Some(3)
        );
    }

    #[test]
    fn the_oldest_in_flight_first_leaves_no_multiple_ack() {
        let in_flight = BTreeSet::from([1]);
        assert_eq!(multiple_ack_tag(&in_flight, [2, 3].into_iter()), None);
    }

    #[test]
    fn nothing_in_flight_covers_everything_finished() {
        assert_eq!(
            multiple_ack_tag(&BTreeSet::new(), [2, 6, 8].into_iter()),
            Some(8)
        );
    }

    proptest! {
        /// The guarantee: the `multiple` ack never covers a delivery in flight, and covers
        /// every finished delivery below it (the rest are acked alone).
        #[test]
        fn a_multiple_ack_never_covers_a_delivery_in_flight(
            tags in proptest::collection::btree_map(0u64..500, any::<bool>(), 0..100)
        ) {
            let in_flight: BTreeSet<u64> =
                tags.iter().filter(|(_, f)| **f).map(|(t, _)| *t).collect();
            let finished: Vec<u64> = tags.iter().filter(|(_, f)| !**f).map(|(t, _)| *t).collect();
            let last = multiple_ack_tag(&in_flight, finished.iter().copied());
            if let Some(last) = last {
                prop_assert!(in_flight.iter().all(|&t| t > last));
                prop_assert!(finished.contains(&last));
            }
            let oldest = in_flight.first().copied().unwrap_or(u64::MAX);
            let below: Vec<u64> = finished.iter().copied().filter(|&t| t < oldest).collect();
            prop_assert_eq!(last, below.last().copied());
        }
    }
}

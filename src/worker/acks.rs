//! Coalesced acknowledgements: one `basic.ack` with `multiple` for the finished deliveries
//! below the oldest one still in flight, so a quorum queue settles many messages with one
//! command instead of one each: fewer settlements for the broker to replicate
//! (docs/performance-log.md, 2026-11-29).
//!
//! The rule that keeps the guarantee: an ack with `multiple` on tag T settles every
//! unacknowledged delivery up to T, so T is only ever chosen below the lowest tag still in
//! flight. A delivery that is running, waiting for the database, held as a suspect or left
//! unacked for redelivery is never covered.
//!
//! A finished delivery above that tag waits for a later `multiple` ack to cover it, for at most
//! [`HOLD`]; then it is acked alone, so one slow delivery never holds the others' prefetch slots
//! for long. Why wait at all: replies are confirmed out of delivery order, so acking such a
//! delivery at once sent every other ack alone (about one ack per two messages for one-PRID
//! requests on a three-node cluster, each a replicated settlement); a few milliseconds later the
//! delivery below it has finished too and one ack settles both.
//!
//! Flushes are serialised: a later flush's `multiple` ack may cover a tag an earlier flush acks
//! alone, and acking a tag twice closes the channel, so every ack of one flush is handed to the
//! channel before the next flush looks at the state. Each delivery's task still waits for its
//! own ack to be written before it counts the message finished, as with a single ack.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use lapin::{Acker, options::BasicAckOptions};
use tokio::{sync::oneshot, time::Instant};

/// How long a finished delivery above an unfinished one waits to be covered by a `multiple`
/// ack before it is acked alone: a few group commits at thousands of one-PRID requests a second,
/// well under a second of a stuck delivery's neighbours waiting.
const HOLD: Duration = Duration::from_millis(20);

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
    /// Finished, waiting for a flush to ack them.
    finished: BTreeMap<u64, Finished>,
    /// A task has taken on the next flush: the others only leave their ack.
    flush_called: bool,
    /// A flush is due when the oldest held delivery's [`HOLD`] is over.
    recheck_scheduled: bool,
}

struct Finished {
    acker: Acker,
    /// Whom to tell whether the ack was written.
    tell: oneshot::Sender<bool>,
    since: Instant,
}

/// The tag a `multiple` ack may be sent on: the highest finished one below every delivery still
/// in flight (`finished` is ascending).
fn multiple_ack_tag(in_flight: &BTreeSet<u64>, finished: impl Iterator<Item = u64>) -> Option<u64> {
    let oldest_in_flight = in_flight.first().copied().unwrap_or(u64::MAX);
    finished.take_while(|&tag| tag < oldest_in_flight).last()
}

/// One flush's split of the finished deliveries, by tag: those the `multiple` ack covers, those
/// acked alone (held for [`HOLD`] already at `now`), and those held on.
type Split<T> = (BTreeMap<u64, T>, BTreeMap<u64, T>, BTreeMap<u64, T>);

fn split<T>(
    in_flight: &BTreeSet<u64>,
    finished: BTreeMap<u64, T>,
    since: impl Fn(&T) -> Instant,
    now: Instant,
) -> Split<T> {
    let last = multiple_ack_tag(in_flight, finished.keys().copied());
    let (covered, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = finished
        .into_iter()
        .partition(|(tag, _)| last.is_some_and(|last| *tag <= last));
    let (alone, held) = rest
        .into_iter()
        .partition(|(_, finished)| now.duration_since(since(finished)) >= HOLD);
    (covered, alone, held)
}

impl AckCoalescer {
    /// Called by the dispatcher, in delivery order, before the delivery's task starts.
    pub(super) fn delivered(&self, tag: u64) {
        self.state.lock().expect("ack state").in_flight.insert(tag);
    }

    /// Acks a finished delivery, together with the others finished at the same moment. Returns
    /// whether the ack was written (false: the channel is gone and the broker will redeliver).
    pub(super) async fn ack(&self, tag: u64, acker: Acker) -> bool {
        let (tell, written) = oneshot::channel();
        let leads_flush = {
            let mut state = self.state.lock().expect("ack state");
            state.in_flight.remove(&tag);
            let since = Instant::now();
            state.finished.insert(tag, Finished { acker, tell, since });
            !std::mem::replace(&mut state.flush_called, true)
        };
        if leads_flush {
            // One group commit answers many deliveries at once: let them leave their acks
            // before this flush takes the lot.
            tokio::task::yield_now().await;
            self.flush().await;
        }
        written.await.unwrap_or(false)
    }

    async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        let (covered, singles) = {
            let mut state = self.state.lock().expect("ack state");
            state.flush_called = false;
            let finished = std::mem::take(&mut state.finished);
            let (covered, singles, held) =
                split(&state.in_flight, finished, |f| f.since, Instant::now());
            if let Some(oldest) = held.values().map(|finished| finished.since).min() {
                self.recheck_at(&mut state, oldest + HOLD);
            }
            state.finished = held;
            (covered, singles)
        };
        if let Some((_, last)) = covered.last_key_value() {
            let options = BasicAckOptions { multiple: true };
            let written = matches!(last.acker.ack(options).await, Ok(true));
            for (_, finished) in covered {
                #[allow(
                    clippy::let_underscore_must_use,
                    reason = "a delivery that stopped waiting (its session was lost) needs no answer"
                )]
                let _ = finished.tell.send(written);
            }
        }
        for (_, finished) in singles {
            let written = matches!(
                finished.acker.ack(BasicAckOptions::default()).await,
                Ok(true)
            );
            #[allow(
                clippy::let_underscore_must_use,
                reason = "a delivery that stopped waiting (its session was lost) needs no answer"
            )]
            let _ = finished.tell.send(written);
        }
    }

    /// Makes sure a flush runs at `when` even if no other delivery finishes by then (the held
    /// ones are then acked alone).
    fn recheck_at(&self, state: &mut State, when: Instant) {
        if std::mem::replace(&mut state.recheck_scheduled, true) {
            return;
        }
        let coalescer = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(when).await;
            coalescer.state.lock().expect("ack state").recheck_scheduled = false;
            coalescer.flush().await;
        });
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

        /// Every finished delivery lands in exactly one part; the covered ones are all below
        /// every delivery in flight; one acked alone has waited out HOLD, one held has not.
        #[test]
        fn a_flush_acks_alone_only_what_waited_out_the_hold(
            tags in proptest::collection::btree_map(0u64..500, (any::<bool>(), 0u64..40), 0..100)
        ) {
            let now = Instant::now() + Duration::from_secs(1);
            let in_flight: BTreeSet<u64> =
                tags.iter().filter(|(_, (f, _))| *f).map(|(t, _)| *t).collect();
            let finished: BTreeMap<u64, Instant> = tags
                .iter()
                .filter(|(_, (f, _))| !*f)
                .map(|(t, (_, waited))| (*t, now - Duration::from_millis(*waited)))
                .collect();
            let (covered, alone, held) = split(&in_flight, finished.clone(), |s| *s, now);
            prop_assert_eq!(covered.len() + alone.len() + held.len(), finished.len());
            let oldest = in_flight.first().copied().unwrap_or(u64::MAX);
            prop_assert!(covered.keys().all(|&t| t < oldest));
            prop_assert!(alone.values().all(|s| now.duration_since(*s) >= HOLD));
            prop_assert!(held.values().all(|s| now.duration_since(*s) < HOLD));
            prop_assert!(alone.keys().chain(held.keys()).all(|&t| t > oldest));
        }
    }
}

//! The node's recent dead letters, for ops (`deadLetters` in the API): a
//! bounded ring in memory, per node, of what the inbox set aside and why.
//!
//! Only the time, the message's type (or the queue it came from, when it
//! was not even an envelope) and the reason are kept: never a payload, so
//! no PHI. The ring forgets the oldest beyond [`CAPACITY`] and everything
//! at a restart; the dead-letter queue of the bus keeps the messages.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::clock::unix_ms;

/// Dead letters a node remembers.
pub const CAPACITY: usize = 1000;
/// Longest reason kept, in bytes (reasons are short; a panic message may not be).
const MAX_REASON: usize = 512;

/// One message set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// 1, 2, … in the order this node set them aside (since its start).
    pub seq: u64,
    pub at_ms: u64,
    /// The message's type (`consult.act`, …), or the queue it came from.
    pub topic: String,
    pub reason: String,
}

/// The ring.
#[derive(Debug, Default)]
pub struct DeadLetters {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    last_seq: u64,
    entries: VecDeque<DeadLetter>,
}

fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl DeadLetters {
    /// Remembers a message of `topic` set aside for `reason`.
    pub fn record(&self, topic: &str, reason: &str) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.last_seq += 1;
        let seq = ring.last_seq;
        if ring.entries.len() == CAPACITY {
            ring.entries.pop_front();
        }
        ring.entries.push_back(DeadLetter {
            seq,
            at_ms: unix_ms(),
            topic: clip(topic, 128),
            reason: clip(reason, MAX_REASON),
        });
    }

    /// Newest first: up to `first` dead letters set aside before `before`
    /// (a `seq`; `None`: from the newest), and whether older ones remain.
    pub fn page(&self, before: Option<u64>, first: usize) -> (Vec<DeadLetter>, bool) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut older = ring
            .entries
            .iter()
            .rev()
            .filter(|d| before.is_none_or(|b| d.seq < b));
        let page: Vec<DeadLetter> = older.by_ref().take(first).cloned().collect();
        let more = older.next().is_some();
        (page, more)
    }

    /// How many this node has set aside since it started.
    pub fn total(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_newest_first_and_the_ring_forgets_the_oldest() {
        let d = DeadLetters::default();
        for i in 0..CAPACITY + 5 {
            d.record("consult.act", &format!("reason {i}"));
        }
        assert_eq!(d.total(), (CAPACITY + 5) as u64);
        let (page, more) = d.page(None, 3);
        let seqs: Vec<u64> = page.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![1005, 1004, 1003]);
        assert!(more);
        let (page, _) = d.page(Some(1003), 2);
        assert_eq!(page[0].seq, 1002);
        assert_eq!(page[0].reason, "reason 1001");
        // The oldest kept is seq 6: 1 to 5 were forgotten.
        let (page, more) = d.page(Some(7), 10);
        assert_eq!(page.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![6]);
        assert!(!more);
        d.record("x", &"é".repeat(600));
        assert!(d.page(None, 1).0[0].reason.len() <= MAX_REASON);
    }
}

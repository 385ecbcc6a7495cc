//! The WebSocket transport's limits, as a guard on the raw bytes a client
//! sends before async-graphql-actix-web's actor sees them.
//!
//! That actor (7.2, on actix-web-actors) gathers a fragmented message's
//! continuation frames without any bound, and waits for `connection_init`
//! for ever: a client could push hundreds of megabytes in one message that
//! never ends, or hold sockets open without a word. The frame codec caps one
//! frame (64 KiB), not a message. So this guard reads the frame headers
//! (only the headers: the payload bytes pass through uncopied) and ends the
//! inbound stream, which makes the actor stop and the socket close, when
//! - a message, its fragments together, grows past the largest allowed,
//! - `connection_init` has not arrived within its deadline, or
//! - the client sends messages faster than [`MESSAGES_PER_SECOND`] (with
//!   bursts of twice that): each one is parsed and answered, and answers to
//!   a client that does not read them would pile up in the node.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;

/// Messages a second a client may send on one WebSocket (subscribe,
/// complete, ping: a few in a connection's life). Control frames count:
/// each ping costs the server a pong.
pub(crate) const MESSAGES_PER_SECOND: f64 = 100.0;

/// Reads frame headers across chunk boundaries, adds up each message's
/// length (RFC 6455 §5.2) and counts messages against a budget.
#[derive(Debug)]
pub(crate) struct FrameScan {
    /// Messages the client may still send now (refilled with time).
    budget: f64,
    /// When the budget was last refilled.
    refilled: Option<tokio::time::Instant>,
    /// The time of the bytes being read.
    now: Option<tokio::time::Instant>,
    max_message: u64,
    header: [u8; 14],
    have: usize,
    need: usize,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    /// Length so far of the message being received.
    message: u64,
}

/// Why a client's bytes end its socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A message longer than allowed.
    TooLarge,
    /// Messages faster than allowed.
    TooFast,
}

impl FrameScan {
    pub(crate) fn new(max_message: usize) -> FrameScan {
        FrameScan {
            budget: 2.0 * MESSAGES_PER_SECOND,
            refilled: None,
            now: None,
            max_message: max_message as u64,
            header: [0; 14],
            have: 0,
            need: 2,
            skip: 0,
            message: 0,
        }
    }

    /// Takes the next bytes the client sent, at `now`.
    pub(crate) fn feed_at(
        &mut self,
        data: &[u8],
        now: tokio::time::Instant,
    ) -> Result<(), Refused> {
        self.now = Some(now);
        self.feed(data)
    }

    /// Takes the next bytes the client sent.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), Refused> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
                continue;
            }
            self.header[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have == 2 {
                let second = self.header[1];
                let extended = match second & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if second & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + extended + mask;
            }
            if self.have >= 2 && self.have == self.need {
                // The next header starts afresh even if this frame is
                // refused, so a scan fed again after a refusal refuses
                // again rather than overrunning its header.
                self.have = 0;
                self.need = 2;
                self.frame()?;
            }
        }
        Ok(())
    }

    /// One more message: from the budget, refilled for the time passed.
    fn spend(&mut self) -> Result<(), Refused> {
        if let Some(now) = self.now {
            if let Some(then) = self.refilled {
                let passed = now.saturating_duration_since(then).as_secs_f64();
                self.budget =
                    (self.budget + passed * MESSAGES_PER_SECOND).min(2.0 * MESSAGES_PER_SECOND);
            }
            self.refilled = Some(now);
        }
        if self.budget < 1.0 {
            return Err(Refused::TooFast);
        }
        self.budget -= 1.0;
        Ok(())
    }

    fn frame(&mut self) -> Result<(), Refused> {
        let h = &self.header;
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        // Control frames (ping, pong, close) may come between fragments.
        // Each costs a message too: every ping makes the server answer a
        // pong, so a flood of them is work like any other message.
        if opcode & 0x08 != 0 {
            self.spend()?;
        } else {
            if opcode != 0 {
                // Text or binary: a new message.
                self.message = 0;
                self.spend()?;
            }
            self.message = self.message.saturating_add(len);
            if self.message > self.max_message {
                return Err(Refused::TooLarge);
            }
            if fin {
                self.message = 0;
            }
        }
        self.skip = len;
        Ok(())
    }
}

/// `inner` (a WebSocket's inbound bytes), ended at the first message longer
/// than `max_message`, or at `init_within` if `initialized` is still unset
/// then.
pub(crate) fn guard<S>(
    inner: S,
    max_message: usize,
    init_within: Duration,
    initialized: Arc<AtomicBool>,
) -> Guarded<S> {
    Guarded {
        inner: Box::pin(inner),
        scan: FrameScan::new(max_message),
        init: Some((Box::pin(tokio::time::sleep(init_within)), initialized)),
        done: false,
    }
}

pub(crate) struct Guarded<S> {
    inner: Pin<Box<S>>,
    scan: FrameScan,
    init: Option<(Pin<Box<tokio::time::Sleep>>, Arc<AtomicBool>)>,
    done: bool,
}

impl<S, E> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some((deadline, seen)) = &mut this.init {
            if seen.load(Ordering::Acquire) {
                this.init = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                this.done = true;
                crate::metrics::limited("ws_init_timeout");
                return Poll::Ready(None);
            }
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                match this.scan.feed_at(&bytes, tokio::time::Instant::now()) {
                    Ok(()) => {}
                    Err(why) => {
                        this.done = true;
                        crate::metrics::limited(match why {
                            Refused::TooLarge => "ws_message_too_large",
                            Refused::TooFast => "ws_messages_too_fast",
                        });
                        return Poll::Ready(None);
                    }
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: FIN flag, opcode, payload length.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    #[test]
    fn whole_messages_under_the_limit_pass_whatever_the_chunking() {
        let mut bytes = frame(true, 1, 100);
        bytes.extend(frame(false, 1, 500));
        bytes.extend(frame(true, 9, 4)); // a ping between fragments
        bytes.extend(frame(true, 0, 500));
        bytes.extend(frame(true, 2, 70_000));
        for chunk in [1, 3, 7, 1000, bytes.len()] {
            let mut scan = FrameScan::new(100_000);
            for c in bytes.chunks(chunk) {
                assert_eq!(scan.feed(c), Ok(()), "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn fragments_adding_up_past_the_limit_are_refused() {
        let mut scan = FrameScan::new(10_000);
        scan.feed(&frame(false, 1, 4_000)).unwrap();
        scan.feed(&frame(false, 0, 4_000)).unwrap();
        assert_eq!(scan.feed(&frame(false, 0, 4_000)), Err(Refused::TooLarge));
        // One big frame, announced by its header alone.
        let mut scan = FrameScan::new(10_000);
        assert_eq!(
            scan.feed(&frame(true, 2, 20_000)[..14]),
            Err(Refused::TooLarge)
        );
    }

    #[test]
    fn a_finished_message_starts_the_count_over() {
        let mut scan = FrameScan::new(10_000);
        for _ in 0..10 {
            scan.feed(&frame(false, 1, 4_000)).unwrap();
            scan.feed(&frame(true, 0, 4_000)).unwrap();
        }
    }

    #[test]
    fn messages_faster_than_the_budget_are_refused_and_time_refills_it() {
        let t0 = tokio::time::Instant::now();
        let ms = std::time::Duration::from_millis;
        let burst = (2.0 * MESSAGES_PER_SECOND) as usize;
        let mut scan = FrameScan::new(10_000);
        for _ in 0..burst {
            scan.feed_at(&frame(true, 1, 10), t0).unwrap();
        }
        assert_eq!(scan.feed_at(&frame(true, 1, 10), t0), Err(Refused::TooFast));
        // A ping costs a message too (each makes the server answer a pong).
        assert_eq!(scan.feed_at(&frame(true, 9, 4), t0), Err(Refused::TooFast));
        // A steady rate under the budget goes on for ever.
        let mut scan = FrameScan::new(10_000);
        for i in 0..10_000u64 {
            let at = t0 + ms(i * 1000 / (MESSAGES_PER_SECOND as u64) + 1);
            scan.feed_at(&frame(true, 1, 10), at).unwrap();
        }
    }

    #[test]
    fn a_flood_of_pings_is_refused_like_any_other() {
        let t0 = tokio::time::Instant::now();
        let burst = (2.0 * MESSAGES_PER_SECOND) as usize;
        let mut scan = FrameScan::new(10_000);
        for _ in 0..burst {
            scan.feed_at(&frame(true, 9, 4), t0).unwrap();
        }
        assert_eq!(scan.feed_at(&frame(true, 9, 4), t0), Err(Refused::TooFast));
        // Nor do pongs and closes slip through.
        let mut scan = FrameScan::new(10_000);
        for i in 0..burst {
            let opcode = if i % 2 == 0 { 10 } else { 9 };
            scan.feed_at(&frame(true, opcode, 0), t0).unwrap();
        }
        assert_eq!(scan.feed_at(&frame(true, 10, 0), t0), Err(Refused::TooFast));
    }
}

//! The versioned envelope every bus message travels in.
//!
//! Only envelope types are serialised onto the bus. `Debug` never prints the
//! payload: it may hold PHI.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::address::ActorId;
use crate::principal::Principal;

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;

/// Unique id of a message; handlers de-duplicate on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub Uuid);

impl MessageId {
    /// Time-ordered (UUIDv7), so ids sort roughly by creation.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// W3C trace context (`traceparent`, optional `tracestate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A new trace with a random trace id and span id, sampled.
    pub fn new_root() -> Self {
        let trace = format!("{:016x}{:016x}", fastrand::u64(1..), fastrand::u64(..));
        Self::with_ids(&trace)
    }

    /// The current span's context when spans are traced (see
    /// [`crate::telemetry`]), else a new root.
    pub fn current() -> Self {
        match crate::telemetry::current_traceparent() {
            Some(traceparent) => Self {
                traceparent,
                tracestate: None,
            },
            None => Self::new_root(),
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        match self.trace_id() {
            Some(trace) => Self {
                tracestate: self.tracestate.clone(),
                ..Self::with_ids(trace)
            },
            None => Self::new_root(),
        }
    }

    fn with_ids(trace: &str) -> Self {
        Self {
            traceparent: format!("00-{trace}-{:016x}-01", fastrand::u64(1..)),
            tracestate: None,
        }
    }

    /// The 32-hex-digit trace id, if `traceparent` is well formed.
    pub fn trace_id(&self) -> Option<&str> {
        let parts: Vec<&str> = self.traceparent.split('-').collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            [v, trace, span, flags]
                if hex(v, 2)
                    && hex(trace, 32)
                    && hex(span, 16)
                    && hex(flags, 2)
                    && *trace != "00000000000000000000000000000000" =>
            {
                Some(trace)
            }
            _ => None,
        }
    }
}

/// A message on the bus.
#[derive(Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version ([`ENVELOPE_VERSION`]).
    pub v: u16,
    pub id: MessageId,
    /// The actor it is for (actor messages); `None` for events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ActorId>,
    /// Names the payload's type within the recipient kind (`consult.send_chat`).
    pub msg_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    pub trace: TraceContext,
    /// Unix milliseconds after which the message is not worth handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Topic to publish the reply on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// For replies: the id of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<MessageId>,
    pub sent_at_ms: u64,
    pub payload: Box<RawValue>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("v", &self.v)
            .field("id", &self.id)
            .field("to", &self.to)
            .field("msg_type", &self.msg_type)
            .field("trace", &self.trace.traceparent)
            .field("deadline_ms", &self.deadline_ms)
            .field(
                "payload",
                &format_args!("<{} bytes>", self.payload.get().len()),
            )
            .finish()
    }
}

/// An envelope encoded once ([`Envelope::seal`]): what the bus sends, so
/// that an ask that sends its one copy again, or a publish retried on a
/// fresh channel, re-uses the bytes instead of serialising the envelope
/// again. Cloning shares the bytes. `Debug` shows no payload.
#[derive(Clone)]
pub struct Sealed {
    id: MessageId,
    to: Option<ActorId>,
    body: bytes::Bytes,
}

impl Sealed {
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The actor it is for (actor messages).
    pub fn to(&self) -> Option<&ActorId> {
        self.to.as_ref()
    }

    /// The encoded envelope.
    pub fn body(&self) -> &bytes::Bytes {
        &self.body
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// Why bytes are not an envelope. Messages never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an envelope: {0}")]
    Malformed(String),
    #[error("envelope version {0} is not supported (this node reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u16),
    #[error("payload is not encodable: {0}")]
    Payload(String),
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Envelope {
    /// A message of `msg_type` carrying `payload`, in a new trace.
    pub fn new<T: Serialize>(msg_type: &str, payload: &T) -> Result<Self, EnvelopeError> {
        let payload = serde_json::value::to_raw_value(payload)
            .map_err(|e| EnvelopeError::Payload(crate::redact::describe_json_error(&e)))?;
        Ok(Self::raw(msg_type, payload))
    }

    /// Like [`Self::new`] with an already encoded payload.
    pub fn raw(msg_type: &str, payload: Box<RawValue>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: MessageId::new(),
            to: None,
            msg_type: msg_type.to_owned(),
            principal: None,
            trace: TraceContext::current(),
            deadline_ms: None,
            reply_to: None,
            correlation_id: None,
            sent_at_ms: now_ms(),
            payload,
        }
    }

    pub fn to(mut self, actor: ActorId) -> Self {
        self.to = Some(actor);
        self
    }

    pub fn principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    pub fn trace(mut self, trace: TraceContext) -> Self {
        self.trace = trace;
        self
    }

    /// Deadline `within` from now.
    pub fn within(mut self, within: Duration) -> Self {
        self.deadline_ms = Some(now_ms() + within.as_millis() as u64);
        self
    }

    pub fn reply_to(mut self, topic: &str) -> Self {
        self.reply_to = Some(topic.to_owned());
        self
    }

    /// The reply to this message, in the same trace.
    pub fn reply(&self, payload: Box<RawValue>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: MessageId::new(),
            to: None,
            msg_type: format!("{}.reply", self.msg_type),
            principal: None,
            trace: match crate::telemetry::current_traceparent() {
                Some(traceparent) => TraceContext {
                    traceparent,
                    tracestate: self.trace.tracestate.clone(),
                },
                None => self.trace.child(),
            },
            deadline_ms: self.deadline_ms,
            reply_to: None,
            correlation_id: Some(self.id),
            sent_at_ms: now_ms(),
            payload,
        }
    }

    /// This envelope encoded once, to be sent (and sent again) as is: see
    /// [`Sealed`].
    pub fn seal(&self) -> Sealed {
        Sealed {
            id: self.id,
            to: self.to.clone(),
            body: self.encode(),
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        // Serialising our own struct with a RawValue payload cannot fail.
        serde_json::to_vec(self)
            .expect("an envelope always serialises")
            .into()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Version {
            v: u16,
        }
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| EnvelopeError::Malformed(crate::redact::describe_json_error(&e)))?;
        if version.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version.v));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| EnvelopeError::Malformed(crate::redact::describe_json_error(&e)))
    }

    /// Time left before the deadline (`None`: no deadline); zero when past.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline_ms
            .map(|d| Duration::from_millis(d.saturating_sub(now_ms())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_with_all_its_fields() {
        let env = Envelope::new("consult.send_chat", &serde_json::json!({"text": "hi"}))
            .unwrap()
            .to("consult/c-1".parse().unwrap())
            .principal(Principal {
                subject: "u-1".into(),
                role: crate::principal::Role::Patient,
            })
            .within(Duration::from_secs(5))
            .reply_to("reply.node-a");
        let back = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back.id, env.id);
        assert_eq!(back.to, env.to);
        assert_eq!(back.principal, env.principal);
        assert_eq!(back.trace, env.trace);
        assert_eq!(back.deadline_ms, env.deadline_ms);
        assert_eq!(back.reply_to.as_deref(), Some("reply.node-a"));
        assert_eq!(back.payload.get(), r#"{"text":"hi"}"#);
    }

    #[test]
    fn malformed_bytes_give_a_typed_error_that_does_not_quote_them() {
        let err = Envelope::decode(br#"{"v": 1, "id": "secret-patient-name"}"#).unwrap_err();
        assert!(matches!(err, EnvelopeError::Malformed(_)));
        assert!(!err.to_string().contains("secret-patient-name"), "{err}");
        assert!(matches!(
            Envelope::decode(b"not json"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut env = Envelope::new("x", &1).unwrap();
        env.v = 2;
        assert_eq!(
            Envelope::decode(&env.encode()).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn trace_context_is_w3c_shaped_and_children_keep_the_trace_id() {
        let root = TraceContext::new_root();
        let trace = root.trace_id().expect("well formed").to_owned();
        let child = root.child();
        assert_eq!(child.trace_id(), Some(trace.as_str()));
        assert_ne!(child.traceparent, root.traceparent);
        let bad = TraceContext {
            traceparent: "00-xyz-1-01".into(),
            tracestate: None,
        };
        assert_eq!(bad.trace_id(), None);
        assert!(bad.child().trace_id().is_some());
    }

    #[test]
    fn a_sealed_envelope_carries_its_encoding_and_hides_the_payload() {
        let env = Envelope::new("x", &"Jane Doe")
            .unwrap()
            .to("consult/c-1".parse().unwrap());
        let sealed = env.seal();
        assert_eq!(sealed.id(), env.id);
        assert_eq!(sealed.to(), env.to.as_ref());
        let back = Envelope::decode(sealed.body()).unwrap();
        assert_eq!((back.id, back.payload.get()), (env.id, r#""Jane Doe""#));
        // Clones share the bytes: a re-send encodes nothing again.
        assert_eq!(sealed.clone().body().as_ptr(), sealed.body().as_ptr());
        assert!(!format!("{sealed:?}").contains("Jane"));
    }

    #[test]
    fn debug_output_hides_the_payload() {
        let env = Envelope::new("x", &"Jane Doe, DOB 1970-01-01").unwrap();
        let shown = format!("{env:?}");
        assert!(!shown.contains("Jane"), "{shown}");
    }
}

//! The DeviceStream actor's signal processing, as pure parts: sample
//! validation ([`sample`]), minute and hour aggregates ([`aggregate`]), ECG
//! analysis ([`ecg`]: beats, signal quality, rhythm) and the alarm engine
//! ([`alarms`]); [`stream`] is the actor that feeds them and records what
//! they decide.

pub mod aggregate;
pub mod alarms;
pub mod ecg;
pub mod sample;
pub mod stream;

//! The DeviceStream actor's signal processing, as pure parts: sample
//! validation ([`sample`]), minute and hour aggregates ([`aggregate`]), R-peak
//! detection in ECG ([`ecg`]) and alert rules ([`alerts`]).

pub mod aggregate;
pub mod alerts;
pub mod ecg;
pub mod sample;
pub mod stream;

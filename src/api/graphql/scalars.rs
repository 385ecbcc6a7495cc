//! The API's own scalars: `DateTime` for every time (RFC 3339, UTC, in
//! milliseconds) and `Int64` for journal sequences and fencing epochs.
//! Internally both are integers (Unix milliseconds, a sequence), so the
//! domain keeps its types and only the edge converts.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time: an RFC 3339 string such as `2026-12-05T08:01:02.345Z`.
/// Answers are always UTC with milliseconds; inputs may carry any offset
/// and are normalised (sub-millisecond digits are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(pub i64);

impl DateTime {
    /// From Unix milliseconds.
    pub fn from_ms(ms: i64) -> Self {
        DateTime(ms)
    }

    /// From Unix milliseconds held unsigned (the journal's and the domain's).
    pub fn from_unix_ms(ms: u64) -> Self {
        DateTime(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Unix milliseconds.
    pub fn ms(self) -> i64 {
        self.0
    }

    /// Unix milliseconds, clamped at 0 for a time before 1970.
    pub fn unix_ms(self) -> u64 {
        u64::try_from(self.0).unwrap_or(0)
    }

    /// The RFC 3339 text (UTC, milliseconds).
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
                format!(
                    "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                )
            }
            // Outside the years 1-9999: cannot happen for a stored time.
            Err(_) => "9999-12-31T23:59:59.999Z".to_owned(),
        }
    }

    /// Parses RFC 3339 text with any offset.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| "expected an RFC 3339 time such as 2026-12-05T08:01:02.345Z".to_owned())?
            .to_offset(UtcOffset::UTC);
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .map(DateTime)
            .map_err(|_| "time out of range".to_owned())
    }
}

/// A point in time, RFC 3339 (for example `2026-12-05T08:01:02.345Z`).
/// Answers are UTC with milliseconds; inputs may carry an offset.
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => DateTime::parse(s).map_err(InputValueError::custom),
            _ => Err(InputValueError::custom(
                "expected an RFC 3339 time such as 2026-12-05T08:01:02.345Z",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_rfc3339())
    }
}

/// A 64-bit integer (a journal sequence, a fencing epoch), as a JSON
/// number: exact up to 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Int64(pub i64);

/// A 64-bit integer (a journal sequence, a fencing epoch), as a JSON
/// number; exact up to 2^53.
#[Scalar(name = "Int64")]
impl ScalarType for Int64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .map(Int64)
                .ok_or_else(|| InputValueError::custom("expected a whole number")),
            _ => Err(InputValueError::custom("expected a whole number")),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc_milliseconds_and_parse_back() {
        let t = DateTime::from_ms(1_796_457_662_345);
        assert_eq!(t.to_rfc3339(), "2026-12-05T08:01:02.345Z");
        assert_eq!(DateTime::parse("2026-12-05T08:01:02.345Z"), Ok(t));
        assert_eq!(
            DateTime::from_ms(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn offsets_are_normalised_and_garbage_is_refused() {
        assert_eq!(
            DateTime::parse("2026-12-05T09:01:02.345+01:00"),
            Ok(DateTime::from_ms(1_796_457_662_345))
        );
        assert_eq!(
            DateTime::parse("2026-12-05T08:01:02.3456789Z"),
            Ok(DateTime::from_ms(1_796_457_662_345))
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-05",
            "1796457662345",
            "2026-13-05T08:01:02Z",
        ] {
            assert!(DateTime::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_scalar_refuses_numbers() {
        assert!(<DateTime as ScalarType>::parse(Value::Number(5.into())).is_err());
        assert_eq!(
            <DateTime as ScalarType>::to_value(&DateTime::from_ms(0)),
            Value::String("1970-01-01T00:00:00.000Z".into())
        );
        assert_eq!(
            <Int64 as ScalarType>::parse(Value::Number(9_007_199_254_740_993i64.into())).ok(),
            Some(Int64(9_007_199_254_740_993))
        );
        assert!(<Int64 as ScalarType>::parse(Value::String("1".into())).is_err());
    }
}

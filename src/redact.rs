//! What must never print: secrets (keys, credentials in URLs) and the input a
//! parse error would quote (which may be PHI). `Display`, `Debug` and
//! `Serialize` of these types show only what is safe, with [`REDACTED`] in
//! place of a secret.
//!
//! Serialising writes the redacted form on purpose: the only serialisation
//! is `cardio config`, for people. So a value read back must not be taken for
//! the secret: deserialising refuses any text holding [`REDACTED`], and it
//! never quotes the text it refuses.

pub mod pseudonym;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What is shown in place of a secret. `<` and `>` never appear unescaped in
/// a URL, so a real URL is never mistaken for a redacted one.
pub const REDACTED: &str = "<redacted>";

/// Query and fragment parameters whose values are shown: they configure a
/// connection and hold no credential. Any other parameter's value is hidden
/// (`password`, `api_key`, `token`, … and names nobody foresaw).
const PLAIN_PARAMETERS: &[&str] = &[
    "application_name",
    "auth_mechanism",
    "cache",
    "channel_max",
    "connect_timeout",
    "connection_timeout",
    "dbname",
    "frame_max",
    "heartbeat",
    "host",
    "mode",
    "port",
    "sslmode",
    "sslrootcert",
    "user",
    "username",
];

/// A URL that may hold credentials; `Display`, `Debug` and `Serialize` hide
/// them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The real URL, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.split_once(':').map_or("", |(s, _)| s)
    }

    /// The URL with its user's password (or the whole user part when it is
    /// not a plain `name:password`), and every parameter value but the
    /// [`PLAIN_PARAMETERS`], replaced by [`REDACTED`].
    ///
    /// Passwords are often pasted unescaped, so a password may hold `/`, `?`,
    /// `#`, `:` or `@`: the user part runs to the *last* `@`, and whatever
    /// cannot be told apart is hidden. Hiding too much is safe; showing too
    /// much is not.
    fn redacted(&self) -> String {
        let url = self.0.as_str();
        let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| is_scheme(s)) else {
            // `scheme:opaque` (or no scheme at all): nothing says which part
            // is a secret, so only the scheme shows.
            return match url.split_once(':') {
                Some((scheme, "")) if is_scheme(scheme) => url.to_owned(),
                Some((scheme, _)) if is_scheme(scheme) => format!("{scheme}:{REDACTED}"),
                _ if url.is_empty() => String::new(),
                _ => REDACTED.to_owned(),
            };
        };
        let mut out = format!("{scheme}://");
        // Where the text after the user part starts: in the host, or already
        // in the query or fragment when the `@` was inside one of those.
        let (after, in_query, in_fragment) = match rest.rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) if is_plain_user(user) => {
                        out.push_str(user);
                        out.push(':');
                    }
                    _ => {}
                }
                out.push_str(REDACTED);
                out.push('@');
                (
                    &rest[at + 1..],
                    userinfo.contains('?'),
                    userinfo.contains('#'),
                )
            }
            None => (rest, false, false),
        };
        if in_fragment {
            out.push_str(REDACTED);
            return out;
        }
        let (before_fragment, fragment) = match after.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (after, None),
        };
        let (base, query) = if in_query {
            ("", Some(before_fragment))
        } else {
            match before_fragment.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (before_fragment, None),
            }
        };
        out.push_str(base);
        if let Some(query) = query {
            if !in_query {
                out.push('?');
            }
            out.push_str(&redact_parameters(query));
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(&redact_parameters(fragment));
        }
        out
    }
}

/// `a=1&password=x;b` with every value but the plain ones hidden (and a
/// part that is not `name=value` hidden whole).
fn redact_parameters(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (part, tail) = rest.split_at(end);
        match part.split_once('=') {
            Some((name, _)) if PLAIN_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) => {
                out.push_str(part)
            }
            Some((name, _)) if is_plain_name(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ if part.is_empty() => {}
            _ => out.push_str(REDACTED),
        }
        let Some(separator) = tail.chars().next() else {
            return out;
        };
        out.push(separator);
        rest = &tail[1..];
    }
}

fn is_scheme(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A user name that is only a name (not a piece of a password or a path).
fn is_plain_user(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%' | '+'))
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        secret_text(d, "a URL").map(SecretUrl)
    }
}

/// A secret (a key); `Display`, `Debug` and `Serialize` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        secret_text(d, "a string").map(Secret)
    }
}

/// A secret's text. serde's own errors quote the value they refuse
/// (`found unsigned int 1234`), so they are replaced by one that does not.
fn secret_text<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<String, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)
        .map_err(|_| D::Error::custom(format!("expected {what} (the value is not shown)")))?;
    if text.contains(REDACTED) {
        return Err(D::Error::custom(format!(
            "holds {REDACTED}, which `cardio config` prints in place of a secret: \
             set the real value"
        )));
    }
    Ok(text)
}

/// A serde error without the input it quotes (which may be PHI).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable input",
        Category::Syntax => "invalid JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        SecretUrl::new(url).to_string()
    }

    #[test]
    fn a_url_shows_its_user_host_and_path_but_not_its_password() {
        assert_eq!(
            shown("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:<redacted>@127.0.0.1:5672/%2f"
        );
        assert_eq!(shown("amqp://u:p@h/vhost"), "amqp://u:<redacted>@h/vhost");
        // Nothing secret: shown as it is.
        for plain in [
            "memory://",
            "sqlite://data/cardio.db",
            "postgres://db:5432/cardio?sslmode=require",
            "amqp://rabbit:5672/%2f?heartbeat=15",
            "http://otel-collector:4318",
        ] {
            assert_eq!(shown(plain), plain);
        }
    }

    #[test]
    fn a_password_holding_url_delimiters_is_hidden_whole() {
        for (url, secret, want) in [
            (
                "postgres://u:pa/ss@h/db",
                "pa/ss",
                "postgres://u:<redacted>@h/db",
            ),
            (
                "postgres://u:p@ss:w/rd@h:5432/db",
                "p@ss:w/rd",
                "postgres://u:<redacted>@h:5432/db",
            ),
            // A `?` or `#` could start a query: the host hides too.
            (
                "amqp://u:p?ss#w@h/v",
                "p?ss#w",
                "amqp://u:<redacted>@<redacted>",
            ),
            ("amqp://u:p:w@h/v", "p:w", "amqp://u:<redacted>@h/v"),
        ] {
            let out = shown(url);
            assert_eq!(out, want);
            assert!(!out.contains(secret), "{out}");
        }
    }

    #[test]
    fn credentials_in_parameters_are_hidden() {
        for (url, secret, want) in [
            (
                "postgres://h/db?user=u&password=s3cret",
                "s3cret",
                "postgres://h/db?user=u&password=<redacted>",
            ),
            (
                "postgres://h/db?sslmode=require&sslpassword=s3cret",
                "s3cret",
                "postgres://h/db?sslmode=require&sslpassword=<redacted>",
            ),
            (
                "http://collector:4318/?api_key=otlp-k3y",
                "otlp-k3y",
                "http://collector:4318/?api_key=<redacted>",
            ),
            (
                "http://collector:4318/#access_token=otlp-t0ken",
                "otlp-t0ken",
                "http://collector:4318/#access_token=<redacted>",
            ),
            // A name nobody foresaw is hidden too; so is a bare value.
            (
                "http://collector:4318/?x-honeycomb-team=t3am&t0ken",
                "t3am",
                "http://collector:4318/?x-honeycomb-team=<redacted>&<redacted>",
            ),
            // An `@` inside the query: everything from there on is hidden.
            (
                "postgres://h/db?user=a@b&password=s3cret",
                "s3cret",
                "postgres://<redacted>@<redacted>&password=<redacted>",
            ),
        ] {
            let out = shown(url);
            assert_eq!(out, want);
            assert!(!out.contains(secret), "{out}");
        }
    }

    #[test]
    fn a_token_as_user_name_and_urls_of_no_known_shape_are_hidden() {
        assert_eq!(
            shown("http://otlp-t0ken@collector:4318"),
            "http://<redacted>@collector:4318"
        );
        assert_eq!(
            shown("http://user:otlp-t0ken@collector:4318"),
            "http://user:<redacted>@collector:4318"
        );
        // No `://`: the part after the scheme may be anything.
        assert_eq!(shown("postgres:s3cret"), "postgres:<redacted>");
        assert_eq!(shown("cardio:s3cret@db/cardio"), "cardio:<redacted>");
        assert_eq!(shown("s3cret"), "<redacted>");
        assert_eq!(shown("s3cret@h://x"), "<redacted>");
        assert_eq!(shown(""), "");
    }

    #[test]
    fn secrets_hide_in_debug_and_serialisation_and_are_not_read_back() {
        let url = SecretUrl::new("amqp://u:s3cret@h/");
        let key = Secret::new("k3y-0123456789-0123456789-0123456789");
        for text in [
            format!("{url:?}"),
            format!("{key:?} {key}"),
            serde_json::to_string(&url).unwrap(),
            serde_json::to_string(&key).unwrap(),
        ] {
            assert!(!text.contains("s3cret") && !text.contains("k3y"), "{text}");
        }
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"<redacted>\"");
        // What was printed, read back: refused, not used as the password.
        let printed = serde_json::to_string(&url).unwrap();
        let err = serde_json::from_str::<SecretUrl>(&printed).unwrap_err();
        assert!(err.to_string().contains("<redacted>"), "{err}");
        assert!(serde_json::from_str::<Secret>("\"<redacted>\"").is_err());
        // A wrong type is refused without quoting the value.
        let err = serde_json::from_str::<Secret>("123456789").unwrap_err();
        assert!(!err.to_string().contains("123456789"), "{err}");
        let read: SecretUrl = serde_json::from_str("\"amqp://u:s3cret@h/\"").unwrap();
        assert_eq!(read.expose(), "amqp://u:s3cret@h/");
    }
}

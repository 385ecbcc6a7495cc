//! Authentication: bearer JWTs naming a subject and a role.
//!
//! Tokens are HS256 with `CARDIO_JWT_SECRET`, or RS256 checked against the
//! RSA public key in `CARDIO_JWT_PUBLIC_KEY` (minted with the private key in
//! `CARDIO_JWT_PRIVATE_KEY`, when this node mints at all), or RS256 checked
//! against the keys of a JWKS (`CARDIO_JWT_JWKS`, a file, or
//! `CARDIO_OIDC_JWKS_URL`, an identity provider's JWKS endpoint, fetched at
//! start and every [`JWKS_REFRESH`] through [`fetch_jwks`]; the token's `kid`
//! picks the key).
//!
//! Claims: `sub` (an opaque id, never a name), the role (claim `role` with
//! the role's name by default; with OIDC a configurable claim, string or
//! array, dotted for nesting, and a map from its values to roles), `exp`
//! (required), `iat`, `jti` (the token's id, for revocation; `cardio token`
//! mints one), `iss` and `aud` (`cardio` unless configured). With an MFA
//! requirement configured, a clinician's or admin's token must carry an
//! accepted `acr` or one of the accepted `amr` values. The clock leeway is
//! 5 s. The lifetime is capped by `exp` itself (`exp` ≤ now + [`MAX_TTL`] +
//! leeway), not by trusting `iat`.
//!
//! Every failure is one typed [`AuthError`] whose code is `UNAUTHENTICATED`
//! (`UNAVAILABLE` when the access state cannot be read) and whose message
//! never quotes the token.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;
use crate::config::Config;
use crate::principal::{Principal, Role};

mod jwks;
mod policy;

pub use jwks::fetch_jwks;
use jwks::jwks_keys;
pub use policy::Policy;

const ISSUER: &str = "cardio";
const AUDIENCE: &str = "cardio";
const LEEWAY_S: u64 = 5;
/// Longest lifetime a token may have: a leaked token, or a subscription
/// opened with one, does not outlive a day. Checked on `exp` itself.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often a JWKS fetched from a URL is fetched again (key rotation).
pub const JWKS_REFRESH: Duration = Duration::from_secs(600);

/// Why a request is not authenticated. The message is safe to return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is not a valid cardio token: {0}")]
    Malformed(String),
    #[error("this node has no key to {0} tokens (set CARDIO_JWT_SECRET or the RS256 key files)")]
    NoKey(&'static str),
    #[error("the key cannot be used: {0}")]
    BadKey(String),
    #[error("this role needs multi-factor authentication (acr/amr)")]
    MfaRequired,
    #[error("the token was revoked or its session ended")]
    Revoked,
    /// The access state could not be read or written (the database away):
    /// not the caller's fault, so `UNAVAILABLE`.
    #[error("the access state is unavailable; try again")]
    Unavailable,
}

impl AuthError {
    /// The code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unavailable => "UNAVAILABLE",
            _ => "UNAUTHENTICATED",
        }
    }

    /// A short reason without any detail, for the audit trail's summaries.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::BadSignature => "bad_signature",
            AuthError::Malformed(_) => "malformed",
            AuthError::NoKey(_) => "no_key",
            AuthError::BadKey(_) => "bad_key",
            AuthError::MfaRequired => "mfa_required",
            AuthError::Revoked => "revoked",
            AuthError::Unavailable => "unavailable",
        }
    }
}

/// What `cardio` mints.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: u64,
    exp: u64,
    iss: String,
    aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// What is read from any token (the role claim is found by name in `rest`).
#[derive(Debug, Deserialize)]
struct Incoming {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    acr: Option<String>,
    #[serde(default)]
    amr: Option<Vec<String>>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

pub use crate::config::access::{parse_role_map, role_named};

/// A verified token: who, until when, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issue time, Unix seconds (`exp` − lifetime cap when absent).
    pub iat: u64,
    /// The token's id, if it has one (revocable one by one).
    pub jti: Option<String>,
}

/// Verifies (and, with a signing key, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    /// From a JWKS: keys by `kid` (replaced when a JWKS URL is fetched again).
    by_kid: Arc<RwLock<Vec<(String, DecodingKey)>>>,
    /// Where the JWKS came from, if from a URL.
    jwks_url: Option<String>,
    /// When the JWKS was last fetched again for an unknown `kid` (Unix ms):
    /// at most once per [`JWKS_MIN_REFETCH`], so forged kids cannot make the
    /// node hammer the provider.
    refetched_ms: Arc<std::sync::atomic::AtomicU64>,
    policy: Policy,
}

/// Shortest time between two fetches of the JWKS for unknown `kid`s.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

impl Authenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            by_kid: Arc::default(),
            jwks_url: None,
            refetched_ms: Arc::default(),
            policy: Policy::default(),
        }
    }

    /// RS256 against the RSA keys of a JWKS document (verification only).
    pub fn jwks(document: &[u8]) -> Result<Authenticator, AuthError> {
        let keys = jwks_keys(document)?;
        Ok(Authenticator {
            algorithm: Algorithm::RS256,
            decoding: keys[0].1.clone(),
            encoding: None,
            by_kid: Arc::new(RwLock::new(keys)),
            jwks_url: None,
            refetched_ms: Arc::default(),
            policy: Policy::default(),
        })
    }

    /// RS256 against the JWKS at `url`, fetched now (and again by
    /// [`Self::refresh_jwks`]).
    pub async fn jwks_url(url: &str) -> Result<Authenticator, AuthError> {
        let mut auth = Authenticator::jwks(&fetch_jwks(url).await?)?;
        auth.jwks_url = Some(url.to_owned());
        Ok(auth)
    }

    /// Fetches the JWKS again from its URL (no URL: nothing to do). On
    /// failure the keys in use stay.
    pub async fn refresh_jwks(&self) -> Result<(), AuthError> {
        let Some(url) = &self.jwks_url else {
            return Ok(());
        };
        let keys = jwks_keys(&fetch_jwks(url).await?)?;
        *self.by_kid.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Whether the keys come from a URL (to be refreshed).
    pub fn fetches_keys(&self) -> bool {
        self.jwks_url.is_some()
    }

    /// The same keys under `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Authenticator {
        self.policy = policy;
        self
    }

    /// RS256: verifies with `public_pem`; mints only with `private_pem`.
    pub fn rs256(
        public_pem: &[u8],
        private_pem: Option<&[u8]>,
    ) -> Result<Authenticator, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthError::BadKey(e.to_string());
        Ok(Authenticator {
            algorithm: Algorithm::RS256,
            decoding: DecodingKey::from_rsa_pem(public_pem).map_err(bad)?,
            encoding: private_pem
                .map(EncodingKey::from_rsa_pem)
                .transpose()
                .map_err(bad)?,
            by_kid: Arc::default(),
            jwks_url: None,
            refetched_ms: Arc::default(),
            policy: Policy::default(),
        })
    }

    /// The configured authenticator: a JWKS URL, else a JWKS file, else
    /// RS256 if a public key file is set, else HS256 if a secret is;
    /// `Ok(None)` if none. Fetches the JWKS URL.
    pub async fn from_config_async(config: &Config) -> Result<Option<Authenticator>, AuthError> {
        if let Some(url) = &config.oidc_jwks_url {
            let policy = Policy::from_config(config)?;
            return Ok(Some(
                Authenticator::jwks_url(url).await?.with_policy(policy),
            ));
        }
        Authenticator::from_config(config)
    }

    /// The configured authenticator from files and secrets (a JWKS URL is
    /// fetched by [`Self::from_config_async`] only).
    pub fn from_config(config: &Config) -> Result<Option<Authenticator>, AuthError> {
        let policy = Policy::from_config(config)?;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| AuthError::BadKey(format!("{}: {e}", p.display())))
        };
        if let Some(jwks) = &config.jwt_jwks {
            return Authenticator::jwks(&read(jwks)?).map(|a| Some(a.with_policy(policy)));
        }
        if let Some(public) = &config.jwt_public_key {
            let private = config.jwt_private_key.as_deref().map(read).transpose()?;
            return Authenticator::rs256(&read(public)?, private.as_deref())
                .map(|a| Some(a.with_policy(policy)));
        }
        if let Some(secret) = &config.jwt_secret {
            return Ok(Some(
                Authenticator::hs256(secret.expose().as_bytes()).with_policy(policy),
            ));
        }
        // The embedded defaults with no key configured: the node's own key
        // file, once `cardio serve` has created it (issue 14).
        match config.local_token_key_file() {
            Some(path) if path.exists() => {
                let (key, _) = crate::crypto::token_key::open_or_create(&path, false)
                    .map_err(|e| AuthError::BadKey(e.to_string()))?;
                Ok(Some(Authenticator::hs256(&key).with_policy(policy)))
            }
            _ => Ok(None),
        }
    }

    /// A token for `principal`, valid for `ttl`, with a fresh `jti`.
    pub fn mint(&self, principal: &Principal, ttl: Duration) -> Result<String, AuthError> {
        if principal.role == Role::System {
            return Err(AuthError::Malformed("the system role has no tokens".into()));
        }
        let key = self.encoding.as_ref().ok_or(AuthError::NoKey("mint"))?;
        let now = unix_ms() / 1000;
        let claims = Claims {
            sub: principal.subject.clone(),
            role: principal.role,
            iat: now,
            exp: now + ttl.min(MAX_TTL).as_secs().max(1),
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
            nbf: None,
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::BadKey(e.to_string()))
    }

    /// The principal a token names, if it verifies and has not expired.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_token(token).map(|v| v.principal)
    }

    /// [`Self::verify`], with everything the token says about itself.
    pub fn verify_token(&self, token: &str) -> Result<Verified, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = LEEWAY_S;
        validation.set_issuer(&[&self.policy.issuer]);
        validation.set_audience(&[&self.policy.audience]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let kid_key;
        let key = {
            let by_kid = self.by_kid.read().unwrap_or_else(|e| e.into_inner());
            if by_kid.is_empty() {
                &self.decoding
            } else {
                let kid = jsonwebtoken::decode_header(token)
                    .ok()
                    .and_then(|h| h.kid)
                    .ok_or_else(|| AuthError::Malformed("the token names no key (kid)".into()))?;
                kid_key = by_kid
                    .iter()
                    .find(|(k, _)| *k == kid)
                    .map(|(_, key)| key.clone())
                    .ok_or(AuthError::BadSignature)?;
                &kid_key
            }
        };
        let data =
            jsonwebtoken::decode::<Incoming>(token, key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                        AuthError::BadSignature
                    }
                    ErrorKind::InvalidIssuer => AuthError::Malformed("wrong issuer".into()),
                    ErrorKind::InvalidAudience => AuthError::Malformed("wrong audience".into()),
                    ErrorKind::ImmatureSignature => AuthError::Malformed("not valid yet".into()),
                    ErrorKind::MissingRequiredClaim(c) => {
                        AuthError::Malformed(format!("claim {c:?} is missing"))
                    }
                    ErrorKind::Json(_) => AuthError::Malformed("claims of the wrong shape".into()),
                    _ => AuthError::Malformed("not a JWT".into()),
                }
            })?;
        let c = data.claims;
        let now = unix_ms() / 1000;
        let too_long = || {
            AuthError::Malformed(format!(
                "the token lives longer than {} h",
                MAX_TTL.as_secs() / 3600
            ))
        };
        // The cap holds on `exp` itself: `iat` is the token's word only.
        if c.exp > now + MAX_TTL.as_secs() + LEEWAY_S {
            return Err(too_long());
        }
        if c.iat
            .is_some_and(|iat| c.exp.saturating_sub(iat) > MAX_TTL.as_secs())
        {
            return Err(too_long());
        }
        let role = self.policy.role_of(&c.rest)?;
        if matches!(role, Role::Clinician | Role::Admin)
            && self.policy.mfa_required()
            && !self.policy.has_mfa(&c)
        {
            return Err(AuthError::MfaRequired);
        }
        if !crate::address::valid_id(&c.sub) {
            return Err(AuthError::Malformed("the subject is not a valid id".into()));
        }
        if c.jti
            .as_ref()
            .is_some_and(|j| j.is_empty() || j.len() > 128)
        {
            return Err(AuthError::Malformed(
                "the token id (jti) is not valid".into(),
            ));
        }
        Ok(Verified {
            principal: Principal {
                subject: c.sub,
                role,
            },
            exp: c.exp,
            iat: c.iat.unwrap_or(c.exp.saturating_sub(MAX_TTL.as_secs())),
            jti: c.jti,
        })
    }

    /// [`Self::verify`] for an `Authorization` header value (`Bearer …`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.verify_header_token(header).map(|v| v.principal)
    }

    /// [`Self::verify_header_token`]; a token naming a `kid` the JWKS (from a
    /// URL) does not have makes the node fetch the JWKS again first (the
    /// provider rotated its keys), at most once per [`JWKS_MIN_REFETCH`].
    pub async fn verify_header_fetching(
        &self,
        header: Option<&str>,
    ) -> Result<Verified, AuthError> {
        let first = self.verify_header_token(header);
        if first != Err(AuthError::BadSignature) || self.jwks_url.is_none() {
            return first;
        }
        let kid = header
            .and_then(|h| h.trim().split_once(' ').map(|(_, t)| t.trim().to_owned()))
            .and_then(|t| jsonwebtoken::decode_header(&t).ok())
            .and_then(|h| h.kid);
        let known = kid.as_ref().is_some_and(|kid| {
            self.by_kid
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(k, _)| k == kid)
        });
        let now = unix_ms();
        let last = self.refetched_ms.load(std::sync::atomic::Ordering::Acquire);
        if known || kid.is_none() || now.saturating_sub(last) < JWKS_MIN_REFETCH.as_millis() as u64
        {
            return first;
        }
        self.refetched_ms
            .store(now, std::sync::atomic::Ordering::Release);
        if let Err(e) = self.refresh_jwks().await {
            tracing::warn!(error = %e, "the JWKS was not fetched again for an unknown key id");
            return first;
        }
        self.verify_header_token(header)
    }

    /// [`Self::verify_header`], with everything the token says.
    pub fn verify_header_token(&self, header: Option<&str>) -> Result<Verified, AuthError> {
        let value = header.ok_or(AuthError::Missing)?.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                AuthError::Malformed("expected `Authorization: Bearer <token>`".into())
            })?;
        self.verify_token(token)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";

    fn clinician() -> Principal {
        Principal {
            subject: "dr-7".into(),
            role: Role::Clinician,
        }
    }

    #[test]
    fn a_minted_token_verifies_to_its_principal() {
        let auth = Authenticator::hs256(KEY);
        let token = auth.mint(&clinician(), Duration::from_secs(3600)).unwrap();
        assert_eq!(auth.verify(&token).unwrap(), clinician());
        assert_eq!(
            auth.verify_header(Some(&format!("Bearer {token}")))
                .unwrap(),
            clinician()
        );
    }

    #[test]
    fn missing_expired_forged_and_malformed_tokens_are_refused_by_kind() {
        let auth = Authenticator::hs256(KEY);
        assert_eq!(auth.verify_header(None), Err(AuthError::Missing));
        assert_eq!(auth.verify(""), Err(AuthError::Missing));
        assert!(matches!(
            auth.verify("not.a.jwt"),
            Err(AuthError::Malformed(_))
        ));
        let other = Authenticator::hs256(b"another key, as long as the first one!!");
        let forged = other.mint(&clinician(), Duration::from_secs(60)).unwrap();
        assert_eq!(auth.verify(&forged), Err(AuthError::BadSignature));
        // Expired well past the leeway.
        let claims = Claims {
            sub: "dr-7".into(),
            role: Role::Clinician,
            iat: 1,
            exp: unix_ms() / 1000 - 60,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            nbf: None,
            jti: None,
        };
        let old = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(KEY))
            .unwrap();
        assert_eq!(auth.verify(&old), Err(AuthError::Expired));
        // The system role is internal; a token may not claim it.
        let claims = Claims {
            role: Role::System,
            exp: unix_ms() / 1000 + 60,
            ..claims
        };
        let system =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(KEY))
                .unwrap();
        assert!(matches!(auth.verify(&system), Err(AuthError::Malformed(_))));
        // Every error has the one code, and none quotes the token.
        for e in [
            auth.verify(&forged),
            auth.verify(&old),
            auth.verify("x.y.z"),
        ] {
            let e = e.unwrap_err();
            assert_eq!(e.code(), "UNAUTHENTICATED");
            assert!(!e.to_string().contains("eyJ"), "{e}");
        }
    }

    #[test]
    fn tokens_name_the_audience_and_live_a_day_at_most() {
        let auth = Authenticator::hs256(KEY);
        let sign = |claims: &serde_json::Value| {
            jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(KEY))
                .unwrap()
        };
        let now = unix_ms() / 1000;
        let base = serde_json::json!({"sub": "dr-7", "role": "clinician", "iat": now, "exp": now + 60, "iss": "cardio", "aud": "cardio"});
        assert!(auth.verify(&sign(&base)).is_ok());
        let mut long = base.clone();
        long["exp"] = serde_json::json!(now + 2 * 24 * 3600);
        assert!(matches!(
            auth.verify(&sign(&long)),
            Err(AuthError::Malformed(_))
        ));
        let mut other = base.clone();
        other["aud"] = serde_json::json!("another-service");
        assert!(matches!(
            auth.verify(&sign(&other)),
            Err(AuthError::Malformed(_))
        ));
        let mut early = base.clone();
        early["nbf"] = serde_json::json!(now + 600);
        assert!(matches!(
            auth.verify(&sign(&early)),
            Err(AuthError::Malformed(_))
        ));
        // Minting caps the lifetime too.
        let token = auth
            .mint(&clinician(), Duration::from_secs(7 * 24 * 3600))
            .unwrap();
        assert!(auth.verify(&token).is_ok());
    }

    #[test]
    fn an_hs256_token_is_refused_where_rs256_is_configured() {
        // An attacker signing with the public key as an HMAC secret must fail.
        let hs = Authenticator::hs256(KEY);
        let token = hs.mint(&clinician(), Duration::from_secs(60)).unwrap();
        let rs = Authenticator {
            algorithm: Algorithm::RS256,
            decoding: DecodingKey::from_secret(KEY),
            encoding: None,
            by_kid: Arc::default(),
            jwks_url: None,
            refetched_ms: Arc::default(),
            policy: Policy::default(),
        };
        assert_eq!(rs.verify(&token), Err(AuthError::BadSignature));
        assert_eq!(
            rs.mint(&clinician(), Duration::from_secs(60)),
            Err(AuthError::NoKey("mint"))
        );
    }

    #[test]
    fn the_lifetime_cap_holds_on_exp_not_on_iat() {
        let auth = Authenticator::hs256(KEY);
        let now = unix_ms() / 1000;
        let exp = now + 10 * 365 * 24 * 3600;
        let claims = serde_json::json!({"sub": "dr-7", "role": "clinician", "iat": exp - 60, "exp": exp, "iss": "cardio", "aud": "cardio"});
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(KEY))
                .unwrap();
        assert!(
            matches!(auth.verify(&token), Err(AuthError::Malformed(m)) if m.contains("longer"))
        );
        // Without iat too.
        let claims = serde_json::json!({"sub": "dr-7", "role": "clinician", "exp": exp, "iss": "cardio", "aud": "cardio"});
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(KEY))
                .unwrap();
        assert!(auth.verify(&token).is_err());
    }

    #[test]
    fn minted_tokens_carry_a_fresh_jti() {
        let auth = Authenticator::hs256(KEY);
        let a = auth.mint(&clinician(), Duration::from_secs(60)).unwrap();
        let b = auth.mint(&clinician(), Duration::from_secs(60)).unwrap();
        let (a, b) = (
            auth.verify_token(&a).unwrap(),
            auth.verify_token(&b).unwrap(),
        );
        assert!(a.jti.is_some() && a.jti != b.jti);
    }

    #[test]
    fn issuer_audience_role_claim_and_mfa_follow_the_policy() {
        let policy = Policy {
            issuer: "https://idp.example".into(),
            audience: "cardio-api".into(),
            role_claim: "realm.groups".into(),
            role_map: parse_role_map("cardio-doctors=clinician,cardio-admins=admin,pts=patient")
                .unwrap(),
            mfa_acr: vec!["urn:mfa".into()],
            mfa_amr: vec!["otp".into(), "hwk".into()],
        };
        let auth = Authenticator::hs256(KEY).with_policy(policy);
        let now = unix_ms() / 1000;
        let sign = |v: serde_json::Value| {
            jsonwebtoken::encode(&Header::default(), &v, &EncodingKey::from_secret(KEY)).unwrap()
        };
        let base = serde_json::json!({"sub": "dr-7", "iat": now, "exp": now + 60,
            "iss": "https://idp.example", "aud": "cardio-api",
            "realm": {"groups": ["staff", "cardio-doctors"]}, "amr": ["pwd", "otp"]});
        let v = auth.verify_token(&sign(base.clone())).unwrap();
        assert_eq!(v.principal.role, Role::Clinician);
        let mut no_mfa = base.clone();
        no_mfa["amr"] = serde_json::json!(["pwd"]);
        assert_eq!(
            auth.verify(&sign(no_mfa.clone())),
            Err(AuthError::MfaRequired)
        );
        let mut acr = no_mfa.clone();
        acr["acr"] = serde_json::json!("urn:mfa");
        assert!(auth.verify(&sign(acr)).is_ok());
        // A patient needs no MFA.
        let mut patient = no_mfa.clone();
        patient["realm"] = serde_json::json!({"groups": ["pts"]});
        assert_eq!(auth.verify(&sign(patient)).unwrap().role, Role::Patient);
        // Two roles at once: refused (separation of duties).
        let mut both = base.clone();
        both["realm"] = serde_json::json!({"groups": ["cardio-doctors", "cardio-admins"]});
        assert!(matches!(
            auth.verify(&sign(both)),
            Err(AuthError::Malformed(_))
        ));
        let mut iss = base.clone();
        iss["iss"] = serde_json::json!("cardio");
        assert!(matches!(
            auth.verify(&sign(iss)),
            Err(AuthError::Malformed(_))
        ));
        let mut aud = base.clone();
        aud["aud"] = serde_json::json!("cardio");
        assert!(matches!(
            auth.verify(&sign(aud)),
            Err(AuthError::Malformed(_))
        ));
        let mut unmapped = base;
        unmapped["realm"] = serde_json::json!({"groups": ["clinician"]});
        assert!(matches!(
            auth.verify(&sign(unmapped)),
            Err(AuthError::Malformed(_))
        ));
    }
}

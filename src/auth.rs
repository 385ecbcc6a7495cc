//! Authentication: bearer JWTs naming a subject and a role.
//!
//! Tokens are HS256 with `CARDIO_JWT_SECRET`, or RS256 checked against the
//! RSA public key in `CARDIO_JWT_PUBLIC_KEY` (minted with the private key in
//! `CARDIO_JWT_PRIVATE_KEY`, when this node mints at all), or RS256 checked
//! against the keys of a JWKS file (`CARDIO_JWT_JWKS`, as an identity
//! provider publishes them; the token's `kid` picks the key). Claims: `sub` (an
//! opaque id, never a name), `role` (`patient`, `clinician`, `ops`, `admin`),
//! `iat`, `exp` (required), `iss` = `cardio`. The clock leeway is 5 s.
//!
//! Every failure is one typed [`AuthError`] whose code is `UNAUTHENTICATED`
//! and whose message never quotes the token.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;
use crate::config::Config;
use crate::principal::{Principal, Role};

const ISSUER: &str = "cardio";
const AUDIENCE: &str = "cardio";
const LEEWAY_S: u64 = 5;
/// Longest lifetime (`exp` − `iat`) a token may have: a leaked token, or a
/// subscription opened with one, does not outlive a day.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

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
}

impl AuthError {
    /// The code clients see.
    pub fn code(&self) -> &'static str {
        "UNAUTHENTICATED"
    }
}

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
}

/// Verifies (and, with a signing key, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    /// From a JWKS: more keys, by `kid`.
    by_kid: Vec<(String, DecodingKey)>,
}

impl Authenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            by_kid: Vec::new(),
        }
    }

    /// RS256 against the RSA keys of a JWKS document (verification only).
    pub fn jwks(document: &[u8]) -> Result<Authenticator, AuthError> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(document)
            .map_err(|e| AuthError::BadKey(format!("not a JWKS document: {e}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let rsa = matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
            );
            let rs256 = jwk
                .common
                .key_algorithm
                .is_none_or(|a| a == jsonwebtoken::jwk::KeyAlgorithm::RS256);
            let signing = jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
            if let (true, true, true, Some(kid)) = (rsa, rs256, signing, &jwk.common.key_id) {
                let key =
                    DecodingKey::from_jwk(jwk).map_err(|e| AuthError::BadKey(e.to_string()))?;
                keys.push((kid.clone(), key));
            }
        }
        let Some((_, first)) = keys.first() else {
            return Err(AuthError::BadKey(
                "the JWKS has no RS256 key with a kid".into(),
            ));
        };
        Ok(Authenticator {
            algorithm: Algorithm::RS256,
            decoding: first.clone(),
            encoding: None,
            by_kid: keys,
        })
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
            by_kid: Vec::new(),
        })
    }

    /// The configured authenticator: RS256 if a public key file is set, else
    /// HS256 if a secret is; `Ok(None)` if neither.
    pub fn from_config(config: &Config) -> Result<Option<Authenticator>, AuthError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| AuthError::BadKey(format!("{}: {e}", p.display())))
        };
        if let Some(jwks) = &config.jwt_jwks {
            return Authenticator::jwks(&read(jwks)?).map(Some);
        }
        if let Some(public) = &config.jwt_public_key {
            let private = config.jwt_private_key.as_deref().map(read).transpose()?;
            return Authenticator::rs256(&read(public)?, private.as_deref()).map(Some);
        }
        Ok(config
            .jwt_secret
            .as_ref()
            .map(|s| Authenticator::hs256(s.expose().as_bytes())))
    }

    /// A token for `principal`, valid for `ttl`.
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
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            nbf: None,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::BadKey(e.to_string()))
    }

    /// The principal a token names, if it verifies and has not expired.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_until(token).map(|(p, _)| p)
    }

    /// [`Self::verify`], with the token's expiry (Unix seconds).
    pub fn verify_until(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = LEEWAY_S;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let key = if self.by_kid.is_empty() {
            &self.decoding
        } else {
            let kid = jsonwebtoken::decode_header(token)
                .ok()
                .and_then(|h| h.kid)
                .ok_or_else(|| AuthError::Malformed("the token names no key (kid)".into()))?;
            self.by_kid
                .iter()
                .find(|(k, _)| *k == kid)
                .map(|(_, key)| key)
                .ok_or(AuthError::BadSignature)?
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::Malformed("wrong issuer".into()),
            ErrorKind::InvalidAudience => AuthError::Malformed("wrong audience".into()),
            ErrorKind::ImmatureSignature => AuthError::Malformed("not valid yet".into()),
            ErrorKind::MissingRequiredClaim(c) => {
                AuthError::Malformed(format!("claim {c:?} is missing"))
            }
            ErrorKind::Json(_) => AuthError::Malformed("claims of the wrong shape".into()),
            _ => AuthError::Malformed("not a JWT".into()),
        })?;
        let c = data.claims;
        if c.exp.saturating_sub(c.iat) > MAX_TTL.as_secs() {
            return Err(AuthError::Malformed(format!(
                "the token lives longer than {} h",
                MAX_TTL.as_secs() / 3600
            )));
        }
        if c.role == Role::System {
            return Err(AuthError::Malformed("the system role has no tokens".into()));
        }
        if !crate::address::valid_id(&c.sub) {
            return Err(AuthError::Malformed("the subject is not a valid id".into()));
        }
        Ok((
            Principal {
                subject: c.sub,
                role: c.role,
            },
            c.exp,
        ))
    }

    /// [`Self::verify`] for an `Authorization` header value (`Bearer …`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.verify_header_until(header).map(|(p, _)| p)
    }

    /// [`Self::verify_header`], with the token's expiry (Unix seconds).
    pub fn verify_header_until(&self, header: Option<&str>) -> Result<(Principal, u64), AuthError> {
        let value = header.ok_or(AuthError::Missing)?.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                AuthError::Malformed("expected `Authorization: Bearer <token>`".into())
            })?;
        self.verify_until(token)
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
            by_kid: Vec::new(),
        };
        assert_eq!(rs.verify(&token), Err(AuthError::BadSignature));
        assert_eq!(
            rs.mint(&clinician(), Duration::from_secs(60)),
            Err(AuthError::NoKey("mint"))
        );
    }
}

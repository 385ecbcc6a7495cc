//! An identity provider's keys: a JWKS document fetched over HTTP(S), and
//! the RS256 signing keys with a `kid` read from it.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::DecodingKey;

use super::AuthError;

/// Fetches a JWKS document over HTTP(S) (an https URL is verified against
/// the public roots). The one place keys are fetched from the network.
pub async fn fetch_jwks(url: &str) -> Result<Vec<u8>, AuthError> {
    let url = url.to_owned();
    // awc lives on the current thread: fetch there.
    let fetched = actix_rt::spawn(async move {
        let builder = awc::Client::builder().timeout(Duration::from_secs(10));
        let client = if url.starts_with("https://") {
            // The provider is verified against the public roots; a failure
            // is an error, never a fall-back to plain HTTP.
            let tls = crate::tls::client_config(None, None)
                .map_err(|e| AuthError::BadKey(format!("cannot set up TLS: {e}")))?;
            builder
                .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
                .finish()
        } else {
            builder.finish()
        };
        let mut res = client
            .get(&url)
            .send()
            .await
            .map_err(|e| AuthError::BadKey(format!("cannot fetch the JWKS: {e}")))?;
        if !res.status().is_success() {
            return Err(AuthError::BadKey(format!(
                "the JWKS endpoint answered {}",
                res.status()
            )));
        }
        res.body()
            .limit(1 << 20)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| AuthError::BadKey(format!("cannot read the JWKS: {e}")))
    })
    .await;
    fetched.map_err(|_| AuthError::BadKey("the JWKS fetch stopped".into()))?
}

pub(super) fn jwks_keys(document: &[u8]) -> Result<Vec<(String, DecodingKey)>, AuthError> {
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
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::BadKey(e.to_string()))?;
            keys.push((kid.clone(), key));
        }
    }
    if keys.is_empty() {
        return Err(AuthError::BadKey(
            "the JWKS has no RS256 key with a kid".into(),
        ));
    }
    Ok(keys)
}

//! What a token must say besides its signature: issuer, audience, the role
//! claim and its map to roles, and the MFA requirement (from the `oidc_*`
//! settings, or cardio's own defaults).

use super::{parse_role_map, role_named, AuthError, Incoming, AUDIENCE, ISSUER};
use crate::config::Config;
use crate::principal::Role;

/// What a token must say besides its signature: issuer, audience, where
/// the role is and how its values map to roles, and the MFA requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub issuer: String,
    pub audience: String,
    /// The claim naming the role (`a.b` reaches into objects).
    pub role_claim: String,
    /// Claim value → role; empty: the values are the roles' names.
    pub role_map: Vec<(String, Role)>,
    /// `acr` values that count as multi-factor.
    pub mfa_acr: Vec<String>,
    /// `amr` values any of which counts as multi-factor.
    pub mfa_amr: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            role_claim: "role".into(),
            role_map: Vec::new(),
            mfa_acr: Vec::new(),
            mfa_amr: Vec::new(),
        }
    }
}

fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Policy {
    /// The policy `config` asks for.
    pub fn from_config(config: &Config) -> Result<Policy, AuthError> {
        Ok(Policy {
            issuer: config.oidc_issuer.clone().unwrap_or_else(|| ISSUER.into()),
            audience: config
                .oidc_audience
                .clone()
                .unwrap_or_else(|| AUDIENCE.into()),
            role_claim: config.oidc_role_claim.clone(),
            role_map: parse_role_map(config.oidc_role_map.as_deref().unwrap_or(""))
                .map_err(AuthError::BadKey)?,
            mfa_acr: list(&config.oidc_mfa_acr),
            mfa_amr: match (
                &config.oidc_jwks_url,
                &config.oidc_mfa_acr,
                &config.oidc_mfa_amr,
            ) {
                // An identity provider without a stated requirement: RFC
                // 8176's `mfa` (never no requirement at all).
                (Some(_), None, None) => vec!["mfa".into()],
                _ => list(&config.oidc_mfa_amr),
            },
        })
    }

    pub(super) fn role_of(
        &self,
        rest: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Role, AuthError> {
        let mut parts = self.role_claim.split('.');
        let first = parts.next().unwrap_or("role");
        let mut value = rest.get(first);
        for p in parts {
            value = value.and_then(|v| v.get(p));
        }
        let values: Vec<&str> = match value {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => return Err(AuthError::Malformed("claim \"role\" is missing".into())),
        };
        let mut roles: Vec<Role> = values
            .iter()
            .filter_map(|v| {
                if self.role_map.is_empty() {
                    role_named(v)
                } else {
                    self.role_map.iter().find(|(k, _)| k == v).map(|(_, r)| *r)
                }
            })
            .collect();
        roles.sort_by_key(|r| *r as u8);
        roles.dedup();
        match roles.as_slice() {
            [one] => Ok(*one),
            [] => Err(AuthError::Malformed("the token names no known role".into())),
            // Separation of duties: one identity, one role.
            _ => Err(AuthError::Malformed(
                "the token names more than one role".into(),
            )),
        }
    }

    pub(super) fn mfa_required(&self) -> bool {
        !self.mfa_acr.is_empty() || !self.mfa_amr.is_empty()
    }

    pub(super) fn has_mfa(&self, c: &Incoming) -> bool {
        let acr = c
            .acr
            .as_ref()
            .is_some_and(|a| self.mfa_acr.iter().any(|x| x == a));
        let amr = c
            .amr
            .as_ref()
            .is_some_and(|m| m.iter().any(|a| self.mfa_amr.iter().any(|x| x == a)));
        acr || amr
    }
}

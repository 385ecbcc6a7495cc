//! Parsing of the access settings (issue 13): role names and the OIDC role
//! claim's map (`value=role,…`).

use crate::principal::Role;

/// A role by its name (`patient`, `clinician`, `ops`, `admin`; never `system`).
pub fn role_named(name: &str) -> Option<Role> {
    match name {
        "patient" => Some(Role::Patient),
        "clinician" => Some(Role::Clinician),
        "ops" => Some(Role::Ops),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

/// Parses `value=role,value=role` (the role claim's map). The message of an
/// error quotes the setting, which holds no secret.
pub fn parse_role_map(spec: &str) -> Result<Vec<(String, Role)>, String> {
    let mut out = Vec::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (value, role) = pair
            .rsplit_once('=')
            .ok_or_else(|| format!("{pair:?}: expected value=role"))?;
        let role = role_named(role.trim())
            .ok_or_else(|| format!("{role:?}: not a role (patient, clinician, ops, admin)"))?;
        out.push((value.trim().to_owned(), role));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_map_names_known_roles_only() {
        assert_eq!(
            parse_role_map("doctors=clinician, it=ops").unwrap(),
            vec![
                ("doctors".into(), Role::Clinician),
                ("it".into(), Role::Ops)
            ]
        );
        assert!(parse_role_map("root=system").is_err());
        assert!(parse_role_map("doctors").is_err());
        assert!(parse_role_map("").unwrap().is_empty());
    }
}

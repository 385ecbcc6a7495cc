//! The deployment as code passes its offline checks: every manifest that
//! `kubectl kustomize` renders from `k8s/overlays/*` validates against the
//! Kubernetes schemas (strict) and passes checkov; the Prometheus rules and
//! their unit tests, the Alertmanager example, the Grafana dashboard's
//! queries and the Dockerfile pass promtool, amtool and hadolint
//! (`scripts/check-deploy`, which installs the tools it lacks with apt and
//! pip: tier `deploy`).

use std::process::Command;

#[test]
fn manifests_rules_dashboard_and_dockerfile_pass_their_offline_checks() {
    needs!(Deploy);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout")
        .arg("900")
        .arg(root.join("scripts/check-deploy"))
        .output()
        .expect("scripts/check-deploy runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for step in [
        "render",
        "schema",
        "checkov",
        "rules",
        "dashboard",
        "alertmanager",
        "dockerfile",
        "metrics",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(step) && l.contains(" ok ")),
            "step {step} did not pass:\n{stdout}"
        );
    }
}

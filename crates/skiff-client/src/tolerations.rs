//! Taints and tolerations, by Kubernetes' rules (the scheduler's filters and the
//! controller-manager's NoExecute evictions read them the same way).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether one toleration matches a taint: an empty key with `Exists` matches every taint, an
/// empty effect matches every effect, `Exists` ignores the value.
pub fn toleration_matches(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
}

pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_matches(t, taint))
}

//! What both services' private `/metrics` share: the text exposition of the process's
//! registry and `authflow_build_info`, so the two cannot drift apart.

use std::sync::LazyLock;

/// `authflow_build_info{version} 1`, registered once per process (`authflow up` runs both
/// services in one).
static BUILD_INFO: LazyLock<Option<prometheus::IntGaugeVec>> = LazyLock::new(|| {
    let g = prometheus::register_int_gauge_vec!(
        "authflow_build_info",
        "The running build",
        &["version"]
    )
    .ok()?;
    g.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Some(g)
});

/// Registers `authflow_build_info`.
pub fn build_info() {
    LazyLock::force(&BUILD_INFO);
}

/// The text exposition of every registered metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

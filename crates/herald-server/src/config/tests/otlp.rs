//! `[tracing]`: OTLP export is off unless an endpoint is given, and a
//! given one is checked before anything runs.

use super::*;

#[test]
fn export_is_off_by_default() {
    for text in ["", "[tracing]\n", "[tracing]\notlp_endpoint = \"\"\n"] {
        let c = ok(text);
        assert_eq!(c.tracing.otlp_endpoint, None, "{text:?}");
        assert_eq!(c.tracing.traces_url(), None);
        assert_eq!(c.tracing.service_name, "herald");
        assert_eq!(c.tracing.sample_ratio, 1.0);
    }
    assert_eq!(Config::default_embedded().tracing, ok("").tracing);
}

#[test]
fn an_endpoint_turns_export_on() {
    let c = ok(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/\"\nservice_name = \"herald-eu\"\nsample_ratio = 0.25\n",
    );
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318/")
    );
    assert_eq!(
        c.tracing.traces_url().as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(c.tracing.service_name, "herald-eu");
    assert_eq!(c.tracing.sample_ratio, 0.25);
    let c = ok("[tracing]\notlp_endpoint = \"https://otel.example.com/collector\"\n");
    assert_eq!(
        c.tracing.traces_url().as_deref(),
        Some("https://otel.example.com/collector/v1/traces")
    );
}

#[test]
fn bad_tracing_values_name_their_field() {
    for (text, field) in [
        (
            "[tracing]\notlp_endpoint = \"127.0.0.1:4318\"\n",
            "tracing.otlp_endpoint",
        ),
        (
            "[tracing]\notlp_endpoint = \"grpc://127.0.0.1:4317\"\n",
            "tracing.otlp_endpoint",
        ),
        (
            "[tracing]\notlp_endpoint = \"http://\"\n",
            "tracing.otlp_endpoint",
        ),
        (
            "[tracing]\notlp_endpoint = \"http://h:4318/?x=1\"\n",
            "tracing.otlp_endpoint",
        ),
        ("[tracing]\nservice_name = \" \"\n", "tracing.service_name"),
        ("[tracing]\nsample_ratio = 1.5\n", "tracing.sample_ratio"),
        ("[tracing]\nsample_ratio = -0.1\n", "tracing.sample_ratio"),
        ("[tracing]\nsample_ratio = nan\n", "tracing.sample_ratio"),
        (
            "[tracing]\notlp_endpiont = \"http://h\"\n",
            "tracing.otlp_endpiont",
        ),
    ] {
        let e = err(text);
        assert!(e.to_string().contains(field), "{text:?} → {e}");
    }
}

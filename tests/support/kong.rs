//! The API's phase rules as the reference (`kong-client-tls-3.9.md`) states them: the
//! expectations of the Lua unit tests and of the nginx end-to-end tests, and the one
//! list of the API's functions (`tests/nginx/kct_e2e.lua` gets it from here).

/// The order in which Kong lists allowed phases in its wrong-phase error.
pub const KONG_PHASE_ORDER: [&str; 11] = [
    "init_worker",
    "certificate",
    "client_hello",
    "rewrite",
    "access",
    "balancer",
    "response",
    "header_filter",
    "body_filter",
    "log",
    "preread",
];

/// The five functions of the API.
pub const FUNCTIONS: [&str; 5] = [
    "request_client_certificate",
    "disable_session_reuse",
    "get_full_client_certificate_chain",
    "set_client_verify",
    "disable_http2_alpn",
];

/// [`FUNCTIONS`] as a Lua table constructor, `{ "request_client_certificate", ... }`: the
/// list `tests/nginx/kct_e2e.lua` probes (the nginx harness sets it as `KCT_FUNCTIONS`).
pub fn functions_lua_table() -> String {
    let quoted: Vec<String> = FUNCTIONS.iter().map(|f| format!("{f:?}")).collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// The Kong name of the ngx phase `ngx_phase` (`ngx.get_phase()`): Kong calls the TLS
/// phases `client_hello` and `certificate` and the content phase `response`; the others
/// keep their name (a Kong name is returned unchanged).
pub fn kong_phase(ngx_phase: &str) -> &str {
    match ngx_phase {
        "ssl_client_hello" => "client_hello",
        "ssl_cert" => "certificate",
        "content" => "response",
        other => other,
    }
}

/// The Kong phases in which `func` may run.
pub fn allowed_phases(func: &str) -> &'static [&'static str] {
    match func {
        // client_hello is ours, beyond Kong: the placement that keeps resumption safely.
        "request_client_certificate" => &["certificate", "client_hello"],
        "disable_session_reuse" => &["certificate"],
        // rewrite through log: every phase of a request.
        "get_full_client_certificate_chain" => &KONG_PHASE_ORDER[3..=9],
        "set_client_verify" => &["rewrite", "access", "balancer", "response"],
        "disable_http2_alpn" => &["client_hello"],
        other => panic!("unknown function {other}"),
    }
}

/// Kong's error for `func` called in the Kong phase `current`.
pub fn wrong_phase_message(current: &str, func: &str) -> String {
    let allowed = allowed_phases(func);
    let listed: Vec<&str> = KONG_PHASE_ORDER
        .iter()
        .copied()
        .filter(|p| allowed.contains(p))
        .collect();
    format!(
        "function cannot be called in {current} phase (only in: {})",
        listed.join(", ")
    )
}

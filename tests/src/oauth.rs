//! An OAuth 2.0 token endpoint for tests: the client-credentials grant (RFC 6749 §4.4) over
//! HTTP on a free loopback port, issuing unsigned JWS tokens (`{"alg":"none"}`, RFC 7519 §6)
//! that the test broker's unsecured OAUTHBEARER validator accepts ([`crate::kafka`]).
//!
//! It checks the client's id and secret (HTTP basic credentials, as librdkafka sends them, or
//! `client_id` / `client_secret` form fields), answers 401 `invalid_client` otherwise, and
//! records every request so a test can see what the client asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;
use tiny_http::{Header, Method, Response, Server};

/// One token request, as the endpoint understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The client id presented, if any.
    pub client_id: Option<String>,
    /// Whether the id and secret were the endpoint's.
    pub authenticated: bool,
    /// The form's `grant_type`.
    pub grant_type: Option<String>,
    /// The form's `scope`.
    pub scope: Option<String>,
}

/// A running token endpoint; dropping it stops the server.
pub struct TokenEndpoint {
    url: String,
    server: Arc<Server>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    thread: Option<JoinHandle<()>>,
}

/// What the endpoint accepts and what its tokens say.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub client_id: String,
    pub client_secret: String,
    /// The tokens' `sub`: the principal the broker sees (`User:<subject>`).
    pub subject: String,
    /// How long a token is valid.
    pub lifetime: Duration,
}

impl TokenEndpoint {
    pub fn start(settings: TokenSettings) -> TokenEndpoint {
        let server = Server::http("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("test token endpoint cannot bind a loopback port: {e}"));
        let port = server
            .server_addr()
            .to_ip()
            .expect("a server bound to 127.0.0.1 has an IP address")
            .port();
        let server = Arc::new(server);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let server = Arc::clone(&server);
            let requests = Arc::clone(&requests);
            std::thread::Builder::new()
                .name(format!("token-endpoint-{port}"))
                .spawn(move || serve(&server, &settings, &requests))
                .expect("spawning the token endpoint thread")
        };
        TokenEndpoint {
            url: format!("http://127.0.0.1:{port}/oauth2/token"),
            server,
            requests,
            thread: Some(thread),
        }
    }

    /// The token URL, e.g. `http://127.0.0.1:41234/oauth2/token`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An unsigned JWS: base64url header and claims, and an empty signature.
pub fn unsigned_token(subject: &str, scope: &str, lifetime: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let encode = |value: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let header = encode(json!({"alg": "none"}));
    let claims = encode(json!({
        "sub": subject,
        "iat": now,
        "exp": now + lifetime.as_secs(),
        "scope": scope,
    }));
    format!("{header}.{claims}.")
}

fn serve(server: &Server, settings: &TokenSettings, requests: &Mutex<Vec<TokenRequest>>) {
    while let Ok(mut request) = server.recv() {
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let form: HashMap<String, String> = body
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (decode_form(k), decode_form(v)))
            .collect();
        let basic = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| h.value.as_str().strip_prefix("Basic ").map(str::to_string))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(id, secret)| (id.to_string(), secret.to_string()))
            });
        let (client_id, client_secret) = match basic {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (
                form.get("client_id").cloned(),
                form.get("client_secret").cloned(),
            ),
        };
        let authenticated = client_id.as_deref() == Some(settings.client_id.as_str())
            && client_secret.as_deref() == Some(settings.client_secret.as_str());
        let grant_type = form.get("grant_type").cloned();
        let scope = form.get("scope").cloned();
        requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(TokenRequest {
                client_id,
                authenticated,
                grant_type: grant_type.clone(),
                scope: scope.clone(),
            });
        let json_header =
            Header::from_bytes("Content-Type", "application/json").expect("a valid header");
        let (status, answer) = if *request.method() != Method::Post {
            (405, json!({"error": "invalid_request"}))
        } else if grant_type.as_deref() != Some("client_credentials") {
            (400, json!({"error": "unsupported_grant_type"}))
        } else if !authenticated {
            (
                401,
                json!({"error": "invalid_client", "error_description": "client authentication failed"}),
            )
        } else {
            let token = unsigned_token(
                &settings.subject,
                scope.as_deref().unwrap_or_default(),
                settings.lifetime,
            );
            (
                200,
                json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": settings.lifetime.as_secs(),
                }),
            )
        };
        let response = Response::from_string(answer.to_string())
            .with_status_code(status)
            .with_header(json_header);
        let _ = request.respond(response);
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode_form(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unsigned_jws_with_the_claims() {
        let token = unsigned_token("admin", "outflow.sink", Duration::from_secs(60));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "");
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(decode(parts[0]), json!({"alg": "none"}));
        let claims = decode(parts[1]);
        assert_eq!(claims["sub"], "admin");
        assert_eq!(claims["scope"], "outflow.sink");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
    }

    #[test]
    fn form_fields_decode() {
        assert_eq!(decode_form("a+b%2Fc"), "a b/c");
        assert_eq!(decode_form("100%"), "100%");
    }
}

//! A webhook receiver on a port-0 socket that records requests and
//! answers from a script, and HMAC helpers to check signatures
//! independently of herald's own code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub(crate) fn query_param(&self, name: &str) -> String {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default()
    }
}

/// Replies still to give, per path.
pub(crate) type Script = HashMap<String, VecDeque<(u16, String)>>;

/// A webhook receiver on 127.0.0.1: records every request and answers from
/// a per-path script, then `200 {"errcode":0}`.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) base: String,
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
    pub(crate) script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            ..Self::default()
        };
        let app = Router::new().fallback(record).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub(crate) fn answer(&self, path: &str, replies: &[(u16, &str)]) {
        self.script.lock().unwrap().insert(
            path.to_owned(),
            replies.iter().map(|(s, b)| (*s, (*b).to_owned())).collect(),
        );
    }

    pub(crate) fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got `n` requests (failing after 10 s).
    pub(crate) async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        for _ in 0..500 {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path}: expected {n} requests, got {:?}", self.at(path));
    }
}

async fn record(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    receiver.received.lock().unwrap().push(Received {
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body: body.to_vec(),
    });
    let scripted = receiver
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let (status, body) = scripted.unwrap_or((200, r#"{"errcode":0,"errmsg":"ok"}"#.to_owned()));
    (StatusCode::from_u16(status).unwrap(), body)
}

pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

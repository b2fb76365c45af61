//! Reading what lives on another node: a job's logs stay on the machine that ran it, and any
//! node's API serves them by proxying the request to the owner (its address is in the nodes
//! table). Nothing is copied into the database, so logs cost the database nothing and `logs -f`
//! streams as directly as on the owner — at the price that an unreachable owner's logs are
//! unreadable until it is back.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;

use drover_core::NodeId;
use drover_store::Store;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::api::ApiError;

/// The client a node reads other nodes with: plain HTTP, or HTTPS verified against the roots
/// [`crate::tls::client_config`] gives (the node's `--ca-file`, else the public web PKI's).
/// Built once; its connection pool is shared by every proxied request.
#[derive(Clone)]
pub struct Peers {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Peers {
    /// A client trusting `tls` for `https://` peers.
    pub fn new(tls: rustls::ClientConfig) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peers")
    }
}

/// How long the owner may take to answer (its headers; a followed log then streams).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// GETs `path_and_query` from `owner`'s API and streams its answer back as is.
pub(crate) async fn proxy_get(
    peers: &Peers,
    store: &dyn Store,
    owner: &NodeId,
    path_and_query: &str,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let nodes = store.nodes().await?;
    let url = nodes
        .iter()
        .find(|n| &n.info.id == owner)
        .and_then(|n| n.info.url.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                None,
                format!("the logs are on node {owner}, whose address is unknown"),
            )
        })?;
    let unreachable = |detail: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            None,
            format!("the logs are on node {owner} ({url}), which cannot be reached: {detail}"),
        )
    };
    let mut request = hyper::Request::get(format!("{url}{path_and_query}"));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, peers.client.request(request))
        .await
        .map_err(|_| unreachable(format!("no answer in {ANSWER_TIMEOUT:?}")))?
        .map_err(|e| unreachable(drover_core::error_chain(&e)))?;
    let (parts, body) = answer.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}

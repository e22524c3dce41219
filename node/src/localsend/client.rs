//! The HTTPS client side of LocalSend: one TLS connection per request
//! (LocalSend's servers close idle ones quickly), this node's certificate as
//! the client certificate, and the server's certificate fingerprint checked
//! against the one expected before a byte of the request leaves.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::cert::Certificate;

/// How long connecting and the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body.
pub type Body = BoxBody<Bytes, io::Error>;

/// What a request can end with, short of an answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No TCP connection, or TLS failed.
    #[error("{0}")]
    Connect(io::Error),
    /// The server's certificate is not the one expected.
    #[error("it presented certificate {}", super::wire::fingerprint_text(.0))]
    WrongCertificate([u8; 32]),
    /// HTTP failed (the connection broke, a malformed answer).
    #[error("{0}")]
    Http(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most the limit asked for).
    pub body: Bytes,
    /// The server's certificate fingerprint.
    pub fingerprint: [u8; 32],
}

/// Makes LocalSend requests as this node.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

/// One request.
#[derive(Debug)]
pub struct Request<'a> {
    /// Path and query, from `/api/...`.
    pub path: &'a str,
    /// The body.
    pub body: Body,
    /// Its length (sent as Content-Length: some servers take no chunked bodies).
    pub length: u64,
    /// The certificate the server must show, if known.
    pub expect: Option<[u8; 32]>,
    /// Longest answer body read.
    pub answer_limit: usize,
    /// How long to wait for the answer once sent (`None`: as long as it takes,
    /// for questions a person answers on the other side).
    pub timeout: Option<Duration>,
}

impl Client {
    /// A client with this node's certificate.
    ///
    /// # Errors
    /// When rustls refuses the certificate.
    pub fn new(cert: &Certificate) -> Result<Client, rustls::Error> {
        Ok(Client {
            tls: TlsConnector::from(super::tls::client(cert)?),
        })
    }

    /// Connects to `addr` and learns its certificate.
    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, [u8; 32]), Failure> {
        let work = async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::IpAddress(addr.ip().into());
            self.tls.connect(name, tcp).await
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, work)
            .await
            .map_err(|_| Failure::Timeout(CONNECT_TIMEOUT))?
            .map_err(Failure::Connect)?;
        let fp = super::tls::peer_fingerprint(tls.get_ref().1).ok_or_else(|| {
            Failure::Connect(io::Error::other("the server showed no certificate"))
        })?;
        Ok((tls, fp))
    }

    /// Sends `req` as a POST to `addr`.
    ///
    /// # Errors
    /// The [`Failure`].
    pub async fn post(&self, addr: SocketAddr, req: Request<'_>) -> Result<Answer, Failure> {
        let (tls, fingerprint) = self.connect(addr).await?;
        if let Some(want) = req.expect
            && want != fingerprint
        {
            return Err(Failure::WrongCertificate(fingerprint));
        }
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(tls))
                .await
                .map_err(|e| Failure::Http(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let _abort = AbortOnDrop(driver);
        let request = hyper::Request::post(req.path)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONTENT_LENGTH, req.length)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(req.body)
            .map_err(|e| Failure::Http(e.to_string()))?;
        let exchange = async {
            let answer = sender
                .send_request(request)
                .await
                .map_err(|e| Failure::Http(e.to_string()))?;
            let status = answer.status().as_u16();
            let body = Limited::new(answer.into_body(), req.answer_limit)
                .collect()
                .await
                .map_err(|e| Failure::Http(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status,
                body,
                fingerprint,
            })
        };
        match req.timeout {
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(|_| Failure::Timeout(t))?,
            None => exchange.await,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A JSON body.
#[must_use]
pub fn json_body(value: &impl serde::Serialize) -> (Body, u64) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let len = bytes.len() as u64;
    (
        Full::new(Bytes::from(bytes))
            .map_err(|e| match e {})
            .boxed(),
        len,
    )
}

/// An empty body.
#[must_use]
pub fn empty_body() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// A file's bytes as a body, counted by `sent` as they go.
#[must_use]
pub fn file_body(file: tokio::fs::File, sent: Arc<dyn Fn(u64) + Send + Sync>) -> Body {
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map_ok(move |b| {
        sent(b.len() as u64);
        Frame::data(b)
    });
    StreamBody::new(stream).boxed()
}

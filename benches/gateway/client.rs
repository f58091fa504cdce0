//! The bench's HTTP client: hyper's low-level HTTP/1.1 client over either
//! the engine's unix socket or a mutual-TLS connection (tokio-rustls, with
//! the bench user's ECDSA client certificate). The same code drives all
//! three paths, so only the path differs between the figures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};

pub(crate) type Body = BoxBody<Bytes, std::io::Error>;
pub(crate) type Sender = SendRequest<Body>;

/// Where requests go.
#[derive(Clone)]
pub(crate) enum Target {
    Unix(PathBuf),
    Tls {
        addr: SocketAddr,
        /// Resumption disabled: every connection is a full handshake, as
        /// with the docker CLI (Go's client keeps no session cache).
        config: Arc<rustls::ClientConfig>,
    },
}

impl Target {
    pub(crate) fn tls(addr: SocketAddr, bundle: &crate::support::pki::Bundle) -> Target {
        let mut config = (*crate::support::raw::client_config(bundle)).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Target::Tls {
            addr,
            config: Arc::new(config),
        }
    }
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Opens a connection (TCP + full TLS handshake where it applies) and
/// starts hyper's client on it.
pub(crate) async fn connect(target: &Target) -> std::io::Result<Sender> {
    match target {
        Target::Unix(path) => handshake(UnixStream::connect(path).await?).await,
        Target::Tls { addr, config } => {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            handshake(tls).await
        }
    }
}

async fn handshake<T>(io: T) -> std::io::Result<Sender>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole response; returns the status and
/// the body's size.
pub(crate) async fn send(
    sender: &mut Sender,
    method: Method,
    path: &str,
    body: Body,
    upload_length: Option<u64>,
) -> std::io::Result<(StatusCode, u64)> {
    sender.ready().await.map_err(std::io::Error::other)?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "docker");
    if let Some(n) = upload_length {
        req = req
            .header(header::CONTENT_LENGTH, n)
            .header(header::CONTENT_TYPE, "application/x-tar");
    }
    let req = req.body(body).map_err(std::io::Error::other)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok((status, n))
}

/// `GET path`, insisting on a 2xx answer.
pub(crate) async fn get(sender: &mut Sender, path: &str) -> std::io::Result<u64> {
    let (status, n) = send(sender, Method::GET, path, empty(), None).await?;
    if !status.is_success() {
        return Err(std::io::Error::other(format!("GET {path}: {status}")));
    }
    Ok(n)
}

/// A body that streams `data` in 256 KiB slices (no copies) with a known
/// length, like an upload read from disk.
pub(crate) fn chunked_body(data: Bytes) -> Body {
    use http_body_util::StreamBody;
    const CHUNK: usize = 256 * 1024;
    let len = data.len();
    let chunks = (0..len.div_ceil(CHUNK)).map(move |i| {
        let end = ((i + 1) * CHUNK).min(len);
        Ok::<_, std::io::Error>(hyper::body::Frame::data(data.slice(i * CHUNK..end)))
    });
    StreamBody::new(futures_util::stream::iter(chunks)).boxed()
}

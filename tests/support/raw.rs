//! Raw HTTP over mutual TLS, for requests the docker CLI would never send.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::Bundle;

/// A TLS client config trusting moat's CA, with the bundle's certificate
/// when it has one.
pub(crate) fn client_config(bundle: &Bundle) -> Arc<rustls::ClientConfig> {
    moat::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(bundle.dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cert = bundle.dir.join("cert.pem");
    let mut config = if cert.exists() {
        let chain: Vec<_> = CertificateDer::pem_file_iter(&cert)
            .expect("cert")
            .map(|c| c.expect("cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(bundle.dir.join("key.pem")).expect("key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Opens a TLS connection and completes the handshake.
pub(crate) fn connect(
    addr: SocketAddr,
    bundle: &Bundle,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = rustls::ClientConnection::new(
        client_config(bundle),
        ServerName::try_from("localhost").expect("name").to_owned(),
    )
    .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    // TLS 1.3 client auth failures surface on the first read.
    Ok(tls)
}

/// Sends raw bytes and reads until the server closes (send
/// `Connection: close` or rely on moat closing). Returns what was read.
pub(crate) fn exchange(
    addr: SocketAddr,
    bundle: &Bundle,
    request: &[u8],
) -> std::io::Result<String> {
    let mut tls = connect(addr, bundle)?;
    tls.write_all(request)?;
    tls.flush()?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The status code of the first response in `raw`.
pub(crate) fn status(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One response read off a keep-alive connection.
pub(crate) struct Response {
    pub status: u16,
    /// `X-Moat-Request-Id` (empty when absent).
    pub request_id: String,
    pub body: String,
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body), leaving
/// the connection at the start of the next one.
pub(crate) fn read_response(r: &mut impl BufRead) -> std::io::Result<Response> {
    let mut status = 0;
    let mut request_id = String::new();
    let mut length = 0usize;
    let mut chunked = false;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if status == 0 {
            status = self::status(l);
        } else if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "x-moat-request-id" => request_id = v.to_string(),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Response {
        status,
        request_id,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

//! The readiness probe: `GET /_ping` on the engine's unix socket, the same
//! call the docker CLI makes first. An engine is ready when it answers 200.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::EngineError;

/// Asks the engine on `socket` for `/_ping`, giving up after `timeout`.
pub async fn ping(socket: &Path, timeout: Duration) -> Result<(), EngineError> {
    let unreachable = |reason: String| EngineError::Unreachable {
        socket: socket.to_path_buf(),
        reason,
    };
    match tokio::time::timeout(timeout, ping_once(socket)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(unreachable(reason)),
        Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

async fn ping_once(socket: &Path) -> Result<(), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get("/_ping")
        .header(http::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read the (tiny) body so the connection ends cleanly.
        let _ = resp.into_body().collect().await;
        if status == http::StatusCode::OK {
            Ok(())
        } else {
            Err(format!("/_ping answered {status}"))
        }
    }
    .await;
    drop(sender);
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot fake engine answering every request with `response`.
    async fn fake_engine(response: &'static str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /_ping HTTP/1.1\r\n"), "{req}");
                assert!(req.to_ascii_lowercase().contains("host: docker"), "{req}");
                s.write_all(response.as_bytes()).await.unwrap();
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn ok_when_the_engine_answers_200() {
        let (_d, path) = fake_engine("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK").await;
        ping(&path, Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn error_statuses_and_missing_sockets_are_unready() {
        let (_d, path) =
            fake_engine("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").await;
        let err = ping(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
        let missing = path.with_file_name("none.sock");
        let err = ping(&missing, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("none.sock"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_engine_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let err = ping(&path, Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer within"), "{err}");
    }
}

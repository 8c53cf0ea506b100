//! Git's smart HTTP protocol on 127.0.0.1, served by `git http-backend` as a CGI
//! program behind a small axum server, so clients are tested against real git.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use tokio::io::AsyncWriteExt;

/// Serves every repository under a folder at `http://127.0.0.1:PORT/<name>`.
pub struct GitHttpServer {
    address: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl GitHttpServer {
    pub fn serve(root: PathBuf) -> GitHttpServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime for the git server");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("bound address");
        let app = axum::Router::new().fallback(cgi).with_state(root);
        runtime.spawn(async move { axum::serve(listener, app).await });
        GitHttpServer { address, _runtime: runtime }
    }

    /// The URL of the repository at `<root>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.address)
    }
}

async fn cgi(State(root): State<PathBuf>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let header =
        |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(&body).await.expect("request body is written");
    drop(stdin);
    let output = child.wait_with_output().await.expect("git http-backend finishes");
    cgi_response(&output.stdout)
}

/// Splits a CGI response into its headers (with `Status:`) and body.
fn cgi_response(output: &[u8]) -> Response<Body> {
    let split = output
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|window| window == b"\n\n").map(|i| (i, 2)));
    let Some((end, separator)) = split else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from("malformed CGI response"))
            .expect("static response");
    };
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&output[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|code| code.parse().ok()).unwrap_or(500);
            response = response.status(code);
        } else if let Ok(value) = HeaderValue::from_str(value) {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(output[end + separator..].to_vec())).expect("valid CGI response")
}

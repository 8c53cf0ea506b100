//! A build's log, as BuildKit reports it: `Control.Status` for the build's ref, over the
//! engine's `/grpc` endpoint (an HTTP/1.1 upgrade to HTTP/2, as the buildx CLI's Docker
//! driver does). bollard's Moby driver keeps its own Control client private, so this
//! opens a second one for the same engine. Lines come out as `docker build
//! --progress=plain` prints them: a line when a step starts (or is cached, or fails),
//! then what it writes; secret values are masked, whatever a step prints.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bollard::moby::buildkit::v1::StatusRequest;
use bollard::moby::buildkit::v1::control_client::ControlClient;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use launchway_target::TargetError;

/// Follows the build `build_ref` on the engine at `address` (`unix:///…` or
/// `tcp://host:port`), handing each batch of lines to `lines` as they come, until the
/// build ends. The build's own outcome is the solve's to report, not this.
pub(crate) async fn follow(
    address: &str,
    build_ref: &str,
    secrets: &[String],
    mut lines: impl FnMut(Vec<String>),
) -> Result<(), TargetError> {
    let mut control = control_client(address).await?;
    let request = StatusRequest { r#ref: build_ref.to_owned() };
    let mut stream = control.status(request).await.map_err(status_error)?.into_inner();
    let mut said = Said::default();
    while let Some(response) = stream.message().await.map_err(status_error)? {
        let mut batch = Vec::new();
        for vertex in &response.vertexes {
            if let Some(line) =
                said.vertex(&vertex.digest, &vertex.name, vertex.cached, vertex.started.is_some(), &vertex.error)
            {
                batch.push(line);
            }
        }
        for log in &response.logs {
            batch.extend(said.output(&log.vertex, &log.msg));
        }
        let batch: Vec<String> = batch.into_iter().map(|line| mask(line, secrets)).collect();
        if !batch.is_empty() {
            lines(batch);
        }
    }
    Ok(())
}

/// What has been said already: each step is announced once, and output is cut into lines
/// per step (a line may arrive in pieces).
#[derive(Default)]
struct Said {
    started: HashSet<String>,
    failed: HashSet<String>,
    partial: std::collections::HashMap<String, String>,
}

impl Said {
    fn vertex(&mut self, digest: &str, name: &str, cached: bool, started: bool, error: &str) -> Option<String> {
        if !error.is_empty() && self.failed.insert(digest.to_owned()) {
            return Some(format!("{name}: ERROR: {error}"));
        }
        if (started || cached) && self.started.insert(digest.to_owned()) {
            return Some(if cached { format!("{name} (cached)") } else { name.to_owned() });
        }
        None
    }

    fn output(&mut self, vertex: &str, message: &[u8]) -> Vec<String> {
        let buffer = self.partial.entry(vertex.to_owned()).or_default();
        buffer.push_str(&String::from_utf8_lossy(message));
        let mut lines = Vec::new();
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            lines.push(format!("  {}", line.trim_end()));
        }
        lines
    }
}

/// `line` with every secret masked `***`: as it is, and in the forms a build step
/// prints a secret by accident or on purpose — base64 (standard or URL-safe, padded or
/// not), hex, its characters spaced out, and (for a secret long enough that a
/// fragment gives it away) all of it but its first or last character.
fn mask(mut line: String, secrets: &[String]) -> String {
    let mut forms: Vec<String> =
        secrets.iter().filter(|secret| !secret.is_empty()).flat_map(|secret| forms_of(secret)).collect();
    // The longest first: a form containing another is masked whole.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    for form in forms {
        line = line.replace(form.as_str(), "***");
    }
    line
}

/// The forms of a secret [`mask`] hides.
fn forms_of(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let mut forms = vec![secret.to_owned()];
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        forms.push(engine.encode(bytes));
    }
    forms.push(hex::encode(bytes));
    forms.push(hex::encode_upper(bytes));
    let characters: Vec<char> = secret.chars().collect();
    if characters.len() > 1 {
        forms.push(characters.iter().map(char::to_string).collect::<Vec<_>>().join(" "));
    }
    if characters.len() >= 8 {
        forms.push(characters[..characters.len() - 1].iter().collect());
        forms.push(characters[1..].iter().collect());
    }
    forms
}

fn status_error(status: tonic::Status) -> TargetError {
    TargetError::Invalid(format!("could not follow the build's log: {}", status.message()))
}

/// A Control client over one upgraded connection to the engine.
async fn control_client(address: &str) -> Result<ControlClient<tonic::transport::Channel>, TargetError> {
    let unreachable = |error: &dyn std::fmt::Display| {
        TargetError::local(format!("could not reach BuildKit at {address}"), error.to_string())
    };
    let upgraded = upgrade(address).await.map_err(|error| unreachable(&error))?;
    // The channel connects once, through the connection already upgraded.
    let connection = Arc::new(Mutex::new(Some(upgraded)));
    let connector = tower::service_fn(move |_: hyper::Uri| {
        let taken = connection.lock().expect("not poisoned").take();
        async move { taken.ok_or_else(|| std::io::Error::other("the upgraded connection is in use already")) }
    });
    let channel = tonic::transport::Endpoint::from_static("http://docker")
        .connect_with_connector(connector)
        .await
        .map_err(|error| unreachable(&error))?;
    Ok(ControlClient::new(channel))
}

/// `POST /grpc` with `Upgrade: h2c`, answered 101: the connection then speaks HTTP/2.
async fn upgrade(address: &str) -> Result<hyper::upgrade::Upgraded, Box<dyn std::error::Error + Send + Sync>> {
    let request = hyper::Request::post("/grpc")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "h2c")
        .body(Empty::<Bytes>::new())?;
    let response = if let Some(path) = address.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(path).await?;
        send(TokioIo::new(stream), request).await?
    } else {
        let host = address.strip_prefix("tcp://").or_else(|| address.strip_prefix("http://")).unwrap_or(address);
        let stream = tokio::net::TcpStream::connect(host).await?;
        send(TokioIo::new(stream), request).await?
    };
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("the engine answered {} to an upgrade to gRPC", response.status()).into());
    }
    Ok(hyper::upgrade::on(response).await?)
}

async fn send<T>(
    io: T,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection.with_upgrades());
    sender.send_request(request).await
}

#[cfg(test)]
mod tests {
    use super::mask;

    /// Issue 22, item 8: only the exact secret was masked; its base64, spaced-out and
    /// all-but-last-character forms reached the event log and the CLI.
    #[test]
    fn a_secret_is_masked_in_the_forms_a_build_prints_it() {
        let secrets = vec!["s3cr3t-T0ken!".to_owned()];
        for printed in [
            "token=s3cr3t-T0ken!",
            "token=czNjcjN0LVQwa2VuIQ==",
            "token=czNjcjN0LVQwa2VuIQ",
            "token=7333637233742d54306b656e21",
            "token=s 3 c r 3 t - T 0 k e n !",
            "token=s3cr3t-T0ken",
            "token=3cr3t-T0ken!",
        ] {
            assert_eq!(mask(printed.to_owned(), &secrets), "token=***", "{printed}");
        }
        assert_eq!(mask("nothing secret here".to_owned(), &secrets), "nothing secret here");
    }
}

//! Replacing a running proxy without refusing a connection: the new proxy takes the old
//! one's listening sockets (`SCM_RIGHTS` over a Unix socket beside the state file), so
//! that connections waiting to be accepted stay in the same queue, and only then does the
//! old one stop accepting and finish what it serves. SO_REUSEPORT would instead lose the
//! connections queued on the old socket when it closes.
//!
//! The exchange, one JSON line each way (the successor speaks first):
//! 1. successor → predecessor: [`Request`] (its protocol and build);
//! 2. predecessor → successor: [`Sent::Listeners`] lines, each with its sockets attached,
//!    then [`Sent::Done`], or [`Sent::Refused`] (the successor is older than it);
//! 3. successor → predecessor: `serving`, once it accepts on every socket. The
//!    predecessor then stops accepting and changing routes, and keeps the connection open
//!    until it exits: its end tells the successor that nothing is under way there any
//!    more.
//!
//! The predecessor holds its route table still from the first line to the last, so the
//! state file the successor reads is the table it served.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};

use crate::{Build, Proxy, ProxyError};

const PROTOCOL: u32 = 1;
/// Sockets per message: the kernel takes at most 253 (SCM_MAX_FD).
const BATCH: usize = 200;
/// How long either side waits for the other's next line.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where a proxy whose routes are kept in `state_file` offers its sockets.
pub fn socket_path(state_file: &Path) -> PathBuf {
    state_file.with_file_name("handover.sock")
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    protocol: u32,
    build: Option<String>,
}

/// What one listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Listener {
    Route(u16),
    Admin,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Sent {
    /// These listeners' sockets are attached, in this order.
    Listeners(Vec<Listener>),
    Done,
    Refused(String),
}

/// The sockets a predecessor handed over, and the connection that stays open while it
/// still serves.
pub struct Predecessor {
    pub(crate) routes: HashMap<u16, std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
    pub(crate) connection: UnixStream,
}

impl Predecessor {
    /// The admin API's socket, for the successor's admin API.
    pub fn take_admin(&mut self) -> Option<std::net::TcpListener> {
        self.admin.take()
    }

    /// Tells the predecessor that this proxy accepts on every socket now; resolves when
    /// the predecessor has exited (or the connection broke).
    pub(crate) async fn confirm(mut self) -> Result<impl Future<Output = ()>, ProxyError> {
        self.connection.write_all(b"serving\n").await.map_err(handover_error)?;
        Ok(async move {
            let mut rest = Vec::new();
            let _ = self.connection.read_to_end(&mut rest).await;
        })
    }
}

fn handover_error(error: std::io::Error) -> ProxyError {
    ProxyError::HandOver(error.to_string())
}

/// Takes the listening sockets of the proxy offering them at `socket`; `None` when no
/// proxy offers them there (none runs, or it ended without removing its socket).
///
/// # Errors
/// The running proxy refused (it is newer), or the exchange broke off.
pub async fn take_over(socket: &Path, build: Option<&Build>) -> Result<Option<Predecessor>, ProxyError> {
    let mut connection = match UnixStream::connect(socket).await {
        Ok(connection) => connection,
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(error) => return Err(handover_error(error)),
    };
    let request = Request { protocol: PROTOCOL, build: build.map(Build::to_string) };
    let mut line = serde_json::to_vec(&request).expect("a request serializes");
    line.push(b'\n');
    connection.write_all(&line).await.map_err(handover_error)?;

    let (mut described, mut sockets) = (Vec::new(), Vec::new());
    let mut pending = Vec::new();
    loop {
        let Some(sent) = next_line(&connection, &mut pending, &mut sockets).await? else {
            return Err(ProxyError::HandOver("the running proxy ended the exchange".into()));
        };
        match sent {
            Sent::Listeners(listeners) => described.extend(listeners),
            Sent::Done => break,
            Sent::Refused(reason) => return Err(ProxyError::HandOver(format!("the running proxy refused: {reason}"))),
        }
    }
    if described.len() != sockets.len() {
        return Err(ProxyError::HandOver(format!(
            "{} listeners described but {} sockets received",
            described.len(),
            sockets.len()
        )));
    }
    let mut predecessor = Predecessor { routes: HashMap::new(), admin: None, connection };
    for (listener, socket) in described.into_iter().zip(sockets) {
        let socket = std::net::TcpListener::from(socket);
        socket.set_nonblocking(true).map_err(handover_error)?;
        // A socket that is not what it was said to be is not served.
        let bound = socket.local_addr().map_err(handover_error)?;
        match listener {
            Listener::Route(port) if bound.port() == port => {
                predecessor.routes.insert(port, socket);
            }
            Listener::Admin => predecessor.admin = Some(socket),
            Listener::Route(port) => {
                return Err(ProxyError::HandOver(format!("the socket for port {port} listens on {bound}")));
            }
        }
    }
    Ok(Some(predecessor))
}

/// Reads the next line, collecting the sockets that came with its bytes.
async fn next_line(
    connection: &UnixStream,
    pending: &mut Vec<u8>,
    sockets: &mut Vec<OwnedFd>,
) -> Result<Option<Sent>, ProxyError> {
    let read = async {
        loop {
            if let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let sent = serde_json::from_slice(&line)
                    .map_err(|error| ProxyError::HandOver(format!("an unreadable line: {error}")))?;
                return Ok(Some(sent));
            }
            let mut bytes = [0u8; 16 * 1024];
            let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH + 53))];
            let mut ancillary = RecvAncillaryBuffer::new(&mut space);
            let received = connection
                .async_io(Interest::READABLE, || {
                    let mut slices = [IoSliceMut::new(&mut bytes)];
                    rustix::net::recvmsg(connection, &mut slices, &mut ancillary, RecvFlags::CMSG_CLOEXEC)
                        .map_err(std::io::Error::from)
                })
                .await
                .map_err(handover_error)?;
            for message in ancillary.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    sockets.extend(received);
                }
            }
            if received.bytes == 0 {
                return Ok(None);
            }
            pending.extend_from_slice(&bytes[..received.bytes]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| Err(ProxyError::HandOver("the running proxy stopped answering".into())))
}

/// Sends one line with `sockets` attached to its bytes.
async fn send_line(connection: &mut UnixStream, sent: &Sent, sockets: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(sent).expect("a line serializes");
    line.push(b'\n');
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(sockets.len()))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !sockets.is_empty() {
        assert!(ancillary.push(SendAncillaryMessage::ScmRights(sockets)), "the buffer has room for the sockets");
    }
    let written = connection
        .async_io(Interest::WRITABLE, || {
            rustix::net::sendmsg(&*connection, &[IoSlice::new(&line)], &mut ancillary, rustix::net::SendFlags::empty())
                .map_err(std::io::Error::from)
        })
        .await?;
    // The sockets went with the first bytes; the rest of a long line follows alone.
    connection.write_all(&line[written..]).await
}

/// Offers `proxy`'s sockets (its route ports, and `admin`) at `socket` to a successor,
/// one at a time, until one takes them.
///
/// # Errors
/// The socket cannot be made.
pub(crate) fn offer(proxy: Proxy, socket: &Path, admin: Option<OwnedFd>) -> Result<(), ProxyError> {
    let listener = bind_offer(socket)?;
    let accepting = proxy.inner.accepting.clone();
    proxy.inner.tasks.clone().spawn(async move {
        loop {
            let connection = tokio::select! {
                () = accepting.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((connection, _)) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "could not accept a hand-over connection");
                        continue;
                    }
                },
            };
            match hand_over(&proxy, connection, admin.as_ref().map(AsFd::as_fd)).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "a hand-over to a new proxy failed; serving on"),
            }
        }
    });
    Ok(())
}

/// The Unix socket a successor connects to, at `socket`, readable by the proxy's own user
/// only: whoever may connect takes the host's ports. What is at the path already is the
/// socket of a proxy that is gone (one that is not has handed over to this one, or still
/// holds its route ports and this one failed to start).
fn bind_offer(socket: &Path) -> Result<UnixListener, ProxyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(handover_error)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(handover_error)?;
    Ok(listener)
}

/// One exchange with a would-be successor; `Ok` once it serves and this proxy stopped
/// accepting.
async fn hand_over(proxy: &Proxy, mut connection: UnixStream, admin: Option<BorrowedFd<'_>>) -> Result<(), ProxyError> {
    read_request(&mut connection, proxy.inner.config.build.as_ref()).await?;
    // Nothing changes from here: the successor serves this table, read from the file.
    let _one_at_a_time = proxy.inner.changing.lock().await;
    let listening: Vec<(Listener, OwnedFd)> = {
        let listeners = proxy.inner.listeners.lock().expect("not poisoned");
        let copies = listeners.iter().map(|(port, listening)| {
            listening.socket.try_clone().map(|socket| (Listener::Route(*port), socket)).map_err(handover_error)
        });
        copies.collect::<Result<_, _>>()?
    };
    let mut all: Vec<(Listener, BorrowedFd<'_>)> =
        listening.iter().map(|(listener, socket)| (*listener, socket.as_fd())).collect();
    all.extend(admin.map(|admin| (Listener::Admin, admin)));
    send_listeners(&mut connection, &all).await?;
    proxy.inner.handed_over.cancel();
    proxy.inner.accepting.cancel();
    // Its copies of the sockets go: should the successor die, they close with it, and
    // the proxy Docker restarts in its place can listen again.
    proxy.inner.listeners.lock().expect("not poisoned").clear();
    // Kept open until this process ends: the successor's drains wait for that.
    *proxy.inner.successor.lock().expect("not poisoned") = Some(connection);
    tracing::info!("handed the listening sockets over to the new proxy; finishing what is under way");
    Ok(())
}

/// Reads a would-be successor's request, and refuses it (answering why) when it speaks
/// another protocol or is older than `own`.
async fn read_request(connection: &mut UnixStream, own: Option<&Build>) -> Result<(), ProxyError> {
    let line = read_line(connection, "the new proxy said nothing").await?;
    let request: Request =
        serde_json::from_str(&line).map_err(|error| ProxyError::HandOver(format!("an unreadable request: {error}")))?;
    let successor = request.build.as_deref().and_then(|build| build.parse::<Build>().ok());
    let refusal = if request.protocol != PROTOCOL {
        Some(format!("it speaks hand-over protocol {}, this proxy {PROTOCOL}", request.protocol))
    } else {
        match (own, &successor) {
            (Some(own), Some(successor)) if successor < own => {
                Some(format!("this proxy ({own}) is newer than the one asking ({successor})"))
            }
            _ => None,
        }
    };
    if let Some(reason) = refusal {
        send_line(connection, &Sent::Refused(reason.clone()), &[]).await.map_err(handover_error)?;
        return Err(ProxyError::HandOver(reason));
    }
    Ok(())
}

/// The successor's next line, waited for at most [`PATIENCE`] (`silent`: what its silence
/// means).
async fn read_line(connection: &mut UnixStream, silent: &str) -> Result<String, ProxyError> {
    let mut line = String::new();
    tokio::time::timeout(PATIENCE, BufReader::new(&mut *connection).read_line(&mut line))
        .await
        .map_err(|_| ProxyError::HandOver(silent.to_owned()))?
        .map_err(handover_error)?;
    Ok(line)
}

/// Sends the sockets, then waits for the successor to say it serves from them.
async fn send_listeners(connection: &mut UnixStream, all: &[(Listener, BorrowedFd<'_>)]) -> Result<(), ProxyError> {
    for batch in all.chunks(BATCH) {
        let described = Sent::Listeners(batch.iter().map(|(listener, _)| *listener).collect());
        let sockets: Vec<BorrowedFd<'_>> = batch.iter().map(|(_, socket)| *socket).collect();
        send_line(connection, &described, &sockets).await.map_err(handover_error)?;
    }
    send_line(connection, &Sent::Done, &[]).await.map_err(handover_error)?;
    let answer = read_line(connection, "the new proxy did not start serving").await?;
    if answer.trim_end() != "serving" {
        return Err(ProxyError::HandOver(format!("the new proxy answered {:?}", answer.trim_end())));
    }
    Ok(())
}

/// The listening TCP sockets of process `pid`, a proxy that cannot hand them over itself
/// (started by a launchway from before hand-overs), duplicated through `pidfd_getfd`: the
/// caller needs ptrace rights over it (in a container: the host's PID namespace and
/// CAP_SYS_PTRACE). Each with the port it listens on.
///
/// # Errors
/// The process cannot be reached, or its descriptors read.
pub fn borrow_listeners(pid: i32) -> Result<Vec<(u16, OwnedFd)>, ProxyError> {
    use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
    let error = |what: &str, error: std::io::Error| ProxyError::HandOver(format!("{what} of process {pid}: {error}"));
    let process = Pid::from_raw(pid).ok_or_else(|| ProxyError::HandOver(format!("{pid} is not a process id")))?;
    let pidfd = pidfd_open(process, PidfdFlags::empty()).map_err(|errno| error("open", errno.into()))?;
    let mut found = Vec::new();
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|io| error("list the descriptors", io))?;
    for entry in entries.flatten() {
        let Some(number) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|link| link.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // Gone since it was listed: not one of the listeners, which live as long as it.
        // (The copy is close-on-exec, as pidfd_getfd makes every copy.)
        let Ok(socket) = pidfd_getfd(&pidfd, number, PidfdGetfdFlags::empty()) else { continue };
        if !rustix::net::sockopt::socket_acceptconn(&socket).unwrap_or(false) {
            continue;
        }
        let Ok(address) = rustix::net::getsockname(&socket) else { continue };
        if let Ok(address) = std::net::SocketAddr::try_from(address) {
            found.push((address.port(), socket));
        }
    }
    Ok(found)
}

/// Offers `listeners` (borrowed from a proxy that cannot hand them over: see
/// [`borrow_listeners`]) at `socket` to one successor, the one on `admin_port` as the
/// admin API's; `Ok` once the successor serves from them.
///
/// # Errors
/// The socket cannot be made, or the exchange broke off.
pub async fn lend(socket: &Path, listeners: Vec<(u16, OwnedFd)>, admin_port: u16) -> Result<(), ProxyError> {
    let listener = bind_offer(socket)?;
    let all: Vec<(Listener, BorrowedFd<'_>)> = listeners
        .iter()
        .map(|(port, socket)| {
            let what = if *port == admin_port { Listener::Admin } else { Listener::Route(*port) };
            (what, socket.as_fd())
        })
        .collect();
    loop {
        let (mut connection, _) = listener.accept().await.map_err(handover_error)?;
        if let Err(error) = read_request(&mut connection, None).await {
            tracing::warn!(%error, "a hand-over request was refused");
            continue;
        }
        match send_listeners(&mut connection, &all).await {
            Ok(()) => break,
            Err(error) => tracing::warn!(%error, "a hand-over to a new proxy failed; offering again"),
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

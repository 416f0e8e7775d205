//! The control socket: how `ouro` commands on a store reach the node that runs on it.
//! It lives in the store directory (`node.sock`, mode 0600: only the store's owner).
//! Commands read and write the store directly (LMDB is shared between processes); they ask
//! the node for slices held elsewhere (`Fetch`, `FetchMany`), wait for new slices to reach their nodes
//! (`Flush`), and ask for the cluster's status.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ouroboros_db::route::remote::{FetchedMany, RemoteSlices, Wanted};
use ouroboros_db::Hash;

use crate::context::Context;
use crate::data_router::DataRouter;
use crate::error::{ClusterError, Result};
use crate::message::{
    check_header, decode_body, encode_frame, read_frame, write_frame, ClusterStatus, FetchWant,
    Request, Response, MAX_ITEMS,
};
use crate::monitor::ClusterMonitor;
use crate::slices_many;

/// The socket of the node running on `store`.
pub fn socket_path(store: &Path) -> PathBuf {
    // A
    store.join("node.sock")
}

/// Binds the socket, replacing a stale one left by a killed node, with mode 0600.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    // PA
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ClusterError::Protocol(format!(
                "a node already runs on this store ({} answers)",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| ClusterError::io(format!("binding {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ClusterError::io(format!("securing {}", path.display()), e))?;
    Ok(l)
}

/// The control socket's side of a running node: what local commands ask of it.
pub(crate) struct Control {
    cx: Arc<Context>,
    router: Arc<DataRouter>,
    monitor: Arc<ClusterMonitor>,
}

impl Control {
    /// Serves reads (through `cx`), flushes (`router`) and status (`monitor`).
    pub fn new(cx: Arc<Context>, router: Arc<DataRouter>, monitor: Arc<ClusterMonitor>) -> Self {
        // A
        Control {
            cx,
            router,
            monitor,
        }
    }

    /// Serves local commands until the node stops.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::UnixListener) {
        // A
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let this = Arc::clone(&self);
            tokio::spawn(async move { this.serve_stream(stream).await });
        }
    }

    /// Answers one command's requests until it hangs up.
    async fn serve_stream(&self, stream: tokio::net::UnixStream) {
        // A
        let (mut r, mut w) = stream.into_split();
        while let Ok(req) = read_frame::<Request>(&mut r).await {
            // The answer to a read goes out as pieces: its slices stay where they arrived
            // from the peers.
            if let Request::FetchMany { items } = req {
                let pieces = crate::fetch::fetch_many(&self.cx, items)
                    .await
                    .and_then(|found| slices_many::frame_pieces(&found));
                let sent = match pieces {
                    Ok(p) => slices_many::write_pieces(&mut w, &p).await,
                    Err(e) => write_frame(&mut w, &Response::Error(e.to_string())).await,
                };
                if sent.is_err() {
                    break;
                }
                continue;
            }
            let resp = self
                .answer(req)
                .await
                .unwrap_or_else(|e| Response::Error(e.to_string()));
            if write_frame(&mut w, &resp).await.is_err() {
                break;
            }
        }
    }

    /// The answer to a command's request other than `FetchMany`.
    async fn answer(&self, req: Request) -> Result<Response> {
        // A
        match req {
            Request::Fetch {
                chunk,
                wanted,
                need,
            } => crate::fetch::fetch(&self.cx, chunk, wanted, need as usize)
                .await
                .map(|s| Response::Slices(crate::message::to_wire(s))),
            Request::Flush => {
                self.router.wake();
                let walked = self.router.walk().await;
                // A command wrote here: peers hear of it with a heartbeat now. Only now: a
                // peer that learned of the versions before their slices arrived would count
                // those slices as lacking.
                self.monitor.beat_now();
                walked.map(|pending_chunks| Response::Flushed { pending_chunks })
            }
            Request::Status => self.monitor.status().map(Response::Status),
            _ => Err(ClusterError::Protocol("not a control request".into())),
        }
    }
}

/// Chunks this store holds slices of that placement gives to other nodes: what a node
/// running here would still hand over. For commands on a cluster node's store when no node
/// runs there (or it stopped during the command), so they can say how much stays on this
/// disk only. Placement is over every admitted member; a running node also leaves out
/// members silent past `--repair-after`, so its own count can differ by those.
pub fn pending_without_node(cas: &Arc<ouroboros_db::Cas>) -> Result<u64> {
    // A
    let members = crate::membership::Membership::new(Arc::clone(cas)).active()?;
    let key = crate::membership::key_dir(cas.path()).join("node.key");
    let me = crate::membership::read_key(&key)?.public();
    let width = cas.config().k as usize + cas.config().m as usize;
    let mut pending = 0;
    let mut after = None;
    loop {
        let page = cas.replica().held_slices_after(after, 256)?;
        let Some((last, _, _)) = page.last() else {
            return Ok(pending);
        };
        after = Some(*last);
        for (_, chunk, held) in page {
            let placed = ouroboros_db::route::hash_to_node::place(&chunk, &members, width);
            if held
                .iter()
                .any(|i| placed.get(*i as usize).is_some_and(|n| *n != me))
            {
                pending += 1;
            }
        }
    }
}

/// Answer buffers a [`ControlClient`] keeps (a reader has a few threads asking at once).
const KEEP_BUFFERS: usize = 8;

/// A command's connections to its store's node (blocking: commands are not async). Each
/// thread that calls at once gets its own connection, so parallel reads stay parallel.
/// Answers are read into buffers that go round: they carry megabytes of slices, and a
/// fresh buffer per answer would be faulted in page by page.
pub struct ControlClient {
    idle: Mutex<Vec<UnixStream>>,
    buffers: Mutex<Vec<Vec<u8>>>,
    path: PathBuf,
}

impl ControlClient {
    /// Connects to the node running on `store`, if one does.
    pub fn connect(store: &Path) -> Option<ControlClient> {
        // A
        let path = socket_path(store);
        let stream = UnixStream::connect(&path).ok()?;
        Some(ControlClient {
            idle: Mutex::new(vec![stream]),
            buffers: Mutex::new(Vec::new()),
            path,
        })
    }

    /// Sends a request and reads the response.
    pub fn call(&self, req: &Request) -> Result<Response> {
        // A
        let body = self.exchange(req)?;
        let answer = decode_body(&body);
        self.recycle(body);
        match answer? {
            Response::Error(e) => Err(ClusterError::Protocol(e)),
            r => Ok(r),
        }
    }

    /// Sends a request and reads the response's body, undecoded, into a buffer that went
    /// round before.
    fn exchange(&self, req: &Request) -> Result<Vec<u8>> {
        // A
        let io = |e| ClusterError::io(format!("talking to the node at {}", self.path.display()), e);
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut s = match idle {
            Some(s) => s,
            None => UnixStream::connect(&self.path).map_err(io)?,
        };
        s.write_all(&encode_frame(req)?).map_err(io)?;
        let mut h = [0u8; 6];
        s.read_exact(&mut h).map_err(io)?;
        let len = check_header(&h)?;
        let mut body = self
            .buffers
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_default();
        ouroboros_db::buffers::make_room(&mut body, len);
        (&mut s)
            .take(len as u64)
            .read_to_end(&mut body)
            .map_err(io)?;
        if body.len() < len {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if let Ok(mut v) = self.idle.lock() {
            v.push(s);
        }
        Ok(body)
    }

    /// Keeps an answer's buffer for a later one (a few: one per reading thread).
    fn recycle(&self, body: Vec<u8>) {
        // A
        if let Ok(mut b) = self.buffers.lock() {
            if b.len() < KEEP_BUFFERS {
                b.push(body);
            }
        }
    }

    /// Waits until every slice written so far is on its node; returns the chunks kept
    /// here because their node is unreachable.
    pub fn flush(&self) -> Result<u64> {
        // A
        match self.call(&Request::Flush)? {
            Response::Flushed { pending_chunks } => Ok(pending_chunks),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The cluster's status as the node sees it.
    pub fn status(&self) -> Result<ClusterStatus> {
        // A
        match self.call(&Request::Status)? {
            Response::Status(s) => Ok(s),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }
}

impl ControlClient {
    /// The library error for a read the node could not serve: the node gone (the socket
    /// failed) is [`ouroboros_db::Error::Unreachable`], nothing known to be damaged; an
    /// answer that says the slices could not be found is [`ouroboros_db::Error::Corrupt`].
    fn read_failed(&self, e: ClusterError, what: String) -> ouroboros_db::Error {
        // A
        match e {
            ClusterError::Io { .. } => ouroboros_db::Error::Unreachable(format!(
                "the node on {} stopped answering ({e}): start `ouro node run` on this store again",
                self.path.parent().unwrap_or(&self.path).display()
            )),
            e => ouroboros_db::Error::Corrupt(format!("{what}: {e}")),
        }
    }
}

impl RemoteSlices for ControlClient {
    fn fetch(
        &self,
        id: &Hash,
        wanted: &[u8],
        need: usize,
    ) -> ouroboros_db::Result<Vec<(u8, Vec<u8>)>> {
        // A
        match self.call(&Request::Fetch {
            chunk: *id,
            wanted: wanted.to_vec(),
            need: need.min(255) as u8,
        }) {
            Ok(Response::Slices(s)) => Ok(crate::message::from_wire(s)),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(self.read_failed(
                e,
                format!(
                    "chunk {}: the cluster could not provide its slices",
                    id.short()
                ),
            )),
        }
    }

    fn fetch_many(&self, items: &[Wanted]) -> ouroboros_db::Result<FetchedMany> {
        // A
        let mut out = FetchedMany::default();
        for batch in items.chunks(MAX_ITEMS) {
            let req = Request::FetchMany {
                items: batch
                    .iter()
                    .map(|w| FetchWant {
                        chunk: w.chunk,
                        wanted: w.wanted.clone(),
                        need: w.need.min(255) as u8,
                    })
                    .collect(),
            };
            let got = self.exchange(&req).and_then(|body| {
                match slices_many::answer_spans(&body, batch.len()) {
                    Ok(spans) => FetchedMany::new(body, spans)
                        .ok_or_else(|| ClusterError::Protocol("slices outside the answer".into())),
                    Err(e) => {
                        self.recycle(body);
                        Err(e)
                    }
                }
            });
            let got = got.map_err(|e| {
                self.read_failed(e, "the cluster could not provide slices".to_string())
            })?;
            if out.is_empty() {
                out = got;
            } else {
                out.append(got);
            }
        }
        Ok(out)
    }

    fn give_back(&self, buffer: Vec<u8>) {
        // A
        self.recycle(buffer);
    }
}

//! Connections: a bounded number of them, and none held open by a client that sends
//! nothing.
//!
//! [`Bounded`] accepts at most `max` connections at a time (instead of the process
//! running out of file descriptors and failing every `accept`). At the cap, a new
//! client takes the place of the connection idle the longest, which is closed; only
//! when every connection has a request in flight does a new client wait (for one of
//! them to finish). Each [`Conn`] also closes itself when it has been idle — no
//! request in flight — for `idle`: a keep-alive connection nobody uses, or a client
//! that sends a request's headers too slowly (the clock starts when the connection
//! opens or its last response ends, and only a request the server has begun to
//! handle stops it). A request in flight, however long its answer takes or streams,
//! is never cut for taking long; but a client that stops reading its answer (the
//! socket accepts no more bytes for `idle`) loses the connection, which drops the
//! answer and frees its engine slot.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// A listener that admits a bounded number of connections.
pub struct Bounded {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
    /// The open connections (weakly: a closed one is pruned).
    open: Arc<Mutex<Vec<Weak<Shared>>>>,
}

/// What the listener and a connection share.
#[derive(Default)]
struct Shared {
    /// Requests of this connection in flight (counted by the `drain` middleware).
    busy: Arc<AtomicUsize>,
    /// Since when nothing has been in flight (`None` while a request is).
    idle_since: Mutex<Option<Instant>>,
    /// Close at the next chance: a new client needs the place.
    evict: AtomicBool,
    /// Wakes the connection's reader to notice `evict`.
    waker: AtomicWaker,
}

impl Bounded {
    /// At most `max` connections; each closed after `idle` without a request.
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
            idle,
            open: Arc::default(),
        }
    }

    /// Close the connection idle the longest, if one is; false when all are busy.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|w| w.strong_count() > 0);
        let oldest = open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.evict.load(Ordering::SeqCst))
            .filter_map(|c| {
                let since = *c.idle_since.lock().unwrap_or_else(|p| p.into_inner());
                since.map(|t| (t, c))
            })
            .min_by_key(|(t, _)| *t);
        match oldest {
            Some((_, c)) => {
                c.evict.store(true, Ordering::SeqCst);
                c.waker.wake();
                true
            }
            None => false,
        }
    }
}

impl Listener for Bounded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let (io, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep
                    // serving the connections there are, try again shortly.
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    // At the cap with a client waiting: make room from an idle
                    // connection, else wait for a busy one to finish.
                    if self.evict_oldest_idle() {
                        tracing::debug!(
                            "connection limit reached; closed the longest-idle connection"
                        );
                    }
                    let Ok(p) = self.permits.clone().acquire_owned().await else {
                        continue; // never closed
                    };
                    p
                }
            };
            let _ = io.set_nodelay(true);
            let shared = Arc::new(Shared::default());
            {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                open.retain(|w| w.strong_count() > 0);
                open.push(Arc::downgrade(&shared));
            }
            return (
                Conn {
                    io,
                    shared,
                    idle: self.idle,
                    deadline: None,
                    stalled: None,
                    _permit: permit,
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection.
pub struct Conn {
    io: TcpStream,
    shared: Arc<Shared>,
    idle: Duration,
    /// When an idle connection is closed (armed while nothing is in flight).
    deadline: Option<Pin<Box<Sleep>>>,
    /// When a connection whose client stopped reading is closed (armed while a
    /// write cannot proceed).
    stalled: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// A write's outcome, with the stall clock: a client that has not taken any of
    /// its answer for `idle` loses the connection (which drops the response and,
    /// through it, frees the request's engine slot).
    fn stall_check<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading its answer",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let sh = &this.shared;
        if sh.busy.load(Ordering::SeqCst) > 0 {
            this.deadline = None;
            *sh.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        sh.waker.register(cx.waker());
        if sh.evict.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new client",
            )));
        }
        let idle = this.idle;
        let deadline = this.deadline.get_or_insert_with(|| {
            *sh.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            Box::pin(tokio::time::sleep(idle))
        });
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the idle timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stall_check(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.stall_check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall_check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What a request knows of its connection (a request extension through
/// `ConnectInfo`): the client's address and the connection's in-flight counter.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// The client's address.
    pub addr: SocketAddr,
    pub(crate) busy: Arc<AtomicUsize>,
}

impl Connected<IncomingStream<'_, Bounded>> for ConnMeta {
    fn connect_info(stream: IncomingStream<'_, Bounded>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            busy: stream.io().shared.busy.clone(),
        }
    }
}

/// Raise the soft limit on open files to the hard one (the default soft limit of
/// 1024 is below what a server with many clients needs); the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

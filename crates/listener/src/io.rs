//! A connection wrapper that fails a write making no progress for too long.
//!
//! hyper has no write timeout: a client that sends a request and then never reads the answer
//! ("slow read") keeps its connection, its task and the response's buffers forever. A write
//! that stays pending past the deadline fails with `TimedOut`, which ends the connection.
//! Reads are not limited here: waiting for a request head and for body frames have their own
//! timeouts, and a request being computed legitimately reads nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` with a deadline on stalled writes.
pub struct WriteDeadline<IO> {
    inner: IO,
    timeout: Duration,
    /// Armed while a write (or flush, or shutdown) is pending; cleared on progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteDeadline<IO> {
    pub fn new(inner: IO, timeout: Duration) -> Self {
        WriteDeadline { inner, timeout, stalled: None }
    }

    /// Clears the deadline when `poll` made progress; arms it (once) when it is pending, and
    /// turns a pending poll past the deadline into `TimedOut`.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let deadline = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", timeout.as_secs_f64()),
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_timeout_and_progress_never_does() {
        // A pipe of 64 bytes that nobody drains: the first writes fill it, then one stalls.
        let (client, mut server) = tokio::io::duplex(64);
        let mut guarded = WriteDeadline::new(client, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let failed = guarded.write_all(&[7u8; 1024]).await.expect_err("a stalled write fails");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        // Read steadily: a long write that keeps progressing never times out.
        let (client, mut reader) = tokio::io::duplex(64);
        let mut guarded = WriteDeadline::new(client, Duration::from_millis(200));
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let mut chunk = [0u8; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match tokio::io::AsyncReadExt::read(&mut reader, &mut chunk).await {
                    Ok(0) | Err(_) => break sink.len(),
                    Ok(n) => sink.extend_from_slice(&chunk[..n]),
                }
            }
        });
        guarded.write_all(&[1u8; 4096]).await.expect("progressing writes succeed");
        guarded.shutdown().await.expect("shut down");
        drop(guarded);
        assert_eq!(drain.await.expect("drained"), 4096);
        drop(server.shutdown().await);
    }
}

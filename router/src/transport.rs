//! The byte stream under a connection: plain TCP, TLS over TCP, or the
//! streams of a QUIC connection ([`crate::quic::Streams`]).
//!
//! TLS runs sans-IO: after the handshake (done by `tokio-rustls`, see
//! [`crate::tls`]), the connection task drives the `rustls` state machine
//! itself with the socket's readiness, exactly as it drives the AMQP
//! engine, so both transports look alike to it: wait until readable, take
//! what is there; write what the socket takes now, wait until writable for
//! the rest. No extra task, no extra copy of a connection's output beyond
//! the records rustls makes.

use std::io::{self, Read, Write};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use rustls::Connection as TlsConnection;
use tokio::net::TcpStream;

/// Plaintext bytes read per TLS read call at most, so that one busy TLS
/// connection does not starve the others of its task's thread.
const TLS_READ_BUDGET: usize = 256 * 1024;

/// A connection's transport.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<Tls>),
    /// QUIC (between routers), handshake done.
    Quic(Box<crate::quic::Streams>),
}

/// TLS over TCP: the socket and the rustls state machine.
pub struct Tls {
    tcp: TcpStream,
    tls: TlsConnection,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(_) => f.write_str("Transport::Tcp"),
            Self::Tls(_) => f.write_str("Transport::Tls"),
            Self::Quic(_) => f.write_str("Transport::Quic"),
        }
    }
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The stream is open (all that was there was read, or a budget was
    /// reached and the socket stays readable).
    Open,
    /// The peer closed its side.
    Eof,
}

/// `io::Read`/`io::Write` over a tokio socket's non-blocking calls, for
/// rustls's `read_tls`/`write_tls`: `WouldBlock` clears tokio's readiness.
struct Nonblocking<'a>(&'a TcpStream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport {
    /// TLS over `tcp` with the state a finished handshake left.
    pub fn tls(tcp: TcpStream, tls: TlsConnection) -> Self {
        Self::Tls(Box::new(Tls { tcp, tls }))
    }

    /// The TCP socket, if it runs over TCP.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Tcp(tcp) => Some(tcp),
            Self::Tls(t) => Some(&t.tcp),
            Self::Quic(_) => None,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Quic(q) => Some(q.peer_addr()),
            _ => self.tcp()?.peer_addr().ok(),
        }
    }

    /// Our address.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Quic(q) => Some(q.local_addr()),
            _ => self.tcp()?.local_addr().ok(),
        }
    }

    /// Ready when the socket may be read (QUIC: a frame came, or the
    /// end). Polled rather than awaited: a connection waiting for input
    /// (every idle one) then holds no future for it.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(tcp) => tcp.poll_read_ready(cx),
            Self::Tls(t) => t.tcp.poll_read_ready(cx),
            Self::Quic(q) => q.poll_readable(cx).map(Ok),
        }
    }

    /// Ready when the socket may be written (QUIC: at once, as it takes
    /// all that is written).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(tcp) => tcp.poll_write_ready(cx),
            Self::Tls(t) => t.tcp.poll_write_ready(cx),
            Self::Quic(_) => Poll::Ready(Ok(())),
        }
    }

    /// Waits until the socket may be written.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// Reads what is available without waiting and hands the plaintext to
    /// `sink`, in order; `buf` is scratch space.
    ///
    /// # Errors
    ///
    /// The socket's errors; for TLS, a record that fails to decrypt or
    /// violates the protocol (`InvalidData`; the alert that tells the
    /// peer is queued: [`flush_now`](Self::flush_now) sends it).
    pub fn read(&mut self, buf: &mut [u8], mut sink: impl FnMut(&[u8])) -> io::Result<ReadOutcome> {
        match self {
            Self::Tcp(tcp) => match tcp.try_read(buf) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => {
                    sink(&buf[..n]);
                    Ok(ReadOutcome::Open)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Open),
                Err(e) => Err(e),
            },
            Self::Tls(t) => t.read(buf, &mut sink),
            Self::Quic(q) => Ok(q.read(&mut sink)),
        }
    }

    /// Writes as much of `data` as the transport takes now; returns how
    /// much it took (`WouldBlock` if nothing).
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub fn try_write(&mut self, data: &Bytes) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => tcp.try_write(data),
            Self::Tls(t) => t.try_write(data),
            Self::Quic(q) => {
                q.write(data.clone());
                Ok(data.len())
            }
        }
    }

    /// Writes encrypted output waiting for the socket, as far as it takes
    /// it now (plain TCP keeps none).
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub fn flush_now(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(_) | Self::Quic(_) => Ok(()),
            Self::Tls(t) => t.flush_now(),
        }
    }

    /// Whether output taken by [`try_write`](Self::try_write) still waits
    /// for the socket.
    pub fn wants_write(&self) -> bool {
        match self {
            Self::Tcp(_) => false,
            Self::Tls(t) => t.tls.wants_write(),
            Self::Quic(_) => false,
        }
    }

    /// Writes all of `data`, waiting as needed.
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub async fn write_all(&mut self, data: &Bytes) -> io::Result<()> {
        let mut data = data.clone();
        while !data.is_empty() {
            match self.try_write(&data) {
                Ok(n) => data.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.drain().await
    }

    /// Ends our side: TLS sends its `close_notify` (RFC 8446 §6.1), so the
    /// peer can tell the end from a truncation; then writes what waits.
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(_) => Ok(()),
            Self::Tls(t) => {
                t.tls.send_close_notify();
                self.drain().await
            }
            Self::Quic(q) => {
                q.shutdown().await;
                Ok(())
            }
        }
    }

    /// Waits until no encrypted output is left.
    async fn drain(&mut self) -> io::Result<()> {
        loop {
            self.flush_now()?;
            if !self.wants_write() {
                return Ok(());
            }
            self.writable().await?;
        }
    }
}

impl Tls {
    fn read(&mut self, buf: &mut [u8], sink: &mut impl FnMut(&[u8])) -> io::Result<ReadOutcome> {
        let mut taken = 0;
        loop {
            // Hand over every byte already decrypted before reading more
            // (rustls refuses to read while its plaintext buffer is full).
            loop {
                match self.tls.reader().read(buf) {
                    Ok(0) => return Ok(ReadOutcome::Eof), // close_notify
                    Ok(n) => {
                        taken += n;
                        sink(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The peer closed TCP without close_notify: a
                    // truncation, but the AMQP layer above knows whether
                    // anything was lost.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(ReadOutcome::Eof);
                    }
                    Err(e) => return Err(e),
                }
            }
            if taken >= TLS_READ_BUDGET {
                return Ok(ReadOutcome::Open);
            }
            match self.tls.read_tls(&mut Nonblocking(&self.tcp)) {
                // EOF: once what was before it is handed over, the reader
                // says whether the peer sent close_notify; either way the
                // stream is over.
                Ok(0) => {
                    self.process()?;
                    while let Ok(n @ 1..) = self.tls.reader().read(buf) {
                        sink(&buf[..n]);
                    }
                    return Ok(ReadOutcome::Eof);
                }
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Open),
                Err(e) => return Err(e),
            }
        }
    }

    fn process(&mut self) -> io::Result<()> {
        self.tls
            .process_new_packets()
            .map(|_| ())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.flush_now()?;
        let n = self.tls.writer().write(data)?;
        self.flush_now()?;
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush_now(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Nonblocking(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

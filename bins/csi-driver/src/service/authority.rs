//! Accepting any HTTP/2 `:authority` on the unix socket.
//!
//! On a unix socket the authority names nothing, and clients fill it in as they like:
//! older grpc-go (gocsi's `csc`), grpc-java, Python's grpcio ≥ 1.57 and others send the
//! socket path or its %-encoding. `h2`, under tonic, parses `:authority` as a URI authority
//! and answers a path with RST_STREAM PROTOCOL_ERROR ("malformed authority"), and it has no
//! option to relax that. So every connection's client→server bytes pass through
//! [`Rewriter`]: it follows the HTTP/2 frames, decodes each header block with the
//! connection's HPACK state and re-encodes it without the dynamic table (so `h2`'s decoder
//! table stays empty and consistent), with an authority `h2` would refuse replaced by
//! `localhost`. Nothing else changes meaning: every other header, pseudo-header and frame
//! reaches `h2` as the client sent it, and `h2` still judges all of it. Server→client bytes
//! are untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What the client must send first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts without a setting (SETTINGS_MAX_FRAME_SIZE's
/// initial value); re-encoded blocks are split to it, so no setting needs following.
pub const MAX_FRAME: usize = 16_384;
/// The HPACK table size the server allows the client's encoder (SETTINGS_HEADER_TABLE_SIZE's
/// initial value; tonic does not change it).
const HEADER_TABLE_SIZE: usize = 4096;
/// A header block larger than this (encoded) closes the connection rather than being
/// buffered: far above any CSI request (`h2`'s own header-list limit is smaller).
pub const MAX_BLOCK: usize = 1 << 20;
/// What replaces an authority `h2` would refuse.
pub const REPLACEMENT: &[u8] = b"localhost";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("header block decoding failed: {0}")]
    Hpack(String),
    #[error("header block of stream {0} is larger than {MAX_BLOCK} bytes")]
    TooLarge(u32),
    #[error("frame type {got:#x} on stream {stream} inside the header block of stream {open}")]
    Interleaved { got: u8, stream: u32, open: u32 },
    #[error("CONTINUATION on stream {0} without an open header block")]
    StrayContinuation(u32),
    #[error("HEADERS frame of stream {0} is shorter than its padding and priority fields")]
    BadPadding(u32),
}

enum State {
    /// Bytes of the client preface still to pass.
    Preface(usize),
    /// Collecting a 9-byte frame header.
    Header,
    /// Passing this many payload bytes of a frame that is not a header block.
    Pass(usize),
    /// Collecting the payload of a HEADERS or CONTINUATION frame.
    Block {
        ty: u8,
        flags: u8,
        stream: u32,
        len: usize,
    },
}

/// A header block begun by HEADERS and not yet ended.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    /// Stream dependency and weight, when the HEADERS frame had PRIORITY.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The client→server byte stream of one connection, rewritten as described in the module
/// documentation. Pure: bytes in, bytes out.
pub struct Rewriter {
    state: State,
    pending: Vec<u8>,
    open: Option<OpenBlock>,
    decoder: Decoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    pub fn new() -> Rewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Rewriter {
            state: State::Preface(PREFACE.len()),
            pending: Vec::new(),
            open: None,
            decoder,
        }
    }

    /// Consumes `input`, appending to `out` everything that can be forwarded so far.
    /// An error is a connection error: the connection must be closed.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        while !input.is_empty() {
            match self.state {
                State::Preface(left) | State::Pass(left) => {
                    let n = left.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = match (&self.state, left - n) {
                        (_, 0) => State::Header,
                        (State::Preface(_), l) => State::Preface(l),
                        (_, l) => State::Pass(l),
                    };
                }
                State::Header => {
                    let n = (FRAME_HEADER - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.pending.len() == FRAME_HEADER {
                        let h = std::mem::take(&mut self.pending);
                        self.frame_header(&h, out)?;
                    }
                }
                State::Block { len, .. } => {
                    let n = (len - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.pending.len() == len {
                        self.block_frame(out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn frame_header(&mut self, h: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (ty, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if let Some(open) = &self.open
            && (ty != CONTINUATION || stream != open.stream)
        {
            // RFC 9113 §6.10: nothing may come between a block's frames.
            return Err(RewriteError::Interleaved {
                got: ty,
                stream,
                open: open.stream,
            });
        }
        if ty == CONTINUATION && self.open.is_none() {
            return Err(RewriteError::StrayContinuation(stream));
        }
        if ty == HEADERS || ty == CONTINUATION {
            let have = self.open.as_ref().map_or(0, |o| o.fragment.len());
            if have + len > MAX_BLOCK {
                return Err(RewriteError::TooLarge(stream));
            }
            self.state = State::Block {
                ty,
                flags,
                stream,
                len,
            };
            if len == 0 {
                self.block_frame(out)?;
            }
        } else {
            out.extend_from_slice(h);
            self.state = if len == 0 {
                State::Header
            } else {
                State::Pass(len)
            };
        }
        Ok(())
    }

    /// A whole HEADERS or CONTINUATION payload is in `pending`.
    fn block_frame(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let State::Block {
            ty, flags, stream, ..
        } = self.state
        else {
            unreachable!("block_frame outside a block frame");
        };
        let payload = std::mem::take(&mut self.pending);
        self.state = State::Header;
        if ty == HEADERS {
            let mut body = &payload[..];
            let mut pad = 0;
            if flags & PADDED != 0 {
                let (&p, rest) = body.split_first().ok_or(RewriteError::BadPadding(stream))?;
                pad = p as usize;
                body = rest;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                if body.len() < 5 {
                    return Err(RewriteError::BadPadding(stream));
                }
                priority = Some(body[..5].try_into().expect("five bytes"));
                body = &body[5..];
            }
            if pad > body.len() {
                return Err(RewriteError::BadPadding(stream));
            }
            self.open = Some(OpenBlock {
                stream,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment: body[..body.len() - pad].to_vec(),
            });
        } else {
            let open = self.open.as_mut().expect("checked in frame_header");
            open.fragment.extend_from_slice(&payload);
        }
        if flags & END_HEADERS != 0 {
            let open = self.open.take().expect("a block is open");
            self.emit(open, out)?;
        }
        Ok(())
    }

    fn emit(&mut self, open: OpenBlock, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let mut block = Vec::with_capacity(open.fragment.len() + 64);
        let mut err = None;
        self.decoder
            .decode_with_cb(&open.fragment, |name, value| {
                let value: &[u8] = if &*name == b":authority" && !acceptable(&value) {
                    REPLACEMENT
                } else {
                    &value
                };
                if let Err(e) = encode_literal(&name, value, &mut block) {
                    err.get_or_insert(e);
                }
            })
            .map_err(|e| RewriteError::Hpack(format!("{e:?}")))?;
        if let Some(e) = err {
            return Err(RewriteError::Hpack(e.to_string()));
        }
        write_block(&open, &block, out);
        Ok(())
    }
}

/// What `h2` accepts as `:authority` (it parses it as [`http::uri::Authority`]).
fn acceptable(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// A literal header field without indexing, new name (RFC 7541 §6.2.2): it touches no
/// dynamic table on either side.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.push(0);
    for s in [name, value] {
        loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, &mut *out)?;
        out.extend_from_slice(s);
    }
    Ok(())
}

/// HEADERS (with the block's END_STREAM and PRIORITY, without padding) and as many
/// CONTINUATIONs as [`MAX_FRAME`] needs.
fn write_block(open: &OpenBlock, block: &[u8], out: &mut Vec<u8>) {
    let prio_len = if open.priority.is_some() { 5 } else { 0 };
    let first = block.len().min(MAX_FRAME - prio_len);
    let mut rest = &block[first..];
    let mut flags = 0;
    if open.end_stream {
        flags |= END_STREAM;
    }
    if open.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    frame_header(out, first + prio_len, HEADERS, flags, open.stream);
    if let Some(p) = open.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&block[..first]);
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        let flags = if n == rest.len() { END_HEADERS } else { 0 };
        frame_header(out, n, CONTINUATION, flags, open.stream);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn frame_header(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[ty, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// A connection whose reads go through a [`Rewriter`]; writes pass unchanged.
pub struct AnyAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> AnyAuthority<S> {
    pub fn new(inner: S) -> AnyAuthority<S> {
        AnyAuthority {
            inner,
            rewriter: Rewriter::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            if let Err(e) = this.rewriter.feed(rb.filled(), &mut this.out) {
                tracing::warn!(error = %e, "closing a client connection");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for AnyAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;

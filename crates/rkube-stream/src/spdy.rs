//! SPDY/3.1 as Kubernetes uses it: an HTTP/1.1 connection upgraded with `Upgrade: SPDY/3.1`
//! carries many streams, each opened by the client with a SYN_STREAM whose headers say what it
//! is (`streamType: stdout`, `port: 80`, ...), answered by a SYN_REPLY, then data frames in
//! both directions, each side ending its half with FIN.
//!
//! Header blocks are zlib-compressed with SPDY/3's dictionary, one compression context per
//! direction for the whole connection (so frames must be encoded in the order they are sent).
//! As in the Go implementation Kubernetes uses, there is no flow control: WINDOW_UPDATE and
//! SETTINGS are read and ignored, and none are sent; pings from the peer are echoed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

/// Header names (lower case) and values, in order. A name may repeat.
pub type Headers = Vec<(String, String)>;

/// The first value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// RST_STREAM status codes.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;
pub const CANCEL: u32 = 5;
pub const INTERNAL_ERROR: u32 = 6;

const VERSION: u16 = 3;
/// The largest frame read (data frames are at most 2^24 - 1 bytes by their length field).
const MAX_FRAME: usize = 1 << 24;
/// The largest header block accepted once decompressed.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Data written is cut into frames of at most this many bytes.
pub const MAX_DATA_FRAME: usize = 32 * 1024;

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        associated: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type SPDY/3 does not define: ignored, as the spec asks.
    Unknown {
        kind: u16,
    },
}

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// The zlib dictionary SPDY/3 header blocks are compressed with (section 2.6.10.1 of the
/// SPDY/3 draft): these names, each after its length as 4 bytes big-endian, then a run of
/// common values.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

fn invalid(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("spdy: {msg}"))
}

/// Encodes and decodes frames for one connection: each direction keeps its zlib context.
pub struct Codec {
    deflate: flate2::Compress,
    inflate: flate2::Decompress,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        let mut deflate = flate2::Compress::new(flate2::Compression::default(), true);
        // A fresh zlib stream takes a dictionary before its first byte; cannot fail then.
        let _ = deflate.set_dictionary(dictionary());
        Codec { deflate, inflate: flate2::Decompress::new(true) }
    }

    /// Appends `frame`'s bytes to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> io::Result<()> {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, body: &[u8]| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(kind);
            out.put_u8(flags);
            out.put_uint(body.len() as u64, 3);
            out.extend_from_slice(body);
        };
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match frame {
            Frame::SynStream { id, associated, priority, fin: f, unidirectional, headers } => {
                let mut body = Vec::new();
                body.put_u32(id & 0x7fff_ffff);
                body.put_u32(associated & 0x7fff_ffff);
                body.put_u8((priority & 0x7) << 5);
                body.put_u8(0);
                body.extend_from_slice(&self.compress(&header_block(headers))?);
                let flags = fin(*f) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                control(out, 1, flags, &body);
            }
            Frame::SynReply { id, fin: f, headers } => {
                let mut body = Vec::new();
                body.put_u32(id & 0x7fff_ffff);
                body.extend_from_slice(&self.compress(&header_block(headers))?);
                control(out, 2, fin(*f), &body);
            }
            Frame::RstStream { id, status } => {
                let mut body = Vec::new();
                body.put_u32(id & 0x7fff_ffff);
                body.put_u32(*status);
                control(out, 3, 0, &body);
            }
            Frame::Settings => control(out, 4, 0, &0u32.to_be_bytes()),
            Frame::Ping { id } => control(out, 6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = Vec::new();
                body.put_u32(last_good & 0x7fff_ffff);
                body.put_u32(*status);
                control(out, 7, 0, &body);
            }
            Frame::Headers { id, fin: f, headers } => {
                let mut body = Vec::new();
                body.put_u32(id & 0x7fff_ffff);
                body.extend_from_slice(&self.compress(&header_block(headers))?);
                control(out, 8, fin(*f), &body);
            }
            Frame::WindowUpdate { id, delta } => {
                let mut body = Vec::new();
                body.put_u32(id & 0x7fff_ffff);
                body.put_u32(delta & 0x7fff_ffff);
                control(out, 9, 0, &body);
            }
            Frame::Data { id, fin: f, data } => {
                if data.len() >= MAX_FRAME {
                    return Err(invalid("data frame too large"));
                }
                out.put_u32(id & 0x7fff_ffff);
                out.put_u8(fin(*f));
                out.put_uint(data.len() as u64, 3);
                out.extend_from_slice(data);
            }
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// Takes one whole frame off the front of `buf`, or None if more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = ((buf[5] as usize) << 16) | ((buf[6] as usize) << 8) | buf[7] as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut body = buf.split_to(len).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data { id, fin, data: body }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(invalid(format!("unsupported version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |body: &Bytes, n: usize| {
            if body.len() < n {
                Err(invalid(format!("control frame {kind} too short")))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            1 => {
                need(&body, 10)?;
                let id = body.get_u32() & 0x7fff_ffff;
                let associated = body.get_u32() & 0x7fff_ffff;
                let priority = body.get_u8() >> 5;
                body.advance(1);
                let headers = parse_header_block(&self.decompress(&body)?)?;
                Frame::SynStream {
                    id,
                    associated,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                }
            }
            2 => {
                need(&body, 4)?;
                let id = body.get_u32() & 0x7fff_ffff;
                Frame::SynReply { id, fin, headers: parse_header_block(&self.decompress(&body)?)? }
            }
            3 => {
                need(&body, 8)?;
                Frame::RstStream { id: body.get_u32() & 0x7fff_ffff, status: body.get_u32() }
            }
            4 => Frame::Settings,
            6 => {
                need(&body, 4)?;
                Frame::Ping { id: body.get_u32() }
            }
            7 => {
                need(&body, 8)?;
                Frame::GoAway { last_good: body.get_u32() & 0x7fff_ffff, status: body.get_u32() }
            }
            8 => {
                need(&body, 4)?;
                let id = body.get_u32() & 0x7fff_ffff;
                Frame::Headers { id, fin, headers: parse_header_block(&self.decompress(&body)?)? }
            }
            9 => {
                need(&body, 8)?;
                Frame::WindowUpdate { id: body.get_u32() & 0x7fff_ffff, delta: body.get_u32() & 0x7fff_ffff }
            }
            other => Frame::Unknown { kind: other },
        };
        Ok(Some(frame))
    }

    fn compress(&mut self, raw: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let done = (self.deflate.total_in() - start) as usize;
            self.deflate
                .compress_vec(&raw[done..], &mut out, flate2::FlushCompress::Sync)
                .map_err(|e| invalid(format!("compress: {e}")))?;
            let done = (self.deflate.total_in() - start) as usize;
            if done == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(256);
        }
    }

    fn decompress(&mut self, raw: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(raw.len() * 4 + 64);
        let start = self.inflate.total_in();
        loop {
            let done = (self.inflate.total_in() - start) as usize;
            let before = (self.inflate.total_in(), self.inflate.total_out());
            match self.inflate.decompress_vec(&raw[done..], &mut out, flate2::FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary()).map_err(|e| invalid(format!("dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(invalid(format!("header block: {e}"))),
            }
            let done = (self.inflate.total_in() - start) as usize;
            if done == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(invalid("header block too large"));
            }
            if before == (self.inflate.total_in(), self.inflate.total_out()) && out.len() < out.capacity() {
                return Err(invalid("truncated header block"));
            }
            out.reserve(out.len().max(256));
        }
    }
}

fn header_block(headers: &Headers) -> Vec<u8> {
    // Repeated names travel as one entry with NUL-separated values.
    let mut merged: Vec<(String, String)> = Vec::new();
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        match merged.iter_mut().find(|(m, _)| *m == n) {
            Some((_, values)) => {
                values.push('\0');
                values.push_str(v);
            }
            None => merged.push((n, v.clone())),
        }
    }
    let mut b = Vec::new();
    b.put_u32(merged.len() as u32);
    for (n, v) in merged {
        b.put_u32(n.len() as u32);
        b.extend_from_slice(n.as_bytes());
        b.put_u32(v.len() as u32);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

fn parse_header_block(raw: &[u8]) -> io::Result<Headers> {
    let mut b = raw;
    let take = |b: &mut &[u8]| -> io::Result<String> {
        if b.len() < 4 {
            return Err(invalid("short header block"));
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(invalid("short header block"));
        }
        let s = String::from_utf8_lossy(&b[..n]).to_string();
        b.advance(n);
        Ok(s)
    };
    if b.len() < 4 {
        return Err(invalid("short header block"));
    }
    let count = b.get_u32() as usize;
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut b)?;
        if name.is_empty() {
            return Err(invalid("empty header name"));
        }
        let value = take(&mut b)?;
        for v in value.split('\0') {
            headers.push((name.to_ascii_lowercase(), v.to_string()));
        }
    }
    Ok(headers)
}

enum Out {
    Frame(Frame),
    /// GOAWAY, flush and close the write side; answered once done.
    Close(oneshot::Sender<()>),
}

struct Slot {
    data: Option<mpsc::Sender<Bytes>>,
    reply: Option<oneshot::Sender<Result<(), u32>>>,
}

struct Inner {
    out: mpsc::Sender<Out>,
    streams: Mutex<HashMap<u32, Slot>>,
    next_id: AtomicU32,
    last_received: AtomicU32,
    /// True once the connection's read side ended.
    ended: watch::Receiver<bool>,
}

/// One SPDY connection: a handle (cheap to clone) to open streams on and to close it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// One stream: its headers, what the peer sends on it (ends at the peer's FIN, a reset or
/// the connection's end) and a way to send.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub rx: mpsc::Receiver<Bytes>,
    pub tx: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The sending half of a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "spdy: connection closed")
}

impl StreamWriter {
    /// Sends `data` (in frames of at most [`MAX_DATA_FRAME`] bytes).
    pub async fn send(&self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA_FRAME));
            self.frame(Frame::Data { id: self.id, fin: false, data: chunk }).await?;
        }
        Ok(())
    }

    /// Ends this side of the stream (FIN).
    pub async fn finish(&self) -> io::Result<()> {
        self.frame(Frame::Data { id: self.id, fin: true, data: Bytes::new() }).await
    }

    /// Accepts a stream the peer opened (SYN_REPLY).
    pub async fn reply(&self) -> io::Result<()> {
        self.frame(Frame::SynReply { id: self.id, fin: false, headers: Vec::new() }).await
    }

    /// Ends the stream in both directions with a status (RST_STREAM).
    pub async fn reset(&self, status: u32) -> io::Result<()> {
        self.frame(Frame::RstStream { id: self.id, status }).await
    }

    async fn frame(&self, f: Frame) -> io::Result<()> {
        self.out.send(Out::Frame(f)).await.map_err(|_| closed())
    }
}

impl Session {
    /// Starts a session on an upgraded connection. `server`: this side answers streams the
    /// client opens (streams it opens itself get even ids). Streams the peer opens arrive
    /// on the returned receiver, which ends with the connection.
    pub fn start<IO>(io: IO, server: bool) -> (Session, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ended_tx, ended) = watch::channel(false);
        let inner = Arc::new(Inner {
            out: out_tx,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(if server { 2 } else { 1 }),
            last_received: AtomicU32::new(0),
            ended,
        });
        let (incoming_tx, incoming) = mpsc::channel(32);
        tokio::spawn(write_loop(write, out_rx));
        tokio::spawn(read_loop(read, inner.clone(), incoming_tx, server, ended_tx));
        (Session { inner }, incoming)
    }

    /// Opens a stream with `headers` and waits (at most `timeout`) for the peer's reply.
    pub async fn open(&self, headers: Headers, timeout: Duration) -> io::Result<Stream> {
        let id = self.inner.next_id.fetch_add(2, Ordering::Relaxed);
        let (data_tx, rx) = mpsc::channel(32);
        let (reply_tx, reply) = oneshot::channel();
        self.lock().insert(id, Slot { data: Some(data_tx), reply: Some(reply_tx) });
        let tx = StreamWriter { id, out: self.inner.out.clone() };
        let syn = Frame::SynStream {
            id,
            associated: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers.clone(),
        };
        tx.frame(syn).await?;
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(Ok(()))) => Ok(Stream { id, headers, rx, tx }),
            Ok(Ok(Err(status))) => {
                Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("spdy: stream reset ({status})")))
            }
            Ok(Err(_)) => Err(closed()),
            Err(_) => {
                self.lock().remove(&id);
                Err(io::Error::new(io::ErrorKind::TimedOut, "spdy: timed out waiting for a stream reply"))
            }
        }
    }

    /// Sends GOAWAY, flushes what was queued before it and closes the connection's write
    /// side.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.out.send(Out::Close(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }

    /// Waits until the peer's side of the connection ended.
    pub async fn ended(&self) {
        let mut rx = self.inner.ended.clone();
        let _ = rx.wait_for(|e| *e).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn write_loop<W: AsyncWrite>(write: W, mut queue: mpsc::Receiver<Out>) {
    let mut write = std::pin::pin!(write);
    let mut codec_out = Codec::new();
    let mut buf = Vec::with_capacity(MAX_DATA_FRAME + 64);
    let mut last_good = 0;
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut close = None;
        // Batch what is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Out::Frame(f) => {
                    if let Frame::SynReply { id, .. } = &f {
                        last_good = last_good.max(*id);
                    }
                    if codec_out.encode(&f, &mut buf).is_err() {
                        return;
                    }
                }
                Out::Close(done) => {
                    let _ = codec_out.encode(&Frame::GoAway { last_good, status: 0 }, &mut buf);
                    close = Some(done);
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                next = queue.try_recv().ok();
            }
        }
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            return;
        }
        buf.clear();
        if let Some(done) = close {
            let _ = write.shutdown().await;
            let _ = done.send(());
            return;
        }
    }
}

async fn read_loop<R: AsyncRead>(
    read: R,
    inner: Arc<Inner>,
    incoming: mpsc::Sender<Stream>,
    server: bool,
    ended: watch::Sender<bool>,
) {
    let mut read = std::pin::pin!(read);
    let mut codec = Codec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let lock = || inner.streams.lock().unwrap_or_else(|e| e.into_inner());
    'conn: loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => break 'conn,
            };
            match frame {
                Frame::SynStream { id, fin, headers, .. } => {
                    // The peer's streams have the other parity and rising ids.
                    let theirs = (id % 2 == 1) == server;
                    let last = inner.last_received.load(Ordering::Relaxed);
                    if !theirs || id <= last {
                        let _ = inner.out.send(Out::Frame(Frame::RstStream { id, status: PROTOCOL_ERROR })).await;
                        continue;
                    }
                    inner.last_received.store(id, Ordering::Relaxed);
                    let (data_tx, rx) = mpsc::channel(32);
                    lock().insert(id, Slot { data: (!fin).then_some(data_tx), reply: None });
                    let stream = Stream { id, headers, rx, tx: StreamWriter { id, out: inner.out.clone() } };
                    if incoming.send(stream).await.is_err() {
                        let _ = inner.out.send(Out::Frame(Frame::RstStream { id, status: REFUSED_STREAM })).await;
                    }
                }
                Frame::SynReply { id, fin, .. } => {
                    let mut streams = lock();
                    if let Some(slot) = streams.get_mut(&id) {
                        if let Some(r) = slot.reply.take() {
                            let _ = r.send(Ok(()));
                        }
                        if fin {
                            slot.data = None;
                        }
                    }
                }
                Frame::Data { id, fin, data } => {
                    let sender = lock().get(&id).and_then(|s| s.data.clone());
                    if let Some(tx) = sender {
                        if !data.is_empty() {
                            let _ = tx.send(data).await;
                        }
                    }
                    if fin {
                        if let Some(slot) = lock().get_mut(&id) {
                            slot.data = None;
                        }
                    }
                }
                Frame::RstStream { id, status } => {
                    if let Some(mut slot) = lock().remove(&id) {
                        if let Some(r) = slot.reply.take() {
                            let _ = r.send(Err(status));
                        }
                    }
                }
                Frame::Ping { id } => {
                    // Echo the peer's pings (theirs have the other parity).
                    let ours = if server { 0 } else { 1 };
                    if id % 2 != ours {
                        let _ = inner.out.send(Out::Frame(Frame::Ping { id })).await;
                    }
                }
                Frame::Headers { id, fin: true, .. } => {
                    if let Some(slot) = lock().get_mut(&id) {
                        slot.data = None;
                    }
                }
                Frame::GoAway { .. }
                | Frame::Headers { .. }
                | Frame::Settings
                | Frame::WindowUpdate { .. }
                | Frame::Unknown { .. } => {}
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.len() > MAX_FRAME + 8 {
            break;
        }
    }
    lock().clear();
    let _ = ended.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",*,enq=0."));
    }

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let (mut a, mut b) = (Codec::new(), Codec::new());
        let mut wire = Vec::new();
        for f in frames {
            a.encode(f, &mut wire).unwrap();
        }
        let mut buf = BytesMut::from(&wire[..]);
        let mut back = Vec::new();
        while let Some(f) = b.decode(&mut buf).unwrap() {
            back.push(f);
        }
        assert!(buf.is_empty());
        back
    }

    #[test]
    fn frames_survive_encoding_with_one_compression_context_per_direction() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Headers>();
        let frames = vec![
            Frame::SynStream {
                id: 1,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                id: 3,
                associated: 0,
                priority: 2,
                fin: true,
                unidirectional: false,
                headers: h(&[("streamtype", "stdout"), ("port", "80"), ("port", "81")]),
            },
            Frame::SynReply { id: 1, fin: false, headers: vec![] },
            Frame::Data { id: 3, fin: true, data: Bytes::from_static(b"hello") },
            Frame::Ping { id: 7 },
            Frame::RstStream { id: 5, status: CANCEL },
            Frame::GoAway { last_good: 3, status: 0 },
            Frame::WindowUpdate { id: 1, delta: 1000 },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let mut c = Codec::new();
        let mut wire = Vec::new();
        c.encode(&Frame::Data { id: 1, fin: false, data: Bytes::from_static(b"abcdef") }, &mut wire).unwrap();
        let mut d = Codec::new();
        let mut buf = BytesMut::from(&wire[..5]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[5..]);
        assert!(matches!(d.decode(&mut buf).unwrap(), Some(Frame::Data { .. })));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Codec::new();
        let mut buf = BytesMut::from(&[0x80, 0x02, 0, 1, 0, 0, 0, 2, 1, 2][..]);
        assert!(d.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&[0x80, 0x03, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 9][..]);
        assert!(d.decode(&mut buf).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Codec::new();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
        }

        #[test]
        fn headers_round_trip(pairs in proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", "[ -~]{0,40}"), 0..8)) {
            let headers: Headers = pairs;
            let f = Frame::SynReply { id: 9, fin: false, headers: headers.clone() };
            let back = roundtrip(std::slice::from_ref(&f));
            // Repeated names come back grouped, in first-seen order.
            let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
            for (n, v) in &headers {
                match grouped.iter_mut().find(|(m, _)| m == n) {
                    Some((_, vs)) => vs.push(v.clone()),
                    None => grouped.push((n.clone(), vec![v.clone()])),
                }
            }
            let expect: Headers = grouped.into_iter().flat_map(|(n, vs)| vs.into_iter().map(move |v| (n.clone(), v))).collect();
            prop_assert_eq!(back, vec![Frame::SynReply { id: 9, fin: false, headers: expect }]);
        }
    }

    #[tokio::test]
    async fn a_client_opens_streams_the_server_answers_and_both_finish() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (server, mut incoming) = Session::start(a, true);
        let (client, _none) = Session::start(b, false);
        let srv = tokio::spawn(async move {
            let mut s = incoming.recv().await.unwrap();
            assert_eq!(s.header("streamType"), Some("stdin"));
            s.tx.reply().await.unwrap();
            let mut got = Vec::new();
            while let Some(d) = s.rx.recv().await {
                got.extend_from_slice(&d);
            }
            s.tx.send(Bytes::from(got)).await.unwrap();
            s.tx.finish().await.unwrap();
            server.close().await;
        });
        let mut s = client.open(vec![("streamtype".into(), "stdin".into())], Duration::from_secs(5)).await.unwrap();
        s.tx.send(Bytes::from(vec![7u8; 100_000])).await.unwrap();
        s.tx.finish().await.unwrap();
        let mut back = 0;
        while let Some(d) = s.rx.recv().await {
            assert!(d.iter().all(|b| *b == 7));
            back += d.len();
        }
        assert_eq!(back, 100_000);
        srv.await.unwrap();
        client.ended().await;
    }
}

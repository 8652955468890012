//! The WebSocket framings of exec, attach and port-forward streams: in `channel.k8s.io`
//! (and `v4.channel.k8s.io`, `v5.channel.k8s.io`) each binary message is one channel byte
//! then the payload; in the `base64.` variants each text message is the channel as an ASCII
//! digit then the payload in base64. v5 adds a close message, `[255, channel]`.

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5's close-channel marker.
pub const CLOSE: u8 = 255;

/// WebSocket sub-protocols for exec and attach that the kubelet serves (`""` being a
/// client that named none), and v5, which only the API server speaks to clients.
pub const BINARY: &str = "channel.k8s.io";
pub const BASE64: &str = "base64.channel.k8s.io";
pub const V4_BINARY: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const V5_BINARY: &str = "v5.channel.k8s.io";
pub const KUBELET_PROTOCOLS: &[&str] = &[V4_BINARY, V4_BASE64, BINARY, BASE64];
/// What the kubelet's WebSocket port-forward speaks (`""`: the client named none): for the
/// i-th port, data on channel 2i and errors on 2i+1, each opened by the port, little-endian.
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &[V4_BINARY, V4_BASE64, ""];
/// The subprotocol a port-forward WebSocket tunnel carries SPDY in.
pub const TUNNEL_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// One message's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Data(u8, Vec<u8>),
    /// v5: the sender will write no more on this channel.
    Close(u8),
}

/// Whether a negotiated protocol frames in base64 text messages.
pub fn is_base64(protocol: &str) -> bool {
    protocol.contains("base64.")
}

/// The remotecommand protocol version a WebSocket protocol means (its Status format).
pub fn remotecommand_version(protocol: &str) -> &'static str {
    if protocol.starts_with("v5.") {
        crate::remotecommand::V5
    } else if protocol.starts_with("v4.") {
        crate::remotecommand::V4
    } else {
        crate::remotecommand::V1
    }
}

/// A binary message for `channel` (the base64 form is [`encode_text`]).
pub fn encode_binary(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload.len() + 1);
    m.push(channel);
    m.extend_from_slice(payload);
    m
}

pub fn encode_text(channel: u8, payload: &[u8]) -> String {
    format!("{}{}", (b'0' + channel) as char, base64::engine::general_purpose::STANDARD.encode(payload))
}

/// Reads a binary message; `v5`: `[255, n]` closes channel n.
pub fn decode_binary(m: &[u8], v5: bool) -> Option<Message> {
    let (&channel, payload) = m.split_first()?;
    if v5 && channel == CLOSE {
        return payload.first().map(|c| Message::Close(*c));
    }
    Some(Message::Data(channel, payload.to_vec()))
}

/// Reads a base64 text message.
pub fn decode_text(m: &str) -> Option<Message> {
    let (first, rest) = m.as_bytes().split_first()?;
    let channel = first.checked_sub(b'0').filter(|c| *c <= 9)?;
    let payload = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
    Some(Message::Data(channel, payload))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// The first protocol the client offers (`Sec-WebSocket-Protocol`, comma-separated values)
/// that `supported` has; a client that offers none gets `""` where `""` is supported.
pub fn choose_protocol<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    if offered.is_empty() {
        return supported.iter().copied().find(|s| s.is_empty());
    }
    offered.iter().find_map(|o| supported.iter().copied().find(|s| s == o))
}

enum Out {
    Data(u8, Bytes),
    CloseChannel(u8),
    Close,
}

/// Writes channel messages on a WebSocket (one writer task owns the socket's sending half).
#[derive(Clone)]
pub struct ChannelWriter {
    out: mpsc::Sender<Out>,
}

impl ChannelWriter {
    pub async fn send(&self, channel: u8, data: Bytes) -> Result<(), ()> {
        self.out.send(Out::Data(channel, data)).await.map_err(|_| ())
    }

    /// v5's close of one channel (nothing in older protocols).
    pub async fn close_channel(&self, channel: u8) {
        let _ = self.out.send(Out::CloseChannel(channel)).await;
    }

    /// A normal close of the WebSocket once what was queued is written.
    pub async fn close(&self) {
        let _ = self.out.send(Out::Close).await;
    }
}

/// A WebSocket carrying exec/attach channels: what arrives on stdin (0) and resize (4),
/// each ending at a v5 close of its channel or the connection's end, and a writer.
pub struct Channels {
    pub stdin: mpsc::Receiver<Bytes>,
    pub resize: mpsc::Receiver<Bytes>,
    pub writer: ChannelWriter,
    /// Becomes true when the peer's side ended (close frame, error or EOF).
    pub ended: watch::Receiver<bool>,
}

/// Runs the channel framing of `protocol` over an upgraded connection (`role`: which end):
/// a writer, and every message the peer sends, in order, until its side ends (close frame,
/// error or EOF).
pub async fn open<S>(io: S, role: Role, protocol: &str) -> (ChannelWriter, mpsc::Receiver<Message>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, role, None).await;
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let (in_tx, incoming) = mpsc::channel(32);
    let text = is_base64(protocol);
    let v5 = protocol.starts_with("v5.");
    tokio::spawn(async move {
        while let Some(item) = out_rx.recv().await {
            let msg = match item {
                Out::Data(ch, d) if text => WsMessage::text(encode_text(ch, &d)),
                Out::Data(ch, d) => WsMessage::binary(encode_binary(ch, &d)),
                Out::CloseChannel(ch) if v5 => WsMessage::binary(vec![CLOSE, ch]),
                Out::CloseChannel(_) => continue,
                Out::Close => {
                    let _ = sink
                        .send(WsMessage::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })))
                        .await;
                    let _ = sink.close().await;
                    return;
                }
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            let decoded = match &msg {
                WsMessage::Binary(b) => decode_binary(b, v5),
                WsMessage::Text(t) if text => decode_text(t),
                WsMessage::Close(_) => break,
                _ => None,
            };
            if let Some(m) = decoded {
                if in_tx.send(m).await.is_err() {
                    break;
                }
            }
        }
    });
    (ChannelWriter { out: out_tx }, incoming)
}

/// Exec and attach over [`open`]: stdin (0) and resize (4) each end at a v5 close of their
/// channel or the connection's end.
pub async fn channels<S>(io: S, role: Role, protocol: &str) -> Channels
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (writer, mut incoming) = open(io, role, protocol).await;
    let (stdin_tx, stdin) = mpsc::channel(32);
    let (resize_tx, resize) = mpsc::channel(8);
    let (ended_tx, ended) = watch::channel(false);
    tokio::spawn(async move {
        let (mut stdin_tx, mut resize_tx) = (Some(stdin_tx), Some(resize_tx));
        while let Some(m) = incoming.recv().await {
            match m {
                Message::Data(STDIN, d) => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(Bytes::from(d)).await;
                    }
                }
                Message::Data(RESIZE, d) => {
                    if let Some(tx) = &resize_tx {
                        let _ = tx.send(Bytes::from(d)).await;
                    }
                }
                Message::Close(STDIN) => stdin_tx = None,
                Message::Close(RESIZE) => resize_tx = None,
                _ => {}
            }
        }
        drop((stdin_tx, resize_tx));
        let _ = ended_tx.send(true);
    });
    Channels { stdin, resize, writer, ended }
}

/// Joins a WebSocket whose binary messages carry a byte stream (the port-forward tunnel) to
/// that byte stream's other end, until either side ends.
pub async fn tunnel<S, T>(ws: tokio_tungstenite::WebSocketStream<S>, io: T)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut sink, mut source) = ws.split();
    let (mut read, mut write) = tokio::io::split(io);
    let inbound = async {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                WsMessage::Binary(b) if write.write_all(&b).await.is_err() => break,
                WsMessage::Binary(_) => {}
                WsMessage::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(WsMessage::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
        let _ = sink.close().await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_both_framings() {
        assert_eq!(decode_binary(&encode_binary(STDOUT, b"hi"), false), Some(Message::Data(1, b"hi".to_vec())));
        assert_eq!(encode_text(STDERR, b"hi"), "2aGk=");
        assert_eq!(decode_text("2aGk="), Some(Message::Data(2, b"hi".to_vec())));
        assert_eq!(decode_binary(&[255, 0], true), Some(Message::Close(0)));
        assert_eq!(decode_binary(&[255, 0], false), Some(Message::Data(255, vec![0])));
        assert_eq!(decode_binary(&[], true), None);
        assert_eq!(decode_text("x!!"), None);
        assert_eq!(remotecommand_version(V4_BASE64), crate::remotecommand::V4);
        assert!(is_base64(V4_BASE64) && !is_base64(BINARY));
    }
}

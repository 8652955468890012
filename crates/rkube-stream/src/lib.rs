//! The streaming protocols behind `kubectl exec`, `attach` and `port-forward`.
//!
//! - [`spdy`]: SPDY/3.1 framing (with its zlib-compressed header blocks) and a session that
//!   multiplexes client-created streams over one upgraded connection, as the kubelet and
//!   client-go speak it.
//! - [`remotecommand`]: the exec/attach sub-protocols (`channel.k8s.io` and `v2`..`v5`), their
//!   negotiation, the Status an exec ends with, and terminal sizes.
//! - [`channel`]: the WebSocket framings of the same streams (`[channel][payload]` binary
//!   messages, the base64 text variant, and v5's close-channel message).
//! - [`relay`]: the header rules of an HTTP relay (the `proxy` subresources, `rkube proxy`).
//!
//! Both ends live here: the node agent serves them, the API server relays them and, for
//! WebSocket v5 clients, translates to SPDY towards the node as kube-apiserver does.

pub mod channel;
pub mod relay;
pub mod remotecommand;
pub mod spdy;

//! The exec/attach sub-protocols: names, negotiation, the request's options, the status an
//! exec ends with and terminal sizes.

use serde::Deserialize;

/// `X-Stream-Protocol-Version` values, newest first.
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
/// Port-forward's only protocol.
pub const PORT_FORWARD: &str = "portforward.k8s.io";

/// What the kubelet serves over SPDY, newest first (v5 is for WebSocket clients of the API
/// server, which translates it).
pub const SPDY_EXEC_PROTOCOLS: &[&str] = &[V4, V3, V2, V1];

/// The header carrying the offered and chosen protocols.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
/// The header a refused negotiation lists the server's protocols in.
pub const ACCEPTED_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";

/// The client's offers from its header values (each may be a comma-separated list).
pub fn offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values.into_iter().flat_map(|v| v.split(',')).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// The first protocol the client offers that the server supports, as the kubelet picks.
pub fn negotiate<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    offered.iter().find_map(|o| supported.iter().copied().find(|s| s == o))
}

/// Stream types (the `streamType` header of a SPDY stream).
pub const STREAM_ERROR: &str = "error";
pub const STREAM_STDIN: &str = "stdin";
pub const STREAM_STDOUT: &str = "stdout";
pub const STREAM_STDERR: &str = "stderr";
pub const STREAM_RESIZE: &str = "resize";
pub const STREAM_DATA: &str = "data";

/// What an exec or attach asks for (`PodExecOptions` as query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// From the kubelet's query (`command=..` repeated, `input`, `output`, `error`, `tty`:
    /// only "1" means yes). With a TTY, stderr goes to the terminal and is not a stream.
    pub fn from_query(query: &str) -> Options {
        let mut o = Options::default();
        for (k, v) in form_pairs(query) {
            let yes = v == "1";
            match k.as_str() {
                "command" => o.command.push(v),
                "input" => o.stdin = yes,
                "output" => o.stdout = yes,
                "error" => o.stderr = yes,
                "tty" => o.tty = yes,
                _ => {}
            }
        }
        if o.tty {
            o.stderr = false;
        }
        o
    }

    /// The kubelet's refusal of a request with no stream.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.stdin && !self.stdout && !self.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr");
        }
        Ok(())
    }

    /// How many streams the client opens: error, each requested one, and resize with a TTY.
    pub fn expected_streams(&self, protocol: &str) -> usize {
        let resize = self.tty && protocol != V1 && protocol != V2;
        1 + self.stdin as usize + self.stdout as usize + self.stderr as usize + resize as usize
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// What the error stream carries when the command ends: in v4 and later one `Status` as
/// JSON (`{"metadata":{},"status":"Success"}`, or the NonZeroExitCode failure with the code
/// as its cause); in v1 to v3 the failure's message as text and nothing on success.
pub fn exit_status(protocol: &str, command: &[String], code: i32) -> Vec<u8> {
    let v4 = protocol == V4 || protocol == V5;
    if code == 0 {
        return if v4 { br#"{"metadata":{},"status":"Success"}"#.to_vec() } else { Vec::new() };
    }
    // client-go reads the code as a uint8.
    let code = code.clamp(0, 255);
    // The runtime's error, as containerd words it, in the kubelet's message.
    let message = format!(
        "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
        command.join(" ")
    );
    if !v4 {
        return message.into_bytes();
    }
    serde_json::to_vec(&serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    }))
    .unwrap_or_default()
}

/// An internal error on the error stream (the command could not run).
pub fn error_status(protocol: &str, message: &str) -> Vec<u8> {
    let cause = format!("error executing command in container: {message}");
    if protocol != V4 && protocol != V5 {
        return format!("Internal error occurred: {cause}").into_bytes();
    }
    internal_error(&cause)
}

/// `apierrors.NewInternalError(err)` as JSON.
pub fn internal_error(cause: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {cause}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": cause}]},
        "code": 500,
    }))
    .unwrap_or_default()
}

/// What kube-apiserver's stream translator writes to a v5 WebSocket client once the SPDY
/// exec to the kubelet ended with `error_stream` (its final error stream): Success, an exit
/// code re-worded as client-go's SPDY client reports it, or the kubelet's Status as it is.
pub fn translated_status(error_stream: &[u8]) -> Vec<u8> {
    let success = br#"{"metadata":{},"status":"Success"}"#.to_vec();
    if error_stream.iter().all(u8::is_ascii_whitespace) {
        return success;
    }
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(error_stream) else {
        // v1 to v3 send the error as text.
        return internal_error(String::from_utf8_lossy(error_stream).trim());
    };
    if status["status"] == "Success" {
        return success;
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<u8>().ok());
        if let Some(code) = code {
            return serde_json::to_vec(&serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: command terminated with exit code {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }))
            .unwrap_or_default();
        }
    }
    error_stream.to_vec()
}

/// A terminal size as client-go sends it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Splits what arrived on a resize stream into sizes (one JSON object per line); returns
/// the sizes and leaves an incomplete tail in `buf`.
pub fn take_sizes(buf: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        if let Ok(s) = serde_json::from_slice::<TerminalSize>(&line) {
            sizes.push(s);
        }
    }
    // A sender that does not end objects with a newline still gets through.
    if !buf.is_empty() {
        if let Ok(s) = serde_json::from_slice::<TerminalSize>(buf) {
            sizes.push(s);
            buf.clear();
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offer_the_server_knows_wins() {
        let o = offers(["v5.channel.k8s.io, v4.channel.k8s.io", "channel.k8s.io"]);
        assert_eq!(negotiate(&o, SPDY_EXEC_PROTOCOLS), Some(V4));
        assert_eq!(negotiate(&offers(["x"]), SPDY_EXEC_PROTOCOLS), None);
    }

    #[test]
    fn options_are_read_as_the_kubelet_reads_them() {
        let o = Options::from_query("command=sh&command=-c&command=echo+a%20b&input=1&output=1&error=1&tty=true");
        assert_eq!(o.command, ["sh", "-c", "echo a b"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let t = Options::from_query("command=sh&output=1&error=1&tty=1");
        assert!(t.tty && !t.stderr);
        assert_eq!(t.expected_streams(V4), 3);
        assert!(Options::from_query("command=x").check().is_err());
    }

    #[test]
    fn exit_statuses_are_the_kubelets_bytes() {
        assert_eq!(exit_status(V4, &[], 0), br#"{"metadata":{},"status":"Success"}"#);
        let s = String::from_utf8(exit_status(V4, &["sh".into(), "-c".into(), "exit 3".into()], 3)).unwrap();
        assert_eq!(
            s,
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert!(exit_status(V3, &[], 0).is_empty());
    }

    #[test]
    fn the_translator_rewords_exit_codes_and_passes_other_statuses() {
        assert_eq!(translated_status(b""), br#"{"metadata":{},"status":"Success"}"#);
        let exit = exit_status(V4, &["false".into()], 1);
        let t: serde_json::Value = serde_json::from_slice(&translated_status(&exit)).unwrap();
        assert_eq!(t["message"], "command terminated with non-zero exit code: command terminated with exit code 1");
        assert_eq!(t["details"]["causes"][0]["message"], "1");
        let internal = error_status(V4, "nope");
        assert_eq!(translated_status(&internal), internal);
    }

    #[test]
    fn sizes_are_read_line_by_line() {
        let mut b = br#"{"Width":80,"Height":24}
{"Width":100,"Height":3"#
            .to_vec();
        assert_eq!(take_sizes(&mut b), vec![TerminalSize { width: 80, height: 24 }]);
        b.extend_from_slice(b"0}\n");
        assert_eq!(take_sizes(&mut b), vec![TerminalSize { width: 100, height: 30 }]);
        assert!(b.is_empty());
    }
}

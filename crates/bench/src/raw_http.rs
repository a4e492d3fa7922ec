//! The timed phases' HTTP/1.1 client, written by hand: one keep-alive connection, one request
//! in flight, the request written in one `write` and the answer read straight from the socket.
//!
//! Why not hyper's client, which the seeding uses: the load generator shares the machine's two
//! cores with the platform it measures, so what it spends per request comes off the figure.
//! hyper's client connection is a task of its own (a request crosses a channel to it and the
//! answer comes back through another), and cost 12–13 µs of CPU per request; the load
//! generators bank engineers reach for (wrk) spend a few. This one does only what the bench's
//! requests need: `POST` with a JSON body, answers with a `Content-Length` (the platform's
//! gateway, hyper's server, sends every answer of these routes so). Anything else is refused
//! as a transport error, never guessed at.

use bytes::Bytes;
use hyper::StatusCode;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest answer head read: status line and headers.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// The longest answer body read (a receipt, an error).
const BODY_BYTES_MAX: usize = 1 << 20;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// One keep-alive HTTP/1.1 connection, over plain TCP (`dtenge bench --http`) or TLS
/// (`dtenge bench --cluster`: a node's own API takes mutual TLS only).
pub(crate) struct RawConn<S = TcpStream> {
    stream: S,
    host: String,
    /// The request being written; kept to reuse its allocation.
    out: Vec<u8>,
    /// What the socket gave beyond the last answer (nothing, with one request in flight, but
    /// kept rather than dropped should a server send more).
    read: Vec<u8>,
}

impl RawConn {
    pub(crate) async fn open(addr: SocketAddr, host: &str) -> Result<RawConn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        // Requests are small and answered one at a time: no Nagle delay on them.
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(RawConn::over(stream, host))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawConn<S> {
    /// HTTP/1.1 over a connected `stream` (a TLS session already through its handshake).
    pub(crate) fn over(stream: S, host: &str) -> RawConn<S> {
        RawConn { stream, host: host.to_string(), out: Vec::with_capacity(1024), read: Vec::with_capacity(1024) }
    }

    /// `POST path` with a JSON `body`, an idempotency key and `authorization`, a whole header
    /// line made once by [`authorization_line`] (empty for none); the answer's status and
    /// body. An error leaves the connection in an unknown state: the caller opens another.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        key: &str,
        authorization: &[u8],
        body: &[u8],
    ) -> Result<(StatusCode, Bytes), String> {
        // Written straight into the reused buffer: no allocation per request.
        use std::io::Write as _;
        self.out.clear();
        let head = |e: std::io::Error| format!("writing a request's head: {e}");
        write!(self.out, "POST {path} HTTP/1.1\r\nhost: {}\r\n", self.host).map_err(head)?;
        // Copied as it is: the line was made (and checked) once, when the token came.
        self.out.extend_from_slice(authorization);
        write!(
            self.out,
            "idempotency-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .map_err(head)?;
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await.map_err(|e| format!("write: {e}"))?;
        // A TLS stream may hold the last record until flushed (a no-op on plain TCP).
        self.stream.flush().await.map_err(|e| format!("flush: {e}"))?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<(StatusCode, Bytes), String> {
        // Bounded: each pass reads at least one byte or fails, and the head is at most
        // HEAD_BYTES_MAX.
        let head_end = loop {
            if let Some(at) = find(&self.read, b"\r\n\r\n") {
                break at + 4;
            }
            if self.read.len() > HEAD_BYTES_MAX {
                return Err(format!("an answer's head is longer than {HEAD_BYTES_MAX} bytes"));
            }
            self.fill().await?;
        };
        let (status, length) = parse_head(&self.read[..head_end])?;
        if length > BODY_BYTES_MAX {
            return Err(format!("an answer's body of {length} bytes (at most {BODY_BYTES_MAX} read)"));
        }
        // Bounded by `length`, checked above.
        while self.read.len() < head_end + length {
            self.fill().await?;
        }
        let body = Bytes::copy_from_slice(&self.read[head_end..head_end + length]);
        self.read.drain(..head_end + length);
        Ok((status, body))
    }

    /// Append what the socket has; an error when it is closed.
    async fn fill(&mut self) -> Result<(), String> {
        let before = self.read.len();
        self.read.resize(before + READ_CHUNK_BYTES, 0);
        let got = self.stream.read(&mut self.read[before..]).await;
        let n = match got {
            Ok(n) => n,
            Err(e) => {
                self.read.truncate(before);
                return Err(format!("read: {e}"));
            }
        };
        self.read.truncate(before + n);
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }
}

/// `authorization: Bearer <token>\r\n`, the header line [`RawConn::post`] copies into each
/// request: made once per token, not per request. A token is base64url and dots; one with
/// anything but visible ASCII (a line break would end the header early) is refused.
pub(crate) fn authorization_line(token: &str) -> Result<Bytes, String> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the access token is not one word of visible ASCII".into());
    }
    Ok(Bytes::from(format!("authorization: Bearer {token}\r\n")))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status and the body's length of an answer's head (status line and headers, through
/// the blank line).
fn parse_head(head: &[u8]) -> Result<(StatusCode, usize), String> {
    let text = std::str::from_utf8(head).map_err(|_| "an answer's head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
    let status = StatusCode::from_u16(code).map_err(|e| format!("status {code}: {e}"))?;
    let mut length = None;
    for line in lines.take_while(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("a header line without a colon: {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| format!("content-length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("transfer-encoding {value:?}: the bench reads answers with a content-length only"));
        }
    }
    let length = length.ok_or_else(|| "an answer without content-length".to_string())?;
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_its_status_and_length_and_anything_else_is_refused() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\ndate: x\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (StatusCode::OK, 42));
        let refused = b"HTTP/1.1 409 Conflict\r\ncontent-length: 7\r\n\r\n";
        assert_eq!(parse_head(refused).unwrap(), (StatusCode::CONFLICT, 7));
        for bad in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\ncontent-length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_answer_is_read_across_reads_and_the_connection_serves_the_next() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                for answer in ["first", "second answer"] {
                    let mut request = Vec::new();
                    // Read the request through its body ("{}", two bytes after the head).
                    while find(&request, b"\r\n\r\n").is_none_or(|at| request.len() < at + 6) {
                        let mut chunk = [0u8; 256];
                        let n = socket.read(&mut chunk).await.unwrap();
                        request.extend_from_slice(&chunk[..n]);
                    }
                    let text = String::from_utf8(request).unwrap();
                    assert!(text.starts_with("POST /v1/x HTTP/1.1\r\n"), "{text}");
                    assert!(text.contains("idempotency-key: k-1\r\n") && text.ends_with("\r\n\r\n{}"), "{text}");
                    // The head and the body in separate writes, as a slow server would.
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", answer.len());
                    socket.write_all(head.as_bytes()).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    socket.write_all(answer.as_bytes()).await.unwrap();
                }
            });
            let mut conn = RawConn::open(addr, "127.0.0.1").await.unwrap();
            assert_eq!(conn.post("/v1/x", "k-1", b"", b"{}").await.unwrap(), (StatusCode::OK, Bytes::from("first")));
            assert_eq!(
                conn.post("/v1/x", "k-1", b"", b"{}").await.unwrap(),
                (StatusCode::OK, Bytes::from("second answer"))
            );
            server.await.unwrap();
            assert!(conn.post("/v1/x", "k-1", b"", b"{}").await.is_err(), "the server has closed the connection");
        });
    }

    #[test]
    fn the_authorization_line_is_written_into_the_head_as_it_was_made() {
        let line = authorization_line("eyJ0.eyJz-_.c2ln").unwrap();
        assert_eq!(&line[..], b"authorization: Bearer eyJ0.eyJz-_.c2ln\r\n");
        for bad in ["", "a b", "a\r\nx-injected: 1", "tok\u{e9}n"] {
            assert!(authorization_line(bad).is_err(), "{bad:?}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut heads = Vec::new();
                for _ in 0..2 {
                    let mut request = Vec::new();
                    while find(&request, b"\r\n\r\n").is_none_or(|at| request.len() < at + 6) {
                        let mut chunk = [0u8; 256];
                        let n = socket.read(&mut chunk).await.unwrap();
                        request.extend_from_slice(&chunk[..n]);
                    }
                    heads.push(String::from_utf8(request).unwrap());
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                }
                heads
            });
            let mut conn = RawConn::open(addr, "127.0.0.1").await.unwrap();
            assert_eq!(conn.post("/v1/x", "k-1", &line, b"{}").await.unwrap().0, StatusCode::OK);
            assert_eq!(conn.post("/v1/x", "k-2", b"", b"{}").await.unwrap().0, StatusCode::OK);
            let heads = server.await.unwrap();
            assert!(
                heads[0].starts_with(
                    "POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer eyJ0.eyJz-_.c2ln\r\nidempotency-key: k-1\r\n"
                ),
                "{}",
                heads[0]
            );
            assert_eq!(heads[0].matches("authorization:").count(), 1, "{}", heads[0]);
            assert!(heads[0].ends_with("content-length: 2\r\n\r\n{}"), "{}", heads[0]);
            assert!(!heads[1].contains("authorization"), "no line, no header: {}", heads[1]);
        });
    }
}

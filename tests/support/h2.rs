//! A minimal HTTP/2 client over an established stream (TLS with ALPN `h2`): the
//! connection preface and an empty SETTINGS, then `GET`s one after the other on streams
//! 1, 3, 5, ..., each with its own `:authority`. Requests are HPACK literals without
//! indexing and without Huffman coding; of a response, only `:status` is decoded (the
//! first field nginx sends: indexed from the static table for 200, 204, 206, 304, 400,
//! 404 and 500, otherwise a literal with the indexed name `:status` and three raw
//! digits), and the DATA is the body.

use std::io::{Read, Write};

/// One HTTP/2 response: its `:status` (0 when the stream was reset, see `reset`) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The RST_STREAM error code, when the server reset the stream instead.
    pub reset: Option<u32>,
}

/// An HTTP/2 connection on `S`, after the client's preface.
pub struct Client<S: Read + Write> {
    stream: S,
    next_id: u32,
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream_id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal without indexing, the name indexed (`name_index` of the static
/// table), the value raw.
fn literal(name_index: u8, value: &str) -> Vec<u8> {
    assert!(name_index < 16 && value.len() < 127, "{value:?}");
    let mut field = vec![name_index, value.len() as u8];
    field.extend_from_slice(value.as_bytes());
    field
}

/// `:status` from the start of a response header block.
fn status(block: &[u8]) -> u16 {
    let mut block = block;
    // Dynamic table size updates (001xxxxx) may come first.
    while block.first().is_some_and(|b| b & 0xe0 == 0x20) {
        block = &block[1..];
    }
    match block {
        [b, ..] if b & 0x80 != 0 => match b & 0x7f {
            8 => 200,
            9 => 204,
            10 => 206,
            11 => 304,
            12 => 400,
            13 => 404,
            14 => 500,
            i => panic!("header block starts with indexed field {i}, not :status: {block:?}"),
        },
        // With incremental indexing (0x48), without (0x08), never indexed (0x18); the
        // name `:status` (8), the value three raw digits.
        [0x48 | 0x08 | 0x18, 3, digits @ ..] if digits.len() >= 3 => {
            std::str::from_utf8(&digits[..3])
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("no :status digits in {block:?}"))
        }
        _ => panic!("cannot decode :status from {block:?}"),
    }
}

impl<S: Read + Write> Client<S> {
    /// Sends the preface and an empty SETTINGS frame.
    pub fn new(mut stream: S) -> Self {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&out).expect("HTTP/2 preface");
        Client { stream, next_id: 1 }
    }

    /// `GET path` with `:authority` `authority` (none with `None`) on the next stream;
    /// its response.
    pub fn get(&mut self, authority: Option<&str>, path: &str) -> Response {
        let id = self.next_id;
        self.next_id += 2;
        // :method GET, :scheme https (indexed), then :path and :authority (name 1).
        let mut block = vec![0x82, 0x87];
        if path == "/" {
            block.push(0x84);
        } else {
            block.extend(literal(4, path));
        }
        if let Some(authority) = authority {
            block.extend(literal(1, authority));
        }
        let request = frame(HEADERS, END_STREAM | END_HEADERS, id, &block);
        self.stream.write_all(&request).expect("HTTP/2 HEADERS");
        self.read_response(id)
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).expect("an HTTP/2 frame");
        buf
    }

    /// The frames up to the end of stream `id`, answering SETTINGS and PING.
    fn read_response(&mut self, id: u32) -> Response {
        let (mut status_code, mut body) = (None, Vec::new());
        loop {
            let head = self.read_exact(9);
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let payload = self.read_exact(len);
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    self.stream
                        .write_all(&frame(SETTINGS, ACK, 0, &[]))
                        .expect("SETTINGS ACK");
                }
                PING if flags & ACK == 0 => {
                    self.stream
                        .write_all(&frame(PING, ACK, 0, &payload))
                        .expect("PING ACK");
                }
                GOAWAY => panic!("GOAWAY while waiting for stream {id}: {payload:?}"),
                RST_STREAM if stream == id => {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    return Response {
                        status: 0,
                        body: String::new(),
                        reset: Some(code),
                    };
                }
                HEADERS if stream == id => {
                    assert_eq!(flags & (PADDED | PRIORITY), 0, "HEADERS flags {flags:#x}");
                    assert_ne!(flags & END_HEADERS, 0, "CONTINUATION is not supported");
                    status_code.get_or_insert(status(&payload));
                }
                DATA if stream == id => body.extend_from_slice(&payload),
                _ => {}
            }
            if stream == id && (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
                break;
            }
        }
        Response {
            status: status_code.unwrap_or_else(|| panic!("stream {id} ended without HEADERS")),
            body: String::from_utf8(body).expect("utf-8 body"),
            reset: None,
        }
    }

    /// The stream underneath (e.g. to shut TLS down).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

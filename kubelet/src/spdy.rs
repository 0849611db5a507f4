//! SPDY/3.1 as Kubernetes' remote command protocol uses it: kubectl before 1.30 (and newer
//! ones when WebSocket is refused) upgrades `exec` to `SPDY/3.1` and opens one SPDY stream per
//! channel, named by its `streamtype` header (`error`, `stdin`, `stdout`, `stderr`, `resize`).
//!
//! Only what that needs is here: the frame layout, header blocks (zlib with the SPDY/3 preset
//! dictionary, one compression context per direction for the whole connection), SYN_STREAM /
//! SYN_REPLY, data with FIN, PING echo, RST_STREAM and GOAWAY. Flow control is not enforced:
//! WINDOW_UPDATE and SETTINGS are read and ignored, as client-go's spdystream does.

use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The value of the `Upgrade` header that asks for SPDY.
pub const UPGRADE: &str = "SPDY/3.1";

const VERSION: u16 = 3;
const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;

/// Data frames are cut at this size.
pub const MAX_DATA: usize = 32 * 1024;

/// The most a header block may inflate to. zlib expands up to ~1000:1, so a 16 MiB control
/// frame (the most SPDY's 24-bit length allows) could otherwise become gigabytes; a remote
/// command's headers are a few bytes.
pub const MAX_HEADER_BLOCK: usize = 1024 * 1024;

/// A frame as the session sees it (the frames it ignores come back as `Other`).
#[derive(Debug, PartialEq)]
pub enum Frame {
    SynStream {
        id: u32,
        headers: Vec<(String, String)>,
        fin: bool,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    RstStream {
        id: u32,
    },
    Ping(u32),
    GoAway,
    Other,
}

/// The SPDY/3 header compression dictionary (SPDY/3 §2.6.10.1): 4-byte-length-prefixed
/// header names and common values, then a run of status codes, reason phrases, dates and
/// media types. Some implementations include C's terminating NUL; the peer's zlib header
/// names the one it used (by checksum), so both are offered.
fn dictionaries() -> [Vec<u8>; 2] {
    const WORDS: &[&str] = &[
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
    const CODES: &[u16] = &[
        100, 101, 201, 202, 205, 206, 300, 302, 303, 304, 305, 306, 307, 402, 405, 406, 407, 408,
        409, 410, 411, 412, 413, 414, 415, 416, 417, 502, 504, 505,
    ];
    const TAIL: &[&str] = &[
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    ];
    let mut d = Vec::with_capacity(1424);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    for c in CODES {
        d.extend_from_slice(c.to_string().as_bytes());
    }
    for t in TAIL {
        d.extend_from_slice(t.as_bytes());
    }
    let mut with_nul = d.clone();
    with_nul.push(0);
    [d, with_nul]
}

/// zlib's Adler-32, which a zlib stream uses to name its preset dictionary.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads frames; owns the inflater for the peer's header blocks.
pub struct Reader<R> {
    io: R,
    inflate: Decompress,
    /// The dictionary the peer's zlib stream asked for, once it has.
    dictionary: Option<Vec<u8>>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R) -> Self {
        Reader {
            io,
            inflate: Decompress::new(true),
            dictionary: None,
        }
    }

    /// The dictionary the peer compresses with (the writer must use the same one).
    pub fn dictionary(&self) -> Option<&[u8]> {
        self.dictionary.as_deref()
    }

    /// The next frame; `None` at a clean end of the connection.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len];
        self.io.read_exact(&mut body).await?;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                id,
                fin: flags & FLAG_FIN != 0,
                data: Bytes::from(body),
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(invalid(format!("SPDY version {version} is not spoken")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let word = |at: usize| -> io::Result<u32> {
            body.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
                .ok_or_else(|| invalid("short control frame"))
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                let id = word(0)?;
                let block = body.get(10..).ok_or_else(|| invalid("short SYN_STREAM"))?;
                let headers = parse_headers(&self.inflate(block)?)?;
                Frame::SynStream {
                    id,
                    headers,
                    fin: flags & FLAG_FIN != 0,
                }
            }
            // Header blocks share one zlib stream: every block must be inflated in order.
            SYN_REPLY | HEADERS => {
                self.inflate(body.get(4..).unwrap_or_default())?;
                Frame::Other
            }
            RST_STREAM => Frame::RstStream { id: word(0)? },
            PING => Frame::Ping(word(0)?),
            GOAWAY => Frame::GoAway,
            _ => Frame::Other,
        }))
    }

    /// Inflates one header block, refusing one that inflates past [`MAX_HEADER_BLOCK`]. The
    /// zlib context is shared by all blocks of the connection, so after that error the
    /// connection cannot go on: the caller closes it.
    fn inflate(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity((input.len() * 4 + 256).min(MAX_HEADER_BLOCK + 1));
        loop {
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before) as usize..];
            match result {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) if out.len() > MAX_HEADER_BLOCK => {
                    return Err(invalid(format!(
                        "header block: inflates past the {MAX_HEADER_BLOCK} byte limit"
                    )));
                }
                // One byte past the limit is room enough to tell that it is exceeded.
                Ok(_) => {
                    let room = (MAX_HEADER_BLOCK + 1).saturating_sub(out.len());
                    out.reserve(out.capacity().max(256).min(room.max(1)));
                }
                Err(e) => {
                    let wanted = e
                        .needs_dictionary()
                        .ok_or_else(|| invalid(format!("header block: {e}")))?;
                    let dict = dictionaries()
                        .into_iter()
                        .find(|d| adler32(d) == wanted)
                        .ok_or_else(|| invalid("header block: unknown preset dictionary"))?;
                    self.inflate
                        .set_dictionary(&dict)
                        .map_err(|e| invalid(format!("header block: {e}")))?;
                    self.dictionary = Some(dict);
                }
            }
        }
    }
}

fn parse_headers(block: &[u8]) -> io::Result<Vec<(String, String)>> {
    let mut at = 0usize;
    let mut word = |n: usize| -> io::Result<&[u8]> {
        let s = block
            .get(at..at + n)
            .ok_or_else(|| invalid("truncated header block"))?;
        at += n;
        Ok(s)
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = be(word(4)?);
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be(word(4)?);
        let name = String::from_utf8_lossy(word(n)?).into_owned();
        let n = be(word(4)?);
        let value = String::from_utf8_lossy(word(n)?).into_owned();
        out.push((name, value));
    }
    Ok(out)
}

/// Writes frames; owns the deflater for this side's header blocks.
pub struct Writer<W> {
    io: W,
    deflate: Option<Compress>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(io: W) -> Self {
        Writer { io, deflate: None }
    }

    /// Accepts stream `id` (no headers), compressing with `dictionary`, the one the peer uses.
    pub async fn syn_reply(&mut self, id: u32, dictionary: Option<&[u8]>) -> io::Result<()> {
        let block = self.deflate(&0u32.to_be_bytes(), dictionary)?;
        let mut body = Vec::with_capacity(4 + block.len());
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&block);
        self.control(SYN_REPLY, 0, &body).await
    }

    /// `data` on stream `id`, in frames of at most [`MAX_DATA`]; `fin` half-closes the stream
    /// after it.
    pub async fn data(&mut self, id: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut chunks = data.chunks(MAX_DATA).peekable();
        if chunks.peek().is_none() {
            return self.data_frame(id, &[], fin).await;
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            self.data_frame(id, chunk, fin && last).await?;
        }
        Ok(())
    }

    async fn data_frame(&mut self, id: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        head[4] = if fin { FLAG_FIN } else { 0 };
        head[5..].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        self.io.write_all(&head).await?;
        self.io.write_all(data).await?;
        self.io.flush().await
    }

    pub async fn ping(&mut self, id: u32) -> io::Result<()> {
        self.control(PING, 0, &id.to_be_bytes()).await
    }

    /// Ends the session: no stream after `last` will be accepted.
    pub async fn goaway(&mut self, last: u32) -> io::Result<()> {
        let mut body = [0u8; 8];
        body[..4].copy_from_slice(&last.to_be_bytes());
        self.control(GOAWAY, 0, &body).await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    async fn control(&mut self, kind: u16, flags: u8, body: &[u8]) -> io::Result<()> {
        let mut head = [0u8; 8];
        head[..2].copy_from_slice(&(0x8000 | VERSION).to_be_bytes());
        head[2..4].copy_from_slice(&kind.to_be_bytes());
        head[4] = flags;
        head[5..].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        self.io.write_all(&head).await?;
        self.io.write_all(body).await?;
        self.io.flush().await
    }

    fn deflate(&mut self, input: &[u8], dictionary: Option<&[u8]>) -> io::Result<Vec<u8>> {
        if self.deflate.is_none() {
            let mut c = Compress::new(Compression::default(), true);
            let default = dictionaries()[0].clone();
            c.set_dictionary(dictionary.unwrap_or(&default))
                .map_err(|e| invalid(format!("header compression: {e}")))?;
            self.deflate = Some(c);
        }
        let c = self.deflate.as_mut().expect("deflater");
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut rest = input;
        loop {
            let before = c.total_in();
            c.compress_vec(rest, &mut out, FlushCompress::Sync)
                .map_err(|e| invalid(format!("header compression: {e}")))?;
            rest = &rest[(c.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the wire, for the tests: SYN_STREAM with headers, compressed with
    /// the dictionary as client-go compresses them.
    fn syn_stream(c: &mut Compress, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            block.extend_from_slice(&(k.len() as u32).to_be_bytes());
            block.extend_from_slice(k.as_bytes());
            block.extend_from_slice(&(v.len() as u32).to_be_bytes());
            block.extend_from_slice(v.as_bytes());
        }
        let mut z = Vec::with_capacity(block.len() + 64);
        c.compress_vec(&block, &mut z, FlushCompress::Sync).unwrap();
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&z);
        let mut frame = vec![0x80, 3, 0, 1, 0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn the_dictionary_has_the_size_the_spec_gives() {
        // SPDY/3 §2.6.10.1 lists 1,423 bytes; the variant with C's terminating NUL has one more.
        assert_eq!(dictionaries()[0].len(), 1423);
        assert_eq!(dictionaries()[1].len(), 1424);
    }

    #[tokio::test]
    async fn streams_headers_and_data_come_through_a_shared_zlib_context() {
        for dict in dictionaries() {
            let mut c = Compress::new(Compression::best(), true);
            c.set_dictionary(&dict).unwrap();
            let mut wire = syn_stream(&mut c, 1, &[("streamtype", "error")]);
            wire.extend(syn_stream(&mut c, 3, &[("streamtype", "stdout")]));
            wire.extend_from_slice(&[0, 0, 0, 5, FLAG_FIN, 0, 0, 2, b'h', b'i']);
            wire.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
            let mut r = Reader::new(&wire[..]);
            assert_eq!(
                r.next().await.unwrap(),
                Some(Frame::SynStream {
                    id: 1,
                    headers: vec![("streamtype".into(), "error".into())],
                    fin: false
                })
            );
            let Some(Frame::SynStream { id: 3, headers, .. }) = r.next().await.unwrap() else {
                panic!("second stream");
            };
            assert_eq!(headers, [("streamtype".to_string(), "stdout".to_string())]);
            assert_eq!(
                r.next().await.unwrap(),
                Some(Frame::Data {
                    id: 5,
                    fin: true,
                    data: Bytes::from_static(b"hi")
                })
            );
            assert_eq!(r.next().await.unwrap(), Some(Frame::Ping(7)));
            assert_eq!(r.next().await.unwrap(), None);
            assert_eq!(r.dictionary(), Some(&dict[..]));
        }
    }

    #[tokio::test]
    async fn a_header_block_inflating_past_the_cap_is_refused() {
        let dict = &dictionaries()[0];
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(dict).unwrap();
        // A few KiB on the wire (zeros compress about 1000:1) that inflate to 4 MiB.
        let big = "x".repeat(4 * MAX_HEADER_BLOCK);
        let wire = syn_stream(&mut c, 1, &[("streamtype", &big)]);
        assert!(wire.len() < 64 * 1024, "{} bytes on the wire", wire.len());
        let err = Reader::new(&wire[..]).next().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("limit"), "{err}");

        // Just under the cap still inflates.
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(dict).unwrap();
        let fits = "x".repeat(MAX_HEADER_BLOCK - 64);
        let wire = syn_stream(&mut c, 1, &[("streamtype", &fits)]);
        let Some(Frame::SynStream { headers, .. }) = Reader::new(&wire[..]).next().await.unwrap()
        else {
            panic!("a SYN_STREAM");
        };
        assert_eq!(headers[0].1.len(), fits.len());
    }

    #[tokio::test]
    async fn replies_inflate_with_the_peers_dictionary_and_data_is_cut_into_frames() {
        let dict = dictionaries()[1].clone();
        let mut w = Writer::new(Vec::new());
        w.syn_reply(1, Some(&dict)).await.unwrap();
        w.syn_reply(3, Some(&dict)).await.unwrap();
        w.data(3, &vec![7u8; MAX_DATA + 1], true).await.unwrap();
        let wire = w.io;
        // Both replies' header blocks inflate, in order, to "no headers".
        let mut d = Decompress::new(true);
        let mut pos = 0;
        for id in [1u32, 3] {
            let len = u32::from_be_bytes([0, wire[pos + 5], wire[pos + 6], wire[pos + 7]]) as usize;
            assert_eq!(&wire[pos..pos + 4], &[0x80, 3, 0, 2]);
            assert_eq!(&wire[pos + 8..pos + 12], &id.to_be_bytes());
            let block = &wire[pos + 12..pos + 8 + len];
            let mut out = Vec::with_capacity(64);
            let mut input = block;
            loop {
                let before = d.total_in();
                match d.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                    Ok(_) => break,
                    Err(e) => {
                        assert_eq!(e.needs_dictionary(), Some(adler32(&dict)));
                        d.set_dictionary(&dict).unwrap();
                    }
                }
                input = &input[(d.total_in() - before) as usize..];
            }
            assert_eq!(out, [0, 0, 0, 0]);
            pos += 8 + len;
        }
        // Then two data frames on stream 3, FIN on the last only.
        assert_eq!(&wire[pos..pos + 8], &[0, 0, 0, 3, 0, 0, 0x80, 0]);
        pos += 8 + MAX_DATA;
        assert_eq!(&wire[pos..pos + 8], &[0, 0, 0, 3, FLAG_FIN, 0, 0, 1]);
        assert_eq!(wire.len(), pos + 9);
    }
}

//! RESP2/RESP3: decoding commands from bytes and encoding replies, without I/O.
//!
//! Decoding is two-step, as a length-prefixed protocol must be: [`parse_command`] first walks
//! the buffer to check that a whole command is there, validating every length prefix against
//! [`Limits`] *before* anything is allocated, and only then slices the arguments out of the
//! buffer (zero-copy). An incomplete command asks for more bytes; a malformed one is an error
//! the connection answers and closes on.

use bytes::{Bytes, BytesMut};

/// Bounds checked before any allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments in one command.
    pub max_args: usize,
    /// Largest single argument.
    pub max_bulk: usize,
    /// Longest inline (telnet-style) command line.
    pub max_inline: usize,
}

impl Limits {
    /// What an unauthenticated client may send (as Redis: a few small arguments).
    pub const UNAUTHENTICATED: Self =
        Self { max_args: 10, max_bulk: 16 * 1024, max_inline: 16 * 1024 };
}

/// Why bytes are not (yet) a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A command has started but is not complete: read more.
    Incomplete,
    /// The bytes break the protocol or a limit; the message is the reply to send before closing.
    Protocol(String),
}

/// The longest length-prefix line accepted (`*`/`$`, up to 20 digits, CRLF).
const MAX_PREFIX_LINE: usize = 32;

fn find_crlf(buf: &[u8], from: usize, limit: usize) -> Result<usize, ParseError> {
    let end = buf.len().min(from.saturating_add(limit));
    match buf[from..end].windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(from + i),
        None if buf.len() >= from.saturating_add(limit) => {
            Err(ParseError::Protocol("line too long".into()))
        }
        None => Err(ParseError::Incomplete),
    }
}

fn parse_len(digits: &[u8], what: &str) -> Result<i64, ParseError> {
    let text = std::str::from_utf8(digits)
        .map_err(|_| ParseError::Protocol(format!("invalid {what} length")))?;
    text.parse::<i64>().map_err(|_| ParseError::Protocol(format!("invalid {what} length")))
}

/// Parses one command from the front of `buf`. On success the command's bytes are removed from
/// `buf` and its arguments returned (an empty vector for an empty multibulk, which is a no-op).
///
/// # Errors
/// [`ParseError::Incomplete`] to read more; [`ParseError::Protocol`] for malformed input.
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Vec<Bytes>, ParseError> {
    if buf.is_empty() {
        return Err(ParseError::Incomplete);
    }
    if buf[0] != b'*' {
        return parse_inline(buf, limits);
    }
    // Step 1: check that the whole command is present, recording argument positions.
    let line_end = find_crlf(buf, 1, MAX_PREFIX_LINE)?;
    let count = parse_len(&buf[1..line_end], "multibulk")?;
    if count <= 0 {
        let _ = buf.split_to(line_end + 2);
        return Ok(Vec::new());
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > limits.max_args {
        return Err(ParseError::Protocol(format!(
            "invalid multibulk length (limit {})",
            limits.max_args
        )));
    }
    let mut spans = Vec::with_capacity(count.min(64));
    let mut at = line_end + 2;
    for _ in 0..count {
        if at >= buf.len() {
            return Err(ParseError::Incomplete);
        }
        if buf[at] != b'$' {
            return Err(ParseError::Protocol(format!(
                "expected '$', got '{}'",
                buf[at].escape_ascii()
            )));
        }
        let line_end = find_crlf(buf, at + 1, MAX_PREFIX_LINE)?;
        let len = parse_len(&buf[at + 1..line_end], "bulk")?;
        let len =
            usize::try_from(len).map_err(|_| ParseError::Protocol("invalid bulk length".into()))?;
        if len > limits.max_bulk {
            return Err(ParseError::Protocol(format!(
                "invalid bulk length (limit {} bytes)",
                limits.max_bulk
            )));
        }
        let start = line_end + 2;
        let end = start + len;
        if buf.len() < end + 2 {
            return Err(ParseError::Incomplete);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ParseError::Protocol("bulk string not terminated by CRLF".into()));
        }
        spans.push((start, end));
        at = end + 2;
    }
    // Step 2: take the command's bytes and slice the arguments out of them.
    let frame = buf.split_to(at).freeze();
    Ok(spans.into_iter().map(|(s, e)| frame.slice(s..e)).collect())
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Vec<Bytes>, ParseError> {
    let end = match buf.iter().take(limits.max_inline + 1).position(|&b| b == b'\n') {
        Some(i) => i,
        None if buf.len() > limits.max_inline => {
            return Err(ParseError::Protocol("too big inline request".into()));
        }
        None => return Err(ParseError::Incomplete),
    };
    let line = buf.split_to(end + 1).freeze();
    let text = line.slice(..end);
    let text = if text.ends_with(b"\r") { text.slice(..text.len() - 1) } else { text };
    let args = split_inline(&text)
        .ok_or_else(|| ParseError::Protocol("unbalanced quotes in request".into()))?;
    if args.len() > limits.max_args {
        return Err(ParseError::Protocol(format!(
            "too many arguments (limit {})",
            limits.max_args
        )));
    }
    Ok(args)
}

/// Splits an inline command line into arguments as Redis does: words separated by spaces;
/// `"double quotes"` with the escapes `\n \r \t \b \a \\ \"` and `\xHH`; `'single quotes'`
/// with only `\'`. A closing quote must end its word. `None` for an unbalanced quote (or a
/// closing quote followed by more of the word). Every step moves forward, so any line ends.
fn split_inline(line: &[u8]) -> Option<Vec<Bytes>> {
    // Redis splits a C string: a NUL byte ends the line.
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        while at < line.len() && (line[at].is_ascii_whitespace() || line[at] == 0x0b) {
            at += 1;
        }
        if at == line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        // The quote the word is inside, if any.
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = line.get(at) else {
                // The line ended: fine outside quotes, unbalanced inside.
                if quote.is_some() {
                    return None;
                }
                break;
            };
            match quote {
                Some(b'"') if c == b'\\' && line.get(at + 1) == Some(&b'x') => {
                    let hex = line
                        .get(at + 2..at + 4)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(byte) => {
                            word.push(byte);
                            at += 4;
                        }
                        None => {
                            word.push(b'x');
                            at += 2;
                        }
                    }
                }
                Some(b'"') if c == b'\\' && at + 1 < line.len() => {
                    word.push(match line[at + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    at += 2;
                }
                Some(b'\'') if c == b'\\' && line.get(at + 1) == Some(&b'\'') => {
                    word.push(b'\'');
                    at += 2;
                }
                Some(q) if c == q => {
                    // A closing quote ends the word: only a space (or the end) may follow.
                    if line.get(at + 1).is_some_and(|&n| !n.is_ascii_whitespace() && n != 0x0b) {
                        return None;
                    }
                    at += 1;
                    break;
                }
                Some(_) => {
                    word.push(c);
                    at += 1;
                }
                None if matches!(c, b' ' | b'\n' | b'\r' | b'\t') => break,
                None if c == b'"' || c == b'\'' => {
                    quote = Some(c);
                    at += 1;
                }
                None => {
                    word.push(c);
                    at += 1;
                }
            }
        }
        args.push(Bytes::from(word));
    }
}

/// A reply, encoded for the client's protocol version.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$len\r\nbytes`.
    Bulk(Bytes),
    /// RESP2 `$-1` / RESP3 `_`.
    Nil,
    /// `*n` of replies.
    Array(Vec<Reply>),
    /// RESP3 `%n` map; RESP2 flattens it into an array.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~n` set; RESP2 sends an array.
    Set(Vec<Reply>),
    /// An array (or a RESP3 set) whose elements are already encoded (built where the data
    /// lives, so a big collection is copied once, into its reply). Boxed: every reply would
    /// otherwise grow by it.
    Elements(Box<Elements>),
}

/// The body of a [`Reply::Elements`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elements {
    /// How many elements `body` holds.
    pub count: u64,
    /// Their encoding, back to back.
    pub body: Bytes,
    /// A set (`~` in RESP3) rather than an array.
    pub set: bool,
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Self {
        Self::Simple("OK".into())
    }

    /// A bulk string from text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Bulk(Bytes::from(text.into()))
    }

    /// About how many bytes the reply encodes to (the payload, plus a few bytes of framing
    /// per element), without encoding it: what the output limit checks first.
    pub fn encoded_len_hint(&self) -> usize {
        const FRAME: usize = 16;
        match self {
            Self::Simple(text) | Self::Error(text) => text.len() + FRAME,
            Self::Bulk(bytes) => bytes.len() + FRAME,
            Self::Int(_) | Self::Nil => FRAME,
            Self::Array(items) | Self::Set(items) => {
                items.iter().map(Self::encoded_len_hint).sum::<usize>() + FRAME
            }
            Self::Elements(elements) => elements.body.len() + FRAME,
            Self::Map(pairs) => {
                pairs
                    .iter()
                    .map(|(k, v)| k.encoded_len_hint() + v.encoded_len_hint())
                    .sum::<usize>()
                    + FRAME
            }
        }
    }

    /// Appends the encoding of `self` to `out`; `resp3` selects the protocol version.
    pub fn encode(&self, out: &mut Vec<u8>, resp3: bool) {
        match self {
            Self::Simple(text) => {
                out.push(b'+');
                out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
                out.extend_from_slice(b"\r\n");
            }
            Self::Error(text) => {
                out.push(b'-');
                out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
                out.extend_from_slice(b"\r\n");
            }
            Self::Int(n) => {
                out.push(b':');
                push_decimal(out, *n);
                out.extend_from_slice(b"\r\n");
            }
            Self::Bulk(bytes) => encode_bulk(bytes, out),
            Self::Nil => out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            Self::Array(items) => {
                header(out, b'*', items.len());
                for item in items {
                    item.encode(out, resp3);
                }
            }
            Self::Set(items) => {
                header(out, if resp3 { b'~' } else { b'*' }, items.len());
                for item in items {
                    item.encode(out, resp3);
                }
            }
            Self::Elements(elements) => {
                let kind = if resp3 && elements.set { b'~' } else { b'*' };
                header(out, kind, usize::try_from(elements.count).unwrap_or(usize::MAX));
                out.extend_from_slice(&elements.body);
            }
            Self::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len());
                } else {
                    header(out, b'*', pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode(out, resp3);
                    value.encode(out, resp3);
                }
            }
        }
    }
}

/// Appends `bytes` as a bulk string, `$len\r\nbytes\r\n` (also what a collection's elements
/// are encoded as where they are stored, see [`Reply::Elements`]).
pub(crate) fn encode_bulk(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    push_decimal(out, bytes.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    push_decimal(out, len as i64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without allocating (replies are encoded once per command).
fn push_decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Limits = Limits { max_args: 1024, max_bulk: 1 << 20, max_inline: 1 << 16 };

    fn parse(bytes: &[u8]) -> Result<Vec<Bytes>, ParseError> {
        parse_command(&mut BytesMut::from(bytes), &BIG)
    }

    #[test]
    fn inline_lines_split_like_redis() {
        let split = |line: &[u8]| {
            split_inline(line).map(|args| args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
        };
        let words = |ws: &[&[u8]]| Some(ws.iter().map(|w| w.to_vec()).collect::<Vec<_>>());
        assert_eq!(split(br#"set "a b" c"#), words(&[b"set", b"a b", b"c"]));
        assert_eq!(split(br"get 'x\'y'"), words(&[b"get", b"x'y"]));
        assert_eq!(split(br#""\x41\n\t\\\"" '\n'"#), words(&[b"A\n\t\\\"", b"\\n"]));
        assert_eq!(split(br#"a"b c" d"#), words(&[b"ab c", b"d"]));
        assert_eq!(split(b"  \t "), words(&[]));
        assert_eq!(split(br#""\xZZ""#), words(&[b"xZZ"]));
        assert_eq!(split(br#""\x+f""#), words(&[b"x+f"]));
        assert_eq!(split(b"\"a\"\x0bb"), words(&[b"a", b"b"]));
        for unbalanced in [&br#""abc"#[..], br"'abc", br#""ab"c"#, br"'a'b", br#"x "y"#] {
            assert_eq!(split(unbalanced), None, "{}", unbalanced.escape_ascii());
        }
    }

    /// Every line made of the bytes that steer the splitter (up to five of them) splits
    /// (none loops), a NUL ends the line as in Redis, and a line without quotes splits as a
    /// plain model of Redis's rule says (backslashes outside quotes are plain bytes).
    #[test]
    fn every_short_line_of_tricky_bytes_splits() {
        let alphabet = [b' ', b'"', b'\'', b'\\', b'x', b'4', b'a', 0, b'\t', 0x0b];
        let mut line = Vec::new();
        for n in 0..=5_u32 {
            for mut code in 0..alphabet.len().pow(n) {
                line.clear();
                for _ in 0..n {
                    line.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                let split = split_inline(&line);
                if !line.contains(&b'"') && !line.contains(&b'\'') {
                    let text = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
                    // Redis: a word starts after any white space (\v too) and ends at a
                    // space, tab, CR or LF.
                    let mut words = Vec::new();
                    let mut at = 0;
                    while at < text.len() {
                        if text[at].is_ascii_whitespace() || text[at] == 0x0b {
                            at += 1;
                            continue;
                        }
                        let end = text[at..]
                            .iter()
                            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                            .map_or(text.len(), |i| at + i);
                        words.push(Bytes::copy_from_slice(&text[at..end]));
                        at = end;
                    }
                    assert_eq!(split, Some(words), "{}", line.escape_ascii());
                }
            }
        }
        assert_eq!(split_inline(b"get k\0ignored").map(|a| a.len()), Some(2));
    }

    #[test]
    fn parses_multibulk_and_inline() {
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap(),
            vec![Bytes::from("GET"), Bytes::from("k")]
        );
        assert_eq!(parse(b"PING\r\n").unwrap(), vec![Bytes::from("PING")]);
        assert_eq!(parse(b"set  a   b\n").unwrap().len(), 3);
        assert_eq!(parse(b"*0\r\n").unwrap(), Vec::<Bytes>::new());
        assert_eq!(parse(b"*-1\r\n").unwrap(), Vec::<Bytes>::new());
    }

    #[test]
    fn pipelined_commands_come_out_one_at_a_time() {
        let mut buf =
            BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI"[..]);
        assert!(parse_command(&mut buf, &BIG).is_ok());
        assert!(parse_command(&mut buf, &BIG).is_ok());
        assert_eq!(parse_command(&mut buf, &BIG), Err(ParseError::Incomplete));
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPI", "the partial command stays in the buffer");
    }

    #[test]
    fn every_truncation_is_incomplete_not_an_error() {
        let full = b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        for cut in 1..full.len() {
            assert_eq!(parse(&full[..cut]), Err(ParseError::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_and_oversized_input_is_refused_before_allocating() {
        for bad in [
            &b"*abc\r\n"[..],
            b"*2\r\n:1\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$99999999999\r\n",
            b"*99999999999\r\n",
            b"*1\r\n$3\r\nGETxx",
            b"*1\r\n$x\r\n",
            b"*111111111111111111111111111111111111111111",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Protocol(_))),
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
        let tight = Limits::UNAUTHENTICATED;
        assert!(matches!(
            parse_command(&mut BytesMut::from(&b"*11\r\n"[..]), &tight),
            Err(ParseError::Protocol(_))
        ));
        assert!(matches!(
            parse_command(&mut BytesMut::from(&b"*1\r\n$16385\r\n"[..]), &tight),
            Err(ParseError::Protocol(_))
        ));
        let long_inline = vec![b'a'; 70_000];
        assert!(matches!(parse(&long_inline), Err(ParseError::Protocol(_))));
    }

    #[test]
    fn replies_encode_per_protocol() {
        let mut out = Vec::new();
        Reply::Nil.encode(&mut out, false);
        Reply::Nil.encode(&mut out, true);
        Reply::Map(vec![(Reply::text("a"), Reply::Int(1))]).encode(&mut out, false);
        Reply::Map(vec![(Reply::text("a"), Reply::Int(1))]).encode(&mut out, true);
        Reply::Error("ERR bad\r\ninjected".into()).encode(&mut out, false);
        assert_eq!(
            out,
            b"$-1\r\n_\r\n*2\r\n$1\r\na\r\n:1\r\n%1\r\n$1\r\na\r\n:1\r\n-ERR badinjected\r\n"
        );
    }

    #[test]
    fn integers_and_lengths_encode_in_decimal() {
        for n in [0, 7, -7, 10, 1_234_567_890, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            Reply::Int(n).encode(&mut out, false);
            assert_eq!(out, format!(":{n}\r\n").into_bytes());
        }
        let mut out = Vec::new();
        Reply::Bulk(Bytes::from(vec![b'x'; 1234])).encode(&mut out, false);
        assert!(out.starts_with(b"$1234\r\n"));
    }
}

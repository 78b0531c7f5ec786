//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1, RFC 9110
//! §5.6), and the folding of permessage-deflate parameters as they are parsed.

use super::{EXTENSION_NAME, NegotiationError};

/// A parameter value as sent: a token, or the inside of a quoted string with
/// its backslash escapes still in.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl Value<'_> {
    /// The value's bytes with quoted-pair escapes removed.
    fn bytes(self) -> impl Iterator<Item = u8> {
        let (raw, quoted) = match self {
            Value::Token(raw) => (raw, false),
            Value::Quoted(raw) => (raw, true),
        };
        let mut escaped = false;
        raw.iter().copied().filter(move |&b| {
            if quoted && !escaped && b == b'\\' {
                escaped = true;
                false
            } else {
                escaped = false;
                true
            }
        })
    }

    /// A window size: a decimal integer 8..=15 without leading zeros (§7.1.2).
    fn window_bits(self) -> Option<u8> {
        let mut digits = [0u8; 2];
        let mut n = 0;
        for b in self.bytes() {
            *digits.get_mut(n)? = b;
            n += 1;
        }
        match digits.get(..n)? {
            [d @ b'8'..=b'9'] => Some(d - b'0'),
            [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
            _ => None,
        }
    }
}

/// The parameters of one permessage-deflate element, folded as they are
/// parsed; `problem` is the first reason the element cannot be accepted.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Params {
    pub(super) server_no_context_takeover: bool,
    pub(super) client_no_context_takeover: bool,
    pub(super) server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    pub(super) client_max_window_bits: Option<Option<u8>>,
    pub(super) problem: Option<&'static str>,
}

impl Params {
    fn add(&mut self, name: &[u8], value: Option<Value<'_>>) {
        if self.problem.is_some() {
            return;
        }
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        let problem = if is("server_no_context_takeover") {
            flag(&mut self.server_no_context_takeover, value)
        } else if is("client_no_context_takeover") {
            flag(&mut self.client_no_context_takeover, value)
        } else if is("server_max_window_bits") {
            match (self.server_max_window_bits, value.and_then(Value::window_bits)) {
                (Some(_), _) => Err("duplicate parameter"),
                (None, None) => Err("invalid server_max_window_bits"),
                (None, bits) => {
                    self.server_max_window_bits = bits;
                    Ok(())
                }
            }
        } else if is("client_max_window_bits") {
            match (self.client_max_window_bits, value.map(Value::window_bits)) {
                (Some(_), _) => Err("duplicate parameter"),
                (None, Some(None)) => Err("invalid client_max_window_bits"),
                (None, bits) => {
                    self.client_max_window_bits = Some(bits.flatten());
                    Ok(())
                }
            }
        } else {
            Err("unknown parameter")
        };
        self.problem = problem.err();
    }
}

/// A parameter without a value, given at most once.
fn flag(seen: &mut bool, value: Option<Value<'_>>) -> Result<(), &'static str> {
    if *seen {
        Err("duplicate parameter")
    } else if value.is_some() {
        Err("no_context_takeover with a value")
    } else {
        *seen = true;
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.i += 1;
        }
        found
    }

    fn token(&mut self) -> Result<&'a [u8], NegotiationError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        match self.s.get(start..self.i) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(NegotiationError::new("malformed Sec-WebSocket-Extensions: expected a token")),
        }
    }

    /// The inside of a quoted string; the opening quote is already eaten.
    fn quoted(&mut self) -> Result<&'a [u8], NegotiationError> {
        const BAD: NegotiationError =
            NegotiationError::new("malformed Sec-WebSocket-Extensions: bad quoted string");
        let start = self.i;
        loop {
            match self.peek().ok_or(BAD)? {
                b'"' => {
                    let inner = self.s.get(start..self.i).ok_or(BAD)?;
                    self.i += 1;
                    return Ok(inner);
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek().ok_or(BAD)? {
                        b'\t' | b' '..=b'~' | 0x80..=0xff => self.i += 1,
                        _ => return Err(BAD),
                    }
                }
                b'\t' | b' ' | b'!' | b'#'..=b'[' | b']'..=b'~' | 0x80..=0xff => self.i += 1,
                _ => return Err(BAD),
            }
        }
    }
}

/// Parses one `Sec-WebSocket-Extensions` value (RFC 6455 §9.1), calling
/// `each(name, params)` for every extension in it; `params` are only folded
/// for `permessage-deflate`. Empty list elements are skipped (RFC 9110 §5.6.1).
pub(super) fn parse_extensions(
    value: &[u8],
    mut each: impl FnMut(&[u8], Params),
) -> Result<(), NegotiationError> {
    const SEPARATOR: NegotiationError =
        NegotiationError::new("malformed Sec-WebSocket-Extensions: expected ',' or ';'");
    let mut cur = Cursor { s: value, i: 0 };
    loop {
        cur.skip_ows();
        if cur.peek().is_none() {
            return Ok(());
        }
        if cur.eat(b',') {
            continue;
        }
        let name = cur.token()?;
        let deflate = name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes());
        let mut params = Params::default();
        cur.skip_ows();
        while cur.eat(b';') {
            cur.skip_ows();
            let param = cur.token()?;
            cur.skip_ows();
            let value = if cur.eat(b'=') {
                cur.skip_ows();
                Some(if cur.eat(b'"') {
                    Value::Quoted(cur.quoted()?)
                } else {
                    Value::Token(cur.token()?)
                })
            } else {
                None
            };
            if deflate {
                params.add(param, value);
            }
            cur.skip_ows();
        }
        each(name, params);
        match cur.peek() {
            None => return Ok(()),
            Some(b',') => cur.i += 1,
            Some(_) => return Err(SEPARATOR),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::deflate::fixtures::*;
    use crate::proto::deflate::{Mode, negotiate};
    use crate::proto::handshake::HandshakeError;

    // -- Negotiation: grammar ----------------------------------------------

    #[test]
    fn grammar_accepts_tokens_quoted_strings_whitespace_and_case() {
        let dedicated = cfg(Mode::Dedicated);
        let ok = |headers: &[&str], expected: &str| {
            assert_eq!(answer(headers, &dedicated), Ok(Some(expected.to_owned())), "{headers:?}");
        };
        ok(&["permessage-deflate"], "permessage-deflate");
        ok(&["permessage-deflate; client_max_window_bits"], "permessage-deflate");
        ok(
            &["  permessage-deflate\t;client_max_window_bits  =  10 "],
            "permessage-deflate; client_max_window_bits=10",
        );
        ok(
            &["permessage-deflate; client_max_window_bits=\"10\""],
            "permessage-deflate; client_max_window_bits=10",
        );
        ok(
            &["permessage-deflate; client_max_window_bits=\"1\\0\""],
            "permessage-deflate; client_max_window_bits=10",
        );
        ok(
            &["permessage-deflate; client_max_window_bits=\"\\9\""],
            "permessage-deflate; client_max_window_bits=9",
        );
        ok(
            &["permessage-deflate;server_max_window_bits=\"8\""],
            "permessage-deflate; server_max_window_bits=8",
        );
        ok(
            &["PerMessage-Deflate; Server_No_Context_Takeover"],
            "permessage-deflate; server_no_context_takeover",
        );
        ok(&[", ,permessage-deflate ,,"], "permessage-deflate");
        ok(&["", "permessage-deflate"], "permessage-deflate");
        ok(
            &[
                "permessage-deflate; client_max_window_bits=9; client_no_context_takeover; server_max_window_bits=12; server_no_context_takeover",
            ],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=9",
        );
        // Other extensions are skipped, whatever their parameters.
        ok(
            &[
                "x-webkit-deflate-frame; no_context_takeover, foo; bar=\"a b,c;d\\\"\"",
                "permessage-deflate",
            ],
            "permessage-deflate",
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        let dedicated = cfg(Mode::Dedicated);
        for bad in [
            "permessage-deflate;",
            "permessage-deflate; ;",
            "permessage-deflate; =1",
            "permessage-deflate; a=",
            "permessage-deflate; a= ;",
            "permessage-deflate; a=\"unterminated",
            "permessage-deflate; a=\"bad\x01control\"",
            "permessage-deflate; a=\"bad escape\\\x01\"",
            "permessage-deflate; a=\"x\"y",
            "permessage-deflate; a=b c",
            "permessage-deflate; a==b",
            "permessage deflate",
            "permessage-deflate x",
            "perm@ssage-deflate",
            "\"permessage-deflate\"",
            ";permessage-deflate",
            "permessage-deflate; client_max_window_bits=1\x7f",
            "x-foo; a=\"",
            "=",
        ] {
            assert_eq!(answer(&[bad], &dedicated), Err(()), "{bad:?}");
        }
        // Every header is read to the end, even after an acceptable offer.
        assert_eq!(answer(&["permessage-deflate, x-foo;"], &dedicated), Err(()));
        assert_eq!(answer(&["permessage-deflate", "x;;"], &dedicated), Err(()));
        // The error converts to a 400 response.
        let err = negotiate([&b"permessage-deflate;"[..]], &dedicated).unwrap_err();
        assert_eq!(HandshakeError::from(err).status, 400);
        assert!(!err.to_string().is_empty());
        // Disabled: the header is not read at all.
        assert_eq!(answer(&["permessage-deflate;"], &cfg(Mode::Disabled)), Ok(None));
        assert_eq!(answer(&["permessage-deflate"], &cfg(Mode::Disabled)), Ok(None));
    }
}

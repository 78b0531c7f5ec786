//! Agreeing on the permessage-deflate parameters (RFC 7692 §5, §7.1): the
//! server's answer to an offer, and the client's offer and its check of the
//! answer.

use std::fmt;

use super::grammar::{Params, parse_extensions};
use super::{DeflateConfig, EXTENSION_NAME, MAX_WINDOW_BITS, Mode, clamp_bits};
use crate::proto::handshake::HandshakeError;

/// The agreed parameters of a permessage-deflate connection (RFC 7692 §7.1).
///
/// Window sizes are the values in effect, 8..=15, with 15 where the
/// handshake did not mention them. Made by [`negotiate`] or
/// [`parse_client_response`]; by hand, start from `Negotiated::default()`
/// (no parameters) and set the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server starts every message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window.
    pub client_no_context_takeover: bool,
    /// The server's compression window, base-2 logarithm.
    pub server_max_window_bits: u8,
    /// The client's compression window, base-2 logarithm.
    pub client_max_window_bits: u8,
    /// `server_max_window_bits` appears in the answer even at 15: the offer
    /// had it, so the answer must too (§7.1.2.1).
    pub(super) echo_server_max_window_bits: bool,
}

impl Default for Negotiated {
    /// The extension with no parameters: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        Negotiated {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            echo_server_max_window_bits: false,
        }
    }
}

impl Negotiated {
    /// The server's `Sec-WebSocket-Extensions` value, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_max_window_bits=12`.
    ///
    /// Window sizes below 15 are always written; `server_max_window_bits=15`
    /// only when the offer had the parameter.
    pub fn response_header(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        let server_bits = clamp_bits(self.server_max_window_bits);
        if server_bits < MAX_WINDOW_BITS || self.echo_server_max_window_bits {
            push_param(&mut out, "server_max_window_bits", server_bits);
        }
        let client_bits = clamp_bits(self.client_max_window_bits);
        if client_bits < MAX_WINDOW_BITS {
            push_param(&mut out, "client_max_window_bits", client_bits);
        }
        out
    }
}

fn push_param(out: &mut String, name: &str, bits: u8) {
    out.push_str("; ");
    out.push_str(name);
    out.push('=');
    if bits >= 10 {
        out.push('1');
    }
    out.push(char::from(b'0' + bits % 10));
}

/// A `Sec-WebSocket-Extensions` header that could not be used.
///
/// On the server side it means a syntactically malformed header: answer
/// HTTP 400 (see the `From` conversion to [`HandshakeError`]). On the client
/// side it means the server's answer breaks RFC 7692 §5.1 or RFC 6455 §9.1:
/// fail the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiationError {
    reason: &'static str,
}

impl NegotiationError {
    pub(super) const fn new(reason: &'static str) -> Self {
        NegotiationError { reason }
    }

    /// A short reason for a response body or a log line.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for NegotiationError {}

impl From<NegotiationError> for HandshakeError {
    /// A 400 Bad Request with the error's reason.
    fn from(err: NegotiationError) -> Self {
        HandshakeError { status: 400, reason: err.reason }
    }
}

// ---------------------------------------------------------------------------
// Server side.

/// Picks the first acceptable `permessage-deflate` offer (RFC 7692 §5, §7.1).
///
/// `offers` are the raw `Sec-WebSocket-Extensions` values of the request, in
/// order (as [`Request::extensions`](crate::proto::handshake::Request::extensions)
/// yields them); each may hold several comma-separated offers. Other
/// extensions are skipped. Every value is parsed to the end, and any syntax
/// error is an `Err` (answer HTTP 400). `Ok(None)`: compression is
/// [`Mode::Disabled`] (the header is then not even read) or no offer was
/// acceptable.
///
/// An offer is declined, and the next one tried, when it has an unknown or a
/// repeated parameter, a `*_no_context_takeover` with a value, or a window
/// size that is not 8..=15 (`server_max_window_bits` also needs one). The
/// answer to an accepted offer:
///
/// - `server_no_context_takeover` when offered, and always in [`Mode::Shared`];
/// - `client_no_context_takeover` when offered or when
///   [`DeflateConfig::client_no_context_takeover`] is set (§7.1.1.2 allows
///   the server to add it);
/// - `server_max_window_bits` = the smaller of the offered value and the
///   configured one, written when offered or when below 15 (§7.1.2.1 lets the
///   server add it on its own; clients must accept any value);
/// - `client_max_window_bits` = the smaller of the offered value (15 when
///   given without one) and the configured one, written when below 15, and
///   never when the offer lacks the parameter: that client compresses with
///   up to 15 bits, and [`Negotiated::client_max_window_bits`] says 15.
///
/// Names are compared case-insensitively. A value may be a token or a quoted
/// string (`client_max_window_bits="10"`).
///
/// ```
/// use wsreactor::proto::deflate::{DeflateConfig, Mode, negotiate};
///
/// let cfg = DeflateConfig { mode: Mode::Shared, server_max_window_bits: 12, ..Default::default() };
/// let headers: [&[u8]; 2] = [
///     b"x-webkit-deflate-frame, permessage-deflate; foo=1",
///     b"permessage-deflate; client_max_window_bits",
/// ];
/// let agreed = negotiate(headers, &cfg).unwrap().expect("the second offer is acceptable");
/// assert_eq!(
///     agreed.response_header(),
///     "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
/// );
/// assert_eq!((agreed.server_max_window_bits, agreed.client_max_window_bits), (12, 15));
///
/// // Malformed syntax is an error, to be answered with 400.
/// assert!(negotiate([&b"permessage-deflate; ;"[..]], &cfg).is_err());
/// ```
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a [u8]>,
    cfg: &DeflateConfig,
) -> Result<Option<Negotiated>, NegotiationError> {
    if cfg.mode == Mode::Disabled {
        return Ok(None);
    }
    let mut chosen = None;
    for value in offers {
        parse_extensions(value, |name, params| {
            if chosen.is_none()
                && params.problem.is_none()
                && name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes())
            {
                chosen = Some(accept(&params, cfg));
            }
        })?;
    }
    Ok(chosen)
}

/// The answer to an acceptable offer.
fn accept(offer: &Params, cfg: &DeflateConfig) -> Negotiated {
    let mut server_bits = clamp_bits(cfg.server_max_window_bits);
    if let Some(offered) = offer.server_max_window_bits {
        server_bits = server_bits.min(offered);
    }
    let client_bits = match offer.client_max_window_bits {
        None => MAX_WINDOW_BITS,
        Some(offered) => {
            clamp_bits(cfg.client_max_window_bits).min(offered.unwrap_or(MAX_WINDOW_BITS))
        }
    };
    Negotiated {
        server_no_context_takeover: offer.server_no_context_takeover || cfg.mode == Mode::Shared,
        client_no_context_takeover: offer.client_no_context_takeover
            || cfg.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        echo_server_max_window_bits: offer.server_max_window_bits.is_some(),
    }
}

// ---------------------------------------------------------------------------
// Client side.

/// What a client offers; see [`client_offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server to compress every message with an empty window.
    pub server_no_context_takeover: bool,
    /// Promise to compress every message with an empty window.
    pub client_no_context_takeover: bool,
    /// Ask the server for at most this window, 8..=15 (clamped).
    pub server_max_window_bits: Option<u8>,
    /// Let the server pick our window: `Some(15)` sends the parameter without
    /// a value (any window), `Some(n)` with `n` < 15 caps it at `n`, `None`
    /// leaves it out (we compress with 15 bits).
    pub client_max_window_bits: Option<u8>,
}

impl Default for ClientOffer {
    /// `permessage-deflate; client_max_window_bits`, as browsers offer.
    fn default() -> Self {
        ClientOffer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: Some(MAX_WINDOW_BITS),
        }
    }
}

impl ClientOffer {
    fn clamped(&self) -> ClientOffer {
        ClientOffer {
            server_max_window_bits: self.server_max_window_bits.map(clamp_bits),
            client_max_window_bits: self.client_max_window_bits.map(clamp_bits),
            ..*self
        }
    }
}

/// The client's `Sec-WebSocket-Extensions` value for `offer`.
///
/// ```
/// use wsreactor::proto::deflate::{ClientOffer, client_offer};
///
/// let offer = ClientOffer {
///     client_no_context_takeover: true,
///     server_max_window_bits: Some(10),
///     ..ClientOffer::default()
/// };
/// assert_eq!(
///     client_offer(&offer),
///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
/// );
/// ```
pub fn client_offer(offer: &ClientOffer) -> String {
    let offer = offer.clamped();
    let mut out = String::with_capacity(128);
    out.push_str(EXTENSION_NAME);
    if offer.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if offer.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = offer.server_max_window_bits {
        push_param(&mut out, "server_max_window_bits", bits);
    }
    match offer.client_max_window_bits {
        Some(MAX_WINDOW_BITS) => out.push_str("; client_max_window_bits"),
        Some(bits) => push_param(&mut out, "client_max_window_bits", bits),
        None => {}
    }
    out
}

/// Checks the server's `Sec-WebSocket-Extensions` values against what was
/// offered (RFC 7692 §5.1, §7.1; RFC 6455 §9.1).
///
/// `Ok(None)`: the server declined (no extension in its answer). An `Err`
/// means the client must fail the connection: malformed syntax, an extension
/// that was not offered (anything but one `permessage-deflate`), an unknown,
/// repeated or invalid parameter, `client_max_window_bits` not offered or
/// without a value or above the offered one, `server_max_window_bits` missing
/// or above the offered one when it was offered, or
/// `server_no_context_takeover` missing when it was offered.
///
/// `client_no_context_takeover` in the result is also set when the client
/// offered it (the client promised it); `client_max_window_bits` is the
/// answered value, else the offered one, else 15.
///
/// ```
/// use wsreactor::proto::deflate::{ClientOffer, parse_client_response};
///
/// let offer = ClientOffer { server_max_window_bits: Some(10), ..ClientOffer::default() };
/// let answer = b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=12";
/// let agreed = parse_client_response([&answer[..]], &offer).unwrap().unwrap();
/// assert_eq!((agreed.server_max_window_bits, agreed.client_max_window_bits), (9, 12));
///
/// let too_big = b"permessage-deflate; server_max_window_bits=11";
/// assert!(parse_client_response([&too_big[..]], &offer).is_err());
/// ```
pub fn parse_client_response<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    offered: &ClientOffer,
) -> Result<Option<Negotiated>, NegotiationError> {
    let offered = offered.clamped();
    let mut answer: Option<Params> = None;
    let mut problem = None;
    for value in values {
        parse_extensions(value, |name, params| {
            if problem.is_some() {
                return;
            }
            if !name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes()) {
                problem = Some("the server answered with an extension that was not offered");
            } else if answer.is_some() {
                problem = Some("the server answered permessage-deflate twice");
            } else if let Some(reason) = params.problem {
                problem = Some(reason);
            } else {
                answer = Some(params);
            }
        })?;
    }
    if let Some(reason) = problem {
        return Err(NegotiationError::new(reason));
    }
    let Some(answer) = answer else {
        return Ok(None);
    };
    if offered.server_no_context_takeover && !answer.server_no_context_takeover {
        return Err(NegotiationError::new("server_no_context_takeover missing from the answer"));
    }
    let server_bits = match (offered.server_max_window_bits, answer.server_max_window_bits) {
        (Some(_), None) => {
            return Err(NegotiationError::new("server_max_window_bits missing from the answer"));
        }
        (Some(asked), Some(got)) if got > asked => {
            return Err(NegotiationError::new("server_max_window_bits above the offered value"));
        }
        (_, got) => got.unwrap_or(MAX_WINDOW_BITS),
    };
    let client_bits = match (offered.client_max_window_bits, answer.client_max_window_bits) {
        (_, None) => offered.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        (None, Some(_)) => {
            return Err(NegotiationError::new("client_max_window_bits was not offered"));
        }
        (Some(_), Some(None)) => {
            return Err(NegotiationError::new("client_max_window_bits without a value"));
        }
        (Some(limit), Some(Some(got))) if got > limit => {
            return Err(NegotiationError::new("client_max_window_bits above the offered value"));
        }
        (Some(_), Some(Some(got))) => got,
    };
    Ok(Some(Negotiated {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover
            || offered.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        echo_server_max_window_bits: offered.server_max_window_bits.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::deflate::fixtures::*;

    // -- Negotiation: server side ------------------------------------------

    #[test]
    fn offers_that_are_declined() {
        let dedicated = cfg(Mode::Dedicated);
        for declined in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=150",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=\"1 5\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=9.0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover=\"\"",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; foo",
            "permessage-deflate; foo=bar",
            "permessage-deflate; server_max_window_bits=10; x",
            "x-webkit-deflate-frame",
            "deflate-frame, permessage-deflate-x",
        ] {
            assert_eq!(answer(&[declined], &dedicated), Ok(None), "{declined:?}");
        }
        // A declined offer does not stop a later one, in the same header or another.
        assert_eq!(
            answer(
                &["permessage-deflate; foo, permessage-deflate; server_no_context_takeover"],
                &dedicated
            ),
            Ok(Some("permessage-deflate; server_no_context_takeover".to_owned()))
        );
        assert_eq!(
            answer(
                &[
                    "permessage-deflate; server_max_window_bits=5",
                    "x-foo, permessage-deflate; client_max_window_bits=9"
                ],
                &dedicated
            ),
            Ok(Some("permessage-deflate; client_max_window_bits=9".to_owned()))
        );
        // The first acceptable offer wins, even when a later one is "better".
        assert_eq!(
            answer(
                &["permessage-deflate; client_max_window_bits=10", "permessage-deflate"],
                &dedicated
            ),
            Ok(Some("permessage-deflate; client_max_window_bits=10".to_owned()))
        );
    }

    #[test]
    fn what_the_server_adds_on_its_own() {
        let table: &[(DeflateConfig, &str, &str)] = &[
            // Shared: always server_no_context_takeover.
            (
                cfg(Mode::Shared),
                "permessage-deflate",
                "permessage-deflate; server_no_context_takeover",
            ),
            // A smaller server window is announced even when not asked about (§7.1.2.1) ...
            (
                DeflateConfig { server_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=10",
            ),
            // ... and the client's smaller value wins.
            (
                DeflateConfig { server_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; server_max_window_bits=9",
                "permessage-deflate; server_max_window_bits=9",
            ),
            (
                DeflateConfig { server_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; server_max_window_bits=12",
                "permessage-deflate; server_max_window_bits=10",
            ),
            // An offered 15 must be echoed.
            (
                cfg(Mode::Dedicated),
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
            ),
            // 8 is answered with 8 (the deflater runs with 9 internally).
            (
                cfg(Mode::Dedicated),
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
            ),
            (
                DeflateConfig { server_max_window_bits: 8, ..cfg(Mode::Dedicated) },
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=8",
            ),
            // The client's window only when the client allows it.
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate",
                "permessage-deflate",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; client_max_window_bits=12",
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..cfg(Mode::Dedicated) },
                "permessage-deflate; client_max_window_bits=8",
                "permessage-deflate; client_max_window_bits=8",
            ),
            (
                cfg(Mode::Dedicated),
                "permessage-deflate; client_max_window_bits=15",
                "permessage-deflate",
            ),
            // client_no_context_takeover by configuration.
            (
                DeflateConfig { client_no_context_takeover: true, ..cfg(Mode::Shared) },
                "permessage-deflate",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            // Out-of-range configuration is clamped.
            (
                DeflateConfig {
                    server_max_window_bits: 3,
                    client_max_window_bits: 0,
                    ..cfg(Mode::Dedicated)
                },
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
            ),
            (
                DeflateConfig {
                    server_max_window_bits: 200,
                    client_max_window_bits: 16,
                    ..cfg(Mode::Dedicated)
                },
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
            ),
        ];
        for (cfg, offer, expected) in table {
            assert_eq!(
                answer(&[offer], cfg),
                Ok(Some((*expected).to_owned())),
                "{cfg:?} {offer:?}"
            );
        }
        // Without client_max_window_bits in the offer, the client compresses with 15.
        let n = negotiate(
            [&b"permessage-deflate"[..]],
            &DeflateConfig { client_max_window_bits: 9, ..cfg(Mode::Dedicated) },
        )
        .unwrap()
        .unwrap();
        assert_eq!(n.client_max_window_bits, 15);
    }

    /// Every combination of offered parameters against every configuration:
    /// the answer follows the rules, and the client side agrees with it.
    #[test]
    fn every_parameter_combination() {
        let bits_or_absent = || std::iter::once(None).chain((8..=15).map(Some));
        let mut checked = 0;
        for snct in [false, true] {
            for cnct in [false, true] {
                for smwb in bits_or_absent() {
                    // None: absent; Some(None): no value; Some(Some(n)).
                    for cmwb in std::iter::once(None)
                        .chain(std::iter::once(Some(None)))
                        .chain((8..=15).map(|b| Some(Some(b))))
                    {
                        let mut params = Vec::new();
                        if snct {
                            params.push("server_no_context_takeover".to_owned());
                        }
                        if cnct {
                            params.push("client_no_context_takeover".to_owned());
                        }
                        if let Some(b) = smwb {
                            params.push(format!("server_max_window_bits={b}"));
                        }
                        match cmwb {
                            Some(None) => params.push("client_max_window_bits".to_owned()),
                            Some(Some(b)) => params.push(format!("client_max_window_bits=\"{b}\"")),
                            None => {}
                        }
                        for reversed in [false, true] {
                            if reversed {
                                params.reverse();
                            }
                            let mut offer = EXTENSION_NAME.to_owned();
                            for p in &params {
                                offer.push_str(" ; ");
                                offer.push_str(p);
                            }
                            for mode in [Mode::Shared, Mode::Dedicated] {
                                for cfg_server in 8..=15u8 {
                                    for cfg_client in 8..=15u8 {
                                        for cfg_cnct in [false, true] {
                                            let cfg = DeflateConfig {
                                                mode,
                                                server_max_window_bits: cfg_server,
                                                client_max_window_bits: cfg_client,
                                                client_no_context_takeover: cfg_cnct,
                                                ..DeflateConfig::default()
                                            };
                                            let n = negotiate([offer.as_bytes()], &cfg)
                                                .unwrap()
                                                .unwrap_or_else(|| panic!("{offer} declined"));
                                            assert_eq!(
                                                n.server_no_context_takeover,
                                                snct || mode == Mode::Shared
                                            );
                                            assert_eq!(
                                                n.client_no_context_takeover,
                                                cnct || cfg_cnct
                                            );
                                            assert_eq!(
                                                n.server_max_window_bits,
                                                smwb.unwrap_or(15).min(cfg_server)
                                            );
                                            let client = match cmwb {
                                                None => 15,
                                                Some(v) => v.unwrap_or(15).min(cfg_client),
                                            };
                                            assert_eq!(n.client_max_window_bits, client);
                                            let header = n.response_header();
                                            assert_eq!(
                                                header.contains("server_max_window_bits"),
                                                smwb.is_some() || cfg_server < 15
                                            );
                                            assert!(
                                                cmwb.is_some()
                                                    || !header.contains("client_max_window_bits")
                                            );
                                            // The client that made this offer accepts the answer
                                            // and reads the same parameters from it.
                                            let client_offer = ClientOffer {
                                                server_no_context_takeover: snct,
                                                client_no_context_takeover: cnct,
                                                server_max_window_bits: smwb,
                                                client_max_window_bits: cmwb
                                                    .map(|v| v.unwrap_or(15)),
                                            };
                                            let seen = parse_client_response(
                                                [header.as_bytes()],
                                                &client_offer,
                                            )
                                            .unwrap_or_else(|e| panic!("{offer} -> {header}: {e}"))
                                            .unwrap();
                                            assert_eq!(seen, n, "{offer} -> {header}");
                                            checked += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 9 * 10 * 2 * 2 * 8 * 8 * 2);
    }

    // -- Negotiation: client side ------------------------------------------

    #[test]
    fn client_offer_strings() {
        let table = [
            (ClientOffer::default(), "permessage-deflate; client_max_window_bits"),
            (
                ClientOffer { client_max_window_bits: None, ..ClientOffer::default() },
                "permessage-deflate",
            ),
            (
                ClientOffer {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    server_max_window_bits: Some(8),
                    client_max_window_bits: Some(12),
                },
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=12",
            ),
            (
                ClientOffer {
                    server_max_window_bits: Some(99),
                    client_max_window_bits: Some(2),
                    ..ClientOffer::default()
                },
                "permessage-deflate; server_max_window_bits=15; client_max_window_bits=8",
            ),
        ];
        for (offer, expected) in table {
            assert_eq!(client_offer(&offer), expected);
            // What a client offers, our server accepts.
            assert!(negotiate([expected.as_bytes()], &cfg(Mode::Dedicated)).unwrap().is_some());
        }
    }

    #[test]
    fn client_checks_the_answer() {
        let plain = ClientOffer::default();
        let strict = ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
        };
        let no_client_bits = ClientOffer { client_max_window_bits: None, ..ClientOffer::default() };
        let parse = |headers: &[&str], offer: &ClientOffer| {
            parse_client_response(headers.iter().map(|h| h.as_bytes()), offer)
        };
        // Declined: no extension at all.
        assert_eq!(parse(&[], &plain), Ok(None));
        assert_eq!(parse(&[" , "], &plain), Ok(None));
        // Accepted, with what the server may add on its own.
        let n = parse(&["permessage-deflate"], &plain).unwrap().unwrap();
        assert_eq!(n, Negotiated::default());
        let n = parse(&["permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8"], &plain)
            .unwrap()
            .unwrap();
        assert!(n.server_no_context_takeover && n.client_no_context_takeover);
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (8, 15));
        let n = parse(&["permessage-deflate; client_max_window_bits=9"], &plain).unwrap().unwrap();
        assert_eq!(n.client_max_window_bits, 9);
        let n = parse(
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=10"],
            &strict,
        )
        .unwrap()
        .unwrap();
        // The offered client window holds when the server does not answer it.
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (10, 12));
        let n = parse(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11"], &strict)
            .unwrap()
            .unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (9, 11));
        // A promised client_no_context_takeover holds.
        let promise = ClientOffer { client_no_context_takeover: true, ..ClientOffer::default() };
        assert!(
            parse(&["permessage-deflate"], &promise).unwrap().unwrap().client_no_context_takeover
        );

        for (headers, offer) in [
            (&["x-webkit-deflate-frame"][..], &plain),
            (&["permessage-deflate, x-foo"], &plain),
            (&["permessage-deflate", "permessage-deflate"], &plain),
            (&["permessage-deflate; foo"], &plain),
            (
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                &plain,
            ),
            (&["permessage-deflate; server_max_window_bits=16"], &plain),
            (&["permessage-deflate; server_max_window_bits"], &plain),
            (&["permessage-deflate; client_no_context_takeover=1"], &plain),
            (&["permessage-deflate; client_max_window_bits"], &plain),
            (&["permessage-deflate; client_max_window_bits=9"], &no_client_bits),
            (&["permessage-deflate; client_max_window_bits=13"], &strict),
            (&["permessage-deflate; server_max_window_bits=10"], &strict),
            (&["permessage-deflate; server_no_context_takeover"], &strict),
            (
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"],
                &strict,
            ),
            (&["permessage-deflate;"], &plain),
        ] {
            assert!(parse(headers, offer).is_err(), "{headers:?} for {offer:?}");
        }
    }
}

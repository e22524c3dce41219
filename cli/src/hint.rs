//! What the user can do about an error: the engine says what happened, the
//! CLI adds how to go on (the commands to run, the flags to try).

use localstream_node::Error;
use localstream_node::error::{
    NotConfirmed, PortHolder, ResolveError, StopCause, TransferError, TrustError,
};
use localstream_node::event::Side;
use localstream_node::store::Trust;
use localstream_proto::names::escape_for_terminal;

/// `e` as the user reads it: the engine's message in words (status codes
/// and the OS's error numbers are for `-v` and `--json`) and this front
/// end's hint.
#[must_use]
pub fn explain(e: &Error) -> String {
    if let Some((status, _)) = e.as_refusal() {
        tracing::info!(status = status.code(), "refused by the receiver");
    }
    let mut text = match e {
        Error::Transfer(TransferError::Refused { status, message }) => format!(
            "refused by the receiver: {}",
            if message.is_empty() {
                status.description().to_owned()
            } else {
                without_os_codes(&escape_for_terminal(message))
            }
        ),
        Error::Trust(t) => trust_text(t, crate::screen::width()),
        Error::Protocol(localstream_proto::Error::PeerAlert {
            status,
            message,
            verified,
        }) => {
            tracing::info!(status = status.code(), "the peer's alert");
            alert_text(*status, message, *verified)
        }
        e => without_os_codes(&e.to_string()),
    };
    if let Some(h) = hint(e) {
        text.push_str(&h);
    }
    text
}

/// The peer's alert in words (its status code is for `-v` and `--json`):
/// what it said, and whether that is known to come from it (a plaintext
/// alert, before the handshake's end, is not authenticated).
fn alert_text(status: localstream_proto::Status, message: &str, verified: bool) -> String {
    let said = if message.is_empty() {
        status.description().to_owned()
    } else {
        escape_for_terminal(message)
    };
    if verified {
        format!("peer aborted: {said}")
    } else {
        format!(
            "the peer (or someone on the path: a plaintext alert is not authenticated) said: \
             {said}"
        )
    }
}

/// A trust error's text; a changed key is a banner whose lines all fit its
/// `@@@` border, wrapped to `width` columns (a fingerprint stays whole).
fn trust_text(e: &TrustError, width: usize) -> String {
    let (title, body) = match e {
        TrustError::KeyChanged {
            peer,
            id,
            pinned,
            presented,
        } => (
            format!("WARNING: THE KEY OF PEER {peer} HAS CHANGED"),
            format!(
                "node id {id} is pinned to a different key.\npinned key:    sha256 {pinned}\n\
                 presented key: sha256 {presented}\nSomeone may be impersonating this peer, or it \
                 was reinstalled with a new key.\nThe connection was refused."
            ),
        ),
        TrustError::NewKeyForPinnedPeer(c) => (
            format!("WARNING: A NEW KEY ANSWERS AS PEER {}", c.peer),
            format!(
                "{} (node id {}) is pinned here to key sha256 {}.\nThe node that answered {} has \
                 node id {}, key sha256 {}.\nSomeone may be impersonating {}, or it was \
                 reinstalled with a new key.\nThe connection was refused.",
                c.peer, c.known, c.pinned, c.how, c.found, c.presented, c.peer
            ),
        ),
        e => return e.to_string(),
    };
    format!("\n{}", banner(&title, &body, width))
}

/// `title` in a box of `@`, then `body`: every line as wide as the border
/// at most, the border as wide as the terminal allows (a long word, such as
/// a fingerprint, keeps its line whole).
#[must_use]
pub fn banner(title: &str, body: &str, width: usize) -> String {
    let width = width.min(100);
    let inner = width.saturating_sub(6).max(1);
    let border = "@".repeat(width);
    let mut out = border.clone();
    for line in crate::screen::wrap(title, inner).lines() {
        out.push_str(&format!("\n@  {line:<inner$}  @"));
    }
    out.push('\n');
    out.push_str(&border);
    out.push('\n');
    out.push_str(&crate::screen::wrap(body, width));
    out
}

/// `text` without the " (os error 2)" that the standard library appends
/// to an OS error's description.
#[must_use]
pub fn without_os_codes(text: &str) -> String {
    const MARK: &str = " (os error ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..at + MARK.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A refused peer's error as the user reads it.
#[must_use]
pub fn explain_trust(e: &TrustError) -> String {
    let mut text = trust_text(e, crate::screen::width());
    if let Some(h) = trust_hint(e) {
        text.push_str(&h);
    }
    text
}

/// The hint to append to `e`'s message, if there is one.
#[must_use]
pub fn hint(e: &Error) -> Option<String> {
    match e {
        Error::Connect { source, .. } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                Some(" (is `localstream listen` running there, on that port?)".into())
            }
            std::io::ErrorKind::TimedOut => Some(" (is the address right and reachable?)".into()),
            _ => None,
        },
        Error::PortTaken { holder, .. } => Some(match holder {
            PortHolder::LocalStream => " (stop that listener first: it may be the service, see \
                 `localstream service status`; or listen on another port with --port PORT, \
                 --port 0 picks a free one)"
                .into(),
            _ => {
                " (stop it, or listen on another port with --port PORT; --port 0 picks a free one)"
                    .into()
            }
        }),
        Error::FolderNotWritable { .. } => Some(
            " (choose another folder with --dir DIR, or `localstream config set dir DIR`)".into(),
        ),
        Error::Trust(t) => trust_hint(t),
        Error::Resolve(r) => resolve_hint(r),
        // Each skipped path had its own line.
        Error::Transfer(TransferError::Unreadable { .. }) => Some(" (see above)".into()),
        // The receiver keeps what it has: the same send resumes.
        // A refused batch would be refused again (and what came before it is there).
        // Standard input is read once: nothing resumes it.
        // Busy before the transfer began (shutting down, or no place for
        // the handshake): nothing was lost, the next try may get in.
        Error::Protocol(localstream_proto::Error::PeerAlert {
            status: localstream_proto::Status::Busy,
            message,
            ..
        }) if !message.contains("try again") => {
            Some(" (send again once it is back, or add --retry to keep trying)".into())
        }
        Error::Transfer(TransferError::Stopped(s))
            if s.side == Side::Send && s.cause != StopCause::Refused && s.stream =>
        {
            Some("; a stream is not resumed: send it again".into())
        }
        Error::Transfer(TransferError::Stopped(s))
            if s.side == Side::Send && s.cause != StopCause::Refused =>
        {
            Some("; run the same command to resume (or add --retry)".into())
        }
        _ => None,
    }
}

fn forget(id: impl std::fmt::Display) -> String {
    format!(
        " If you have confirmed the change with its owner,\ndrop the old pin with:  localstream forget {id}"
    )
}

fn trust_hint(e: &TrustError) -> Option<String> {
    Some(match e {
        TrustError::KeyChanged { id, .. } => forget(id),
        TrustError::NewKeyForPinnedPeer(c) => forget(c.known),
        TrustError::AnnouncedKeyDiffers { peer, id, .. } => format!(
            " If {peer} was reinstalled with a new key, confirm it with its owner and run \
             `localstream forget {id}`; otherwise someone may be impersonating it"
        ),
        TrustError::NameTaken { known, .. } => format!(
            " Give the id to choose (`localstream send {known} ...` for the one you know), or \
             `localstream forget {known}` if it was replaced"
        ),
        TrustError::Blocked(_) => {
            "; `localstream trust` or `localstream forget` it to send to it again".into()
        }
        TrustError::NotConfirmed(NotConfirmed::Unattended { name, .. }) => format!(
            ". Compare the code with the one `localstream listen` shows on {name}, then run again \
             with --yes (or set `localstream config set first-contact yes`), or pin it first with \
             `localstream add NAME ADDRESS`"
        ),
        TrustError::PinChangedMeanwhile => ": see `localstream forget`".into(),
        _ => return None,
    })
}

fn resolve_hint(e: &ResolveError) -> Option<String> {
    Some(match e {
        ResolveError::UnknownPeer { .. } => {
            " (see `localstream sessions` for the peers this node knows)".into()
        }
        ResolveError::NotFound { seen, .. } if seen.is_empty() => {
            " (is `localstream listen` running there, on the same network? try --interface, a \
             longer --timeout, or its address)"
                .into()
        }
        ResolveError::Ambiguous { matches, .. } => {
            let mut text = "; say which one with the start of its id:".to_owned();
            for m in matches {
                text.push_str(&format!(
                    "\n  {}  {}  {}{}",
                    escape_for_terminal(&m.name),
                    m.id,
                    m.addresses.join(", "),
                    match m.trust {
                        Some(Trust::Trusted) => "  (trusted here)",
                        Some(Trust::Blocked) => "  (blocked here)",
                        Some(Trust::New | Trust::Known) => "  (pinned here)",
                        None => "",
                    }
                ));
            }
            text
        }
        ResolveError::NotMet { found, .. } => {
            let name = escape_for_terminal(&found.name);
            let addr = found
                .addresses
                .iter()
                .find(|a| !a.contains(':'))
                .or(found.addresses.first())
                .map_or("ADDRESS", String::as_str);
            format!(
                ": send to it once (`localstream send {name} FILE`), or `localstream add {name} \
                 {addr}`; then compare the verification codes and trust it"
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_said_in_words_without_its_code() {
        use localstream_proto::Status;
        let alert = |message: &str, verified| {
            explain(&Error::Protocol(localstream_proto::Error::PeerAlert {
                status: Status::NotTrusted,
                message: message.into(),
                verified,
            }))
        };
        assert_eq!(
            alert("trusted peers only\x1b", false),
            "the peer (or someone on the path: a plaintext alert is not authenticated) said: \
             trusted peers only\\x1b"
        );
        assert_eq!(
            alert("", true),
            "peer aborted: peer not trusted, or its key differs from the pinned one"
        );
    }

    #[test]
    fn every_line_of_the_key_change_banner_fits_its_border() {
        let e = TrustError::KeyChanged {
            peer: "h1".into(),
            id: uuid::Uuid::nil(),
            pinned: "ab".repeat(32),
            presented: "cd".repeat(32),
        };
        for width in [80, 66, 100, 200] {
            let text = explain_trust_at(&e, width);
            let border = width.min(100);
            let mut lines = text.lines().skip(1);
            assert_eq!(lines.next(), Some("@".repeat(border).as_str()), "{text}");
            let title = lines.next().unwrap();
            assert_eq!(title.chars().count(), border, "{text}");
            assert!(title.starts_with("@  WARNING: THE KEY OF PEER h1 HAS CHANGED "));
            assert!(title.ends_with("  @"), "{text}");
            for line in text.lines() {
                assert!(
                    line.chars().count() <= border,
                    "{width}: {line:?} in\n{text}"
                );
            }
            // A fingerprint is never cut.
            assert!(text.contains(&"ab".repeat(32)), "{text}");
            assert!(text.contains("The connection was refused."), "{text}");
        }
        let wide = explain_trust_at(&e, 100);
        assert!(
            wide.contains(&format!("\npinned key:    sha256 {}\n", "ab".repeat(32))),
            "a line that fits is kept as it is: {wide}"
        );
    }

    fn explain_trust_at(e: &TrustError, width: usize) -> String {
        trust_text(e, width)
    }

    #[test]
    fn no_status_codes_or_os_error_numbers_in_sentences() {
        assert_eq!(
            without_os_codes("/x/missing.txt: No such file or directory (os error 2)"),
            "/x/missing.txt: No such file or directory"
        );
        assert_eq!(without_os_codes("a (os error x) b"), "a (os error x) b");
        let missing = std::io::Error::from_raw_os_error(2);
        let e = Error::file("/x/missing.txt", missing);
        assert_eq!(explain(&e), "/x/missing.txt: No such file or directory");
        let e = Error::refused(
            localstream_proto::Status::Busy,
            "the receiver is serving too many sessions; try again",
        );
        assert_eq!(
            explain(&e),
            "refused by the receiver: the receiver is serving too many sessions; try again"
        );
        let e = Error::refused(localstream_proto::Status::Busy, "");
        assert_eq!(
            explain(&e),
            "refused by the receiver: receiver busy or shutting down"
        );
    }

    #[test]
    fn hints_follow_the_facts() {
        let e = Error::Connect {
            addr: "127.0.0.1:9".parse().unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(
            explain(&e).ends_with("(is `localstream listen` running there, on that port?)"),
            "{}",
            explain(&e)
        );
        let e = Error::from(ResolveError::Ambiguous {
            query: "box".into(),
            matches: vec![
                localstream_node::error::PeerMatch {
                    name: "box\x1b".into(),
                    id: uuid::Uuid::nil(),
                    addresses: vec!["10.0.0.2".into()],
                    trust: None,
                },
                localstream_node::error::PeerMatch {
                    name: "box".into(),
                    id: uuid::Uuid::max(),
                    addresses: vec!["10.0.0.3".into()],
                    trust: Some(Trust::Known),
                },
            ],
        });
        let text = explain(&e);
        assert!(
            text.starts_with("'box' matches 2 peers; say which one"),
            "{text}"
        );
        assert!(
            text.contains("\n  box\\x1b  00000000-0000-0000-0000-000000000000  10.0.0.2\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\n  box  ffffffff-ffff-ffff-ffff-ffffffffffff  10.0.0.3  (pinned here)"
            ),
            "{text}"
        );
        let e = Error::from(ResolveError::NotMet {
            query: "66ff".into(),
            found: localstream_node::error::PeerMatch {
                name: "h2".into(),
                id: "66ff0000-0000-4000-8000-000000000000".parse().unwrap(),
                addresses: vec!["fe80::1%2".into(), "10.79.0.2".into()],
                trust: None,
            },
        });
        assert_eq!(
            explain(&e),
            "h2 (66ff0000) is on the network but you have not met it yet: send to it once \
             (`localstream send h2 FILE`), or `localstream add h2 10.79.0.2`; then compare the \
             verification codes and trust it"
        );
        let alert = |message: &str| {
            Error::Protocol(localstream_proto::Error::PeerAlert {
                status: localstream_proto::Status::Busy,
                message: message.into(),
                verified: true,
            })
        };
        assert_eq!(
            explain(&alert("the receiver is shutting down")),
            "peer aborted: the receiver is shutting down (send again once it is back, or add \
             --retry to keep trying)"
        );
        assert_eq!(
            explain(&alert(
                "the receiver is busy with other handshakes; try again"
            )),
            "peer aborted: the receiver is busy with other handshakes; try again"
        );
        let e = Error::from(TrustError::Blocked("nas".into()));
        assert_eq!(
            explain(&e),
            "you have blocked nas; `localstream trust` or `localstream forget` it to send to it again"
        );
    }
}

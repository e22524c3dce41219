//! What the user can do about an error: the engine says what happened, the
//! CLI adds how to go on (the commands to run, the flags to try).

use localstream_node::Error;
use localstream_node::error::{
    NotConfirmed, PortHolder, ResolveError, TransferError, TrustError,
};
use localstream_proto::names::escape_for_terminal;

/// `e` as the user reads it: the engine's message and this front end's hint.
#[must_use]
pub fn explain(e: &Error) -> String {
    let mut text = e.to_string();
    if let Some(h) = hint(e) {
        text.push_str(&h);
    }
    text
}

/// A refused peer's error as the user reads it.
#[must_use]
pub fn explain_trust(e: &TrustError) -> String {
    let mut text = e.to_string();
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
            _ => " (stop it, or listen on another port with --port PORT; --port 0 picks a free one)"
                .into(),
        }),
        Error::FolderNotWritable { .. } => Some(
            " (choose another folder with --dir DIR, or `localstream config set dir DIR`)".into(),
        ),
        Error::Trust(t) => trust_hint(t),
        Error::Resolve(r) => resolve_hint(r),
        // Each skipped path had its own line.
        Error::Transfer(TransferError::Unreadable { .. }) => Some(" (see above)".into()),
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
                    "\n  {}  {}  {}",
                    escape_for_terminal(&m.name),
                    m.id,
                    m.addresses.join(", ")
                ));
            }
            text
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            matches: vec![localstream_node::error::PeerMatch {
                name: "box\x1b".into(),
                id: uuid::Uuid::nil(),
                addresses: vec!["10.0.0.2".into()],
            }],
        });
        let text = explain(&e);
        assert!(
            text.starts_with("'box' matches 1 peers; say which one"),
            "{text}"
        );
        assert!(
            text.contains("\n  box\\x1b  00000000-0000-0000-0000-000000000000  10.0.0.2"),
            "{text}"
        );
        let e = Error::from(TrustError::Blocked("nas".into()));
        assert_eq!(
            explain(&e),
            "you have blocked nas; `localstream trust` or `localstream forget` it to send to it again"
        );
    }
}

//! `send --to A --to B PATH...`: the same files to several receivers at
//! once, each its own transfer (its own events, bars and result line), then
//! one summary: "sent to 2 of 3 receivers; h3: declined". The exit status is
//! 0 only when every receiver got everything.

use localstream_node::config::SendConfig;
use localstream_node::error::{ResolveError, TransferError};
use localstream_node::{Error, Node};
use localstream_proto::Status;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Receiver, View};
use crate::render::{self, Renderer};

/// How one receiver's send ended.
type Outcome = Result<localstream_node::send::Sent, Error>;

/// Sends `cfg`'s files to every receiver at once, rendering all their
/// events; the first Ctrl-C stops them all (each records how far it got),
/// a second one at once. Returns each receiver's outcome, in their order.
pub async fn send_all(
    node: &Node,
    cfg: &SendConfig,
    receivers: &[Receiver],
    renderer: &mut Renderer,
    interrupts: &mut crate::signals::Interrupts,
) -> Vec<Outcome> {
    let mut events = node.events();
    let stop = CancellationToken::new();
    let mut running = JoinSet::new();
    for (i, r) in receivers.iter().enumerate() {
        let cfg = SendConfig {
            target: r.target.clone(),
            ..cfg.clone()
        };
        let (node, stop) = (node.clone(), stop.clone());
        running.spawn(async move { (i, node.send_until(&cfg, &stop).await) });
    }
    let mut outcomes: Vec<Option<Outcome>> = receivers.iter().map(|_| None).collect();
    let all = async {
        let mut stopping = false;
        loop {
            tokio::select! {
                done = running.join_next() => match done {
                    Some(Ok((i, r))) => outcomes[i] = Some(r),
                    // Stopped at once by a second Ctrl-C: counted as interrupted.
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "a send task failed"),
                    None => break,
                },
                () = interrupts.next() => {
                    if stopping {
                        running.abort_all();
                    } else {
                        stopping = true;
                        stop.cancel();
                    }
                }
            }
        }
    };
    crate::app::rendering(&mut events, renderer, all).await;
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Err(Error::Interrupted)))
        .collect()
}

/// The receivers' outcomes for people: a line for each one that did not
/// get everything (stderr), then the summary (stdout); or, with `--json`, an
/// `error` event for each. Returns whether all succeeded, and whether the
/// user interrupted.
pub fn report(receivers: &[Receiver], outcomes: &[Outcome], view: View) -> (bool, bool) {
    let mut failed = Vec::new();
    for (r, o) in receivers.iter().zip(outcomes) {
        let Err(e) = o else { continue };
        let who = localstream_proto::names::escape_for_terminal(&r.shown);
        if view.json {
            render::json_error(&format!("{who}: {e}"));
        } else {
            let line = match e.as_refusal() {
                Some((status, message)) => render::sender_refusal(&who, status, message),
                None => format!("{who}: {}", crate::hint::explain(e)),
            };
            eprintln!("localstream: {line}");
        }
        failed.push(format!("{who}: {}", reason(e)));
    }
    let interrupted = outcomes
        .iter()
        .any(|o| o.as_ref().is_err_and(Error::is_interrupted));
    if !view.json {
        crate::outln!("{}", summary(receivers.len(), &failed));
    }
    (failed.is_empty(), interrupted)
}

/// "sent to 3 receivers", or "sent to 2 of 3 receivers; h3: declined".
#[must_use]
pub fn summary(total: usize, failed: &[String]) -> String {
    if failed.is_empty() {
        return format!("sent to all {total} receivers");
    }
    format!(
        "sent to {} of {total} receivers; {}",
        total - failed.len(),
        failed.join("; ")
    )
}

/// A failed receiver's outcome in a word or two, for the summary.
#[must_use]
pub fn reason(e: &Error) -> String {
    match e {
        Error::Transfer(TransferError::Refused {
            status: Status::Declined,
            ..
        }) => "declined".into(),
        Error::Transfer(TransferError::Refused { status, message }) => format!(
            "refused: {}",
            if message.is_empty() {
                status.description().to_owned()
            } else {
                localstream_proto::names::escape_for_terminal(message)
            }
        ),
        Error::Transfer(TransferError::Incomplete { failed, total }) => {
            format!("{failed} of {total} files failed")
        }
        // A refusal before the handshake (a plaintext alert: its status only).
        Error::Protocol(localstream_proto::Error::PeerAlert { status, .. }) => {
            format!("refused: {}", status.description())
        }
        e if e.is_interrupted() => "interrupted".into(),
        Error::Connect { .. } => "unreachable".into(),
        Error::Resolve(ResolveError::NotFound { .. }) => "not found".into(),
        Error::Resolve(_) => "not found as one peer".into(),
        Error::Trust(_) => "refused here (see above)".into(),
        _ => "failed (see above)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_who_did_not_get_it() {
        assert_eq!(summary(2, &[]), "sent to all 2 receivers");
        let declined = Error::refused(Status::Declined, "the receiver declined");
        assert_eq!(reason(&declined), "declined");
        assert_eq!(
            summary(3, &[format!("h3: {}", reason(&declined))]),
            "sent to 2 of 3 receivers; h3: declined"
        );
        assert_eq!(reason(&Error::Interrupted), "interrupted");
        let busy = Error::refused(Status::Busy, "");
        assert_eq!(reason(&busy), "refused: receiver busy or shutting down");
        let only = Error::refused(Status::NotTrusted, "trusted peers only\x1b");
        assert_eq!(reason(&only), "refused: trusted peers only\\x1b");
        let alert = Error::Protocol(localstream_proto::Error::PeerAlert {
            status: Status::NotTrusted,
            message: "anything at all".into(),
            verified: false,
        });
        assert_eq!(
            reason(&alert),
            "refused: peer not trusted, or its key differs from the pinned one"
        );
    }
}

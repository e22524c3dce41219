//! The engine as a second front end would use it: no terminal, no CLI,
//! only `Node`, its events and its decisions. Two nodes on 127.0.0.1 with
//! discovery off; the sender's user confirms the first contact and the
//! receiver's user accepts the offer, both through the API.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use localstream_node::compress::Mode;
use localstream_node::config::{Destination, Discovery, ListenConfig, SendConfig, Target};
use localstream_node::confirm::FirstContact;
use localstream_node::consent::Policy;
use localstream_node::event::Envelope;
use localstream_node::{Decision, Event, Node, NodeConfig, Shutdown};

/// Waits for the first event `pick` accepts, failing after a generous deadline.
async fn wait_for<T>(
    events: &mut localstream_node::EventStream,
    mut pick: impl FnMut(&Envelope) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let e = events.next().await.expect("the node stopped");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .expect("no such event in 120 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_confirms_decides_and_follows_one_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        Node::start(NodeConfig {
            home: dir.path().join(name),
            name: Some(name.into()),
        })
        .unwrap()
    };
    let (receiver, sender) = (node("receiver"), node("sender"));

    let mut received = receiver.events();
    let listen = ListenConfig {
        dir: dir.path().join("inbox"),
        bind: "127.0.0.1:0".parse().unwrap(),
        policy: Policy::Ask,
        once: true,
        discovery: Discovery::Off,
        destination: Destination::Folder,
        localsend: None,
        on_collision: localstream_node::config::OnCollision::Rename,
    };
    let listening = tokio::spawn({
        let receiver = receiver.clone();
        async move { receiver.listen(&listen, Shutdown::default()).await }
    });
    let addr = wait_for(&mut received, |e| match &e.event {
        Event::Listening { addresses, .. } => addresses.first().copied(),
        _ => None,
    })
    .await;

    // The receiver's user: accept the offer the engine asks about.
    let deciding = tokio::spawn({
        let receiver = receiver.clone();
        async move {
            let (id, code) = wait_for(&mut received, |e| match &e.event {
                Event::Offer {
                    offer_id: Some(id),
                    code,
                    ..
                } => Some((*id, *code)),
                _ => None,
            })
            .await;
            assert!(
                receiver.decide(id + 1000, Decision::Accept).is_err(),
                "no such offer"
            );
            receiver.decide(id, Decision::Accept).unwrap();
            assert!(
                receiver.decide(id, Decision::Accept).is_err(),
                "answered once"
            );
            code
        }
    });

    let file = dir.path().join("report.txt");
    std::fs::write(&file, b"from one front end to another\n").unwrap();
    let send = SendConfig {
        target: Target::Addr(addr),
        files: vec![file],
        exclude: localstream_node::exclude::Exclude::default(),
        find_timeout: Duration::from_secs(1),
        discovery: Discovery::Off,
        retry: None,
        name: None,
        compress: Mode::Auto,
        first_contact: FirstContact::Ask,
        localsend: Default::default(),
    };
    let mut transfer = sender.start_send(send);
    let mut kinds = Vec::new();
    let mut confirmed_code = None;
    while let Some(e) = transfer.next_event().await {
        assert_eq!(e.transfer, Some(transfer.id()), "{e:?}");
        if let Event::Confirm { question, code, .. } = &e.event {
            confirmed_code = Some(*code);
            sender.confirm(*question, true).unwrap();
        }
        if e.event.is_machine() {
            let json = serde_json::to_value(&e).unwrap();
            kinds.push(json["event"].as_str().unwrap().to_owned());
        }
    }
    let sent = transfer.finish().await.unwrap();
    assert_eq!((sent.delivered, sent.offered), (1, 1));
    let kinds: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "progress")
        .collect();
    assert_eq!(
        kinds,
        [
            "connected",
            "confirm",
            "offer",
            "accepted",
            "file_done",
            "transfer_done"
        ]
    );
    // Both users saw the same verification code.
    assert_eq!(deciding.await.unwrap(), confirmed_code);
    assert_eq!(
        std::fs::read(dir.path().join("inbox/report.txt")).unwrap(),
        b"from one front end to another\n"
    );
    assert!(listening.await.unwrap().is_ok());
}

/// A file of a folder that is gone between the listing and its turn to be
/// read (removed while the sender's user confirms the first contact, after
/// the files were listed): it ends short and fails alone, the sender is
/// told why, and the rest of the folder arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_gone_after_the_offer_fails_alone_and_the_rest_arrives() {
    use localstream_node::Notice;
    use localstream_node::error::{Error, TransferError};
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        Node::start(NodeConfig {
            home: dir.path().join(name),
            name: Some(name.into()),
        })
        .unwrap()
    };
    let (receiver, sender) = (node("receiver"), node("sender"));
    let mut received = receiver.events();
    let inbox = dir.path().join("inbox");
    let listen = ListenConfig {
        dir: inbox.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        policy: Policy::Yes,
        once: true,
        discovery: Discovery::Off,
        destination: Destination::Folder,
        localsend: None,
        on_collision: localstream_node::config::OnCollision::Rename,
    };
    let listening = tokio::spawn({
        let receiver = receiver.clone();
        async move { receiver.listen(&listen, Shutdown::default()).await }
    });
    let addr = wait_for(&mut received, |e| match &e.event {
        Event::Listening { addresses, .. } => addresses.first().copied(),
        _ => None,
    })
    .await;

    let album = dir.path().join("album");
    std::fs::create_dir_all(&album).unwrap();
    for (name, content) in [("a.txt", "first"), ("b.txt", "gone"), ("c.txt", "third")] {
        std::fs::write(album.join(name), content).unwrap();
    }
    let send = SendConfig {
        target: Target::Addr(addr),
        files: vec![album.clone()],
        exclude: localstream_node::exclude::Exclude::default(),
        find_timeout: Duration::from_secs(1),
        discovery: Discovery::Off,
        retry: None,
        name: None,
        compress: Mode::Auto,
        first_contact: FirstContact::Ask,
        localsend: Default::default(),
    };
    let mut transfer = sender.start_send(send);
    let mut unread = Vec::new();
    while let Some(e) = transfer.next_event().await {
        match &e.event {
            Event::Confirm { question, .. } => {
                std::fs::remove_file(album.join("b.txt")).unwrap();
                sender.confirm(*question, true).unwrap();
            }
            Event::Notice(Notice::Unread { path, .. }) => unread.push(path.clone()),
            _ => {}
        }
    }
    match transfer.finish().await {
        Err(Error::Transfer(TransferError::Incomplete { failed, total })) => {
            // In files, as the user counts them: the folder is not one.
            assert_eq!((failed, total), (1, 3), "one of the folder's three files");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(unread, [album.join("b.txt")]);
    let _ = listening.await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(inbox.join("album"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "c.txt"]);
    assert_eq!(std::fs::read(inbox.join("album/a.txt")).unwrap(), b"first");
    assert_eq!(std::fs::read(inbox.join("album/c.txt")).unwrap(), b"third");
}

/// A send to a peer pinned on both sides writes each peer store once, after
/// the file arrived: nothing on the receiver before its Answer (the pin
/// exists), nothing on the sender before the receiver's Status. First
/// contact still pins on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_pinned_peer_writes_each_store_once() {
    use localstream_node::store::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        Node::start(NodeConfig {
            home: dir.path().join(name),
            name: Some(name.into()),
        })
        .unwrap()
    };
    let (receiver, sender) = (node("receiver"), node("sender"));
    let mut received = receiver.events();
    let listen = ListenConfig {
        dir: dir.path().join("inbox"),
        bind: "127.0.0.1:0".parse().unwrap(),
        policy: Policy::Yes,
        once: false,
        discovery: Discovery::Off,
        destination: Destination::Folder,
        localsend: None,
        on_collision: localstream_node::config::OnCollision::Rename,
    };
    let shutdown = Shutdown::default();
    let listening = tokio::spawn({
        let (receiver, shutdown) = (receiver.clone(), shutdown.clone());
        async move { receiver.listen(&listen, shutdown).await }
    });
    let addr = wait_for(&mut received, |e| match &e.event {
        Event::Listening { addresses, .. } => addresses.first().copied(),
        _ => None,
    })
    .await;
    let file = dir.path().join("small.txt");
    std::fs::write(&file, b"hello\n").unwrap();
    let send = SendConfig {
        target: Target::Addr(addr),
        files: vec![file],
        exclude: localstream_node::exclude::Exclude::default(),
        find_timeout: Duration::from_secs(1),
        discovery: Discovery::Off,
        retry: None,
        name: None,
        compress: Mode::Auto,
        first_contact: FirstContact::Yes,
        localsend: Default::default(),
    };
    // The receiver's history of the sender: its sessions' outcomes, once
    // `n` of them have ended (it is written after the transfer's last event).
    let ended = |n: usize| {
        let store = receiver.store().clone();
        async move {
            let sessions = || -> Vec<Option<Outcome>> {
                let data = store.load().unwrap();
                let entry = data.peers().first().cloned();
                entry.map_or(vec![], |e| {
                    let done = e.sessions.iter().map(|s| s.ended.map(|_| s.outcome));
                    done.collect()
                })
            };
            let wait = async {
                loop {
                    let s = sessions();
                    if s.len() == n && s.iter().all(Option::is_some) {
                        return s;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(120), wait)
                .await
                .expect("the receiver's history in 120 s")
        }
    };
    // First contact: pinned on both sides.
    sender.send(&send).await.unwrap();
    assert_eq!(ended(1).await, [Some(Outcome::Ok)]);
    let (r0, s0) = (receiver.store().writes(), sender.store().writes());
    assert!(r0 >= 1 && s0 >= 1, "first contact pins: {r0} {s0}");
    assert_eq!(sender.peer_store().unwrap().peers().len(), 1);

    // Pinned: one write each, after the file. (Another modification time:
    // the same file again would be found identical and not sent.)
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("small.txt"))
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    let started = std::time::Instant::now();
    let sent = sender.send(&send).await.unwrap();
    assert_eq!((sent.delivered, sent.offered), (1, 1));
    assert_eq!(sender.store().writes() - s0, 1, "the sender's history");
    assert_eq!(ended(2).await, [Some(Outcome::Ok), Some(Outcome::Ok)]);
    // A transfer longer than the start delay has its start written while
    // it runs (a crash leaves a trace); this one should have been quicker.
    let receiver_writes = receiver.store().writes() - r0;
    if started.elapsed() < localstream_node::trust::START_DELAY {
        assert_eq!(receiver_writes, 1, "the receiver's history, with its end");
    } else {
        assert!(receiver_writes <= 2, "{receiver_writes}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("inbox/small (1).txt")).unwrap(),
        b"hello\n"
    );
    shutdown.graceful.cancel();
    shutdown.now.cancel();
    let _ = listening.await.unwrap();
}

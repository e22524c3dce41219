//! A second front end in miniature: two nodes in temporary homes, one
//! listening on 127.0.0.1 (accepting everything, discovery off), the other
//! sending it a file; every event of both is printed as it happens (JSON
//! for the machine events, Debug for the notices).
//!
//! ```text
//! cargo run -p localstream-node --example send_and_print [FILE]
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use localstream_node::compress::Mode;
use localstream_node::config::{Destination, Discovery, ListenConfig, SendConfig, Target};
use localstream_node::confirm::FirstContact;
use localstream_node::consent::Policy;
use localstream_node::event::Envelope;
use localstream_node::{Event, EventStream, Node, NodeConfig, Shutdown};

/// Prints every event of one node, tagged with its role.
fn print_events(role: &'static str, mut events: EventStream) {
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            print(role, &event);
        }
    });
}

fn print(role: &str, envelope: &Envelope) {
    if envelope.event.is_machine() {
        let json = serde_json::to_string(envelope).unwrap_or_default();
        println!("{role:>8}: {json}");
    } else {
        println!("{role:>8}: {:?}", envelope.event);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let scratch = std::env::temp_dir().join(format!("localstream-example-{}", std::process::id()));
    let home = |role: &str| NodeConfig {
        home: scratch.join(role),
        name: Some(role.to_owned()),
    };
    let receiver = Node::start(home("receiver"))?;
    let sender = Node::start(home("sender"))?;

    // The receiver: one transfer, anything accepted, into scratch/inbox.
    let mut events = receiver.events();
    let listen = ListenConfig {
        dir: scratch.join("inbox"),
        bind: "127.0.0.1:0".parse()?,
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
    let addr = loop {
        let Some(envelope) = events.next().await else {
            return Err("the receiver stopped".into());
        };
        print("receiver", &envelope);
        if let Event::Listening { addresses, .. } = envelope.event {
            break addresses.first().copied().ok_or("no address")?;
        }
    };
    print_events("receiver", events);

    // The sender: the file given, or a small one made up.
    let file = match std::env::args_os().nth(1) {
        Some(f) => PathBuf::from(f),
        None => {
            let f = scratch.join("hello.txt");
            std::fs::write(&f, "hello from the LocalStream engine\n")?;
            f
        }
    };
    print_events("sender", sender.events());
    let send = SendConfig {
        target: Target::Addr(addr),
        files: vec![file],
        exclude: localstream_node::exclude::Exclude::default(),
        find_timeout: Duration::from_secs(1),
        discovery: Discovery::Off,
        retry: None,
        name: None,
        compress: Mode::Auto,
        // A script's choice: no one compares the codes here.
        first_contact: FirstContact::Yes,
        localsend: Default::default(),
    };
    let sent = sender.send(&send).await?;
    println!(
        "sent {} of {} files, {} bytes",
        sent.delivered, sent.offered, sent.bytes
    );
    let end = listening.await??;
    println!("the receiver ended: {end:?}");
    // Let the printers catch up before the runtime stops.
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

//! What `listen` checks before it starts, so that it refuses to start
//! instead of failing every transfer later: the folder for received files
//! can be written to, and, when the port is taken, what holds it.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use localstream_proto::Status;
use localstream_proto::codec::{Decoded, MAX_HANDSHAKE_BODY, decode_frame, encode_frame};
use localstream_proto::handshake::messages::{ALERT, Alert, CLIENT_HELLO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, PortHolder, Result};

/// How long the holder of a taken port gets to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes `dir` (with its parents) and proves that a file can be created,
/// written and removed in it. Returns the folder's canonical path.
///
/// # Errors
/// [`Error::FolderNotWritable`] when any of it fails.
pub fn writable_folder(dir: &Path) -> Result<PathBuf> {
    let not_writable = |source: io::Error| Error::FolderNotWritable {
        dir: dir.to_owned(),
        source,
    };
    if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        // (create_dir_all would say "File exists".)
        return Err(not_writable(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is a file, not a folder",
        )));
    }
    std::fs::create_dir_all(dir).map_err(not_writable)?;
    let canonical = std::fs::canonicalize(dir).map_err(not_writable)?;
    if !canonical.is_dir() {
        return Err(not_writable(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a folder",
        )));
    }
    probe(&canonical).map_err(not_writable)?;
    Ok(canonical)
}

/// Creates, writes, syncs and removes a file of a name no sender can pick
/// (senders' files become `.lspart` partials first).
fn probe(dir: &Path) -> io::Result<()> {
    let name = format!(
        ".localstream-probe-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let written = file
        .write_all(b"LocalStream checks that it can save files here\n")
        .and_then(|()| file.sync_all());
    drop(file);
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

/// Whether `addr` can be listened on now (a port of 0 always can): a front
/// end asks before it starts anything beside the listener (the web UI, its
/// link printed), so that a port taken stops it first.
///
/// # Errors
/// [`bind_error`]'s, when the port cannot be taken.
pub async fn port_free(addr: SocketAddr) -> Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match tokio::net::TcpListener::bind(addr).await {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(source) => Err(bind_error(addr, source).await),
    }
}

/// The error for a port `bind` could not take: when it is in use, what
/// answers there ([`Error::PortTaken`]); else [`Error::Bind`].
pub async fn bind_error(addr: SocketAddr, source: io::Error) -> Error {
    if source.kind() != io::ErrorKind::AddrInUse {
        return Error::Bind { addr, source };
    }
    let holder = match tokio::time::timeout(PROBE_TIMEOUT, ask(probe_addr(addr))).await {
        Ok(Ok(holder)) => holder,
        Ok(Err(_)) | Err(_) => PortHolder::Unknown,
    };
    Error::PortTaken { addr, holder }
}

/// Where to reach whatever holds `bind`: loopback for an unspecified address.
fn probe_addr(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// Sends a first frame that is not a ClientHello: a LocalStream listener
/// answers it with a plaintext alert "unsupported protocol version" (505)
/// and closes, without a handshake, so it counts as no attempt at its
/// verification code; anything else answers otherwise, or not at all.
async fn ask(addr: SocketAddr) -> io::Result<PortHolder> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut hello = Vec::new();
    encode_frame(CLIENT_HELLO, b"PING", &mut hello);
    stream.write_all(&hello).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match decode_frame(&buf, MAX_HANDSHAKE_BODY) {
            Ok(Decoded::Ready((frame, _))) => return Ok(judge(frame.typ, frame.body)),
            Ok(Decoded::NeedMore(_)) => {}
            Err(_) => return Ok(PortHolder::OtherProgram),
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(PortHolder::OtherProgram);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the answer is LocalStream's refusal of a bad first frame.
fn judge(typ: u8, body: &[u8]) -> PortHolder {
    match Alert::decode(body) {
        Ok(a) if typ == ALERT && a.status == Status::UnsupportedVersion => PortHolder::LocalStream,
        _ => PortHolder::OtherProgram,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_cannot_be_made_is_refused_even_for_root() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = writable_folder(&file.join("inbox")).unwrap_err();
        assert!(
            matches!(&e, Error::FolderNotWritable { dir, .. } if *dir == file.join("inbox")),
            "{e:?}"
        );
        let e = writable_folder(&file).unwrap_err();
        assert!(matches!(e, Error::FolderNotWritable { .. }), "{e:?}");
        // A folder that exists but takes no files, for root too.
        #[cfg(target_os = "linux")]
        {
            let e = writable_folder(Path::new("/proc/self")).unwrap_err();
            assert!(matches!(e, Error::FolderNotWritable { .. }), "{e:?}");
        }
        // A folder that works is made, and left empty.
        let ok = writable_folder(&tmp.path().join("a/b")).unwrap();
        assert!(ok.is_dir());
        assert_eq!(std::fs::read_dir(&ok).unwrap().count(), 0);
    }

    #[test]
    fn only_localstreams_refusal_names_localstream() {
        let mut frame = Vec::new();
        Alert {
            status: Status::UnsupportedVersion,
            message: "not our protocol".into(),
        }
        .encode(&mut frame);
        assert_eq!(judge(frame[0], &frame[5..]), PortHolder::LocalStream);
        assert_eq!(judge(ALERT, b"HTTP/1.1 400"), PortHolder::OtherProgram);
        assert_eq!(judge(b'H', &frame[5..]), PortHolder::OtherProgram);
        assert_eq!(
            probe_addr("0.0.0.0:7".parse().unwrap()),
            "127.0.0.1:7".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_addr("[::]:7".parse().unwrap()),
            "[::1]:7".parse::<SocketAddr>().unwrap()
        );
    }
}

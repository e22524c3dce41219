//! Connect: the first address that answers, then the handshake as the initiator.

use super::*;

/// Connects to the first address that answers, in order. With several
/// addresses each gets a shorter time, and all of them together at most
/// [`CONNECT_TIMEOUT`] (an announcement can list many, some dead).
pub(super) async fn connect(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr)> {
    let each = if addrs.len() > 1 {
        CONNECT_TIMEOUT_EACH
    } else {
        CONNECT_TIMEOUT
    };
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut last = None;
    for &addr in addrs.iter().take(MAX_ADDRESSES_TRIED) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let err = match tokio::time::timeout(each.min(left), connect_one(addr)).await {
            Ok(Ok(s)) => return Ok((s, addr)),
            Ok(Err(source)) => source,
            Err(_) => std::io::ErrorKind::TimedOut.into(),
        };
        info!(%addr, error = %err, "connect failed");
        last = Some(Error::Connect { addr, source: err });
    }
    Err(last.unwrap_or_else(|| ResolveError::NoAddress.into()))
}

/// Connects to the first of `addrs` that answers and runs the handshake as
/// the initiator: the reading half, the writing half, the session, and the
/// address that answered.
pub(crate) async fn open(
    identity: Arc<LocalIdentity>,
    addrs: &[SocketAddr],
) -> Result<(
    FrameReader<OwnedReadHalf>,
    OwnedWriteHalf,
    localstream_proto::Session,
    SocketAddr,
)> {
    let (stream, addr) = connect(addrs).await?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new(rd);
    let mut hello = vec![];
    let hs = Handshake::initiator(HandshakeConfig::new(identity), &mut rand::rng(), &mut hello);
    let session = match conn::handshake(&mut reader, &mut wr, hs, hello).await {
        Ok(session) => session,
        // Garbage where the listener's first frame should be: not ours.
        Err(Error::Protocol(
            source @ (localstream_proto::Error::FrameTooLarge { .. }
            | localstream_proto::Error::UnknownFrameType(_)
            | localstream_proto::Error::BadMagic),
        )) => return Err(Error::NotLocalStream { addr, source }),
        Err(e) => return Err(e),
    };
    Ok((reader, wr, session, addr))
}

/// One TCP connection with a large send buffer: a megabyte record then goes
/// to the kernel in one write while the next one is being sealed.
async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Err(e) = socket.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the send buffer");
    }
    socket.connect(addr).await
}

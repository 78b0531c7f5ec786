//! Listening sockets: one per reactor, all bound to the same address with
//! SO_REUSEPORT so the kernel spreads accepts across reactors.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Fails with `AddrInUse` if something already listens on `addr`, even a
/// process that also uses SO_REUSEPORT (which we would otherwise silently
/// share the port with).
fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    socket_for(addr)?.bind(&addr.into())
}

/// Asks the kernel to hand over a connection only once its first bytes have
/// arrived (TCP_DEFER_ACCEPT), holding a silent one for up to `wait`
/// (rounded up to whole seconds).
fn set_defer_accept(socket: &Socket, wait: Duration) -> io::Result<()> {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket, and a pointer to a c_int with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Binds `n` non-blocking listeners sharing one address. With port 0 the
/// first picks the port and the others join it. Accepted sockets inherit
/// TCP_NODELAY from the listener; with a non-zero `defer_accept` they are
/// accepted only once the client has sent something (or that time passed).
pub(crate) fn bind_group(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
    defer_accept: Duration,
) -> io::Result<Vec<mio::net::TcpListener>> {
    ensure_free(addr)?;
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = socket_for(addr)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if !defer_accept.is_zero() {
            set_defer_accept(&socket, defer_accept)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        if addr.port() == 0 {
            addr = socket.local_addr()?.as_socket().ok_or(io::ErrorKind::InvalidInput)?;
        }
        out.push(mio::net::TcpListener::from_std(socket.into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_DEFER: Duration = Duration::ZERO;

    #[test]
    fn group_shares_one_port() {
        let ls = bind_group("127.0.0.1:0".parse().unwrap(), 3, 128, NO_DEFER).unwrap();
        let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0));
    }

    #[test]
    fn port_in_use_is_an_error_even_with_reuseport() {
        let first = bind_group("127.0.0.1:0".parse().unwrap(), 1, 128, NO_DEFER).unwrap();
        let addr = first[0].local_addr().unwrap();
        let err = bind_group(addr, 2, 128, NO_DEFER).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    fn accept_within(l: &mio::net::TcpListener, d: Duration) -> Option<mio::net::TcpStream> {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if let Ok((s, _)) = l.accept() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let ls = bind_group("127.0.0.1:0".parse().unwrap(), 1, 128, NO_DEFER).unwrap();
        let _client = std::net::TcpStream::connect(ls[0].local_addr().unwrap()).unwrap();
        let accepted = accept_within(&ls[0], Duration::from_secs(2)).expect("accepted");
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn deferred_accept_waits_for_the_first_bytes() {
        let ls =
            bind_group("127.0.0.1:0".parse().unwrap(), 1, 128, Duration::from_secs(5)).unwrap();
        let mut client = std::net::TcpStream::connect(ls[0].local_addr().unwrap()).unwrap();
        assert!(accept_within(&ls[0], Duration::from_millis(300)).is_none());
        std::io::Write::write_all(&mut client, b"GET").unwrap();
        let accepted = accept_within(&ls[0], Duration::from_secs(2)).expect("accepted");
        let mut buf = [0u8; 8];
        let n = std::io::Read::read(&mut &accepted, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET");
    }
}

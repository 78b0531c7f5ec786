//! Listening sockets: one per reactor, all bound to the same address with
//! SO_REUSEPORT so the kernel spreads accepts across reactors.

use std::io;
use std::net::SocketAddr;

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

/// Binds `n` non-blocking listeners sharing one address. With port 0 the
/// first picks the port and the others join it.
pub(crate) fn bind_group(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
) -> io::Result<Vec<mio::net::TcpListener>> {
    ensure_free(addr)?;
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = socket_for(addr)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
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

    #[test]
    fn group_shares_one_port() {
        let ls = bind_group("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0));
    }

    #[test]
    fn port_in_use_is_an_error_even_with_reuseport() {
        let first = bind_group("127.0.0.1:0".parse().unwrap(), 1, 128).unwrap();
        let addr = first[0].local_addr().unwrap();
        let err = bind_group(addr, 2, 128).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}

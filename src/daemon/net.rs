//! The two UDP sockets of a daemon, built with socket2 so every option is set before bind.
//!
//! * The **group socket** receives the multicast group channel. It is bound to the group
//!   address and port with SO_REUSEADDR and SO_REUSEPORT, so several daemons share one host;
//!   `IP_MULTICAST_ALL` is off so it only hears the group it joined, on the configured
//!   interface.
//! * The **whisper socket** is each daemon's own unicast socket (unicast to a shared port
//!   would reach only one of the daemons sharing it). It also *sends* the group's multicast,
//!   with `IP_MULTICAST_IF`, TTL and loop set, so a datagram's source address is the
//!   sender's whisper address.

use crate::config::Config;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use thiserror::Error;
use tokio::net::UdpSocket;

/// Receive buffer we ask for: room for a full pacing window of response datagrams plus
/// group traffic. The kernel may grant less (net.core.rmem_max); that only costs speed.
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// A socket could not be set up.
#[derive(Debug, Error)]
#[error("cannot {action} (group {group}, interface {interface})")]
pub struct NetError {
    /// What was being done, e.g. "join multicast group".
    pub action: &'static str,
    /// The group address and port.
    pub group: SocketAddrV4,
    /// The configured interface address.
    pub interface: Ipv4Addr,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// The bound sockets of one daemon.
pub struct Sockets {
    /// Receives group multicast.
    pub group: UdpSocket,
    /// Sends everything; receives unicast answers.
    pub whisper: UdpSocket,
    /// Where group datagrams are sent.
    pub group_addr: SocketAddr,
    /// The whisper socket's bound address (its port travels in every datagram).
    pub whisper_addr: SocketAddr,
}

/// Opens and configures both sockets. Must be called inside a tokio runtime.
pub fn open(config: &Config) -> Result<Sockets, NetError> {
    let group = SocketAddrV4::new(config.group.address, config.group.port);
    let interface = config.group.interface;
    let fail = |action: &'static str| {
        move |source: io::Error| NetError {
            action,
            group,
            interface,
            source,
        }
    };

    let g = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(fail("create group socket"))?;
    g.set_reuse_address(true)
        .map_err(fail("set SO_REUSEADDR"))?;
    g.set_reuse_port(true).map_err(fail("set SO_REUSEPORT"))?;
    g.set_multicast_all_v4(false)
        .map_err(fail("turn off IP_MULTICAST_ALL"))?;
    let _ = g.set_recv_buffer_size(RECV_BUFFER_BYTES);
    // Bound to the group address (not 0.0.0.0), so unicast to this port is never heard here.
    g.bind(&SocketAddr::V4(group).into())
        .map_err(fail("bind group socket"))?;
    // With sync off from the start the group is not joined at all (the daemon joins when
    // `lootsync sync on` switches it on), so not one group datagram is received meanwhile.
    if config.sync.enabled {
        g.join_multicast_v4(&config.group.address, &interface)
            .map_err(fail("join multicast group"))?;
    }
    g.set_nonblocking(true).map_err(fail("set non-blocking"))?;

    let w = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(fail("create whisper socket"))?;
    let _ = w.set_recv_buffer_size(RECV_BUFFER_BYTES);
    let _ = w.set_send_buffer_size(RECV_BUFFER_BYTES);
    w.set_multicast_if_v4(&interface)
        .map_err(fail("set IP_MULTICAST_IF"))?;
    w.set_multicast_ttl_v4(config.group.ttl)
        .map_err(fail("set multicast TTL"))?;
    // Loop on: other daemons on this host must hear us; our own copies are dropped by node id.
    w.set_multicast_loop_v4(true)
        .map_err(fail("set multicast loop"))?;
    w.bind(&SocketAddr::V4(config.whisper.bind).into())
        .map_err(fail("bind whisper socket"))?;
    w.set_nonblocking(true).map_err(fail("set non-blocking"))?;

    let group_socket = UdpSocket::from_std(g.into()).map_err(fail("register group socket"))?;
    let whisper_socket = UdpSocket::from_std(w.into()).map_err(fail("register whisper socket"))?;
    let whisper_addr = whisper_socket
        .local_addr()
        .map_err(fail("read whisper address"))?;
    Ok(Sockets {
        group: group_socket,
        whisper: whisper_socket,
        group_addr: SocketAddr::V4(group),
        whisper_addr,
    })
}

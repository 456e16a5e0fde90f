//! The UDP sockets of a daemon, built with socket2 so every option is set before bind.
//!
//! * The **group socket** receives the multicast group channel. It is bound to the group
//!   address and port with SO_REUSEADDR and SO_REUSEPORT, so several daemons share one host;
//!   `IP_MULTICAST_ALL` is off so it only hears the group it joined, on the configured
//!   interface. Without `[group] address` there is no group socket at all.
//! * The **whisper socket** is each daemon's own unicast socket (unicast to a shared port
//!   would reach only one of the daemons sharing it). It sends everything: datagrams to
//!   listed and learned unicast peers and, with multicast on, the group's multicast (with
//!   `IP_MULTICAST_IF`, TTL and loop set), so a datagram's source address is always the
//!   sender's whisper address, which is where peers answer.

use crate::config::Config;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use thiserror::Error;
use tokio::net::UdpSocket;

/// Receive buffer we ask for: room for a full pacing window of response datagrams plus
/// group traffic. The kernel may grant less (net.core.rmem_max); that only costs speed.
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// A socket could not be set up.
#[derive(Debug, Error)]
#[error("cannot {action} ({on})")]
pub struct NetError {
    /// What was being done, e.g. "join multicast group".
    pub action: &'static str,
    /// Which socket: the group and interface, or the whisper address.
    pub on: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// The bound sockets of one daemon.
pub struct Sockets {
    /// Receives group multicast; `None` without multicast.
    pub group: Option<UdpSocket>,
    /// Sends everything; receives unicast.
    pub whisper: UdpSocket,
    /// Where group datagrams are sent; `None` without multicast.
    pub group_addr: Option<SocketAddr>,
    /// The whisper socket's bound address (its port travels in every datagram).
    pub whisper_addr: SocketAddr,
}

/// Opens and configures the sockets: the group socket only if `[group] address` is set.
/// Must be called inside a tokio runtime.
pub fn open(config: &Config) -> Result<Sockets, NetError> {
    let multicast = config.group.multicast();
    let group = match multicast {
        Some(group) => Some(open_group(config, group)?),
        None => None,
    };
    let whisper = open_whisper(config, multicast.is_some())?;
    let whisper_addr = whisper.local_addr().map_err(|source| NetError {
        action: "read whisper address",
        on: format!("whisper {}", config.whisper.bind),
        source,
    })?;
    Ok(Sockets {
        group,
        whisper,
        group_addr: multicast.map(SocketAddr::V4),
        whisper_addr,
    })
}

/// The group socket: bound to the group, a member of it unless sync starts off.
fn open_group(config: &Config, group: SocketAddrV4) -> Result<UdpSocket, NetError> {
    let interface = config.group.interface;
    let fail = |action: &'static str| {
        move |source: io::Error| NetError {
            action,
            on: format!("group {group}, interface {interface}"),
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
        g.join_multicast_v4(group.ip(), &interface)
            .map_err(fail("join multicast group"))?;
    }
    g.set_nonblocking(true).map_err(fail("set non-blocking"))?;
    UdpSocket::from_std(g.into()).map_err(fail("register group socket"))
}

/// The whisper socket; with multicast on it also sends the group's multicast.
fn open_whisper(config: &Config, multicast: bool) -> Result<UdpSocket, NetError> {
    let bind = config.whisper.bind;
    let interface = config.group.interface;
    let fail = |action: &'static str| {
        move |source: io::Error| NetError {
            action,
            on: match multicast {
                true => format!("whisper {bind}, multicast interface {interface}"),
                false => format!("whisper {bind}"),
            },
            source,
        }
    };
    let w = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(fail("create whisper socket"))?;
    let _ = w.set_recv_buffer_size(RECV_BUFFER_BYTES);
    let _ = w.set_send_buffer_size(RECV_BUFFER_BYTES);
    if multicast {
        w.set_multicast_if_v4(&interface)
            .map_err(fail("set IP_MULTICAST_IF"))?;
        w.set_multicast_ttl_v4(config.group.ttl)
            .map_err(fail("set multicast TTL"))?;
        // Loop on: other daemons on this host must hear us; our own copies are dropped by
        // node id.
        w.set_multicast_loop_v4(true)
            .map_err(fail("set multicast loop"))?;
    }
    w.bind(&SocketAddr::V4(bind).into())
        .map_err(fail("bind whisper socket"))?;
    w.set_nonblocking(true).map_err(fail("set non-blocking"))?;
    UdpSocket::from_std(w.into()).map_err(fail("register whisper socket"))
}

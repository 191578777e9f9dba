//! A small synchronous rtnetlink client: links, addresses and routes.
//!
//! Each request goes out with `NLM_F_REQUEST|NLM_F_ACK` (plus
//! `NLM_F_CREATE|NLM_F_EXCL` for new objects) and the reply is read until the
//! kernel's ACK or error. A netlink socket belongs to the network namespace
//! of the thread that opened it, so open a [`Netlink`] inside
//! [`crate::netns::NetNs::run`] to work on another namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, InfoVlan, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpf, TcFilterBpfOption, TcHandle, TcHeader, TcMessage,
    TcOption,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened or bound.
    #[error("cannot open rtnetlink socket: {source}")]
    Socket {
        /// Cause.
        source: io::Error,
    },
    /// Sending or receiving on the socket failed.
    #[error("{op} {target}: netlink socket IO failed: {source}")]
    Io {
        /// The request, e.g. "add veth".
        op: &'static str,
        /// The object it was about.
        target: String,
        /// Cause.
        source: io::Error,
    },
    /// The kernel sent something that does not parse.
    #[error("{op} {target}: cannot decode the kernel's reply: {source}")]
    Decode {
        /// The request.
        op: &'static str,
        /// The object it was about.
        target: String,
        /// Cause.
        source: netlink_packet_core::DecodeError,
    },
    /// No link has this name (in the socket's namespace).
    #[error("no link named {name} in this network namespace")]
    NotFound {
        /// Link name.
        name: String,
    },
    /// The kernel refused the request.
    #[error("{op} {target}: kernel said: {source}")]
    Kernel {
        /// The request.
        op: &'static str,
        /// The object it was about.
        target: String,
        /// The kernel's errno.
        source: io::Error,
    },
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            NetlinkError::NotFound { .. } => Some(libc::ENODEV),
            _ => None,
        }
    }
}

/// What [`Netlink::link_configure`] sets; `None`/`false` leaves it as is.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkSettings {
    /// Hardware address.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Bring the link up.
    pub up: bool,
}

/// macvlan modes (`MACVLAN_MODE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacvlanMode {
    /// No traffic between macvlans on the same parent.
    Private,
    /// Traffic between macvlans goes out to the parent's switch.
    Vepa,
    /// Macvlans on the same parent talk directly.
    Bridge,
    /// One macvlan takes over the parent.
    Passthru,
}

impl From<MacvlanMode> for MacVlanMode {
    fn from(m: MacvlanMode) -> Self {
        match m {
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        }
    }
}

/// What [`Netlink::link_get`] reports about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, for Ethernet-like links.
    pub mac: Option<[u8; 6]>,
    /// Index of the master (bridge) link.
    pub master: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `IFLA_INFO_KIND` ("veth", "bridge", "tun", …), when the link has one.
    pub kind: Option<String>,
}

/// Receive buffer size; big enough for any single rtnetlink datagram the
/// kernel sends us (dumps are split into datagrams of at most 32 KiB).
const RECV_BUF: usize = 64 * 1024;

/// A synchronous rtnetlink socket bound to the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens and binds an rtnetlink socket in the calling thread's network
    /// namespace.
    pub fn new() -> Result<Netlink, NetlinkError> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|source| NetlinkError::Socket { source })?;
        socket
            .bind_auto()
            .map_err(|source| NetlinkError::Socket { source })?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|source| NetlinkError::Socket { source })?;
        // Extended ACKs make the kernel's messages richer in strace; they are
        // optional, so a refusal is fine.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// The interface index of `name`; [`NetlinkError::NotFound`] when missing.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        self.link_get(name).map(|l| l.index)
    }

    /// True when a link called `name` exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, NetlinkError> {
        match self.link_get(name) {
            Ok(_) => Ok(true),
            Err(NetlinkError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Index, MTU, MAC, master, up flag and kind of link `name`.
    pub fn link_get(&mut self, name: &str) -> Result<LinkState, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let replies = match self.request(RouteNetlinkMessage::GetLink(msg), 0, "get link", name) {
            Err(e) if matches!(e.errno(), Some(libc::ENODEV)) => {
                return Err(NetlinkError::NotFound {
                    name: name.to_string(),
                });
            }
            r => r?,
        };
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_state(l)),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NotFound {
                name: name.to_string(),
            })
    }

    /// Every link in the namespace.
    pub fn link_list(&mut self) -> Result<Vec<LinkState>, NetlinkError> {
        let replies = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
            "",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_state(l)),
                _ => None,
            })
            .collect())
    }

    /// Names of every link in the namespace.
    pub fn link_names(&mut self) -> Result<Vec<String>, NetlinkError> {
        Ok(self.link_list()?.into_iter().map(|l| l.name).collect())
    }

    /// Sets `IFF_UP` on `name`.
    pub fn link_set_up(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.link_configure(
            name,
            LinkSettings {
                up: true,
                ..LinkSettings::default()
            },
        )
    }

    /// Sets the MTU of `name`.
    pub fn link_set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.link_configure(
            name,
            LinkSettings {
                mtu: Some(mtu),
                ..LinkSettings::default()
            },
        )
    }

    /// Sets the hardware address of `name`.
    pub fn link_set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.link_configure(
            name,
            LinkSettings {
                mac: Some(mac),
                ..LinkSettings::default()
            },
        )
    }

    /// Sets what `set` names of link `name` in one request (the kernel
    /// applies the address and MTU before bringing it up).
    pub fn link_configure(&mut self, name: &str, set: LinkSettings) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        self.link_configure_at(index, name, set)
    }

    /// [`Netlink::link_configure`] of the link with index `index` (`name`
    /// for errors), for a caller that knows it: no lookup first.
    pub fn link_configure_at(
        &mut self,
        index: u32,
        name: &str,
        set: LinkSettings,
    ) -> Result<(), NetlinkError> {
        let mut msg = link_msg_at(index);
        if let Some(mac) = set.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = set.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if set.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, "configure link", name)
    }

    /// Renames `name` to `new_name` (the link must be down).
    pub fn link_rename(&mut self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        let mut msg = self.link_msg(name)?;
        msg.attributes
            .push(LinkAttribute::IfName(new_name.to_string()));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, "rename link", name)
    }

    /// Moves `name` into the network namespace open at `ns` (e.g. a
    /// `/run/netns/NAME` file). The link goes down on the way.
    pub fn link_set_netns(&mut self, name: &str, ns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        let mut msg = self.link_msg(name)?;
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            "move link to namespace",
            name,
        )
    }

    /// Enslaves `name` to bridge (or bond) `master`.
    pub fn link_set_master(&mut self, name: &str, master: &str) -> Result<(), NetlinkError> {
        let master = self.link_index(master)?;
        let mut msg = self.link_msg(name)?;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            "set master of link",
            name,
        )
    }

    /// Adds a `clsact` qdisc to interface `ifindex`, as `tc qdisc add dev
    /// IF clsact` does: the hooks that [`Netlink::filter_add_bpf_egress`]
    /// attaches to.
    pub fn qdisc_add_clsact(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let on = format!("ifindex {ifindex}");
        self.qdisc_add_ingress_kind(ifindex, "clsact", "add clsact qdisc", None, &on)
    }

    /// A qdisc of `kind` (`clsact` or `ingress`, whose parent and handle
    /// are the same) on `ifindex`, with `attr` beside its kind; `op` names
    /// the request in an error.
    fn qdisc_add_ingress_kind(
        &mut self,
        ifindex: u32,
        kind: &str,
        op: &'static str,
        attr: Option<TcAttribute>,
        on: &str,
    ) -> Result<(), NetlinkError> {
        let mut msg = TcMessage::default();
        msg.header.index = ifindex as i32;
        msg.header.parent = TcHandle::INGRESS;
        msg.header.handle = TcHandle {
            major: TcHandle::INGRESS.major,
            minor: 0,
        };
        msg.attributes.push(TcAttribute::Kind(kind.into()));
        msg.attributes.extend(attr);
        self.ack(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            op,
            on,
        )
    }

    /// Attaches the loaded `SCHED_CLS` program `prog` as a direct-action
    /// classifier on the egress hook of `ifindex`'s clsact qdisc (`tc
    /// filter add dev IF egress bpf da fd PROG`), for every protocol. It
    /// stays attached until the interface goes (with its namespace): unlike
    /// a tcx link, attaching needs no RCU grace period (one each, serialised
    /// under RTNL, ~4 ms here) and nothing has to be detached.
    pub fn filter_add_bpf_egress(
        &mut self,
        ifindex: u32,
        prog: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), NetlinkError> {
        let parent = TcHandle {
            major: TcHandle::CLSACT.major,
            minor: TcHandle::MIN_EGRESS,
        };
        self.filter_add_bpf(
            ifindex as i32,
            parent,
            prog,
            name,
            &format!("ifindex {ifindex} egress"),
        )
    }

    /// Adds an `ingress` qdisc to interface `ifindex` whose filters are
    /// those of shared block `block` (`tc qdisc add dev IF ingress_block
    /// BLOCK ingress`): a filter added once to the block
    /// ([`Netlink::filter_add_bpf_block`]) classifies the ingress of every
    /// interface bound to it. The kernel keeps a list of every filter
    /// block bound in the system and walks it on each bind; a clsact qdisc
    /// brings two private blocks, a bind to an existing shared block none.
    /// `block` is a namespace's, non-zero; the block goes with the last
    /// qdisc bound to it.
    pub fn qdisc_add_ingress_block(
        &mut self,
        ifindex: u32,
        block: u32,
    ) -> Result<(), NetlinkError> {
        const TCA_INGRESS_BLOCK: u16 = 13;
        let attr = TcAttribute::Other(DefaultNla::new(
            TCA_INGRESS_BLOCK,
            block.to_ne_bytes().to_vec(),
        ));
        self.qdisc_add_ingress_kind(
            ifindex,
            "ingress",
            "add ingress qdisc",
            Some(attr),
            &format!("ifindex {ifindex} block {block}"),
        )
    }

    /// [`Netlink::filter_add_bpf_egress`] on shared block `block` (`tc
    /// filter add block BLOCK bpf da fd PROG`), which some qdisc must
    /// already be bound to ([`Netlink::qdisc_add_ingress_block`]).
    pub fn filter_add_bpf_block(
        &mut self,
        block: u32,
        prog: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), NetlinkError> {
        let parent = TcHandle {
            major: (block >> 16) as u16,
            minor: block as u16,
        };
        self.filter_add_bpf(
            TcHeader::TCM_IFINDEX_MAGIC_BLOCK as i32,
            parent,
            prog,
            name,
            &format!("block {block}"),
        )
    }

    /// A direct-action classifier `prog` for every protocol on `index`
    /// (an ifindex, or the magic one of shared blocks), `parent`.
    fn filter_add_bpf(
        &mut self,
        index: i32,
        parent: TcHandle,
        prog: BorrowedFd<'_>,
        name: &str,
        on: &str,
    ) -> Result<(), NetlinkError> {
        const ETH_P_ALL: u16 = 0x0003;
        const PRIO: u32 = 1;
        let mut msg = TcMessage::default();
        msg.header.index = index;
        msg.header.parent = parent;
        // TC_H_MAKE(prio << 16, htons(protocol)).
        msg.header.info = (PRIO << 16) | u32::from(ETH_P_ALL.to_be());
        msg.attributes
            .push(TcAttribute::Kind(TcFilterBpf::KIND.into()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.into())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.ack(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "add bpf filter",
            on,
        )
    }

    /// Deletes link `name` (a veth takes its peer along).
    pub fn link_del(&mut self, name: &str) -> Result<(), NetlinkError> {
        let msg = self.link_msg(name)?;
        self.ack(RouteNetlinkMessage::DelLink(msg), 0, "delete link", name)
    }

    /// Creates a veth pair `name` (here) ↔ `peer`, born in namespace `ns`
    /// (`ip link add NAME type veth peer name PEER netns NS`): no move
    /// later, which would wait for RCU grace periods under RTNL.
    pub fn link_add_veth_peer_in(
        &mut self,
        name: &str,
        peer: &str,
        ns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        self.link_add_veth_peer_in_with(name, peer, ns, None)
    }

    /// [`Netlink::link_add_veth_peer_in`] with both ends' MTU set at
    /// birth (`mtu`), saving a request per end.
    pub fn link_add_veth_peer_in_with(
        &mut self,
        name: &str,
        peer: &str,
        ns: BorrowedFd<'_>,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        peer_msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        self.link_add_with(
            name,
            InfoKind::Veth,
            mtu.map(LinkAttribute::Mtu).into_iter().collect(),
            Some(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            "add veth",
        )
    }

    /// Creates a veth pair `name` ↔ `peer`, both in this namespace.
    pub fn link_add_veth(&mut self, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        self.link_add(
            name,
            InfoKind::Veth,
            None,
            Some(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            "add veth",
        )
    }

    /// Creates a Linux bridge.
    pub fn link_add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.link_add(name, InfoKind::Bridge, None, None, "add bridge")
    }

    /// Creates a macvlan on `parent`.
    pub fn link_add_macvlan(
        &mut self,
        name: &str,
        parent: &str,
        mode: MacvlanMode,
    ) -> Result<(), NetlinkError> {
        let parent = self.link_index(parent)?;
        self.link_add(
            name,
            InfoKind::MacVlan,
            Some(parent),
            Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode.into())])),
            "add macvlan",
        )
    }

    /// Creates a VXLAN device with VNI `vni`, source `local`, underlay `dev`
    /// and UDP `port`; learning on, no multicast group (remotes come from the
    /// FDB).
    pub fn link_add_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        dev: &str,
        port: u16,
    ) -> Result<(), NetlinkError> {
        let dev = self.link_index(dev)?;
        self.link_add(
            name,
            InfoKind::Vxlan,
            None,
            Some(InfoData::Vxlan(vec![
                InfoVxlan::Id(vni),
                InfoVxlan::Local(local),
                InfoVxlan::Link(dev),
                InfoVxlan::Port(port),
                InfoVxlan::Learning(true),
            ])),
            "add vxlan",
        )
    }

    /// Creates an 802.1Q VLAN `id` on `parent` (not every kernel has it).
    pub fn link_add_vlan(&mut self, name: &str, parent: &str, id: u16) -> Result<(), NetlinkError> {
        let parent = self.link_index(parent)?;
        self.link_add(
            name,
            InfoKind::Vlan,
            Some(parent),
            Some(InfoData::Vlan(vec![InfoVlan::Id(id)])),
            "add vlan",
        )
    }

    /// Creates a link of `kind` with no kind-specific data, optionally on
    /// `parent` (`IFLA_LINK`). For kinds this module has no helper for
    /// ("dummy", "ipvlan", …).
    pub fn link_add_kind(
        &mut self,
        name: &str,
        kind: &str,
        parent: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let parent = parent.map(|p| self.link_index(p)).transpose()?;
        self.link_add(name, info_kind(kind), parent, None, "add link")
    }

    /// Adds `addr/prefix` to `name`; IPv6 addresses skip DAD (`IFA_F_NODAD`)
    /// so they are usable at once.
    pub fn addr_add(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        self.addr_add_at(index, name, addr, prefix)
    }

    /// [`Netlink::addr_add`] on the link with index `index` (`name` for
    /// errors): no lookup first.
    pub fn addr_add_at(
        &mut self,
        index: u32,
        name: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr);
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr));
        msg.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "add address to",
            name,
        )
    }

    /// Addresses (with prefix length) on link `name`.
    pub fn addr_list(&mut self, name: &str) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let index = self.link_index(name)?;
        let replies = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "list addresses of",
            name,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let prefix = a.header.prefix_len;
                    let local = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let address = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    });
                    local.or(address).map(|ip| (ip, prefix))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route to `dst` in the main table: via gateway `via` (dev
    /// optional) or, without `via`, directly on `dev` with link scope.
    /// `0.0.0.0/0` / `::/0` is the default route.
    pub fn route_add(
        &mut self,
        dst: IpNet,
        via: Option<IpAddr>,
        dev: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let oif = dev.map(|d| self.link_index(d)).transpose()?;
        self.route_add_oif(dst, via, oif)
    }

    /// [`Netlink::route_add`] with the device as an index: no lookup first.
    pub fn route_add_oif(
        &mut self,
        dst: IpNet,
        via: Option<IpAddr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let target = dst.to_string();
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst.addr());
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = via {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "add route",
            &target,
        )
    }

    fn link_add(
        &mut self,
        name: &str,
        kind: InfoKind,
        parent: Option<u32>,
        data: Option<InfoData>,
        op: &'static str,
    ) -> Result<(), NetlinkError> {
        let extra = parent.map(LinkAttribute::Link).into_iter().collect();
        self.link_add_with(name, kind, extra, data, op)
    }

    /// [`Netlink::link_add`] with attributes of the new link besides its
    /// name and kind (its parent, its MTU).
    fn link_add_with(
        &mut self,
        name: &str,
        kind: InfoKind,
        extra: Vec<LinkAttribute>,
        data: Option<InfoData>,
        op: &'static str,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.extend(extra);
        let mut info = vec![LinkInfo::Kind(kind)];
        info.extend(data.map(LinkInfo::Data));
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            op,
            name,
        )
    }

    /// A link message addressing `name` by index.
    fn link_msg(&mut self, name: &str) -> Result<LinkMessage, NetlinkError> {
        let index = self.link_index(name)?;
        Ok(link_msg_at(index))
    }

    fn ack(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<(), NetlinkError> {
        self.request(msg, flags, op, target).map(drop)
    }

    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &'static str,
        target: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.request(msg, NLM_F_DUMP, op, target)
    }

    /// Sends `msg` with `NLM_F_REQUEST|NLM_F_ACK|flags` and collects the
    /// replies until the ACK (or `NLMSG_DONE` for dumps).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let io_err = |source| NetlinkError::Io {
            op,
            target: target.to_string(),
            source,
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        let sent = self.socket.send(&out, 0).map_err(io_err)?;
        if sent != out.len() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            )));
        }

        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            let n = loop {
                match self.socket.recv(&mut self.buf, libc::MSG_TRUNC) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r.map_err(io_err)?,
                }
            };
            if n > self.buf.len() {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink datagram larger than the receive buffer",
                )));
            }
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|source| NetlinkError::Decode {
                        op,
                        target: target.to_string(),
                        source,
                    })?;
                let len = m.header.length as usize;
                off += len.next_multiple_of(4).max(16);
                if m.header.sequence_number != seq {
                    continue; // a late reply to an earlier request
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(_) => Err(NetlinkError::Kernel {
                                op,
                                target: target.to_string(),
                                source: e.to_io(),
                            }),
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn info_kind(kind: &str) -> InfoKind {
    match kind {
        "bridge" => InfoKind::Bridge,
        "veth" => InfoKind::Veth,
        "vlan" => InfoKind::Vlan,
        "vxlan" => InfoKind::Vxlan,
        "dummy" => InfoKind::Dummy,
        "macvlan" => InfoKind::MacVlan,
        "ipvlan" => InfoKind::IpVlan,
        other => InfoKind::Other(other.to_string()),
    }
}

/// A link message for the link with index `index`.
fn link_msg_at(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

fn link_state(l: LinkMessage) -> LinkState {
    let mut s = LinkState {
        index: l.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        master: None,
        up: l.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n,
            LinkAttribute::Mtu(m) => s.mtu = m,
            LinkAttribute::Address(a) => s.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Controller(c) => s.master = Some(c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        s.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

//! The embedded DNS's kernel fast path: a tc egress program on a
//! container's `lo` that turns a UDP query for a local name into its answer
//! in place, so the answer goes back through `lo` to the asking socket
//! without waking the server thread at all.
//!
//! Why: answering over a socket costs two syscalls and a thread wake-up per
//! query on each side, and on this 2-core machine the client (dnsperf) and
//! the server then split the CPU: a userspace server, however lean, cannot
//! give more than about 2× the queries per second of Docker's (a bare C
//! `recvmmsg`/`sendmmsg` responder measures the same as ours). Answering
//! where the query is sent removes the server's half.
//!
//! What it answers — only what [`NameTable::answer`] would answer the same
//! way, byte for byte (a root test runs both on the same queries):
//!
//! - a UDP/IPv4 query to 127.0.0.11:53 without IP options or fragments;
//! - header: QR = 0, opcode QUERY, one question, no answer or authority
//!   records, no additional record or exactly one empty OPT (EDNS without
//!   options, as `dnsperf -e` sends);
//! - a question of class IN, type A or AAAA, whose name (at most 64 bytes on
//!   the wire, exact bytes: other spellings go to userspace) is in the map
//!   for the namespace it is sent in: names with one address of that family
//!   (answered with it, TTL 600) or none (NOERROR, no records: DNS-10).
//!
//! Everything else — several addresses (round-robin, DNS-8), PTR, MX,
//! forwarded names, TCP, malformed input — passes on untouched to the
//! userspace server. One program (verified once) and one map serve a whole
//! world ([`WorldFastPath`]): every container's [`NameTable::fast_answers`]
//! go in when the world is built, keyed by the container's network
//! namespace cookie, which the program reads from the packet
//! (`bpf_get_netns_cookie`), so each container keeps its own view (DNS-5).
//! The scenario's names do not change while it runs.
//!
//! The reply: addresses and ports swapped, IP checksum recomputed, UDP
//! checksum 0 (none, allowed for IPv4), header as moby's `createRespMsg`
//! (QR, RD and CD copied, RA), the question kept as asked, the answer record
//! with a compression pointer to it, any OPT dropped (vswitch's answers carry
//! none).
//!
//! Set `VSWITCH_DNS_FASTPATH=off` to answer everything in userspace (to
//! compare, or to see every query in the server).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use crate::sys::bpf::{
    Alu, Asm, FP, HELPER_MAP_LOOKUP, HELPER_SKB_CHANGE_TAIL, HELPER_SKB_STORE_BYTES, Insn, Jmp,
    Map, Program, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, Size, TCX_DROP, TCX_NEXT, TCX_PASS,
    TcxLink, current_netns_cookie, skb,
};

use super::EMBEDDED_TTL;
use super::table::{FastAnswer, NameTable};
use crate::netns::NetNs;
use crate::wire::ethernet::{self, EtherType};
use crate::wire::ip::checksum::checksum as internet_checksum;
use crate::wire::{IpProtocol, dns, ipv4, udp};

/// Environment variable: `off` (or `0`) disables the fast path.
pub const FASTPATH_ENV: &str = "VSWITCH_DNS_FASTPATH";

/// Longest query name the fast path takes, in wire bytes (labels with their
/// length bytes and the final zero).
pub const NAME_MAX: usize = 64;
/// Map key: the asking container's view (u64, host order: what the views
/// map gives for its network namespace cookie), the name's wire bytes
/// zero-padded to [`NAME_MAX`], the query type (network order) and two zero
/// bytes. One map serves a whole world; the view keeps each container to
/// its own names (DNS-5), and containers that see the same names share one
/// view, so a world of N containers on a few networks holds each network's
/// names once rather than N times (N² entries at 1000 containers).
pub const KEY_SIZE: usize = 8 + NAME_MAX + 4;
/// Map value: the kind (u32: 0 no record, 1 A, 2 AAAA) and the answer
/// record's bytes.
pub const VALUE_SIZE: usize = 4 + RR_AAAA;
/// Most entries of a world's map (names beyond are answered in userspace).
pub const MAX_ENTRIES: u32 = 65536;

/// An A record with a pointer to the question's name: pointer (2), type,
/// class, TTL, length, address.
const RR_A: usize = 2 + 2 + 2 + 4 + 2 + 4;
/// The same for AAAA.
const RR_AAAA: usize = 2 + 2 + 2 + 4 + 2 + 16;

const ETH: i32 = ethernet::HEADER_LEN as i32;
const IP: i16 = ethernet::HEADER_LEN as i16;
const UDP: i16 = IP + ipv4::HEADER_LEN as i16;
const DNS: i16 = UDP + udp::HEADER_LEN as i16;
/// The question's name follows the DNS header.
const QNAME: i32 = DNS as i32 + dns::HEADER_LEN as i32;

/// Header fields the program reads and writes, from the `wire` views'
/// field tables (as displacements from the frame's start).
mod off {
    use crate::wire::{dns, ethernet, ipv4, udp};

    const fn at(base: i16, field: usize) -> i16 {
        base + field as i16
    }
    pub(super) const ETHERTYPE: i16 = ethernet::field::ETHERTYPE as i16;
    pub(super) const IP_VER_IHL: i16 = at(super::IP, ipv4::field::VER_IHL);
    pub(super) const IP_LENGTH: i16 = at(super::IP, ipv4::field::LENGTH);
    pub(super) const IP_FLG_OFF: i16 = at(super::IP, ipv4::field::FLG_OFF);
    pub(super) const IP_TTL: i16 = at(super::IP, ipv4::field::TTL);
    pub(super) const IP_PROTOCOL: i16 = at(super::IP, ipv4::field::PROTOCOL);
    pub(super) const IP_CHECKSUM: i16 = at(super::IP, ipv4::field::CHECKSUM);
    pub(super) const IP_SRC: i16 = at(super::IP, ipv4::field::SRC);
    pub(super) const IP_DST: i16 = at(super::IP, ipv4::field::DST);
    pub(super) const UDP_SRC_PORT: i16 = at(super::UDP, udp::field::SRC_PORT);
    pub(super) const UDP_DST_PORT: i16 = at(super::UDP, udp::field::DST_PORT);
    pub(super) const UDP_LENGTH: i16 = at(super::UDP, udp::field::LENGTH);
    pub(super) const UDP_CHECKSUM: i16 = at(super::UDP, udp::field::CHECKSUM);
    pub(super) const DNS_FLAGS_HI: i16 = at(super::DNS, dns::field::FLAGS_HI);
    pub(super) const DNS_FLAGS_LO: i16 = at(super::DNS, dns::field::FLAGS_LO);
    pub(super) const DNS_QDCOUNT: i16 = at(super::DNS, dns::field::QDCOUNT);
    pub(super) const DNS_ANCOUNT: i16 = at(super::DNS, dns::field::ANCOUNT);
    pub(super) const DNS_NSCOUNT: i16 = at(super::DNS, dns::field::NSCOUNT);
    pub(super) const DNS_ARCOUNT: i16 = at(super::DNS, dns::field::ARCOUNT);
}
/// Stack: the key at fp-80 … fp-4 (the name from fp-72), the answer length
/// at fp-88.
const KEY: i16 = -80;
const KEY_NAME: i16 = KEY + 8;
const SAVED_LEN: i16 = -88;
/// Helper `bpf_get_netns_cookie(skb)` (open to tc programs since 2025).
const HELPER_GET_NETNS_COOKIE: i32 = 122;

/// Whether the environment leaves the fast path on.
pub fn enabled() -> bool {
    !std::env::var(FASTPATH_ENV).is_ok_and(|v| v == "off" || v == "0")
}

/// The map key of `name` (dot-separated labels as asked, no trailing dot)
/// and query type `qtype` in view `netns` (a namespace cookie for
/// [`Loaded::insert`]), or
/// `None` when the name cannot be a key (too long, an empty or oversized
/// label).
pub fn key(netns: u64, name: &str, qtype: u16) -> Option<[u8; KEY_SIZE]> {
    let mut k = [0u8; KEY_SIZE];
    k[..8].copy_from_slice(&netns.to_ne_bytes());
    let mut at = 8;
    for label in name.split('.') {
        let len = label.len();
        if len == 0 || len > 63 || at + 1 + len + 1 > 8 + NAME_MAX {
            return None;
        }
        k[at] = len as u8;
        k[at + 1..at + 1 + len].copy_from_slice(label.as_bytes());
        at += 1 + len;
    }
    // k[at] is the final zero.
    k[8 + NAME_MAX..8 + NAME_MAX + 2].copy_from_slice(&qtype.to_be_bytes());
    Some(k)
}

/// The map value answering with `addr` (`None`: NOERROR, no records).
pub fn value(addr: Option<IpAddr>) -> [u8; VALUE_SIZE] {
    let mut v = [0u8; VALUE_SIZE];
    let ttl = EMBEDDED_TTL.to_be_bytes();
    let mut rr = |kind: u32, qtype: u16, data: &[u8]| {
        v[..4].copy_from_slice(&kind.to_ne_bytes());
        let r = &mut v[4..];
        r[..2].copy_from_slice(&[0xc0, 0x0c]);
        r[2..4].copy_from_slice(&qtype.to_be_bytes());
        r[4..6].copy_from_slice(&1u16.to_be_bytes());
        r[6..10].copy_from_slice(&ttl);
        r[10..12].copy_from_slice(&(data.len() as u16).to_be_bytes());
        r[12..12 + data.len()].copy_from_slice(data);
    };
    match addr {
        None => {}
        Some(IpAddr::V4(a)) => rr(1, 1, &a.octets()),
        Some(IpAddr::V6(a)) => rr(2, 28, &a.octets()),
    }
    v
}

fn read_counter(m: &Map) -> u64 {
    m.lookup(&0u32.to_ne_bytes())
        .ok()
        .flatten()
        .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
        .map_or(0, u64::from_ne_bytes)
}

/// A world's fast path: one program (verified once), one map from each
/// container's namespace cookie to its view and one holding every view's
/// names. Each container attaches it to its own `lo`
/// ([`Loaded::attach_here`]); tests run it with `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct Loaded {
    /// The program.
    pub prog: Program,
    /// netns cookie (u64) → view (u64).
    pub views: Map,
    /// (view, name, type) → answer.
    pub names: Map,
    /// One u64: queries answered, all containers together.
    pub hits: Map,
}

impl Loaded {
    /// Loads the program with an empty map of room for `capacity` answers
    /// (hash maps are preallocated, so it is sized to what will go in).
    /// Room for `capacity` namespaces in the views map too.
    pub fn new(capacity: usize) -> io::Result<Loaded> {
        Loaded::with_room(capacity, capacity)
    }

    /// Loads the program with room for `answers` answers and `namespaces`
    /// namespace → view bindings.
    pub fn with_room(answers: usize, namespaces: usize) -> io::Result<Loaded> {
        let room = |n: usize| u32::try_from(n.max(1)).map_or(MAX_ENTRIES, |n| n.min(MAX_ENTRIES));
        let names = Map::hash("vsw_dns_names", KEY_SIZE, VALUE_SIZE, room(answers))?;
        let views = Map::hash("vsw_dns_views", 8, 8, room(namespaces))?;
        let hits = Map::array("vsw_dns_hits", 8, 1)?;
        let prog = Program::load_tc("vsw_dns_fast", &program(&views, &names, &hits))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Loaded {
            prog,
            views,
            names,
            hits,
        })
    }

    /// Puts `answers` in the map for queries asked in namespace `netns`
    /// (its own view, numbered by its cookie).
    pub fn insert(&self, netns: u64, answers: &[FastAnswer]) -> io::Result<()> {
        self.insert_view(netns, answers)?;
        self.bind(netns, netns)
    }

    /// Makes queries asked in namespace `netns` see view `view`.
    pub fn bind(&self, netns: u64, view: u64) -> io::Result<()> {
        self.views.update(&netns.to_ne_bytes(), &view.to_ne_bytes())
    }

    /// Puts `answers` in the map as view `view`.
    pub fn insert_view(&self, view: u64, answers: &[FastAnswer]) -> io::Result<()> {
        for a in answers {
            if let Some(k) = key(view, &a.name, a.qtype) {
                self.names.update(&k, &value(a.addr))?;
            }
        }
        Ok(())
    }

    /// Queries answered so far.
    pub fn hits(&self) -> u64 {
        read_counter(&self.hits)
    }

    /// Puts `answers` in the map under the calling thread's namespace and
    /// attaches the program to tc egress of its `lo` (call it inside the
    /// container's namespace). Detached when the link is dropped.
    pub fn attach_here(&self, answers: &[FastAnswer]) -> io::Result<TcxLink> {
        self.insert(current_netns_cookie()?, answers)?;
        // `lo` is interface 1 in every network namespace.
        self.prog.attach_tcx_egress(1)
    }

    /// As [`Loaded::attach_here`], but as a direct-action classifier on a
    /// clsact qdisc of `lo`, which stays until `lo` goes with its
    /// namespace: for namespaces that will be deleted (a world's
    /// containers). A tcx link costs an RCU grace period to attach and
    /// another to detach, each serialised under RTNL (~4 ms apiece here,
    /// 8 s for a world of 1000 containers); this costs neither.
    /// Here the namespace sees view `view` (put in with
    /// [`Loaded::insert_view`]).
    pub fn attach_here_until_namespace_goes(&self, view: u64) -> io::Result<()> {
        use std::os::fd::AsFd;
        self.bind(current_netns_cookie()?, view)?;
        let mut nl = crate::sys::netlink::Netlink::new().map_err(io::Error::other)?;
        // The world adds the qdisc when it creates the namespace (cheaper
        // then); anyone else gets it here.
        match nl.qdisc_add_clsact(1) {
            Err(e) if e.errno() != Some(libc::EEXIST) => return Err(io::Error::other(e)),
            _ => {}
        }
        nl.filter_add_bpf_egress(1, self.prog.as_fd(), "vsw_dns_fast")
            .map_err(io::Error::other)
    }
}

/// A world's fast path and what each container of it answers there.
#[derive(Debug)]
pub struct WorldFastPath {
    loaded: Loaded,
    /// Per container (index into `Plan::containers`): its view, `None`
    /// when it has nothing to answer here.
    view_of: Vec<Option<u64>>,
}

impl WorldFastPath {
    /// Loads the fast path for every container of `table`. `None` when
    /// disabled, when no container has a single-address name, or when this
    /// kernel or process cannot load it (logged; the userspace servers
    /// answer everything then).
    pub fn load(table: &NameTable) -> Option<WorldFastPath> {
        if !enabled() {
            return None;
        }
        // Containers that see exactly the same answers share a view. What
        // a container is answered depends on nothing of it but the
        // networks it sees (`NameTable::lookup` reads only those), so the
        // answers are computed once per set of networks: computing them
        // per container is quadratic (1000 containers on 3 networks: 10⁶
        // lookups).
        let mut views: Vec<Vec<FastAnswer>> = Vec::new();
        let mut by_networks: std::collections::HashMap<Vec<usize>, Option<u64>> =
            std::collections::HashMap::new();
        let view_of: Vec<Option<u64>> = (0..table.containers())
            .map(|c| {
                let networks = table.view(c).filter(|v| v.embedded)?.networks.clone();
                *by_networks.entry(networks).or_insert_with(|| {
                    let answers = table.fast_answers(c);
                    if answers.is_empty() {
                        return None;
                    }
                    views.push(answers);
                    Some(views.len() as u64)
                })
            })
            .collect();
        let total = views.iter().map(Vec::len).sum();
        if total == 0 {
            return None;
        }
        let loaded = Loaded::with_room(total, view_of.iter().flatten().count()).and_then(|l| {
            for (i, answers) in views.iter().enumerate() {
                l.insert_view(i as u64 + 1, answers)?;
            }
            Ok(l)
        });
        match loaded {
            Ok(loaded) => Some(WorldFastPath { loaded, view_of }),
            Err(e) => {
                unavailable(&e);
                None
            }
        }
    }

    /// Attaches each `(container, its namespace)`'s part there, as a tc
    /// classifier that goes with the namespace
    /// ([`Loaded::attach_here_until_namespace_goes`]), so these must be
    /// namespaces that will be deleted. Containers with nothing to answer,
    /// or where the kernel refuses (logged), are left to userspace. Returns
    /// how many were attached.
    pub fn attach_in<'a>(
        self: &Arc<Self>,
        containers: impl IntoIterator<Item = (usize, &'a NetNs)>,
    ) -> usize {
        let jobs: Vec<(u64, &NetNs)> = containers
            .into_iter()
            .filter_map(|(c, ns)| Some((self.view_of.get(c).copied().flatten()?, ns)))
            .collect();
        // Independent per namespace; on parallel threads.
        let done =
            crate::backend::parallel::map(jobs, crate::backend::parallel::WIDTH, |(view, ns)| {
                let f = self.clone();
                match ns.run(move || f.loaded.attach_here_until_namespace_goes(view)) {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        unavailable(&e);
                        false
                    }
                    Err(e) => {
                        unavailable(&io::Error::other(e.to_string()));
                        false
                    }
                }
            });
        done.into_iter().filter(|&ok| ok).count()
    }

    /// Queries answered in the kernel so far, all containers together.
    pub fn hits(&self) -> u64 {
        self.loaded.hits()
    }
}

fn unavailable(e: &io::Error) {
    tracing::info!(error = %e, "embedded DNS kernel fast path unavailable; answering in userspace");
}

/// The frame a container's socket sends on `lo` for UDP query `dns` from
/// 127.0.0.1:40000 to 127.0.0.11:53 (Ethernet header with zero addresses,
/// IPv4 without options, UDP checksum 0): what tests and the fuzz target
/// feed the program with `BPF_PROG_TEST_RUN`.
pub fn query_frame(dns: &[u8]) -> Vec<u8> {
    let total = u16::try_from(ipv4::HEADER_LEN + udp::HEADER_LEN + dns.len()).unwrap_or(u16::MAX);
    let mut f = vec![0u8; DNS as usize];
    ethernet::emit(&mut f, [0; 6], [0; 6], EtherType::IPV4);
    let mut ip = ipv4::Packet::new_unchecked(&mut f[IP as usize..]);
    ip.set_header_len(ipv4::HEADER_LEN);
    ip.set_total_len(total);
    ip.set_ident(0x1234);
    ip.set_frag_field(ipv4::FLAG_DF);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src([127, 0, 0, 1]);
    ip.set_dst(super::EMBEDDED_DNS_ADDR.octets());
    ip.fill_checksum();
    let mut u = udp::Packet::new_unchecked(&mut f[UDP as usize..]);
    u.set_src_port(40000);
    u.set_dst_port(53);
    u.set_len(total.saturating_sub(ipv4::HEADER_LEN as u16));
    u.set_checksum(0);
    f.extend_from_slice(dns);
    f
}

/// Checks that `reply` is the program's answer to `query` (both frames as
/// on `lo`): addresses and ports swapped, lengths right, a valid IP
/// checksum. Its DNS bytes, or what is wrong.
pub fn reply_payload<'a>(query: &[u8], reply: &'a [u8]) -> Result<&'a [u8], String> {
    let (ip_at, udp_at, dns_at) = (IP as usize, UDP as usize, DNS as usize);
    if reply.len() < dns_at + dns::HEADER_LEN || query.len() < dns_at {
        return Err(format!("reply of {} bytes", reply.len()));
    }
    let (qip, ip) = (
        ipv4::Packet::new_unchecked(&query[ip_at..]),
        ipv4::Packet::new_unchecked(&reply[ip_at..]),
    );
    let (qu, u) = (
        udp::Packet::new_unchecked(&query[udp_at..]),
        udp::Packet::new_unchecked(&reply[udp_at..]),
    );
    let checks = [
        (
            internet_checksum(&reply[ip_at..udp_at]) == 0,
            "IP header checksum",
        ),
        (
            ip.src() == qip.dst() && ip.dst() == qip.src(),
            "addresses swapped",
        ),
        (
            usize::from(ip.total_len()) == reply.len() - ip_at,
            "IP total length",
        ),
        (
            u.src_port() == qu.dst_port() && u.dst_port() == qu.src_port(),
            "ports swapped",
        ),
        (usize::from(u.len()) == reply.len() - udp_at, "UDP length"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(format!("reply frame: wrong {what}")),
        None => Ok(&reply[dns_at..]),
    }
}

/// Network-order constants as the little-endian loads of the program see
/// them.
fn be16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// The tc program. Registers: r6 the skb, r7 `data`, r8 `data_end`, r9 the
/// question name's length (a constant on every path: the name copy is
/// unrolled, so the verifier sees each length as its own path).
fn program(views: &Map, names: &Map, hits: &Map) -> Vec<Insn> {
    let mut a = Asm::new();
    let next = a.label();
    let drop = a.label();
    let have_name = a.label();

    a.alu_reg(Alu::Mov, R6, R1);
    a.load(Size::W, R7, R6, skb::DATA);
    a.load(Size::W, R8, R6, skb::DATA_END);
    // Headers through the DNS header must be there.
    a.alu_reg(Alu::Mov, R2, R7);
    a.alu_imm(Alu::Add, R2, QNAME);
    a.jmp_reg(Jmp::Gt, R2, R8, next);
    // IPv4, no options, UDP, not a fragment, to 127.0.0.11:53.
    a.load(Size::H, R3, R7, off::ETHERTYPE);
    a.jmp_imm(Jmp::Ne, R3, be16(EtherType::IPV4), next);
    a.load(Size::B, R3, R7, off::IP_VER_IHL);
    a.jmp_imm(Jmp::Ne, R3, 0x45, next);
    a.load(Size::B, R3, R7, off::IP_PROTOCOL);
    a.jmp_imm(Jmp::Ne, R3, i32::from(IpProtocol::UDP), next);
    a.load(Size::H, R3, R7, off::IP_FLG_OFF);
    a.alu_imm(Alu::And, R3, be16(ipv4::FLAG_MF | ipv4::OFFSET_MASK));
    a.jmp_imm(Jmp::Ne, R3, 0, next);
    a.load(Size::W, R3, R7, off::IP_DST);
    a.jmp_imm(
        Jmp::Ne,
        R3,
        i32::from_ne_bytes(super::EMBEDDED_DNS_ADDR.octets()),
        next,
    );
    a.load(Size::H, R3, R7, off::UDP_DST_PORT);
    a.jmp_imm(Jmp::Ne, R3, be16(53), next);
    // QR = 0 and opcode QUERY; QDCOUNT 1; ANCOUNT and NSCOUNT 0; ARCOUNT 0 or 1.
    a.load(Size::B, R3, R7, off::DNS_FLAGS_HI);
    a.alu_imm(Alu::And, R3, i32::from(dns::QR_OPCODE));
    a.jmp_imm(Jmp::Ne, R3, 0, next);
    a.load(Size::H, R3, R7, off::DNS_QDCOUNT);
    a.jmp_imm(Jmp::Ne, R3, be16(1), next);
    a.load(Size::W, R3, R7, off::DNS_ANCOUNT);
    a.jmp_imm(Jmp::Ne, R3, 0, next);
    let ar_ok = a.label();
    a.load(Size::H, R3, R7, off::DNS_ARCOUNT);
    a.jmp_imm(Jmp::Eq, R3, 0, ar_ok);
    a.jmp_imm(Jmp::Ne, R3, be16(1), next);
    a.bind(ar_ok);

    // The key: zeroed, then the name's bytes up to and including its zero.
    for off in (KEY..-8).step_by(8) {
        a.store_imm(Size::Dw, FP, off, 0);
    }
    a.store_imm(Size::W, FP, -8, 0);
    // Whose view: the one bound to the namespace the query is sent in.
    a.alu_reg(Alu::Mov, R1, R6);
    a.call(HELPER_GET_NETNS_COOKIE);
    a.store(Size::Dw, FP, KEY, R0);
    a.load_map(R1, views);
    a.alu_reg(Alu::Mov, R2, FP);
    a.alu_imm(Alu::Add, R2, i32::from(KEY));
    a.call(HELPER_MAP_LOOKUP);
    a.jmp_imm(Jmp::Eq, R0, 0, next);
    a.load(Size::Dw, R3, R0, 0);
    a.store(Size::Dw, FP, KEY, R3);
    for i in 0..NAME_MAX as i32 {
        let not_end = a.label();
        a.alu_reg(Alu::Mov, R2, R7);
        a.alu_imm(Alu::Add, R2, QNAME + i + 1);
        a.jmp_reg(Jmp::Gt, R2, R8, next);
        a.load(Size::B, R3, R7, (QNAME + i) as i16);
        a.store(Size::B, FP, KEY_NAME + i as i16, R3);
        a.jmp_imm(Jmp::Ne, R3, 0, not_end);
        a.alu_imm(Alu::Mov, R9, i + 1);
        a.ja(have_name);
        a.bind(not_end);
    }
    a.ja(next);

    a.bind(have_name);
    // Type and class after the name: r2 points at them.
    a.alu_reg(Alu::Mov, R2, R7);
    a.alu_reg(Alu::Add, R2, R9);
    a.alu_imm(Alu::Add, R2, QNAME);
    a.alu_reg(Alu::Mov, R3, R2);
    a.alu_imm(Alu::Add, R3, 4);
    a.jmp_reg(Jmp::Gt, R3, R8, next);
    a.load(Size::H, R4, R2, 2);
    a.jmp_imm(Jmp::Ne, R4, be16(1), next);
    a.load(Size::H, R4, R2, 0);
    a.store(Size::H, FP, KEY_NAME + NAME_MAX as i16, R4);
    // The message must end after the question, or after an empty OPT
    // (root name, type 41, RDLEN 0): r5 = expected packet length.
    a.alu_reg(Alu::Mov, R5, R9);
    a.alu_imm(Alu::Add, R5, QNAME + 4);
    a.load(Size::H, R3, R7, off::DNS_ARCOUNT);
    let no_opt = a.label();
    a.jmp_imm(Jmp::Eq, R3, 0, no_opt);
    a.alu_reg(Alu::Mov, R3, R2);
    a.alu_imm(Alu::Add, R3, 4 + 11);
    a.jmp_reg(Jmp::Gt, R3, R8, next);
    a.load(Size::B, R3, R2, 4);
    a.jmp_imm(Jmp::Ne, R3, 0, next);
    a.load(Size::H, R3, R2, 5);
    a.jmp_imm(Jmp::Ne, R3, be16(41), next);
    a.load(Size::H, R3, R2, 4 + 9);
    a.jmp_imm(Jmp::Ne, R3, 0, next);
    a.alu_imm(Alu::Add, R5, 11);
    a.bind(no_opt);
    a.load(Size::W, R3, R6, skb::LEN);
    a.jmp_reg(Jmp::Ne, R3, R5, next);
    // IP total length and UDP length agree with it.
    for (field, header_start) in [(off::IP_LENGTH, ETH), (off::UDP_LENGTH, i32::from(UDP))] {
        load_be16(&mut a, R3, R7, field);
        a.alu_imm(Alu::Add, R3, header_start);
        a.jmp_reg(Jmp::Ne, R3, R5, next);
    }

    // Known name?
    a.load_map(R1, names);
    a.alu_reg(Alu::Mov, R2, FP);
    a.alu_imm(Alu::Add, R2, i32::from(KEY));
    a.call(HELPER_MAP_LOOKUP);
    a.jmp_imm(Jmp::Eq, R0, 0, next);
    a.alu_reg(Alu::Mov, R7, R0);
    // r4 = the answer's length, by kind.
    a.load(Size::W, R3, R7, 0);
    a.alu_imm(Alu::Mov, R4, 0);
    let kind_done = a.label();
    let not_a = a.label();
    a.jmp_imm(Jmp::Ne, R3, 1, not_a);
    a.alu_imm(Alu::Mov, R4, RR_A as i32);
    a.ja(kind_done);
    a.bind(not_a);
    a.jmp_imm(Jmp::Ne, R3, 2, kind_done);
    a.alu_imm(Alu::Mov, R4, RR_AAAA as i32);
    a.bind(kind_done);
    a.store(Size::Dw, FP, SAVED_LEN, R4);
    // The reply's length: headers, question, answer (an OPT is cut off).
    a.alu_reg(Alu::Mov, R2, R9);
    a.alu_imm(Alu::Add, R2, QNAME + 4);
    a.alu_reg(Alu::Add, R2, R4);
    a.alu_reg(Alu::Mov, R1, R6);
    a.alu_imm(Alu::Mov, R3, 0);
    a.call(HELPER_SKB_CHANGE_TAIL);
    a.jmp_imm(Jmp::Ne, R0, 0, next);
    // The answer record after the question.
    a.load(Size::Dw, R4, FP, SAVED_LEN);
    let stored = a.label();
    for (len, kind_len) in [(RR_A, RR_A as i32), (RR_AAAA, RR_AAAA as i32)] {
        let other = a.label();
        a.jmp_imm(Jmp::Ne, R4, kind_len, other);
        a.alu_reg(Alu::Mov, R1, R6);
        a.alu_reg(Alu::Mov, R2, R9);
        a.alu_imm(Alu::Add, R2, QNAME + 4);
        a.alu_reg(Alu::Mov, R3, R7);
        a.alu_imm(Alu::Add, R3, 4);
        a.alu_imm(Alu::Mov, R4, len as i32);
        a.alu_imm(Alu::Mov, R5, 0);
        a.call(HELPER_SKB_STORE_BYTES);
        a.jmp_imm(Jmp::Ne, R0, 0, drop);
        a.ja(stored);
        a.bind(other);
    }
    a.bind(stored);

    // Headers, through fresh packet pointers (the helpers moved them).
    a.load(Size::W, R2, R6, skb::DATA);
    a.load(Size::W, R3, R6, skb::DATA_END);
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, QNAME);
    a.jmp_reg(Jmp::Gt, R4, R3, drop);
    // r5 = reply length again.
    a.load(Size::Dw, R5, FP, SAVED_LEN);
    a.alu_reg(Alu::Add, R5, R9);
    a.alu_imm(Alu::Add, R5, QNAME + 4);
    // IP: swap addresses, total length, TTL 64, checksum.
    a.load(Size::W, R3, R2, off::IP_SRC);
    a.load(Size::W, R4, R2, off::IP_DST);
    a.store(Size::W, R2, off::IP_SRC, R4);
    a.store(Size::W, R2, off::IP_DST, R3);
    store_be16(&mut a, R2, off::IP_LENGTH, R5, -ETH);
    a.store_imm(Size::B, R2, off::IP_TTL, 64);
    a.store_imm(Size::H, R2, off::IP_CHECKSUM, 0);
    a.alu_imm(Alu::Mov, R0, 0);
    for w in 0..(ipv4::HEADER_LEN / 2) as i16 {
        a.load(Size::H, R3, R2, IP + 2 * w);
        a.alu_reg(Alu::Add, R0, R3);
    }
    for _ in 0..2 {
        a.alu_reg(Alu::Mov, R3, R0);
        a.alu_imm(Alu::Rsh, R3, 16);
        a.alu_imm(Alu::And, R0, 0xffff);
        a.alu_reg(Alu::Add, R0, R3);
    }
    a.alu_imm(Alu::Xor, R0, 0xffff);
    a.store(Size::H, R2, off::IP_CHECKSUM, R0);
    // UDP: swap ports, length, no checksum.
    a.load(Size::H, R3, R2, off::UDP_SRC_PORT);
    a.load(Size::H, R4, R2, off::UDP_DST_PORT);
    a.store(Size::H, R2, off::UDP_SRC_PORT, R4);
    a.store(Size::H, R2, off::UDP_DST_PORT, R3);
    store_be16(&mut a, R2, off::UDP_LENGTH, R5, -i32::from(UDP));
    a.store_imm(Size::H, R2, off::UDP_CHECKSUM, 0);
    // DNS: QR, RD kept; RA, CD kept; one answer or none; no other records.
    a.load(Size::B, R3, R2, off::DNS_FLAGS_HI);
    a.alu_imm(Alu::And, R3, i32::from(dns::RD));
    a.alu_imm(Alu::Or, R3, i32::from(dns::QR));
    a.store(Size::B, R2, off::DNS_FLAGS_HI, R3);
    a.load(Size::B, R3, R2, off::DNS_FLAGS_LO);
    a.alu_imm(Alu::And, R3, i32::from(dns::CD));
    a.alu_imm(Alu::Or, R3, i32::from(dns::RA));
    a.store(Size::B, R2, off::DNS_FLAGS_LO, R3);
    a.load(Size::Dw, R3, FP, SAVED_LEN);
    let none = a.label();
    a.store_imm(Size::H, R2, off::DNS_ANCOUNT, 0);
    a.jmp_imm(Jmp::Eq, R3, 0, none);
    a.store_imm(Size::H, R2, off::DNS_ANCOUNT, be16(1));
    a.bind(none);
    a.store_imm(Size::H, R2, off::DNS_NSCOUNT, 0);
    a.store_imm(Size::H, R2, off::DNS_ARCOUNT, 0);
    // Count it.
    a.store_imm(Size::W, FP, KEY, 0);
    a.load_map(R1, hits);
    a.alu_reg(Alu::Mov, R2, FP);
    a.alu_imm(Alu::Add, R2, i32::from(KEY));
    a.call(HELPER_MAP_LOOKUP);
    let counted = a.label();
    a.jmp_imm(Jmp::Eq, R0, 0, counted);
    a.alu_imm(Alu::Mov, R1, 1);
    a.atomic_add64(R0, 0, R1);
    a.bind(counted);
    a.alu_imm(Alu::Mov, R0, TCX_PASS);
    a.exit();

    a.bind(next);
    a.alu_imm(Alu::Mov, R0, TCX_NEXT);
    a.exit();
    a.bind(drop);
    a.alu_imm(Alu::Mov, R0, TCX_DROP);
    a.exit();
    a.finish()
}

/// `dst = *(be16 *)(base + off)` in host order (clobbers r4).
fn load_be16(a: &mut Asm, dst: u8, base: u8, off: i16) {
    a.load(Size::H, dst, base, off);
    a.alu_imm(Alu::Lsh, dst, 8);
    a.load(Size::H, R4, base, off);
    a.alu_imm(Alu::Rsh, R4, 8);
    a.alu_reg(Alu::Or, dst, R4);
    a.alu_imm(Alu::And, dst, 0xffff);
}

/// `*(be16 *)(base + off) = value + add`, with `value` a register
/// (clobbers r3 and r4).
fn store_be16(a: &mut Asm, base: u8, off: i16, value: u8, add: i32) {
    a.alu_reg(Alu::Mov, R3, value);
    a.alu_imm(Alu::Add, R3, add);
    a.alu_reg(Alu::Mov, R4, R3);
    a.alu_imm(Alu::Rsh, R4, 8);
    a.alu_imm(Alu::And, R4, 0xff);
    a.store(Size::B, base, off, R4);
    a.alu_imm(Alu::And, R3, 0xff);
    a.store(Size::B, base, off + 1, R3);
}

//! The embedded DNS's decisions, sans IO: query bytes from a container in,
//! a [`Decision`] out. Follows moby's `resolver.go` `serveDNS`:
//!
//! | query | known locally | otherwise |
//! |---|---|---|
//! | A / AAAA | one record per distinct address, shuffled, TTL 600 (DNS-8, DNS-9); NOERROR empty when the name exists only in the other family (DNS-10) | forward |
//! | PTR | `container.network.` for a container address on a shared network (DNS-11) | forward |
//! | MX | NOERROR, no records (DNS-12) | forward |
//! | anything else | forward (DNS-12) | forward |
//!
//! "Forward" becomes SERVFAIL right here when the container has no upstream
//! or no external access (DNS-13, DNS-16, DNS-17). Local UDP answers are cut
//! to 512 bytes or the client's EDNS size, with TC set (DNS-18).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;

use super::EMBEDDED_TTL;
use super::table::{Family, NameTable, Upstreams};
use crate::wire::dns;

/// How the query arrived (the answer's size limit depends on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers cut to 512 bytes or the client's EDNS size.
    Udp,
    /// TCP: answers up to 65535 bytes.
    Tcp,
}

/// What to do with one query.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Send these bytes back: a local answer or a local error (SERVFAIL,
    /// FORMERR, NOTIMP).
    Answer(Vec<u8>),
    /// Not a local record: relay the query to these upstreams, in order
    /// (see [`forward`](super::forward::forward)).
    Forward(Vec<IpAddr>),
    /// Not a query (too short for a header, or a response): say nothing.
    Drop,
}

/// Classic UDP limit without EDNS.
const UDP_MIN: usize = 512;
/// A TCP message's length prefix is 16 bits.
const TCP_MAX: usize = 65535;

impl NameTable {
    /// The embedded DNS's answer to `query` from container `querier`
    /// (index into `Plan::containers`). `rng` shuffles multi-address
    /// answers (DNS-8).
    pub fn answer<R: Rng + ?Sized>(
        &self,
        querier: usize,
        query: &[u8],
        transport: Transport,
        rng: &mut R,
    ) -> Decision {
        if !dns::is_query(query) {
            return Decision::Drop;
        }
        let Some(view) = self.view(querier).filter(|v| v.embedded) else {
            return Decision::Drop;
        };
        let Ok(q) = Message::from_vec(query) else {
            return reply_or_drop(error_reply(query, ResponseCode::FormErr));
        };
        if q.metadata.message_type != MessageType::Query {
            return Decision::Drop;
        }
        if q.metadata.op_code != OpCode::Query {
            return reply_or_drop(error_reply(query, ResponseCode::NotImp));
        }
        if q.queries.len() != 1 {
            return reply_or_drop(error_reply(query, ResponseCode::FormErr));
        }
        let limit = match transport {
            Transport::Tcp => TCP_MAX,
            Transport::Udp => q
                .edns
                .as_ref()
                .map_or(UDP_MIN, |e| usize::from(e.max_payload()).max(UDP_MIN)),
        };
        match self.local_records(querier, &q, rng) {
            Some(records) => {
                let mut r = response(&q, ResponseCode::NoError);
                r.answers = records;
                reply_or_drop(encode_limited(r, limit))
            }
            None => match &view.upstreams {
                Upstreams::Servers(s) => Decision::Forward(s.clone()),
                Upstreams::NoneConfigured | Upstreams::NoExternalAccess => {
                    reply_or_drop(encode_limited(response(&q, ResponseCode::ServFail), limit))
                }
            },
        }
    }

    /// The answer records when the query is answered locally (possibly
    /// none: NOERROR empty), `None` when it goes upstream.
    fn local_records<R: Rng + ?Sized>(
        &self,
        querier: usize,
        q: &Message,
        rng: &mut R,
    ) -> Option<Vec<Record>> {
        let query = q.queries.first()?;
        if query.query_class != DNSClass::IN {
            return None;
        }
        let key = name_key(&query.name);
        let asked = name_text(&query.name);
        match query.query_type {
            RecordType::A | RecordType::AAAA => {
                let family = if query.query_type == RecordType::A {
                    Family::V4
                } else {
                    Family::V6
                };
                let mut addrs = match self.lookup(querier, &asked, family) {
                    Some(a) => a,
                    // DNS-14: with ndots set, an unknown single-label name
                    // is answered empty so the stub tries its search list.
                    None if self.view(querier).is_some_and(|v| v.ndots_set)
                        && !asked.trim_end_matches('.').contains('.') =>
                    {
                        Vec::new()
                    }
                    None => return None,
                };
                addrs.shuffle(rng);
                Some(
                    addrs
                        .into_iter()
                        .map(|ip| {
                            let data = match ip {
                                IpAddr::V4(v4) => RData::A(A(v4)),
                                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                            };
                            Record::from_rdata(query.name.clone(), EMBEDDED_TTL, data)
                        })
                        .collect(),
                )
            }
            RecordType::MX => self
                .lookup(querier, &asked, Family::Any)
                .filter(|a| !a.is_empty())
                .map(|_| Vec::new()),
            RecordType::PTR => {
                let ip = parse_arpa(&key)?;
                let target = self.reverse(querier, ip)?;
                let target = Name::from_ascii(format!("{target}.")).ok()?;
                Some(vec![Record::from_rdata(
                    query.name.clone(),
                    EMBEDDED_TTL,
                    RData::PTR(PTR(target)),
                )])
            }
            _ => None,
        }
    }
}

fn reply_or_drop(bytes: Option<Vec<u8>>) -> Decision {
    bytes.map_or(Decision::Drop, Decision::Answer)
}

/// A response skeleton as moby's `createRespMsg`: id, opcode, RD, CD and the
/// question copied, RA set.
fn response(q: &Message, code: ResponseCode) -> Message {
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.checking_disabled = q.metadata.checking_disabled;
    r.metadata.recursion_available = true;
    r.metadata.response_code = code;
    r.queries = q.queries.clone();
    r
}

/// Encodes `r`; when longer than `limit`, keeps as many answers as fit and
/// sets TC (as miekg/dns `Msg.Truncate`, which Docker uses).
fn encode_limited(mut r: Message, limit: usize) -> Option<Vec<u8>> {
    let full = r.to_vec().ok()?;
    if full.len() <= limit {
        return Some(full);
    }
    r.metadata.truncation = true;
    let all = std::mem::take(&mut r.answers);
    // Invariant: `lo` answers fit (none always do: a question is < 300
    // bytes), `hi` answers do not.
    let (mut lo, mut hi) = (0, all.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        r.answers = all[..mid].to_vec();
        if r.to_vec().ok()?.len() <= limit {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    r.answers = all[..lo].to_vec();
    r.to_vec().ok()
}

/// A response to `query` with response code `code` and no records (the
/// question kept when the query parses), or `None` when `query` is no
/// query at all (shorter than a header, or a response). Used for SERVFAIL
/// after forwarding, REFUSED over the concurrency limit, FORMERR.
pub fn error_reply(query: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    if !dns::is_query(query) {
        return None;
    }
    if let Ok(q) = Message::from_vec(query)
        && q.queries.len() <= 1
    {
        let mut r = response(&q, code);
        // An OPT of the query is not echoed (Docker's replies carry none).
        r.edns = None;
        if let Ok(b) = r.to_vec() {
            return Some(b);
        }
    }
    // Header only: id, opcode and RD copied; QR and RA set.
    let q = dns::Packet::new_unchecked(query);
    let mut h = vec![0u8; dns::HEADER_LEN];
    let mut v = dns::Packet::new_unchecked(&mut h[..]);
    v.set_id(q.id());
    v.set_flags_hi(dns::QR | (q.flags_hi() & (dns::OPCODE | dns::RD)));
    v.set_flags_lo(dns::RA | (u16::from(code) as u8 & dns::RCODE));
    Some(h)
}

/// Whether `bytes` decode as a whole DNS message (fuzzing and tests check
/// answers with it).
pub fn decodes(bytes: &[u8]) -> bool {
    Message::from_vec(bytes).is_ok()
}

/// Whether `query` decodes and carries an EDNS OPT record (a UDP answer may
/// then be as large as the client's advertised size).
pub fn query_has_edns(query: &[u8]) -> bool {
    Message::from_vec(query).is_ok_and(|m| m.edns.is_some())
}

/// A deterministic generator for [`NameTable::answer`]'s shuffle, for
/// callers (fuzz targets, benches) that do not depend on `rand` themselves.
pub fn seeded_rng(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// A name as the table keys it: labels lower-cased, joined by dots, no
/// trailing dot.
pub(crate) fn name_key(n: &Name) -> String {
    let mut s = String::with_capacity(n.len());
    for (i, l) in n.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.extend(l.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    s
}

/// A name's labels as asked (case kept), joined by dots, no trailing dot.
pub(crate) fn name_text(n: &Name) -> String {
    let mut s = String::with_capacity(n.len());
    for (i, l) in n.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.extend(l.iter().map(|&b| char::from(b)));
    }
    s
}

/// The address of a full reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles
/// `.ip6.arpa`); `None` for partial or malformed ones (those go upstream).
pub(crate) fn parse_arpa(key: &str) -> Option<IpAddr> {
    if let Some(rest) = key.strip_suffix(".in-addr.arpa") {
        let mut o = [0u8; 4];
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        for (i, l) in labels.iter().rev().enumerate() {
            // Canonical decimal only: "01" is not a reverse label of 1.
            if l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')) {
                return None;
            }
            o[i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    let rest = key.strip_suffix(".ip6.arpa")?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for l in labels.iter().rev() {
        let [c] = l.as_bytes() else {
            return None;
        };
        let d = char::from(*c).to_digit(16)?;
        v = (v << 4) | u128::from(d);
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

//! Property tests over every view: `new_checked` over any bytes never
//! panics (and neither does a getter after it), and every `Repr` that
//! emits parses back to itself; the IPv4/UDP views agree with etherparse.

use proptest::prelude::*;

use super::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..96)
}

proptest! {
    #[test]
    fn checked_views_never_panic(d in bytes()) {
        if let Ok(p) = ipv4::Packet::new_checked(&d[..]) {
            prop_assert_eq!(p.header().len() + p.payload().len(), usize::from(p.total_len()));
            let _ = (p.src_addr(), p.dst_addr(), p.frag_offset(), p.verify_checksum());
        }
        if let Ok(p) = ipv6::Packet::new_checked(&d[..]) {
            prop_assert_eq!(p.payload().len(), usize::from(p.payload_len()));
        }
        if let Ok(p) = tcp::Packet::new_checked(&d[..]) {
            let _ = (p.seq_number(), p.flags(), p.payload().len());
        }
        if let Ok(p) = ndp::Packet::new_checked(&d[..]) {
            let _ = (p.has_option(ndp::option::SOURCE_LL), ndp::AdvertRepr::parse(&p));
        }
        if let Ok(p) = vlan::Frame::new_checked(&d[..]) {
            let _ = (p.vid(), p.inner_ethertype());
        }
        let _ = arp::ArpRepr::parse(&d);
    }

    #[test]
    fn ipv4_round_trip_and_etherparse_agrees(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(),
        payload_len in 0usize..64, ttl in any::<u8>(), tos in any::<u8>(), dont_frag in any::<bool>(),
    ) {
        let r = ipv4::Repr { src, dst, protocol, payload_len, ttl, tos, dont_frag };
        let mut b = vec![0u8; r.buffer_len() + payload_len];
        r.emit(&mut b);
        let p = ipv4::Packet::new_checked(&b[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(ipv4::Repr::parse(&p), r);
        let (h, _) = etherparse::Ipv4Header::from_slice(&b).unwrap();
        prop_assert_eq!((h.source, h.destination, h.time_to_live), (src, dst, ttl));
        prop_assert_eq!((h.protocol.0, h.dont_fragment), (protocol, dont_frag));
        prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    #[test]
    fn ipv6_round_trip(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), next_header in any::<u8>(),
        payload_len in 0usize..64, hop_limit in any::<u8>(), traffic_class in any::<u8>(),
    ) {
        let r = ipv6::Repr { src, dst, next_header, payload_len, hop_limit, traffic_class };
        let mut b = vec![0u8; r.buffer_len() + payload_len];
        r.emit(&mut b);
        prop_assert_eq!(ipv6::Repr::parse(&ipv6::Packet::new_checked(&b[..]).unwrap()), r);
        let (h, _) = etherparse::Ipv6Header::from_slice(&b).unwrap();
        prop_assert_eq!((h.source, h.destination, h.hop_limit), (src, dst, hop_limit));
        prop_assert_eq!(h.traffic_class, traffic_class);
    }

    #[test]
    fn udp_arp_vxlan_ndp_round_trip(
        sp in any::<u16>(), dp in any::<u16>(), n in 0usize..1000, op in any::<u16>(),
        a in any::<[u8; 6]>(), b4 in any::<[u8; 4]>(), vni in 0u32..(1 << 24),
        flags in any::<u8>(), target in any::<[u8; 16]>(),
    ) {
        let u = udp::Repr { src_port: sp, dst_port: dp, payload_len: n };
        let mut b = [0u8; udp::HEADER_LEN];
        u.emit(&mut b);
        prop_assert_eq!(udp::Repr::parse(&udp::Packet::new_checked(&b[..]).unwrap()), u);
        let (h, _) = etherparse::UdpHeader::from_slice(&b).unwrap();
        prop_assert_eq!((h.source_port, h.destination_port), (sp, dp));

        let r = arp::ArpRepr { op, sha: a, spa: b4, tha: a, tpa: b4 };
        let mut b = [0u8; arp::PACKET_LEN];
        r.emit(&mut b);
        prop_assert_eq!(arp::ArpRepr::parse(&b), Some(r));

        let v = vxlan::Repr { vni };
        let mut b = [0u8; vxlan::HEADER_LEN];
        v.emit(&mut b);
        prop_assert_eq!(vxlan::Repr::parse(&vxlan::Packet::new_checked(&b[..]).unwrap()), Some(v));

        let na = ndp::AdvertRepr { flags, target, target_mac: a };
        let mut b = vec![0u8; na.buffer_len()];
        na.emit(&mut b);
        prop_assert_eq!(ndp::AdvertRepr::parse(&ndp::Packet::new_checked(&b[..]).unwrap()), Some(na));
    }
}

//! Every `vswitch::wire` view over arbitrary bytes: `new_checked` either
//! refuses or yields a view whose every getter returns without panicking,
//! and where a view also writes (`Repr::emit`), parse → emit → parse gives
//! the same fields back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::wire::{arp, esp, ethernet, icmpv4, icmpv6, ipv4, ipv6, ndp, tcp, udp, vlan, vxlan};

fn ethernet_frame(d: &[u8]) {
    if let Ok(f) = ethernet::Frame::new_checked(d) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.dst_is_multicast());
        let _ = (f.src_is_multicast(), f.payload().len());
        assert_eq!(u16::from(f.ethertype()), ethernet::ethertype(d));
    }
    if let Ok(f) = vlan::Frame::new_checked(d) {
        let _ = (f.is_tagged(), f.vid(), f.pcp(), f.inner_ethertype());
    }
}

fn ip(d: &[u8]) {
    let v4 = ipv4::Packet::new_unchecked(d);
    if v4.check_header().is_ok() {
        let _ = (v4.version(), v4.tos(), v4.total_len(), v4.ident(), v4.ttl());
        let _ = (
            v4.frag_offset(),
            v4.is_fragment(),
            v4.dont_frag(),
            v4.more_frags(),
        );
        let _ = (v4.protocol(), v4.checksum(), v4.src_addr(), v4.dst_addr());
        let _ = v4.verify_checksum();
    }
    if let Ok(p) = ipv4::Packet::new_checked(d) {
        assert!(p.check_header().is_ok());
        assert_eq!(
            p.header().len() + p.payload().len(),
            usize::from(p.total_len())
        );
        let r = ipv4::Repr::parse(&p);
        let mut b = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut b);
        let q = ipv4::Packet::new_checked(&b[..]).expect("an emitted header checks");
        assert!(q.verify_checksum());
        assert_eq!(ipv4::Repr::parse(&q), r);
    }
    let v6 = ipv6::Packet::new_unchecked(d);
    if v6.check_header().is_ok() {
        let _ = (v6.traffic_class(), v6.flow_label(), v6.payload_len());
        let _ = (
            v6.next_header(),
            v6.hop_limit(),
            v6.src_addr(),
            v6.dst_addr(),
        );
    }
    if let Ok(p) = ipv6::Packet::new_checked(d) {
        assert_eq!(p.payload().len(), usize::from(p.payload_len()));
        let r = ipv6::Repr::parse(&p);
        let mut b = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut b);
        let q = ipv6::Packet::new_checked(&b[..]).expect("an emitted header checks");
        assert_eq!(ipv6::Repr::parse(&q), r);
    }
}

fn l4(d: &[u8]) {
    if let Ok(p) = udp::Packet::new_checked(d) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload().len(),
        );
        let r = udp::Repr::parse(&p);
        let mut b = [0u8; udp::HEADER_LEN];
        r.emit(&mut b);
        let q = udp::Packet::new_checked(&b[..]).expect("an emitted header checks");
        assert_eq!(udp::Repr::parse(&q), r);
    }
    if let Ok(p) = tcp::Packet::new_checked(d) {
        let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
        let _ = (
            p.header_len(),
            p.flags(),
            p.window(),
            p.checksum(),
            p.payload().len(),
        );
    }
    if let Ok(p) = icmpv4::Packet::new_checked(d) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq(),
        );
        let _ = (p.next_hop_mtu(), p.verify_checksum(), p.data().len());
        let _ = icmpv4::is_error(p.msg_type());
    }
    if let Ok(p) = icmpv6::Packet::new_checked(d) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq(),
        );
        let _ = (
            p.mtu(),
            p.verify_checksum(&[0; 16], &[0; 16]),
            p.data().len(),
        );
    }
    if let Ok(p) = ndp::Packet::new_checked(d) {
        let _ = (
            p.is_solicitation(),
            p.flags(),
            p.target_addr(),
            p.options().len(),
        );
        let _ = (
            p.has_option(ndp::option::SOURCE_LL),
            p.has_option(ndp::option::TARGET_LL),
        );
        if let Some(a) = ndp::AdvertRepr::parse(&p) {
            let mut b = vec![0u8; a.buffer_len()];
            a.emit(&mut b);
            let q = ndp::Packet::new_checked(&b[..]).expect("an emitted advert checks");
            assert_eq!(ndp::AdvertRepr::parse(&q), Some(a));
        }
    }
}

fn tunnels(d: &[u8]) {
    if let Some(a) = arp::ArpRepr::parse(d) {
        let mut b = [0u8; arp::PACKET_LEN];
        a.emit(&mut b);
        assert_eq!(arp::ArpRepr::parse(&b), Some(a));
    }
    if let Ok(p) = vxlan::Packet::new_checked(d) {
        let _ = (p.flags(), p.vni(), p.payload().len());
        if let Some(r) = vxlan::Repr::parse(&p) {
            let mut b = [0u8; vxlan::HEADER_LEN];
            r.emit(&mut b);
            let q = vxlan::Packet::new_checked(&b[..]).expect("an emitted header checks");
            assert_eq!(vxlan::Repr::parse(&q), Some(r));
        }
    }
    if let Ok(p) = esp::Packet::new_checked(d) {
        let _ = (p.spi(), p.seq(), p.header().len(), p.payload().len());
    }
}

fuzz_target!(|data: &[u8]| {
    // The views see the bytes as a frame and at every header offset the
    // project uses, so each one meets every length of the input.
    for at in [0, 14, 18, 34, 42, 54, 62] {
        let Some(d) = data.get(at..) else { break };
        ethernet_frame(d);
        ip(d);
        l4(d);
        tunnels(d);
    }
});

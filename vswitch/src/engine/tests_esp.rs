//! Tests of IPsec ESP for encrypted overlays (issue 14, OV-6, OV-9): the
//! AES-GCM primitive against a published vector, the RFC 4303/4106 packet
//! form, the anti-replay window, and the engine's encrypted VTEPs (no frame
//! of an encrypted VNI leaves in clear; cleartext VXLAN of it is dropped).
//! Nothing sleeps; nothing does IO.

use std::net::Ipv4Addr;
use std::time::Instant;

use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::{U8, U12};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes128;
use proptest::prelude::*;

use super::esp::{
    self, EspError, EspState, ICV_LEN, IPPROTO_ESP, OutboundSa, ReplayWindow, SaConfig,
};
use super::vxlan::{encap, parse_outer};
use super::*;
use crate::wire::ip::checksum::checksum;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The Galois/Counter Mode specification's Test Case 4 (McGrew & Viega,
/// "The Galois/Counter Mode of Operation (GCM)", appendix B; also NIST's
/// `gcmEncryptExtIV128` form): AES-128, 96-bit IV, 20 bytes of AAD, 60 of
/// plaintext. An RFC 4106 nonce is salt (4) ‖ IV (8), so this is salt
/// `cafebabe`, IV `facedbaddecaf888`. A 64-bit ICV is the tag's first 8
/// octets (SP 800-38D §5.2.1.2, MSB_t).
#[test]
fn aes_gcm_published_vector_test_case_4() {
    let key = hex("feffe9928665731c6d6a8f9467308308");
    let nonce = hex("cafebabefacedbaddecaf888");
    let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = hex(concat!(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    ));
    let ct = hex(concat!(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
    ));
    let tag = hex("5bc94fbc3221a5db94fae95ae7121a47");
    let k: [u8; 16] = key.clone().try_into().unwrap();
    let n: [u8; 12] = nonce.try_into().unwrap();
    // Full 16-octet tag.
    let full = aes_gcm::Aes128Gcm::new(&Array(k));
    let mut buf = pt.clone();
    let t = full
        .encrypt_inout_detached(&Array(n), &aad, buf.as_mut_slice().into())
        .unwrap();
    assert_eq!(buf, ct);
    assert_eq!(t.as_slice(), tag.as_slice());
    // The 8-octet ICV Docker programs (ICVLen 64): the first 8 octets.
    let short = aes_gcm::AesGcm::<Aes128, U12, U8>::new(&Array(k));
    let mut buf = pt.clone();
    let t8 = short
        .encrypt_inout_detached(&Array(n), &aad, buf.as_mut_slice().into())
        .unwrap();
    assert_eq!(buf, ct);
    assert_eq!(t8.as_slice(), &tag[..ICV_LEN]);
    let mut back = ct.clone();
    short
        .decrypt_inout_detached(&Array(n), &aad, back.as_mut_slice().into(), &t8)
        .unwrap();
    assert_eq!(back, pt);
}

fn sa(spi: u32) -> SaConfig {
    SaConfig {
        spi,
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
        key: hex("feffe9928665731c6d6a8f9467308308").try_into().unwrap(),
        salt: [0xca, 0xfe, 0xba, 0xbe],
    }
}

/// The VXLAN frame of an inner frame of `n` bytes, 198.18.0.1 → .2, VNI 4097.
fn vxlan_frame(n: usize) -> Packet {
    let mut f = vec![0u8; n.max(14)];
    f[0..6].copy_from_slice(&[2, 0x42, 10, 0, 0, 3]);
    f[6..12].copy_from_slice(&[2, 0x42, 10, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = i as u8;
    }
    encap(
        &Packet::from_frame(VnetHdr::default(), &f),
        4097,
        MacAddr([2, 0x56, 198, 18, 0, 1]),
        Ipv4Addr::new(198, 18, 0, 1),
        MacAddr([2, 0x56, 198, 18, 0, 2]),
        Ipv4Addr::new(198, 18, 0, 2),
        50000,
    )
}

fn state() -> EspState {
    let mut s = EspState::default();
    s.add(&[sa(0x1000_0001)]);
    s
}

#[test]
fn protect_layout_is_rfc4303_transport_mode() {
    let plain = vxlan_frame(100);
    let mut out = OutboundSa::new(&sa(0x1000_0001));
    let p = esp::protect(&mut out, plain.frame()).unwrap();
    let f = p.frame();
    // Ethernet and the IPv4 addresses kept; protocol 50; valid checksum.
    assert_eq!(&f[..14], &plain.frame()[..14]);
    assert_eq!(&f[26..34], &plain.frame()[26..34]);
    assert_eq!(f[23], IPPROTO_ESP);
    assert_eq!(checksum(&f[14..34]), 0);
    assert_eq!(
        usize::from(u16::from_be_bytes([f[16], f[17]])),
        f.len() - 14
    );
    // SPI, sequence number 1, IV = the 64-bit counter.
    assert_eq!(&f[34..38], &0x1000_0001u32.to_be_bytes());
    assert_eq!(&f[38..42], &1u32.to_be_bytes());
    assert_eq!(&f[42..50], &1u64.to_be_bytes());
    // Ciphertext a multiple of 4 (payload + pad + 2), then an 8-octet ICV.
    let ct = f.len() - 50 - ICV_LEN;
    assert_eq!(ct % 4, 0);
    let payload = plain.len() - 34;
    assert!(ct >= payload + 2 && ct < payload + 6);
    // No cleartext: the UDP header (port 4789) is not readable.
    assert!(parse_outer(f).unwrap().is_none());
    assert_ne!(&f[50..58], &plain.frame()[34..42]);
    // The second packet carries sequence number 2.
    let p2 = esp::protect(&mut out, plain.frame()).unwrap();
    assert_eq!(&p2.frame()[38..42], &2u32.to_be_bytes());
}

/// OV-6: an inner frame at the container MTU 1424 fills a 1500-byte lan
/// packet exactly (26 bytes of ESP, no padding at that size), and one byte
/// more would not fit.
#[test]
fn mtu_1424_fits_the_1500_byte_lan_exactly() {
    let plain = vxlan_frame(14 + 1424);
    let mut out = OutboundSa::new(&sa(7));
    let p = esp::protect(&mut out, plain.frame()).unwrap();
    assert_eq!(p.len() - 14, 1500);
    assert_eq!(
        plain.len() - 14 + esp::OVERHEAD,
        1500,
        "26 bytes, OV-6 pktExpansion"
    );
    let over = esp::protect(&mut out, vxlan_frame(14 + 1425).frame()).unwrap();
    assert!(over.len() - 14 > 1500);
}

#[test]
fn unprotect_round_trip_and_named_refusals() {
    let plain = vxlan_frame(300);
    let mut out = OutboundSa::new(&sa(0x1000_0001));
    let mut st = state();
    let p = esp::protect(&mut out, plain.frame()).unwrap();
    let back = st.unprotect(p.frame()).unwrap();
    assert_eq!(back.frame(), plain.frame());
    // The same packet again: replayed.
    assert_eq!(st.unprotect(p.frame()).unwrap_err(), EspError::Replayed);
    // Another SPI: no SA.
    let mut other = OutboundSa::new(&sa(0x2000_0000));
    let q = esp::protect(&mut other, plain.frame()).unwrap();
    assert_eq!(st.unprotect(q.frame()).unwrap_err(), EspError::UnknownSpi);
    // A wrong key under the right SPI: the ICV fails.
    let mut wrong = sa(0x1000_0001);
    wrong.key[0] ^= 1;
    let mut w = OutboundSa::new(&wrong);
    w.set_seq(10);
    let r = esp::protect(&mut w, plain.frame()).unwrap();
    assert_eq!(st.unprotect(r.frame()).unwrap_err(), EspError::AuthFailed);
    // A failed ICV does not move the window: the genuine seq 11 still passes.
    out.set_seq(10);
    let g = esp::protect(&mut out, plain.frame()).unwrap();
    assert!(st.unprotect(g.frame()).is_ok());
    // Truncated: malformed.
    assert_eq!(
        st.unprotect(&g.frame()[..40]).unwrap_err(),
        EspError::Malformed
    );
    // Not IPv4 ESP at all.
    assert_eq!(
        st.unprotect(plain.frame()).unwrap_err(),
        EspError::Malformed
    );
}

#[test]
fn every_flipped_bit_past_the_ip_header_is_refused() {
    let plain = vxlan_frame(64);
    let mut out = OutboundSa::new(&sa(0x1000_0001));
    let p = esp::protect(&mut out, plain.frame()).unwrap();
    for at in 34..p.len() {
        let mut st = state();
        let mut f = p.frame().to_vec();
        f[at] ^= 0x10;
        let e = st.unprotect(&f).unwrap_err();
        let want = if at < 38 {
            EspError::UnknownSpi
        } else {
            EspError::AuthFailed
        };
        // The sequence number field (38..42) is authenticated (AAD).
        assert_eq!(e, want, "byte {at}");
    }
}

#[test]
fn replay_window_rfc4303() {
    let mut w = ReplayWindow::default();
    assert_eq!(w.check(0), Err(EspError::TooOld));
    for s in [1, 2, 5, 4] {
        assert_eq!(w.check(s), Ok(()), "{s}");
        w.update(s);
    }
    assert_eq!(w.check(4), Err(EspError::Replayed));
    assert_eq!(w.check(3), Ok(()), "late but inside the window");
    w.update(3);
    assert_eq!(w.check(3), Err(EspError::Replayed));
    assert_eq!(w.top(), 5);
    // Jump ahead: 5 + 200. Everything at or below 205 - 128 is too old.
    w.update(205);
    assert_eq!(w.check(77), Err(EspError::TooOld));
    assert_eq!(w.check(78), Ok(()));
    assert_eq!(w.check(205), Err(EspError::Replayed));
    assert_eq!(w.check(204), Ok(()));
    // A jump past the whole window clears it.
    w.update(205 + 1000);
    assert_eq!(w.check(205 + 1000 - 127), Ok(()));
    assert_eq!(w.check(205 + 1000 - 128), Err(EspError::TooOld));
    const { assert!(ReplayWindow::SIZE >= 64) };
}

proptest! {
    /// Any window of accepted numbers: each is refused a second time, and
    /// nothing more than SIZE behind the top is accepted.
    #[test]
    fn replay_window_never_accepts_twice(seqs in proptest::collection::vec(1u32..600, 1..300)) {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        for s in seqs {
            let ok = w.check(s).is_ok();
            if seen.contains(&s) {
                prop_assert!(!ok);
            }
            if w.top() >= ReplayWindow::SIZE && s <= w.top() - ReplayWindow::SIZE {
                prop_assert!(!ok);
            }
            if ok {
                w.update(s);
                seen.insert(s);
            }
        }
    }

    /// Every VXLAN frame size survives protect → unprotect unchanged, and
    /// its ESP form is never readable as VXLAN.
    #[test]
    fn esp_round_trip_any_size(n in 14usize..2000) {
        let plain = vxlan_frame(n);
        let mut out = OutboundSa::new(&sa(0x1000_0001));
        let mut st = state();
        let p = esp::protect(&mut out, plain.frame()).unwrap();
        prop_assert!(parse_outer(p.frame()).unwrap().is_none());
        prop_assert_eq!((p.len() - 50 - ICV_LEN) % 4, 0);
        let back = st.unprotect(p.frame()).unwrap();
        prop_assert_eq!(back.frame(), plain.frame());
    }

    /// unprotect never panics on any bytes after a valid-looking IPv4/ESP header.
    #[test]
    fn unprotect_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut f = vxlan_frame(14).frame()[..34].to_vec();
        f[23] = IPPROTO_ESP;
        f[16..18].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        f.extend_from_slice(&body);
        let _ = state().unprotect(&f);
    }
}

#[test]
fn derived_sas_are_deterministic_distinct_and_uat_formatted() {
    let ips = [
        Ipv4Addr::new(198, 18, 0, 1),
        Ipv4Addr::new(198, 18, 0, 2),
        Ipv4Addr::new(198, 18, 0, 3),
    ];
    let a = esp::derive_sas(b"vs123456\0demo", &ips);
    assert_eq!(a, esp::derive_sas(b"vs123456\0demo", &ips));
    assert_ne!(a, esp::derive_sas(b"vs654321\0demo", &ips));
    assert_eq!(a.len(), 6);
    for (i, x) in a.iter().enumerate() {
        for y in &a[i + 1..] {
            assert_ne!(x.key, y.key);
            assert!(x.dst != y.dst || x.spi != y.spi);
        }
        assert!(x.spi > 255, "SPIs 1-255 are reserved (RFC 4303 §2.1)");
    }
    let line = esp::esp_sa_line(&a[0]);
    assert!(line.starts_with("\"IPv4\",\"198.18.0.1\",\"198.18.0.2\",\"0x10000001\","));
    assert!(line.contains("\"AES-GCM with 8 octet ICV [RFC4106]\",\"0x"));
    assert!(line.ends_with(",\"NULL\",\"\""));
    // Key and salt: 20 octets, 40 hex digits.
    let keyfield = line.split(',').nth(5).unwrap();
    assert_eq!(keyfield.len(), 2 + 2 + 40);
}

// ---- the engine's encrypted VTEPs ------------------------------------

const U1: PortId = PortId(0);
const U2: PortId = PortId(1);
const A: PortId = PortId(2);
const B: PortId = PortId(3);
const SECURE_VNI: u32 = 4100;

fn mip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}
fn mmac(n: u8) -> MacAddr {
    MacAddr([2, 0x56, 198, 18, 0, n])
}
fn cmac(n: u8) -> MacAddr {
    MacAddr([2, 0x42, 10, 0, 0, n])
}

/// Two machines, one encrypted overlay (a on m1, b on m2).
fn engine() -> Engine {
    let sas = esp::derive_sas(b"test", &[mip(1), mip(2)]);
    let dom = |n: &str| DomainConfig {
        name: n.into(),
        gateway: None,
        icc: true,
    };
    let port = |n: &str, d: u16, role| PortConfig {
        name: n.into(),
        domain: DomainId(d),
        role,
    };
    let vtep = |m: u8, d: u16, port: u16, peer: u8, who: u8| VtepConfig {
        name: "secure".into(),
        vni: SECURE_VNI,
        domain: DomainId(d),
        port: PortId(port),
        uplink: PortId(u16::from(m) - 1),
        local_ip: mip(m),
        local_mac: mmac(m),
        peers: vec![(mip(peer), mmac(peer))],
        bindings: vec![(Ipv4Addr::new(10, 0, 0, who), cmac(who), mip(peer))],
        capture: true,
        esp: sas.clone(),
    };
    Engine::new(EngineConfig {
        domains: vec![dom("lan"), dom("secure@m1"), dom("secure@m2")],
        ports: vec![
            port("m1", 0, PortRole::Plain),
            port("m2", 0, PortRole::Plain),
            port("a", 1, PortRole::Container),
            port("b", 2, PortRole::Container),
            port("vtep1", 1, PortRole::Plain),
            port("vtep2", 2, PortRole::Plain),
        ],
        overlay: vec![vtep(1, 1, 4, 2, 3), vtep(2, 2, 5, 1, 2)],
        ..EngineConfig::default()
    })
    .unwrap()
}

fn eth(dst: MacAddr, src: MacAddr, body: &[u8]) -> Packet {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(body);
    Packet::from_frame(VnetHdr::default(), &f)
}

/// True when `f` is cleartext VXLAN of the encrypted VNI.
fn cleartext_of_secure(f: &[u8]) -> bool {
    matches!(parse_outer(f), Ok(Some(o)) if o.vni == SECURE_VNI)
}

#[test]
fn encrypted_vni_crosses_machines_inside_esp() {
    let mut e = engine();
    let p = eth(cmac(3), cmac(2), &[0x45; 60]);
    let mut out = Vec::new();
    e.handle_frame(Instant::now(), A, &mut p.clone_packet(), &mut out);
    let mut delivered = 0;
    let mut captured = 0;
    for a in &out {
        match a {
            Action::Emit(to, pk) if *to == B => {
                assert_eq!(pk.frame(), p.frame());
                delivered += 1;
            }
            Action::Capture(to, pk) => {
                assert_eq!(*to, U1);
                assert!(esp::is_esp(pk.frame()), "the lan copy is ESP");
                assert!(!cleartext_of_secure(pk.frame()));
                captured += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((delivered, captured), (1, 1));
    let s = e.overlay_stats().unwrap();
    assert_eq!((s.esp_protected, s.esp_unprotected), (1, 1));
}

/// OV-9: cleartext VXLAN arriving for an encrypted VNI is dropped, with its
/// own reason.
#[test]
fn cleartext_vxlan_of_an_encrypted_vni_is_dropped() {
    let mut e = engine();
    let inner = eth(cmac(3), cmac(2), &[0x45; 60]);
    let mut v = encap(&inner, SECURE_VNI, mmac(1), mip(1), mmac(2), mip(2), 50000);
    let mut out = Vec::new();
    e.handle_frame(Instant::now(), U1, &mut v, &mut out);
    assert!(
        out.iter()
            .all(|a| matches!(a, Action::Drop(DropReason::VxlanCleartext))),
        "{out:?}"
    );
    assert_eq!(e.overlay_stats().unwrap().cleartext_dropped, 1);
    assert_eq!(
        e.metrics().port(U1).drops.get(DropReason::VxlanCleartext),
        1
    );
}

/// ESP replayed on lan (a captured frame sent again) is dropped as such.
#[test]
fn a_replayed_esp_frame_is_dropped() {
    let mut e = engine();
    let mut out = Vec::new();
    e.handle_frame(
        Instant::now(),
        A,
        &mut eth(cmac(3), cmac(2), &[0x45; 60]),
        &mut out,
    );
    let cap = out
        .iter()
        .find_map(|a| match a {
            Action::Capture(_, pk) => Some(pk.frame().to_vec()),
            _ => None,
        })
        .unwrap();
    let mut again = Packet::from_frame(VnetHdr::default(), &cap);
    let mut out = Vec::new();
    e.handle_frame(Instant::now(), U2, &mut again, &mut out);
    assert!(
        matches!(out.as_slice(), [Action::Drop(DropReason::EspReplayed)]),
        "{out:?}"
    );
}

proptest! {
    /// No frame of an encrypted VNI leaves the engine in clear: whatever
    /// a container sends (unicast, broadcast, any size, GSO or not), every
    /// frame the engine emits or captures on a lan port is ESP or not VXLAN
    /// of that VNI.
    #[test]
    fn no_frame_of_an_encrypted_vni_leaves_in_clear(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        dst in prop_oneof![Just(cmac(3)), Just(MacAddr::BROADCAST), Just(cmac(9))],
        from_b in any::<bool>(),
        gso in any::<bool>(),
    ) {
        let mut e = engine();
        let (port, src) = if from_b { (B, cmac(3)) } else { (A, cmac(2)) };
        let mut p = eth(dst, src, &body);
        if gso {
            p.hdr = VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: VnetHdr::GSO_TCPV4,
                hdr_len: 54,
                gso_size: 1372,
                csum_start: 34,
                csum_offset: 16,
            };
        }
        let mut out = Vec::new();
        e.handle_frame(Instant::now(), port, &mut p, &mut out);
        for a in &out {
            if let Action::Emit(to, pk) | Action::Capture(to, pk) = a
                && (*to == U1 || *to == U2)
            {
                prop_assert!(!cleartext_of_secure(pk.frame()));
            }
        }
    }
}

trait ClonePacket {
    fn clone_packet(&self) -> Packet;
}

impl ClonePacket for Packet {
    fn clone_packet(&self) -> Packet {
        Packet::from_frame(self.hdr, self.frame())
    }
}

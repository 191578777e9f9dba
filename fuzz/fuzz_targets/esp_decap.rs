//! ESP decapsulation of encrypted overlays (issue 14, OV-9): arbitrary
//! bytes as a frame on machine m2's lan port of an engine whose overlay
//! (VNI 4100 on m1 and m2) is encrypted, either raw, or as the genuine ESP
//! form (m1 → m2's SA) of a VXLAN frame around the bytes, then tampered
//! with (one byte flipped, or cut short) as the input says. Checks: no
//! panic; at most one drop and then alone; an untampered frame decrypts to
//! exactly the VXLAN frame it protected and is accepted once only (the
//! second copy is a replay); a tampered one is refused; the engine never
//! puts cleartext VXLAN of the encrypted VNI on lan.
//!
//! Input: `mode: u8` (bit 0: protect; bit 1: flip the byte at `at`; bit 2:
//! cut the frame to `at` bytes), `at: u8`, then the inner frame.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vswitch::engine::esp::{self, EspState, OutboundSa, SaConfig};
use vswitch::engine::vxlan::{encap, parse_outer};
use vswitch::engine::{
    Action, DomainConfig, DomainId, Engine, EngineConfig, Packet, PortConfig, PortId, PortRole,
    VnetHdr, VtepConfig,
};
use vswitch::scenario::plan::MacAddr;

const VNI: u32 = 4100;

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0x56, 198, 18, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

fn sas() -> &'static [SaConfig] {
    static S: OnceLock<Vec<SaConfig>> = OnceLock::new();
    S.get_or_init(|| esp::derive_sas(b"fuzz", &[ip(1), ip(2)]))
}

fn engine() -> Engine {
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
    let vtep = |m: u8, d: u16, p: u16, peer: u8| VtepConfig {
        name: "secure".into(),
        vni: VNI,
        domain: DomainId(d),
        port: PortId(p),
        uplink: PortId(u16::from(m) - 1),
        local_ip: ip(m),
        local_mac: mac(m),
        peers: vec![(ip(peer), mac(peer))],
        bindings: vec![],
        capture: true,
        esp: sas().to_vec(),
    };
    Engine::new(EngineConfig {
        domains: vec![dom("lan"), dom("secure@m1"), dom("secure@m2")],
        ports: vec![
            port("m1", 0, PortRole::Plain),
            port("m2", 0, PortRole::Plain),
            port("a", 1, PortRole::Container),
            port("b", 2, PortRole::Container),
            port("v1", 1, PortRole::Plain),
            port("v2", 2, PortRole::Plain),
        ],
        overlay: vec![vtep(1, 1, 4, 2), vtep(2, 2, 5, 1)],
        ..EngineConfig::default()
    })
    .expect("valid configuration")
}

fn cleartext(f: &[u8]) -> bool {
    matches!(parse_outer(f), Ok(Some(o)) if o.vni == VNI)
}

fn check_actions(out: &[Action]) {
    let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
    assert!(
        drops == 0 || out.len() == 1,
        "drop plus other actions: {out:?}"
    );
    for a in out {
        if let Action::Emit(p, pk) | Action::Capture(p, pk) = a
            && p.0 < 2
        {
            assert!(!cleartext(pk.frame()), "cleartext VXLAN of {VNI} on lan");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let now = *BASE.get_or_init(Instant::now);
    let [mode, at, frame @ ..] = data else {
        return;
    };
    let sa = sas().iter().find(|s| s.src == ip(1)).expect("m1 → m2");
    let mut bytes = if mode & 1 == 1 {
        let v = encap(
            &Packet::from_frame(VnetHdr::default(), frame),
            VNI,
            mac(1),
            ip(1),
            mac(2),
            ip(2),
            50000,
        );
        let p = esp::protect(&mut OutboundSa::new(sa), v.frame()).expect("a VXLAN frame protects");
        let mut st = EspState::default();
        st.add(sas());
        assert_eq!(st.unprotect(p.frame()).expect("genuine").frame(), v.frame());
        assert!(st.unprotect(p.frame()).is_err(), "a replay is refused");
        p.frame().to_vec()
    } else {
        frame.to_vec()
    };
    let genuine = mode & 1 == 1;
    let mut tampered = false;
    let at = usize::from(*at);
    if mode & 2 != 0 && at >= 34 && at < bytes.len() {
        bytes[at] ^= 0x01;
        tampered = true;
    }
    if mode & 4 != 0 && at < bytes.len() {
        bytes.truncate(at);
        tampered = true;
    }
    let mut e = engine();
    let mut st = EspState::default();
    st.add(sas());
    let r = st.unprotect(&bytes);
    if genuine && tampered {
        assert!(r.is_err(), "a tampered ESP frame was accepted");
    }
    let mut pkt = Packet::from_frame(VnetHdr::default(), &bytes);
    let mut out = Vec::new();
    e.handle_frame(now, PortId(1), &mut pkt, &mut out);
    check_actions(&out);
    // A second copy of the same frame: a replay if the first was accepted.
    let mut again = Packet::from_frame(VnetHdr::default(), &bytes);
    out.clear();
    e.handle_frame(now, PortId(1), &mut again, &mut out);
    check_actions(&out);
    if genuine && !tampered {
        assert!(
            matches!(
                out.as_slice(),
                [Action::Drop(vswitch::engine::DropReason::EspReplayed)]
            ),
            "{out:?}"
        );
    }
});

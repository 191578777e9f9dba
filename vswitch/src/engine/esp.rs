//! IPsec ESP (RFC 4303) in transport mode with AES-GCM (RFC 4106), as
//! Docker carries an encrypted overlay's VXLAN between machines (OV-9).
//!
//! Everything ESP on the wire is here: [`protect`] turns an IPv4 frame
//! (the VXLAN/UDP encapsulation of an overlay frame) into its ESP form,
//! [`EspState::unprotect`] turns an ESP frame back into it, checking the
//! SPI, the anti-replay window ([`ReplayWindow`], RFC 4303 §3.4.3 and
//! appendix A2), the ICV and the trailer, and naming why a frame was refused
//! ([`EspError`]).
//!
//! Layout (transport mode, the IPv4 header kept, its protocol 50):
//!
//! ```text
//! Ethernet | IPv4 (proto 50) | SPI | seq | IV (8) | ciphertext of
//!   [UDP | VXLAN | inner frame | pad | pad len | next header (17)] | ICV (8)
//! ```
//!
//! The ICV is 8 octets: Docker programs `rfc4106(gcm(aes))` with
//! `ICVLen: 64`, which is what makes its overhead `pktExpansion = 26`
//! (SPI 4 + seq 4 + IV 8 + pad length 1 + next header 1 + ICV 8) and the
//! container MTU 1424 (OV-6). The IV is the 64-bit sequence counter (RFC 4106
//! §3.1 allows any IV that never repeats under a key); the nonce is the
//! SA's 4-byte salt followed by the IV. Sequence numbers are 32-bit (no ESN)
//! and start at 1.
//!
//! Keys are not secret here: the scenario's run derives them
//! ([`derive_sas`]) and writes them beside the pcaps for tshark
//! ([`esp_sa_uat`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::{U8, U12};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::aes::cipher::BlockCipherEncrypt;
use aes_gcm::{AesGcm, Nonce, Tag};

use super::{DropReason, Packet, VnetHdr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{IpProtocol, esp, ipv4};

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = IpProtocol::ESP;
/// SPI + sequence number.
pub const HDR_LEN: usize = esp::HEADER_LEN;
/// Explicit IV carried in each packet (RFC 4106 §3.1).
pub const IV_LEN: usize = 8;
/// Integrity check value: 64 bits, as Docker programs it.
pub const ICV_LEN: usize = 8;
/// Pad length and next header bytes.
pub const TRAILER_LEN: usize = 2;
/// Docker's `pktExpansion`: what ESP adds before padding (OV-6).
pub const OVERHEAD: usize = HDR_LEN + IV_LEN + TRAILER_LEN + ICV_LEN;
/// AES-128 key length.
pub const KEY_LEN: usize = 16;
/// RFC 4106 salt length (the last 4 octets of the keying material).
pub const SALT_LEN: usize = 4;

/// AES-128-GCM with a 96-bit nonce and a 64-bit tag.
type Gcm = AesGcm<Aes128, U12, U8>;

/// One security association (one direction between two machines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaConfig {
    /// Security parameter index (unique per destination).
    pub spi: u32,
    /// Outer source address (the sending machine's uplink).
    pub src: Ipv4Addr,
    /// Outer destination address (the receiving machine's uplink).
    pub dst: Ipv4Addr,
    /// AES-128 key.
    pub key: [u8; KEY_LEN],
    /// RFC 4106 salt.
    pub salt: [u8; SALT_LEN],
}

/// Why an ESP frame (or a frame to be protected) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// Headers short or inconsistent, or a ciphertext not a multiple of 4.
    #[error("ESP headers short or inconsistent")]
    Malformed,
    /// No inbound SA for this destination and SPI.
    #[error("no SA for this SPI")]
    UnknownSpi,
    /// The ICV did not verify (wrong key, or the frame was changed).
    #[error("ICV did not verify")]
    AuthFailed,
    /// A sequence number already received (inside the window).
    #[error("sequence number already received")]
    Replayed,
    /// A sequence number left of the anti-replay window (or 0).
    #[error("sequence number left of the anti-replay window")]
    TooOld,
    /// Pad bytes or pad length wrong after decryption.
    #[error("bad ESP padding")]
    BadTrailer,
    /// The outbound sequence number would wrap (RFC 4303 §3.3.3).
    #[error("sequence number space exhausted")]
    SeqExhausted,
    /// No outbound SA towards that peer.
    #[error("no outbound SA")]
    NoSa,
}

impl EspError {
    /// The engine's drop reason for it.
    pub fn drop_reason(self) -> DropReason {
        match self {
            EspError::Malformed => DropReason::EspMalformed,
            EspError::UnknownSpi => DropReason::EspUnknownSpi,
            EspError::AuthFailed => DropReason::EspAuthFailed,
            EspError::Replayed => DropReason::EspReplayed,
            EspError::TooOld => DropReason::EspTooOld,
            EspError::BadTrailer => DropReason::EspBadTrailer,
            EspError::SeqExhausted | EspError::NoSa => DropReason::EspNoSa,
        }
    }
}

/// The anti-replay window of an inbound SA: the highest sequence number
/// authenticated so far and a bitmap of the [`ReplayWindow::SIZE`] numbers
/// up to it (bit 0 = the highest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u32,
    bits: u128,
}

impl ReplayWindow {
    /// Window size in packets.
    pub const SIZE: u32 = 128;

    /// Whether `seq` may be accepted (checked before the ICV, as RFC 4303
    /// §3.4.3 says; [`ReplayWindow::update`] after it verified).
    pub fn check(&self, seq: u32) -> Result<(), EspError> {
        if seq == 0 {
            return Err(EspError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        let d = self.top - seq;
        if d >= Self::SIZE {
            return Err(EspError::TooOld);
        }
        if self.bits >> d & 1 == 1 {
            return Err(EspError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated `seq`, sliding the window when it is new.
    pub fn update(&mut self, seq: u32) {
        if seq > self.top {
            let s = seq - self.top;
            self.bits = if s >= Self::SIZE { 0 } else { self.bits << s };
            self.bits |= 1;
            self.top = seq;
        } else {
            let d = self.top - seq;
            if d < Self::SIZE {
                self.bits |= 1 << d;
            }
        }
    }

    /// The highest sequence number accepted so far.
    pub fn top(&self) -> u32 {
        self.top
    }
}

/// An outbound SA: cipher, salt and the next sequence number.
pub struct OutboundSa {
    spi: u32,
    salt: [u8; SALT_LEN],
    cipher: Gcm,
    seq: u64,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("seq", &self.seq)
            .finish()
    }
}

impl OutboundSa {
    /// An SA from its configuration, sequence number 0 (the first sent is 1).
    pub fn new(c: &SaConfig) -> OutboundSa {
        OutboundSa {
            spi: c.spi,
            salt: c.salt,
            cipher: Gcm::new(&Array(c.key)),
            seq: 0,
        }
    }

    /// Starts the counter at `seq` (the next packet carries `seq + 1`); for tests.
    pub fn set_seq(&mut self, seq: u32) {
        self.seq = u64::from(seq);
    }
}

/// An inbound SA: cipher, salt and its anti-replay window.
pub struct InboundSa {
    salt: [u8; SALT_LEN],
    cipher: Gcm,
    /// The window.
    pub window: ReplayWindow,
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("window", &self.window)
            .finish()
    }
}

impl InboundSa {
    /// An SA from its configuration, nothing received yet.
    pub fn new(c: &SaConfig) -> InboundSa {
        InboundSa {
            salt: c.salt,
            cipher: Gcm::new(&Array(c.key)),
            window: ReplayWindow::default(),
        }
    }
}

/// IPv4 header offsets of a frame: (header length, end of the datagram).
fn ipv4_bounds(frame: &[u8]) -> Option<(usize, usize)> {
    if frame.len() < ETH_HDR_LEN + ipv4::HEADER_LEN || ethernet::ethertype(frame) != EtherType::IPV4
    {
        return None;
    }
    let ip = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]);
    ip.check_header().ok()?;
    let ihl = ip.header_len();
    // A total length of 0 (a TSO frame's) means "to the frame's end".
    let total = usize::from(ip.total_len());
    let end = if total == 0 {
        frame.len()
    } else {
        if total < ihl || ETH_HDR_LEN + total > frame.len() {
            return None;
        }
        ETH_HDR_LEN + total
    };
    Some((ihl, end))
}

/// True when `frame` is IPv4 with protocol 50 (ESP), fragments aside.
pub fn is_esp(frame: &[u8]) -> bool {
    frame.len() >= ETH_HDR_LEN + ipv4::HEADER_LEN
        && ethernet::ethertype(frame) == EtherType::IPV4
        && {
            let ip = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]);
            ip.version() == 4 && ip.protocol() == IPPROTO_ESP
        }
}

/// The outer destination of an IPv4 frame (at least 34 bytes).
pub fn ipv4_dst(frame: &[u8]) -> Ipv4Addr {
    ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]).dst_addr()
}

/// Sets an IPv4 header's total length and protocol and recomputes its
/// checksum (`ip` is exactly the header, options included).
fn rewrite_ipv4(ip: &mut [u8], total: usize, proto: u8) {
    let mut h = ipv4::Packet::new_unchecked(ip);
    h.set_total_len(total.min(usize::from(u16::MAX)) as u16);
    h.set_protocol(proto);
    h.fill_checksum();
}

fn nonce(salt: &[u8; SALT_LEN], iv: &[u8]) -> Nonce<U12> {
    let mut n = [0u8; 12];
    n[..SALT_LEN].copy_from_slice(salt);
    n[SALT_LEN..].copy_from_slice(&iv[..IV_LEN]);
    Array(n)
}

/// The ESP form of an IPv4 frame under `sa` (transport mode): the IPv4
/// header kept with protocol 50, its payload encrypted and authenticated.
/// The frame must carry complete checksums and no GSO (segment first).
pub fn protect(sa: &mut OutboundSa, frame: &[u8]) -> Result<Packet, EspError> {
    let (ihl, end) = ipv4_bounds(frame).ok_or(EspError::Malformed)?;
    let l4 = ETH_HDR_LEN + ihl;
    let payload = &frame[l4..end];
    let next = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]).protocol();
    let pad = (4 - (payload.len() + TRAILER_LEN) % 4) % 4;
    let ct_len = payload.len() + pad + TRAILER_LEN;
    let out_len = l4 + HDR_LEN + IV_LEN + ct_len + ICV_LEN;
    if out_len - ETH_HDR_LEN > usize::from(u16::MAX) {
        return Err(EspError::Malformed);
    }
    if sa.seq >= u64::from(u32::MAX) {
        return Err(EspError::SeqExhausted);
    }
    sa.seq += 1;
    let mut p = Packet::zeroed(VnetHdr::default(), out_len);
    let b = p.frame_mut();
    b[..l4].copy_from_slice(&frame[..l4]);
    rewrite_ipv4(&mut b[ETH_HDR_LEN..l4], out_len - ETH_HDR_LEN, IPPROTO_ESP);
    let (head, rest) = b[l4..].split_at_mut(HDR_LEN + IV_LEN);
    let mut h = esp::Packet::new_unchecked(&mut head[..]);
    h.set_spi(sa.spi);
    h.set_seq(sa.seq as u32);
    // The explicit IV is the 64-bit sequence number (RFC 4106 §3.1).
    head[HDR_LEN..].copy_from_slice(&sa.seq.to_be_bytes());
    let (ct, icv) = rest.split_at_mut(ct_len);
    ct[..payload.len()].copy_from_slice(payload);
    for (i, x) in ct[payload.len()..payload.len() + pad]
        .iter_mut()
        .enumerate()
    {
        *x = i as u8 + 1;
    }
    ct[ct_len - 2] = pad as u8;
    ct[ct_len - 1] = next;
    let n = nonce(&sa.salt, &head[HDR_LEN..]);
    let tag = sa
        .cipher
        .encrypt_inout_detached(&n, &head[..HDR_LEN], ct.into())
        .map_err(|_| EspError::Malformed)?;
    icv.copy_from_slice(&tag);
    Ok(p)
}

/// The inbound SAs of an engine, by (destination, SPI), and its outbound
/// SAs by (source, destination).
#[derive(Debug, Default)]
pub struct EspState {
    inbound: HashMap<(Ipv4Addr, u32), InboundSa>,
    outbound: HashMap<(Ipv4Addr, Ipv4Addr), OutboundSa>,
}

impl EspState {
    /// Installs SAs (an SA already present is kept, counters and all).
    pub fn add(&mut self, sas: &[SaConfig]) {
        for c in sas {
            self.inbound
                .entry((c.dst, c.spi))
                .or_insert_with(|| InboundSa::new(c));
            self.outbound
                .entry((c.src, c.dst))
                .or_insert_with(|| OutboundSa::new(c));
        }
    }

    /// Protects `frame` with the outbound SA from `src` to `dst`.
    pub fn protect(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        frame: &[u8],
    ) -> Result<Packet, EspError> {
        let sa = self.outbound.get_mut(&(src, dst)).ok_or(EspError::NoSa)?;
        protect(sa, frame)
    }

    /// The inbound SA for a destination and SPI, if installed.
    pub fn inbound(&self, dst: Ipv4Addr, spi: u32) -> Option<&InboundSa> {
        self.inbound.get(&(dst, spi))
    }

    /// The plain IPv4 frame an ESP frame carries, after the SPI, window,
    /// ICV and trailer checks; the window moves only for a frame that
    /// authenticated.
    pub fn unprotect(&mut self, frame: &[u8]) -> Result<Packet, EspError> {
        let (ihl, end) = ipv4_bounds(frame).ok_or(EspError::Malformed)?;
        let ip = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]);
        if ip.protocol() != IPPROTO_ESP || ip.is_fragment() {
            return Err(EspError::Malformed);
        }
        let l4 = ETH_HDR_LEN + ihl;
        let esp = &frame[l4..end];
        if esp.len() < HDR_LEN + IV_LEN + TRAILER_LEN + ICV_LEN {
            return Err(EspError::Malformed);
        }
        let ct_len = esp.len() - HDR_LEN - IV_LEN - ICV_LEN;
        if !ct_len.is_multiple_of(4) {
            return Err(EspError::Malformed);
        }
        let h = esp::Packet::new_unchecked(esp);
        let (spi, seq) = (h.spi(), h.seq());
        let sa = self
            .inbound
            .get_mut(&(ipv4_dst(frame), spi))
            .ok_or(EspError::UnknownSpi)?;
        sa.window.check(seq)?;
        let n = nonce(&sa.salt, &esp[HDR_LEN..HDR_LEN + IV_LEN]);
        let tag: Tag<U8> = Array(
            esp[esp.len() - ICV_LEN..]
                .try_into()
                .map_err(|_| EspError::Malformed)?,
        );
        let mut p = Packet::zeroed(VnetHdr::default(), l4 + ct_len);
        let b = p.frame_mut();
        b[..l4].copy_from_slice(&frame[..l4]);
        let ct = &mut b[l4..];
        ct.copy_from_slice(&esp[HDR_LEN + IV_LEN..HDR_LEN + IV_LEN + ct_len]);
        sa.cipher
            .decrypt_inout_detached(&n, &esp[..HDR_LEN], ct.into(), &tag)
            .map_err(|_| EspError::AuthFailed)?;
        sa.window.update(seq);
        let pad = usize::from(ct[ct_len - 2]);
        let next = ct[ct_len - 1];
        if pad + TRAILER_LEN > ct_len
            || ct[ct_len - 2 - pad..ct_len - 2]
                .iter()
                .enumerate()
                .any(|(i, &x)| usize::from(x) != i + 1)
        {
            return Err(EspError::BadTrailer);
        }
        let plain = ct_len - pad - TRAILER_LEN;
        rewrite_ipv4(&mut b[ETH_HDR_LEN..l4], ihl + plain, next);
        p.set_len(l4 + plain);
        Ok(p)
    }
}

/// A 16-byte block of AES output under `key`.
fn aes_block(key: &[u8; 16], input: [u8; 16]) -> [u8; 16] {
    let c = Aes128::new(&Array(*key));
    let mut b = Array(input);
    c.encrypt_block(&mut b);
    b.0
}

/// Davies–Meyer over AES-128 with Merkle–Damgård length padding: a fixed,
/// deterministic digest of `seed` (no new dependency for a hash).
fn digest(seed: &[u8]) -> [u8; 16] {
    let mut m = seed.to_vec();
    m.push(0x80);
    while m.len() % 16 != 8 {
        m.push(0);
    }
    m.extend_from_slice(&(seed.len() as u64 * 8).to_be_bytes());
    let mut h = *b"vswitch-esp-v1\0\0";
    for block in m.chunks_exact(16) {
        let k: [u8; 16] = block.try_into().unwrap_or([0; 16]);
        let e = aes_block(&k, h);
        for (x, y) in h.iter_mut().zip(e) {
            *x ^= y;
        }
    }
    h
}

/// The SAs between every ordered pair of machines (uplink addresses, in
/// plan order), derived from `seed` (the run id and scenario name): the
/// master key is a digest of the seed; the key and salt of the SA from
/// machine `i` to machine `j` are AES under the master key of the blocks
/// (`"key"`, i, j) and (`"salt"`, i, j); its SPI is `0x1000_0000 | i << 12 | j`
/// (readable in a capture, unique per destination for up to 4096 machines).
pub fn derive_sas(seed: &[u8], machines: &[Ipv4Addr]) -> Vec<SaConfig> {
    let master = digest(seed);
    let block = |label: &[u8], i: usize, j: usize| {
        let mut b = [0u8; 16];
        b[..label.len().min(8)].copy_from_slice(&label[..label.len().min(8)]);
        b[8..12].copy_from_slice(&(i as u32).to_be_bytes());
        b[12..16].copy_from_slice(&(j as u32).to_be_bytes());
        aes_block(&master, b)
    };
    let mut out = Vec::new();
    for (i, &src) in machines.iter().enumerate() {
        for (j, &dst) in machines.iter().enumerate() {
            if i == j {
                continue;
            }
            let salt = block(b"salt", i, j);
            out.push(SaConfig {
                spi: 0x1000_0000 | ((i as u32 & 0xfff) << 12) | (j as u32 & 0xfff),
                src,
                dst,
                key: block(b"key", i, j),
                salt: [salt[0], salt[1], salt[2], salt[3]],
            });
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Wireshark's `esp_sa` UAT file for these SAs (one line each: protocol,
/// source, destination, SPI, encryption algorithm, key and salt,
/// authentication algorithm, authentication key), so that tshark
/// (`-o esp.enable_encryption_decode:TRUE`, the file in its profile or
/// given as `-o uat:esp_sa:…` lines) decrypts a capture.
pub fn esp_sa_uat(sas: &[SaConfig]) -> String {
    let mut s = String::new();
    for sa in sas {
        s.push_str(&esp_sa_line(sa));
        s.push('\n');
    }
    s
}

/// One `esp_sa` UAT record (without the newline).
pub fn esp_sa_line(sa: &SaConfig) -> String {
    format!(
        "\"IPv4\",\"{}\",\"{}\",\"{:#010x}\",\"AES-GCM with 8 octet ICV [RFC4106]\",\"0x{}{}\",\"NULL\",\"\"",
        sa.src,
        sa.dst,
        sa.spi,
        hex(&sa.key),
        hex(&sa.salt)
    )
}

//! Capture files (one per port), pcapng, readable by tshark, Wireshark and
//! tcpdump: frames as the port saw them, both directions. A frame the
//! engine dropped carries a packet comment naming why (`vswitch drop:
//! fault-loss`), which tshark shows as `frame.comment`.
//!
//! GSO super-frames are written whole (longer than the MTU), which tshark
//! decodes fine; the snap length is large enough for a 64 KiB frame.
//! The files keep the `.pcap` name: every reader tells the format by its
//! first bytes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Snap length written in the interface description.
pub const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u16 = 1;
const BLOCK_SHB: u32 = 0x0A0D_0D0A;
const BLOCK_IDB: u32 = 1;
const BLOCK_EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_COMMENT: u16 = 1;

/// One capture file being written.
#[derive(Debug)]
pub struct PcapWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Bytes of padding after `n` bytes to a 32-bit boundary.
fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl PcapWriter {
    /// Creates `path` and writes the section header and the one interface
    /// (Ethernet, microsecond timestamps).
    pub fn create(path: &Path) -> io::Result<PcapWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        // Section header block: no options, section length unknown.
        out.write_all(&BLOCK_SHB.to_le_bytes())?;
        out.write_all(&28u32.to_le_bytes())?;
        out.write_all(&BYTE_ORDER_MAGIC.to_le_bytes())?;
        out.write_all(&1u16.to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&(-1i64).to_le_bytes())?;
        out.write_all(&28u32.to_le_bytes())?;
        // Interface description block.
        out.write_all(&BLOCK_IDB.to_le_bytes())?;
        out.write_all(&20u32.to_le_bytes())?;
        out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&20u32.to_le_bytes())?;
        Ok(PcapWriter {
            path: path.to_path_buf(),
            out,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one frame stamped with the wall clock.
    pub fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        self.write_commented(frame, None)
    }

    /// Appends one frame with a packet comment (why it was dropped).
    pub fn write_commented(&mut self, frame: &[u8], comment: Option<&str>) -> io::Result<()> {
        let us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        self.write_at(us, frame, comment)
    }

    /// Appends one frame stamped `us` microseconds after the epoch (the sim
    /// backend's virtual clock), with an optional comment.
    pub fn write_at(&mut self, us: u64, frame: &[u8], comment: Option<&str>) -> io::Result<()> {
        let caplen = frame.len().min(SNAPLEN as usize);
        let comment = comment.map(|c| &c.as_bytes()[..c.len().min(1024)]);
        let opts = comment.map_or(0, |c| 4 + c.len() + pad4(c.len()) + 4);
        let total = 32 + caplen + pad4(caplen) + opts;
        let o = &mut self.out;
        o.write_all(&BLOCK_EPB.to_le_bytes())?;
        o.write_all(&(total as u32).to_le_bytes())?;
        o.write_all(&0u32.to_le_bytes())?;
        o.write_all(&((us >> 32) as u32).to_le_bytes())?;
        o.write_all(&(us as u32).to_le_bytes())?;
        o.write_all(&(caplen as u32).to_le_bytes())?;
        o.write_all(&(frame.len() as u32).to_le_bytes())?;
        o.write_all(&frame[..caplen])?;
        o.write_all(&[0u8; 3][..pad4(caplen)])?;
        if let Some(c) = comment {
            o.write_all(&OPT_COMMENT.to_le_bytes())?;
            o.write_all(&(c.len() as u16).to_le_bytes())?;
            o.write_all(c)?;
            o.write_all(&[0u8; 3][..pad4(c.len())])?;
            o.write_all(&[0u8; 4])?;
        }
        o.write_all(&(total as u32).to_le_bytes())
    }

    /// Flushes buffered records.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A file name for a port name such as `web/eth0` → `web-eth0.pcap`.
pub fn file_name(port: &str) -> String {
    let clean: String = port
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{clean}.pcap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_records() {
        let dir = std::env::temp_dir().join(format!("vsw-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.pcap");
        let mut w = PcapWriter::create(&p).unwrap();
        w.write(&[0xff; 60]).unwrap();
        w.write_commented(&[0xee; 61], Some("vswitch drop: fault-loss"))
            .unwrap();
        w.flush().unwrap();
        let b = std::fs::read(&p).unwrap();
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(0), BLOCK_SHB);
        assert_eq!(u32_at(8), BYTE_ORDER_MAGIC);
        assert_eq!(u32_at(28), BLOCK_IDB);
        // First EPB: 32 + 60 bytes, no options.
        assert_eq!((u32_at(48), u32_at(52)), (BLOCK_EPB, 92));
        assert_eq!(u32_at(48 + 88), 92);
        // Second: 61 bytes padded to 64, a 24-byte comment option, end.
        let e = 48 + 92;
        assert_eq!(u32_at(e + 4), (32 + 64 + 4 + 24 + 4) as u32);
        assert_eq!(
            &b[e + 28 + 64 + 4..e + 28 + 64 + 4 + 24],
            b"vswitch drop: fault-loss"
        );
        assert_eq!(b.len(), e + 32 + 64 + 32);
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(file_name("web/eth0"), "web-eth0.pcap");
    }

    /// A frame the fault stage drops is in the ingress capture with its
    /// reason as a packet comment, which tshark reads (issue 15).
    #[test]
    fn dropped_frames_carry_their_reason() {
        let test = "dropped_frames_carry_their_reason";
        if !crate::sys::require_root(test) {
            return;
        }
        let Some(tshark) = crate::prereq::tool(test, "tshark").or_panic() else {
            return;
        };
        let scenario = r#"
name = "drops in pcaps"
[[network]]
name = "n"
subnet = "10.77.0.0/24"
[[container]]
name = "a"
networks = ["n"]
[[container]]
name = "b"
networks = ["n"]
[[step]]
name = "cut"
fault = { link = "a", loss = 1.0 }
[[check]]
kind = "ping"
from = "a"
to = "b"
count = 1
expect = "ok"
[[check]]
kind = "ping"
from = "a"
to = "b"
count = 2
expect = "fail"
after = "cut"
"#;
        let plan = crate::scenario::parse_str(Path::new("t.toml"), scenario).unwrap();
        let dir = crate::run::execute::run_captured("droppcap", &plan);
        let out = std::process::Command::new(tshark)
            .arg("-r")
            .arg(dir.join("a-eth0.pcap"))
            .args([
                "-Y",
                "icmp.type == 8",
                "-T",
                "fields",
                "-e",
                "frame.comment",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        // The ping before the cut crossed; both after it were dropped.
        assert_eq!(
            lines,
            ["", "vswitch drop: fault-loss", "vswitch drop: fault-loss"],
            "{text}"
        );
    }
}

//! The containers' image: a root filesystem holding only Debian's static
//! busybox (`busybox-static`) and a few applet links, imported once through
//! the API from a tar built here. No registry is ever contacted.
//!
//! The tar is plain ustar written by hand (three kinds of entry, fixed
//! metadata): byte-for-byte the same for the same busybox, so an import is
//! reproducible and needs no archive crate.

use std::io;
use std::path::Path;

/// The image's reference.
pub const IMAGE_REPO: &str = "vswitch/busybox";
/// The image's tag; bump it when the root filesystem's layout changes.
pub const IMAGE_TAG: &str = "1";

/// Where `busybox-static` installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in `/bin`: `sleep` keeps a container alive; the rest help
/// a person poking at a world with `docker exec`.
const APPLETS: &[&str] = &["sh", "sleep", "cat", "ls", "ip", "ping", "nslookup"];

/// Errors while building the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// busybox is missing or unreadable.
    #[error("cannot read {path}: {source} (install it: apt-get install -y busybox-static)")]
    Read {
        /// The binary's path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// busybox is dynamically linked: it would not run in an empty root.
    #[error("{path} is dynamically linked; the image needs Debian's busybox-static")]
    NotStatic {
        /// The binary's path.
        path: String,
    },
}

/// The image's root filesystem as a tar, from the busybox at `busybox`.
pub fn rootfs_tar(busybox: &Path) -> Result<Vec<u8>, ImageError> {
    let path = busybox.display().to_string();
    let bin = std::fs::read(busybox).map_err(|source| ImageError::Read {
        path: path.clone(),
        source,
    })?;
    if has_interpreter(&bin) {
        return Err(ImageError::NotStatic { path });
    }
    let mut tar = Vec::with_capacity(bin.len() + 16 * 512);
    entry(&mut tar, "bin/", b'5', 0o755, &[], "");
    entry(&mut tar, "bin/busybox", b'0', 0o755, &bin, "");
    for a in APPLETS {
        entry(&mut tar, &format!("bin/{a}"), b'2', 0o777, &[], "busybox");
    }
    for d in ["etc/", "tmp/", "proc/", "sys/", "dev/"] {
        entry(
            &mut tar,
            d,
            b'5',
            if d == "tmp/" { 0o1777 } else { 0o755 },
            &[],
            "",
        );
    }
    tar.extend_from_slice(&[0u8; 1024]);
    Ok(tar)
}

/// One ustar entry: header, then the data padded to 512 bytes.
fn entry(out: &mut Vec<u8>, name: &str, kind: u8, mode: u32, data: &[u8], link: &str) {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = kind;
    put(&mut h, 157, link.as_bytes());
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    put(&mut h, 265, b"root");
    put(&mut h, 297, b"root");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// True when an ELF file asks for a program interpreter (dynamic linking).
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        // Not a little-endian ELF64: let the daemon's exec report it.
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        elf.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_is_well_formed_and_reproducible() {
        let dir = std::env::temp_dir().join(format!("vswitch-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A fake "static" binary: not ELF, so no interpreter check applies.
        let fake = dir.join("busybox");
        std::fs::write(&fake, vec![7u8; 1000]).unwrap();
        let a = rootfs_tar(&fake).unwrap();
        let b = rootfs_tar(&fake).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len() % 512, 0);
        // Every header's checksum holds.
        let mut off = 0;
        let mut names = Vec::new();
        while a[off..off + 512].iter().any(|&x| x != 0) {
            let h = &a[off..off + 512];
            let mut copy = h.to_vec();
            copy[148..156].copy_from_slice(b"        ");
            let sum: u32 = copy.iter().map(|&x| u32::from(x)).sum();
            let stored = u32::from_str_radix(
                std::str::from_utf8(&h[148..154])
                    .unwrap()
                    .trim_matches(char::from(0)),
                8,
            )
            .unwrap();
            assert_eq!(sum, stored);
            let name = std::str::from_utf8(&h[..100])
                .unwrap()
                .trim_end_matches('\0');
            names.push(name.to_string());
            let size =
                usize::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
            off += 512 + size.div_ceil(512) * 512;
        }
        assert!(names.contains(&"bin/busybox".to_string()));
        assert!(names.contains(&"bin/sleep".to_string()));
        // When the system tar is there, it agrees.
        if let Ok(out) = std::process::Command::new("tar")
            .arg("-tvf")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&a)?;
                c.wait_with_output()
            })
        {
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{listing}");
            assert!(listing.contains("bin/sh -> busybox"), "{listing}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dynamic_elf_is_refused() {
        let mut elf = vec![0u8; 200];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20] = 64; // phoff
        elf[0x36] = 56; // phentsize
        elf[0x38] = 1; // phnum
        elf[64] = 3; // PT_INTERP
        assert!(has_interpreter(&elf));
        elf[64] = 1; // PT_LOAD
        assert!(!has_interpreter(&elf));
        if Path::new(BUSYBOX).exists() {
            rootfs_tar(Path::new(BUSYBOX)).expect("busybox-static is static");
        }
    }
}

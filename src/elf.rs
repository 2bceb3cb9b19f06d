//! Just enough ELF reading to tell, before deploying, whether a handler binary can run
//! on Lambda's `provided.al2023`: the machine it was built for, and the newest glibc
//! symbol version it needs (AL2023 has glibc 2.34).

use crate::config::Arch;

/// The newest glibc Lambda's `provided.al2023` runtime has.
pub const LAMBDA_GLIBC: (u32, u32) = (2, 34);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    /// None: a machine we do not deploy to.
    pub arch: Option<Arch>,
    pub machine: u16,
    /// The newest `GLIBC_x.y` version needed; None for a static binary.
    pub glibc: Option<(u32, u32)>,
}

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
fn cstr(b: &[u8], off: usize) -> Option<&str> {
    let rest = b.get(off..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Reads a 64-bit little-endian ELF executable. Err: why it is not one.
pub fn inspect(b: &[u8]) -> Result<BinaryInfo, String> {
    if b.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF executable (Lambda runs Linux binaries)".into());
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let e_type = u16_at(b, 16).ok_or("truncated ELF header")?;
    if e_type != 2 && e_type != 3 {
        return Err("an ELF file, but not an executable".into());
    }
    let machine = u16_at(b, 18).ok_or("truncated ELF header")?;
    let arch = match machine {
        EM_X86_64 => Some(Arch::X86_64),
        EM_AARCH64 => Some(Arch::Arm64),
        _ => None,
    };
    Ok(BinaryInfo {
        arch,
        machine,
        glibc: glibc_need(b),
    })
}

/// The newest GLIBC_x.y in the version-needs section (`.gnu.version_r`).
fn glibc_need(b: &[u8]) -> Option<(u32, u32)> {
    let shoff = u64_at(b, 0x28)? as usize;
    let shentsize = u16_at(b, 0x3a)? as usize;
    let shnum = u16_at(b, 0x3c)? as usize;
    let section = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let mut newest: Option<(u32, u32)> = None;
    for i in 0..shnum {
        let sh = section(i)?;
        if u32_at(b, sh + 4)? != SHT_GNU_VERNEED {
            continue;
        }
        let offset = u64_at(b, sh + 0x18)? as usize;
        let link = u32_at(b, sh + 0x28)? as usize;
        let count = u32_at(b, sh + 0x2c)? as usize; // sh_info: number of entries
        let strtab = u64_at(b, section(link)? + 0x18)? as usize;
        let mut need = offset;
        for _ in 0..count {
            let aux_count = u16_at(b, need + 2)? as usize;
            let mut aux = need + u32_at(b, need + 8)? as usize;
            for _ in 0..aux_count {
                let name = cstr(b, strtab + u32_at(b, aux + 8)? as usize)?;
                if let Some(v) = parse_glibc(name) {
                    newest = newest.max(Some(v));
                }
                let next = u32_at(b, aux + 12)? as usize;
                if next == 0 {
                    break;
                }
                aux += next;
            }
            let next = u32_at(b, need + 12)? as usize;
            if next == 0 {
                break;
            }
            need += next;
        }
    }
    newest
}

fn parse_glibc(name: &str) -> Option<(u32, u32)> {
    let mut parts = name.strip_prefix("GLIBC_")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What is wrong with running `info` on Lambda with `want`, if anything.
pub fn lambda_problems(info: &BinaryInfo, want: Arch) -> Vec<String> {
    let mut problems = Vec::new();
    match info.arch {
        Some(a) if a == want => {}
        Some(a) => problems.push(format!(
            "it is built for {a}, but the function's architecture is {want} (--architecture)"
        )),
        None => problems.push(format!(
            "it is built for ELF machine {}, which Lambda does not run",
            info.machine
        )),
    }
    if let Some((major, minor)) = info.glibc {
        if (major, minor) > LAMBDA_GLIBC {
            problems.push(format!(
                "it needs GLIBC_{major}.{minor}, newer than the {}.{} of Lambda's provided.al2023",
                LAMBDA_GLIBC.0, LAMBDA_GLIBC.1
            ));
        }
    }
    problems
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal ELF64 executable: header, a string table, a version-needs section
    /// naming `versions` of libc.so.6, and the section-name table.
    pub fn fixture(machine: u16, versions: &[&str]) -> Vec<u8> {
        let mut dynstr = b"\0libc.so.6\0".to_vec();
        let mut name_offsets = Vec::new();
        for v in versions {
            name_offsets.push(dynstr.len() as u32);
            dynstr.extend_from_slice(v.as_bytes());
            dynstr.push(0);
        }
        let mut verneed = Vec::new();
        if !versions.is_empty() {
            verneed.extend_from_slice(&1u16.to_le_bytes()); // vn_version
            verneed.extend_from_slice(&(versions.len() as u16).to_le_bytes()); // vn_cnt
            verneed.extend_from_slice(&1u32.to_le_bytes()); // vn_file: "libc.so.6"
            verneed.extend_from_slice(&16u32.to_le_bytes()); // vn_aux
            verneed.extend_from_slice(&0u32.to_le_bytes()); // vn_next
            for (i, off) in name_offsets.iter().enumerate() {
                verneed.extend_from_slice(&0u32.to_le_bytes()); // vna_hash
                verneed.extend_from_slice(&0u16.to_le_bytes()); // vna_flags
                verneed.extend_from_slice(&(i as u16 + 2).to_le_bytes()); // vna_other
                verneed.extend_from_slice(&off.to_le_bytes()); // vna_name
                let next: u32 = if i + 1 < versions.len() { 16 } else { 0 };
                verneed.extend_from_slice(&next.to_le_bytes());
            }
        }
        let shstrtab = b"\0.dynstr\0.gnu.version_r\0.shstrtab\0".to_vec();
        let dynstr_off = 64usize;
        let verneed_off = dynstr_off + dynstr.len();
        let shstr_off = verneed_off + verneed.len();
        let shoff = (shstr_off + shstrtab.len()).div_ceil(8) * 8;
        let mut b = vec![0u8; shoff];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        b[dynstr_off..verneed_off].copy_from_slice(&dynstr);
        b[verneed_off..shstr_off].copy_from_slice(&verneed);
        b[shstr_off..shstr_off + shstrtab.len()].copy_from_slice(&shstrtab);
        let section = |name: u32, kind: u32, offset: usize, size: usize, link: u32, info: u32| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&kind.to_le_bytes());
            s[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            s[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            s[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            s[0x2c..0x30].copy_from_slice(&info.to_le_bytes());
            s
        };
        b.extend(vec![0u8; 64]);
        b.extend(section(1, 3, dynstr_off, dynstr.len(), 0, 0));
        let count = if versions.is_empty() { 0 } else { 1 };
        b.extend(section(
            9,
            SHT_GNU_VERNEED,
            verneed_off,
            verneed.len(),
            1,
            count,
        ));
        b.extend(section(24, 3, shstr_off, shstrtab.len(), 0, 0));
        b
    }

    #[test]
    fn reads_machine_and_newest_glibc_need() {
        let bin = fixture(EM_X86_64, &["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.17"]);
        let info = inspect(&bin).unwrap();
        assert_eq!(info.arch, Some(Arch::X86_64));
        assert_eq!(info.glibc, Some((2, 34)));
        assert!(lambda_problems(&info, Arch::X86_64).is_empty());
    }

    #[test]
    fn too_new_glibc_and_wrong_arch_are_named() {
        let info = inspect(&fixture(EM_X86_64, &["GLIBC_2.39", "GLIBC_2.2.5"])).unwrap();
        assert_eq!(info.glibc, Some((2, 39)));
        let problems = lambda_problems(&info, Arch::X86_64);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("GLIBC_2.39"), "{problems:?}");

        let arm = inspect(&fixture(EM_AARCH64, &["GLIBC_2.17"])).unwrap();
        assert_eq!(arm.arch, Some(Arch::Arm64));
        assert!(lambda_problems(&arm, Arch::Arm64).is_empty());
        let problems = lambda_problems(&arm, Arch::X86_64);
        assert!(problems[0].contains("built for arm64"), "{problems:?}");
    }

    #[test]
    fn a_static_binary_needs_no_glibc() {
        let info = inspect(&fixture(EM_X86_64, &[])).unwrap();
        assert_eq!(info.glibc, None);
        assert!(lambda_problems(&info, Arch::X86_64).is_empty());
    }

    #[test]
    fn non_executables_are_refused() {
        assert!(inspect(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .contains("not an ELF"));
        let mut wrong_class = fixture(EM_X86_64, &[]);
        wrong_class[4] = 1;
        assert!(inspect(&wrong_class).is_err());
        let info = inspect(&fixture(40, &[])).unwrap(); // 32-bit ARM
        assert_eq!(info.arch, None);
        assert!(lambda_problems(&info, Arch::Arm64)[0].contains("machine 40"));
    }
}

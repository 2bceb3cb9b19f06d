//! Reads a handler binary, through the `object` crate's ELF parser, to tell before
//! deploying whether it can run on Lambda's `provided.al2023`: the machine it was built
//! for, and the newest glibc symbol version it needs (AL2023 has glibc 2.34).

use object::elf::{self, FileHeader64};
use object::read::elf::FileHeader;
use object::{Endianness, FileKind};

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

/// Reads a 64-bit little-endian ELF executable. Err: why it is not one.
pub fn inspect(b: &[u8]) -> Result<BinaryInfo, String> {
    match FileKind::parse(b) {
        Ok(FileKind::Elf64) => {}
        Ok(FileKind::Elf32) => return Err("not a 64-bit little-endian ELF file".into()),
        _ if b.starts_with(&elf::ELFMAG) => return Err("truncated ELF header".into()),
        _ => return Err("not an ELF executable (Lambda runs Linux binaries)".into()),
    }
    let header = FileHeader64::<Endianness>::parse(b).map_err(|e| {
        if b.len() < std::mem::size_of::<FileHeader64<Endianness>>() {
            "truncated ELF header".to_string()
        } else {
            format!("an unusable ELF header: {e}")
        }
    })?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    if endian != Endianness::Little {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let e_type = header.e_type(endian);
    if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
        return Err("an ELF file, but not an executable".into());
    }
    let machine = header.e_machine(endian);
    let arch = match machine {
        elf::EM_X86_64 => Some(Arch::X86_64),
        elf::EM_AARCH64 => Some(Arch::Arm64),
        _ => None,
    };
    let glibc = glibc_need(header, endian, b)
        .map_err(|e| format!("a damaged ELF file (its version needs: {e})"))?;
    Ok(BinaryInfo {
        arch,
        machine: machine.0,
        glibc,
    })
}

/// The newest GLIBC_x.y in the version-needs section (`.gnu.version_r`); None when
/// there is none (a static binary).
fn glibc_need(
    header: &FileHeader64<Endianness>,
    endian: Endianness,
    b: &[u8],
) -> object::read::Result<Option<(u32, u32)>> {
    let sections = header.sections(endian, b)?;
    let Some((mut needs, link)) = sections.gnu_verneed(endian, b)? else {
        return Ok(None);
    };
    let strings = sections.strings(endian, b, link)?;
    let mut newest = None;
    while let Some((_file, mut aux)) = needs.next()? {
        while let Some(version) = aux.next()? {
            let name = version.name(endian, strings)?;
            if let Some(v) = std::str::from_utf8(name).ok().and_then(parse_glibc) {
                newest = newest.max(Some(v));
            }
        }
    }
    Ok(newest)
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

    const EM_X86_64: u16 = elf::EM_X86_64.0;
    const EM_AARCH64: u16 = elf::EM_AARCH64.0;
    const SHT_GNU_VERNEED: u32 = elf::SHT_GNU_VERNEED.0;

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

    #[test]
    fn odd_elf_files_are_refused_with_the_reason() {
        let bin = fixture(EM_X86_64, &["GLIBC_2.17"]);
        let mut wrong_class = bin.clone();
        wrong_class[4] = 1;
        assert_eq!(
            inspect(&wrong_class).unwrap_err(),
            "not a 64-bit little-endian ELF file"
        );
        let mut big_endian = bin.clone();
        big_endian[5] = 2;
        assert_eq!(
            inspect(&big_endian).unwrap_err(),
            "not a 64-bit little-endian ELF file"
        );
        let mut relocatable = bin.clone();
        relocatable[16..18].copy_from_slice(&elf::ET_REL.0.to_le_bytes());
        assert_eq!(
            inspect(&relocatable).unwrap_err(),
            "an ELF file, but not an executable"
        );
        assert_eq!(inspect(&bin[..40]).unwrap_err(), "truncated ELF header");
        assert_eq!(inspect(&bin[..6]).unwrap_err(), "truncated ELF header");
        assert!(inspect(b"").unwrap_err().contains("not an ELF"));
    }

    #[test]
    fn a_damaged_version_section_is_an_error_not_a_static_binary() {
        let mut bin = fixture(EM_X86_64, &["GLIBC_2.39"]);
        // Point the one vna_name far past the end of the string table.
        let vna_name = 64 + b"\0libc.so.6\0GLIBC_2.39\0".len() + 16 + 8;
        bin[vna_name..vna_name + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        let err = inspect(&bin).unwrap_err();
        assert!(err.contains("damaged ELF file"), "{err}");
    }

    #[test]
    fn only_glibc_versions_count() {
        let bin = fixture(EM_X86_64, &["GLIBCXX_3.4.30", "GLIBC_2.28", "GCC_7.0.0"]);
        assert_eq!(inspect(&bin).unwrap().glibc, Some((2, 28)));
    }

    /// A real binary from the toolchain: this test executable itself.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    fn reads_a_real_host_binary() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = inspect(&exe).unwrap();
        assert_eq!(info.arch, Some(Arch::X86_64));
        assert_eq!(info.machine, 62);
        let glibc = info.glibc.expect("a glibc-linked binary needs GLIBC_x.y");
        assert!(glibc >= (2, 2), "{glibc:?}");
    }
}

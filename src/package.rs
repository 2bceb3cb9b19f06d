//! The handler's deployment package: a zip holding one file, `bootstrap`, mode 0755.
//!
//! The zip is byte-for-byte deterministic (fixed timestamp, mode, compression and
//! order), so the same binary always gives the same SHA-256 and `up` can tell from
//! the function's `CodeSha256` whether the code changed.

use std::io::{Cursor, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::errors::{Error, Result};

pub struct Package {
    /// What the binary is (machine, glibc need), or why it is not an executable.
    pub binary: Result<crate::elf::BinaryInfo, String>,
    pub zip: Vec<u8>,
    /// Base64 of the zip's SHA-256, the form Lambda reports as `CodeSha256`.
    pub code_sha256: String,
}

/// Reads the handler binary and packs it.
pub fn build(binary: &Path, given: bool, arch: crate::config::Arch) -> Result<Package> {
    let bytes = std::fs::read(binary).map_err(|e| {
        let how = "build it first: `cargo build --release -p handler` for the local emulator, \
                   `scripts/build-lambda` (cargo lambda) for AWS; or pass --handler PATH";
        if e.kind() == std::io::ErrorKind::NotFound {
            if given {
                Error::usage(format!(
                    "handler binary {}: no such file; {how}",
                    binary.display()
                ))
            } else {
                Error::usage(format!(
                    "handler binary: none found (looked for {}); {how}",
                    crate::config::handler_candidates(arch).join(", ")
                ))
            }
        } else {
            Error::usage(format!("handler binary {}: {e}", binary.display()))
        }
    })?;
    if bytes.is_empty() {
        return Err(Error::usage(format!(
            "handler binary {}: the file is empty",
            binary.display()
        )));
    }
    let zip = zip_bootstrap(&bytes);
    let code_sha256 = aws_smithy_types::base64::encode(Sha256::digest(&zip));
    Ok(Package {
        binary: crate::elf::inspect(&bytes),
        zip,
        code_sha256,
    })
}

/// Packs `binary` as `bootstrap` (0755) with a fixed timestamp.
pub fn zip_bootstrap(binary: &[u8]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(DateTime::default())
        .unix_permissions(0o755);
    writer
        .start_file("bootstrap", options)
        .expect("zip entry in memory");
    writer.write_all(binary).expect("zip write in memory");
    writer.finish().expect("zip finish in memory").into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn same_binary_gives_the_same_bytes_and_sha() {
        let binary: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = zip_bootstrap(&binary);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = zip_bootstrap(&binary);
        assert_eq!(a, b, "zip must not depend on the clock");
        let other = zip_bootstrap(&binary[1..]);
        assert_ne!(a, other);
    }

    #[test]
    fn holds_one_executable_bootstrap() {
        let binary = b"\x7fELF fake binary".to_vec();
        let zip = zip_bootstrap(&binary);
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name().unwrap(), "bootstrap");
        assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o755);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, binary);
    }

    #[test]
    fn code_sha256_is_base64_of_the_zip_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap");
        std::fs::write(&path, b"binary").unwrap();
        let p = build(&path, true, crate::config::Arch::X86_64).unwrap();
        assert_eq!(
            p.code_sha256,
            aws_smithy_types::base64::encode(Sha256::digest(&p.zip))
        );
        assert_eq!(p.code_sha256.len(), 44);
    }

    #[test]
    fn missing_binary_is_a_usage_error_that_says_how_to_build() {
        let err = build(
            Path::new("/nonexistent/bootstrap"),
            true,
            crate::config::Arch::X86_64,
        )
        .err()
        .unwrap();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("cargo build --release -p handler"),
            "{err}"
        );
    }
}

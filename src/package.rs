//! The handler's deployment package: a zip holding one file, `bootstrap`, mode 0755.
//!
//! The zip is byte-for-byte deterministic (fixed timestamp, mode, compression and
//! order), so the same binary always gives the same SHA-256 and `up` can tell from
//! the function's `CodeSha256` whether the code changed.

use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::errors::{Error, Result};

/// Lambda's quotas on a deployment package (AWS, "Lambda quotas":
/// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>):
/// 50 MB zipped for a direct upload (`ZipFile` in CreateFunction / UpdateFunctionCode),
/// 250 MB unzipped. AWS means MiB here: 52,428,800 and 262,144,000 bytes.
pub const MAX_ZIPPED: u64 = 50 * 1024 * 1024;
pub const MAX_UNZIPPED: u64 = 250 * 1024 * 1024;

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

const SHRINK: &str = "make it smaller: build with `--release` and `strip = true` in \
                      [profile.release] (or run `strip` on it), and leave out what \
                      the handler does not need";

/// Lambda refuses a package that unzips to more than 250 MB, however it is uploaded.
pub fn check_unzipped(binary: &Path, size: u64) -> Result<()> {
    if size <= MAX_UNZIPPED {
        return Ok(());
    }
    Err(Error::usage(format!(
        "handler binary {}: {} ({size} bytes), over Lambda's limit of {} ({MAX_UNZIPPED} \
         bytes) for a function's unzipped code; {SHRINK}",
        binary.display(),
        mb(size),
        mb(MAX_UNZIPPED),
    )))
}

/// Lambda takes a zip of at most 50 MB in the request itself; a bigger one must come
/// from S3, which provision does through the state bucket when the state is on S3.
pub fn check_zipped(binary: &Path, size: u64) -> Result<()> {
    if size <= MAX_ZIPPED {
        return Ok(());
    }
    Err(Error::usage(format!(
        "handler binary {}: its zip is {} ({size} bytes), over Lambda's limit of {} \
         ({MAX_ZIPPED} bytes) for a direct upload; with state on S3 \
         (--state-dir s3://BUCKET) it would go through the bucket; or {SHRINK}",
        binary.display(),
        mb(size),
        mb(MAX_ZIPPED),
    )))
}

pub struct Package {
    /// What the binary is (machine, glibc need), or why it is not an executable.
    pub binary: Result<crate::elf::BinaryInfo, String>,
    /// The zip and its code SHA-256: done, or being packed on a thread of its own.
    packing: Mutex<Option<std::thread::JoinHandle<Packed>>>,
    packed: OnceLock<Packed>,
    /// The binary is small enough that its zip cannot pass the direct-upload limit:
    /// `needs_s3` answers without waiting for the packing thread.
    surely_direct: bool,
}

/// The zip, and the base64 of its SHA-256 (the form Lambda reports as `CodeSha256`).
type Packed = (Vec<u8>, String);

impl Package {
    /// A package already packed.
    pub fn new(binary: Result<crate::elf::BinaryInfo, String>, zip: Vec<u8>) -> Package {
        Package {
            binary,
            packing: Mutex::new(None),
            packed: OnceLock::from(pack_digest(zip)),
            surely_direct: false,
        }
    }

    fn packed(&self) -> &Packed {
        self.packed.get_or_init(|| {
            let job = self.packing.lock().expect("packing").take();
            job.expect("a package is packed or being packed")
                .join()
                .expect("the packing thread does not panic")
        })
    }

    pub fn zip(&self) -> &[u8] {
        &self.packed().0
    }

    pub fn code_sha256(&self) -> &str {
        &self.packed().1
    }

    /// Too big to send in the request: it must go through S3.
    pub fn needs_s3(&self) -> bool {
        !self.surely_direct && self.zip().len() as u64 > MAX_ZIPPED
    }

    /// The hex SHA-256 of the zip (artifact names).
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.zip()))
    }
}

fn pack_digest(zip: Vec<u8>) -> Packed {
    let sha = aws_smithy_types::base64::encode(Sha256::digest(&zip));
    (zip, sha)
}

/// Reads the handler binary and packs it. Checks Lambda's size limits on the way, for
/// AWS and the local emulator alike, so `up` stops before its first AWS call. With
/// `via_s3` (the state is on S3) a zip over the direct-upload limit is allowed: it goes
/// through the state bucket (see `function`).
pub fn build(
    binary: &Path,
    given: bool,
    arch: crate::config::Arch,
    via_s3: bool,
) -> Result<Package> {
    build_reading(binary, given, arch, via_s3, read_at_most)
}

/// `build`, reading the file's bytes with `read` (a seam: tests check that a file too
/// big on disk is refused before it is read at all).
fn build_reading(
    binary: &Path,
    given: bool,
    arch: crate::config::Arch,
    via_s3: bool,
    read: impl FnOnce(std::fs::File, u64) -> std::io::Result<Vec<u8>>,
) -> Result<Package> {
    let unreadable = |e: std::io::Error| {
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
    };
    let file = std::fs::File::open(binary).map_err(unreadable)?;
    // The size on disk first, so a huge file is refused without being read.
    check_unzipped(binary, file.metadata().map_err(unreadable)?.len())?;
    let bytes = read(file, MAX_UNZIPPED + 1).map_err(unreadable)?;
    if bytes.is_empty() {
        return Err(Error::usage(format!(
            "handler binary {}: the file is empty",
            binary.display()
        )));
    }
    // Again on what was read: a size on disk can be 0 for a pipe or a special file.
    check_unzipped(binary, bytes.len() as u64)?;
    let info = crate::elf::inspect(&bytes);
    // Packing takes tens of milliseconds, which the run can spend setting up and
    // reading AWS: a binary well under the direct-upload limit cannot zip to more than
    // the limit (deflate adds at most 5 bytes per 64 KiB block), so it is packed on a
    // thread of its own; a bigger one now, to check the zip before any AWS call.
    let surely_direct = (bytes.len() as u64) < MAX_ZIPPED - MAX_ZIPPED / 64;
    if via_s3 || surely_direct {
        return Ok(Package {
            surely_direct,
            binary: info,
            packing: Mutex::new(Some(std::thread::spawn(move || {
                pack_digest(zip_bootstrap(&bytes))
            }))),
            packed: OnceLock::new(),
        });
    }
    let zip = zip_bootstrap(&bytes);
    check_zipped(binary, zip.len() as u64)?;
    Ok(Package::new(info, zip))
}

fn read_at_most(file: std::fs::File, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
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
        let b = zip_bootstrap(&binary);
        assert_eq!(a, b);
        let other = zip_bootstrap(&binary[1..]);
        assert_ne!(a, other);
        // Not the clock: the entry carries the fixed timestamp (zip's epoch, 1980-01-01
        // 00:00:00), so a zip made at any other moment has the same bytes. (Comparing
        // two zips made a second apart proves nothing: zip times have 2 s steps.)
        let mut archive = zip::ZipArchive::new(Cursor::new(a)).unwrap();
        let entry = archive.by_index(0).unwrap();
        let when = entry.last_modified().expect("a timestamp");
        assert_eq!(
            (when.year(), when.month(), when.day()),
            (1980, 1, 1),
            "{when:?}"
        );
        assert_eq!(
            (when.hour(), when.minute(), when.second()),
            (0, 0, 0),
            "{when:?}"
        );
        assert_eq!(when, DateTime::default());
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
        let p = build(&path, true, crate::config::Arch::X86_64, false).unwrap();
        assert_eq!(
            p.code_sha256(),
            aws_smithy_types::base64::encode(Sha256::digest(p.zip()))
        );
        assert_eq!(p.code_sha256().len(), 44);
    }

    #[test]
    fn lambda_size_limits_are_usage_errors_that_say_what_to_do() {
        let path = Path::new("target/release/handler");
        assert_eq!(MAX_ZIPPED, 52_428_800);
        assert_eq!(MAX_UNZIPPED, 262_144_000);
        assert!(check_zipped(path, MAX_ZIPPED).is_ok());
        assert!(check_unzipped(path, MAX_UNZIPPED).is_ok());

        let err = check_zipped(path, MAX_ZIPPED + 1).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        for part in [
            "target/release/handler",
            "52428801 bytes",
            "50.0 MB",
            "--state-dir s3://BUCKET",
            "--release",
            "strip = true",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }

        let err = check_unzipped(path, 300 * 1024 * 1024).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        for part in [
            "300.0 MB",
            "314572800 bytes",
            "250.0 MB",
            "unzipped",
            "strip = true",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }

    #[test]
    fn build_refuses_a_binary_over_250_mb_without_reading_it() {
        // A sparse file: 250 MB + 1 byte on paper, nothing written to disk.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_UNZIPPED + 1).unwrap();
        let read = std::cell::Cell::new(false);
        let err = build_reading(
            &path,
            true,
            crate::config::Arch::X86_64,
            false,
            |file, limit| {
                read.set(true);
                read_at_most(file, limit)
            },
        )
        .err()
        .unwrap();
        assert!(!read.get(), "the file was read before its size was checked");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("262144001 bytes"), "{err}");
        // A file under the limit is read (the seam is the one `build` uses).
        std::fs::write(&path, b"binary").unwrap();
        build_reading(&path, true, crate::config::Arch::X86_64, false, |f, l| {
            read.set(true);
            read_at_most(f, l)
        })
        .unwrap();
        assert!(read.get());
    }

    #[test]
    fn missing_binary_is_a_usage_error_that_says_how_to_build() {
        let err = build(
            Path::new("/nonexistent/bootstrap"),
            true,
            crate::config::Arch::X86_64,
            false,
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

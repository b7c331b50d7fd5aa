//! Walks files, folders and containers: every file is detected by content and handed to the
//! analyzer for its format; archives and compressed streams are opened (nested up to a depth)
//! and their members walked the same way. Decompression draws on a per-file budget, so a
//! bomb ends in an error instead of filling memory or disk.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::path::Path;
use std::rc::Rc;

use crate::detect::{self, Format, HEAD};
use crate::finding::{FileReport, Finding, ScanError, Severity};
use crate::formats;
use crate::pickle;
use crate::policy::Policy;

/// How far the walker goes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Containers inside containers.
    pub max_depth: u32,
    /// Decompressed bytes read per top-level file, beyond its own size.
    pub max_expanded: u64,
    /// Members per archive.
    pub max_members: u64,
    /// A nested zip is read into memory to be opened: at most this large.
    pub max_nested_archive: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 6,
            max_expanded: 8 << 30,
            max_members: 100_000,
            max_nested_archive: 1 << 30,
        }
    }
}

pub struct Scanner {
    pub policy: Policy,
    pub limits: Limits,
}

/// The state of scanning one top-level file.
struct Walk<'a> {
    scanner: &'a Scanner,
    report: &'a mut FileReport,
    /// Decompressed bytes still allowed (shared with the readers that draw on it).
    budget: Rc<Cell<u64>>,
}

/// A reader that draws on the walk's decompression budget.
struct Budgeted<R> {
    inner: R,
    budget: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let left = self.budget.get();
        if n as u64 > left {
            return Err(io::Error::other(
                "decompressed data exceeds the scanner's limit (a decompression bomb?)",
            ));
        }
        self.budget.set(left - n as u64);
        Ok(n)
    }
}

/// The first [`HEAD`] bytes (fewer if the stream is shorter) and a reader that still yields
/// them.
/// A stream whose first bytes were read to detect its format, then put back in front.
type Replayed<R> = io::Chain<Cursor<Vec<u8>>, R>;

fn peek<R: Read>(mut r: R) -> io::Result<(Vec<u8>, Replayed<R>)> {
    let mut head = Vec::with_capacity(HEAD);
    (&mut r).take(HEAD as u64).read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(r)))
}

impl Scanner {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            limits: Limits::default(),
        }
    }

    /// Scans files and folders (recursively, in name order; symbolic links are reported, not
    /// followed).
    pub fn scan_paths(&self, paths: &[std::path::PathBuf]) -> crate::finding::Report {
        self.scan_paths_with(paths, &mut |_| {})
    }

    /// As [`Scanner::scan_paths`], telling `on_file` about each file as it is done.
    pub fn scan_paths_with(
        &self,
        paths: &[std::path::PathBuf],
        on_file: &mut dyn FnMut(&FileReport),
    ) -> crate::finding::Report {
        let mut report = crate::finding::Report::default();
        for path in paths {
            let before = report.files.len();
            self.scan_path(path, &mut report, 0);
            for f in &report.files[before..] {
                on_file(f);
            }
        }
        report
    }

    fn scan_path(&self, path: &Path, report: &mut crate::finding::Report, depth: u32) {
        let display = path.display().to_string();
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                return report
                    .files
                    .push(unreadable(display, format!("cannot read: {e}")));
            }
        };
        if meta.file_type().is_symlink() && depth > 0 {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            report.files.push(FileReport {
                path: display.clone(),
                formats: vec!["symlink".into()],
                findings: vec![
                    Finding::new(
                        Severity::Medium,
                        "file.symlink",
                        format!(
                            "a symbolic link to '{target}': loaders follow it, the scan does not"
                        ),
                        &display,
                    )
                    .about(target),
                ],
                ..Default::default()
            });
            return;
        }
        if path.is_dir() {
            let mut entries: Vec<_> = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    return report
                        .files
                        .push(unreadable(display, format!("cannot list: {e}")));
                }
            };
            entries.sort();
            for entry in entries {
                self.scan_path(&entry, report, depth + 1);
            }
            return;
        }
        report.files.push(self.scan_file(path, &display));
    }

    /// Scans one file on disk (a top-level zip is opened in place, without copying).
    pub fn scan_file(&self, path: &Path, display: &str) -> FileReport {
        let mut report = FileReport {
            path: display.to_owned(),
            ..Default::default()
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(ScanError {
                    location: display.to_owned(),
                    message: format!("cannot open: {e}"),
                });
                return report;
            }
        };
        report.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut walk = Walk {
            scanner: self,
            budget: Rc::new(Cell::new(
                self.limits.max_expanded.saturating_add(report.size),
            )),
            report: &mut report,
        };
        walk.seekable(file, display, 0);
        report
    }

    /// Scans bytes already in memory (an upload, a test).
    pub fn scan_bytes(&self, bytes: &[u8], display: &str) -> FileReport {
        let mut report = FileReport {
            path: display.to_owned(),
            size: bytes.len() as u64,
            ..Default::default()
        };
        let mut walk = Walk {
            scanner: self,
            budget: Rc::new(Cell::new(
                self.limits.max_expanded.saturating_add(bytes.len() as u64),
            )),
            report: &mut report,
        };
        walk.seekable(Cursor::new(bytes), display, 0);
        report
    }
}

impl Walk<'_> {
    fn error(&mut self, location: &str, message: impl Into<String>) {
        self.report.errors.push(ScanError {
            location: location.to_owned(),
            message: message.into(),
        });
    }

    fn finding(&mut self, f: Finding) {
        self.report.findings.push(f);
    }

    fn format(&mut self, f: &str) {
        if !self.report.formats.iter().any(|x| x == f) {
            self.report.formats.push(f.to_owned());
        }
    }

    /// A stream that can seek (a file, or bytes in memory): zips are opened in place.
    fn seekable<R: Read + Seek>(&mut self, mut r: R, location: &str, depth: u32) {
        let mut head = vec![0u8; HEAD];
        let n = match read_up_to(&mut r, &mut head) {
            Ok(n) => n,
            Err(e) => return self.error(location, format!("read failed: {e}")),
        };
        head.truncate(n);
        if let Err(e) = r.rewind() {
            return self.error(location, format!("read failed: {e}"));
        }
        match detect::detect(&head) {
            Format::Zip => self.zip(r, location, depth),
            Format::SevenZip => self.seven_zip(r, location, depth),
            _ => self.stream(&mut BufReader::new(r), location, depth),
        }
    }

    /// A nested archive that needs to seek, read into memory (up to a limit).
    fn in_memory(&mut self, r: &mut dyn Read, location: &str, what: &str) -> Option<Vec<u8>> {
        let limit = self.scanner.limits.max_nested_archive;
        let mut buf = Vec::new();
        match r.take(limit + 1).read_to_end(&mut buf) {
            Ok(n) if n as u64 > limit => {
                self.error(
                    location,
                    format!("a nested {what} archive larger than {limit} bytes is not opened"),
                );
                None
            }
            Ok(_) => Some(buf),
            Err(e) => {
                self.error(location, format!("read failed: {e}"));
                None
            }
        }
    }

    fn seven_zip<R: Read + Seek>(&mut self, r: R, location: &str, depth: u32) {
        self.format("7z");
        // Dictionaries of up to 256 MiB: what 7-Zip's own presets use at most ("ultra" is 64).
        let mut archive = match sevenz_rust2::ArchiveReader::new_with_memory_limit(
            r,
            sevenz_rust2::Password::empty(),
            256 * 1024,
        ) {
            Ok(a) => a,
            Err(e) => return self.error(location, format!("invalid 7z archive: {e}")),
        };
        let entries = archive.archive().files.len() as u64;
        if entries > self.scanner.limits.max_members {
            return self.error(location, "too many archive members");
        }
        let encrypted =
            (0..archive.archive().files.len()).any(|i| archive.archive().is_file_encrypted(i));
        if encrypted {
            return self.error(
                location,
                "the 7z archive is encrypted: its members cannot be scanned",
            );
        }
        let result = archive.for_each_entries(|entry, reader| {
            if entry.is_directory() || !entry.has_stream() {
                return Ok(true);
            }
            let name = entry.name().to_owned();
            // Unix mode in the high 16 bits (7-Zip's "unix extension" flag 0x8000).
            let attrs = entry.windows_attributes();
            if attrs & 0x8000 != 0 && (attrs >> 16) & 0o170000 == 0o120000 {
                self.archive_link(location, &name);
                return Ok(true);
            }
            if entry.size() > self.budget.get() {
                return Err(sevenz_rust2::Error::Other(
                    "decompressed data exceeds the scanner's limit (a decompression bomb?)".into(),
                ));
            }
            if unsafe_member_name(&name) {
                self.traversal(location, &name);
            }
            let at = format!("{location}!{name}");
            let budget = self.budget.clone();
            self.stream(
                &mut Budgeted {
                    inner: reader,
                    budget,
                },
                &at,
                depth + 1,
            );
            Ok(true)
        });
        if let Err(e) = result {
            self.error(location, format!("7z archive unreadable: {e}"));
        }
    }

    /// Any stream: detect, then analyze or open it.
    fn stream(&mut self, r: &mut dyn Read, location: &str, depth: u32) {
        let (head, mut r) = match peek(r) {
            Ok(p) => p,
            Err(e) => return self.error(location, format!("read failed: {e}")),
        };
        let format = detect::detect(&head);
        if depth > self.scanner.limits.max_depth
            && !matches!(
                format,
                Format::Unknown | Format::Pickle | Format::MaybePickle
            )
        {
            return self.error(
                location,
                format!(
                    "containers nested deeper than {} levels are not opened",
                    self.scanner.limits.max_depth
                ),
            );
        }
        match format {
            Format::Pickle | Format::MaybePickle => {
                self.pickle(BufReader::with_capacity(64 * 1024, r), location, format)
            }
            Format::Zip => {
                if let Some(bytes) = self.in_memory(&mut r, location, "zip") {
                    self.zip(Cursor::new(bytes), location, depth)
                }
            }
            Format::Tar => self.tar(&mut r, location, depth),
            Format::Gzip => {
                let mut d = flate2::read::MultiGzDecoder::new(BufReader::new(r));
                self.decompressed(&mut d, location, "gzip", depth)
            }
            Format::Zlib => {
                let mut d = flate2::read::ZlibDecoder::new(BufReader::new(r));
                self.decompressed(&mut d, location, "zlib", depth)
            }
            Format::Bzip2 => {
                let mut d = bzip2::read::MultiBzDecoder::new(BufReader::new(r));
                self.decompressed(&mut d, location, "bzip2", depth)
            }
            Format::Xz => {
                let mut d = lzma_rust2::XzReader::new(BufReader::new(r), true);
                self.decompressed(&mut d, location, "xz", depth)
            }
            Format::Lzma => {
                // 256 MiB of decoder memory at most, whatever the header asks for.
                match lzma_rust2::LzmaReader::new_mem_limit(BufReader::new(r), 256 * 1024, None) {
                    Ok(mut d) => self.decompressed(&mut d, location, "lzma", depth),
                    Err(e) => self.error(location, format!("invalid lzma stream: {e}")),
                }
            }
            Format::Lz4 => {
                let mut d = lz4_flex::frame::FrameDecoder::new(BufReader::new(r));
                self.decompressed(&mut d, location, "lz4", depth)
            }
            Format::SevenZip => {
                if let Some(bytes) = self.in_memory(&mut r, location, "7z") {
                    self.seven_zip(Cursor::new(bytes), location, depth)
                }
            }
            Format::Npy => self.npy(BufReader::new(r), location),
            Format::Hdf5 => {
                self.format("hdf5");
                let found =
                    formats::keras::scan_hdf5(BufReader::new(r), &self.scanner.policy, location);
                self.apply(found);
            }
            Format::Gguf => {
                self.format("gguf");
                let found = formats::gguf::scan(BufReader::new(r), location);
                self.apply(found);
            }
            Format::Safetensors => {
                self.format("safetensors");
                let found = formats::safetensors::scan(BufReader::new(r), location);
                self.apply(found);
            }
            Format::Unknown => self.unknown(&head, r, location),
        }
    }

    fn apply(&mut self, found: formats::Found) {
        for f in found.findings {
            self.finding(f);
        }
        for e in found.errors {
            self.report.errors.push(e);
        }
    }

    /// No magic bytes: ONNX and SavedModel protobufs and Keras JSON configurations are
    /// recognized by structure; anything else is not a model format.
    fn unknown<R: Read>(&mut self, head: &[u8], r: R, location: &str) {
        if formats::savedmodel::looks_like(head) {
            self.format("tensorflow-savedmodel");
            let found =
                formats::savedmodel::scan(BufReader::new(r), &self.scanner.policy, location);
            self.apply(found);
        } else if formats::onnx::looks_like(head) {
            self.format("onnx");
            let found = formats::onnx::scan(BufReader::new(r), location);
            self.apply(found);
        } else if formats::keras::looks_like_config(head) {
            self.format("keras-config");
            let found =
                formats::keras::scan_config(BufReader::new(r), &self.scanner.policy, location);
            self.apply(found);
        }
    }

    fn decompressed(&mut self, d: &mut dyn Read, location: &str, what: &str, depth: u32) {
        self.format(what);
        let mut inner = Budgeted {
            inner: d,
            budget: self.budget.clone(),
        };
        let inner_location = format!("{location}!{what}");
        self.stream(&mut inner, &inner_location, depth + 1);
    }

    fn pickle<R: BufRead>(&mut self, r: R, location: &str, format: Format) {
        let outcome = pickle::scan(r);
        let is_pickle =
            format == Format::Pickle || outcome.pickles > 0 || !outcome.events.is_empty();
        if !is_pickle {
            return;
        }
        self.format("pickle");
        let findings = pickle::analyze::findings(&outcome, &self.scanner.policy, location);
        for f in findings {
            self.finding(f);
        }
        if let Some(e) = outcome.error {
            self.error(location, e.to_string());
        }
    }

    fn npy<R: BufRead>(&mut self, mut r: R, location: &str) {
        self.format("npy");
        match formats::npy::header(&mut r) {
            Ok(h) if h.object => {
                self.finding(
                    Finding::new(
                        Severity::Medium,
                        "npy.object-array",
                        format!(
                            "an object array (dtype {}): loading it requires allow_pickle=True and unpickles its elements",
                            h.descr
                        ),
                        location,
                    )
                    .at(0),
                );
                let inner = format!("{location}!objects");
                self.pickle(r, &inner, Format::Pickle);
            }
            Ok(_) => {}
            Err(e) => self.error(location, format!("invalid .npy header: {e}")),
        }
    }

    fn tar(&mut self, r: &mut dyn Read, location: &str, depth: u32) {
        self.format("tar");
        let mut archive = tar::Archive::new(r);
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => return self.error(location, format!("invalid tar archive: {e}")),
        };
        let mut count = 0u64;
        for entry in entries {
            count += 1;
            if count > self.scanner.limits.max_members {
                return self.error(location, "too many archive members");
            }
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => return self.error(location, format!("invalid tar archive: {e}")),
            };
            let name = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "<unnamed>".into());
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                self.archive_link(location, &name);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            if unsafe_member_name(&name) {
                self.traversal(location, &name);
            }
            let member = format!("{location}!{name}");
            self.stream(&mut entry, &member, depth + 1);
        }
    }

    fn archive_link(&mut self, location: &str, name: &str) {
        self.finding(
            Finding::new(
                Severity::Medium,
                "archive.link",
                format!("archive member '{name}' is a link: extracting it may touch files outside the archive"),
                location,
            )
            .about(name),
        );
    }

    fn traversal(&mut self, location: &str, name: &str) {
        self.finding(
            Finding::new(
                Severity::High,
                "archive.path-traversal",
                format!("archive member '{name}' would be extracted outside the target folder"),
                location,
            )
            .about(name),
        );
    }

    fn zip<R: Read + Seek>(&mut self, r: R, location: &str, depth: u32) {
        self.format("zip");
        let mut archive = match zip::ZipArchive::new(r) {
            Ok(a) => a,
            Err(e) => return self.error(location, format!("invalid zip archive: {e}")),
        };
        if archive.len() as u64 > self.scanner.limits.max_members {
            return self.error(location, "too many archive members");
        }
        let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
        if let Some(kind) = formats::zip_kind(&names) {
            self.format(kind);
        }
        for i in 0..archive.len() {
            // Raw access: PyTorch's reader ignores CRCs and most flag bits; so do we, and
            // decompress ourselves.
            let mut member = match archive.by_index_raw(i) {
                Ok(m) => m,
                Err(e) => {
                    self.error(location, format!("zip member {i} unreadable: {e}"));
                    continue;
                }
            };
            let name = member.name().to_owned();
            if member.is_dir() {
                continue;
            }
            if member.is_symlink() {
                self.archive_link(location, &name);
                continue;
            }
            if unsafe_member_name(&name) {
                self.traversal(location, &name);
            }
            let at = format!("{location}!{name}");
            match member.compression() {
                zip::CompressionMethod::Stored => self.stream(&mut member, &at, depth + 1),
                zip::CompressionMethod::Deflated => {
                    let d = flate2::read::DeflateDecoder::new(member);
                    let budget = self.budget.clone();
                    self.stream(&mut Budgeted { inner: d, budget }, &at, depth + 1)
                }
                other => self.error(
                    &at,
                    format!("zip compression method {other} is not supported"),
                ),
            }
        }
    }
}

/// The report for a path that could not even be opened.
fn unreadable(path: String, message: String) -> FileReport {
    FileReport {
        errors: vec![ScanError {
            location: path.clone(),
            message,
        }],
        path,
        ..Default::default()
    }
}

/// Whether extracting a member named so would leave the target folder.
fn unsafe_member_name(name: &str) -> bool {
    name.starts_with('/')
        || name.starts_with('\\')
        || name.contains('\0')
        || name.split(['/', '\\']).any(|p| p == "..")
        || name.as_bytes().get(1) == Some(&b':')
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

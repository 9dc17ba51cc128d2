//! Reading an ISO image without mounting it or running xorriso: the ISO 9660 volume
//! descriptors, the Rock Ridge directory tree, the El Torito boot catalog, and the MBR and GPT
//! of the system area. Only headers and directories are read; file data only on request.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const SECTOR: u64 = 2048;
/// Directories larger than this are taken for damage, not read.
const MAX_DIR_BYTES: u64 = 64 << 20;
/// Directory records read in all, and directories nested: more is damage or a crafted image.
const MAX_RECORDS: usize = 1_000_000;
const MAX_DEPTH: usize = 64;
/// A name (NAME_MAX) and a whole path (PATH_MAX), in bytes.
const MAX_NAME: usize = 255;
const MAX_PATH: usize = 4096;
/// Rock Ridge continuation areas one record may chain.
const MAX_CONTINUATIONS: usize = 16;
/// The EFI system partition type GUID as stored on disk.
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an ISO 9660 image: {0}")]
    Format(String),
    /// The image is truncated, or a field points past its end.
    #[error(
        "{what} extends beyond the end of the image (sector {sector}, image has {sectors} sectors)"
    )]
    Beyond {
        what: String,
        sector: u64,
        sectors: u64,
    },
    /// The structure is inconsistent: a loop, too many records, an overlong name, ...
    #[error("damaged image: {0}")]
    Damaged(String),
}

/// A file, directory or symbolic link of the ISO.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute, e.g. `/boot/kernel`.
    pub path: String,
    pub dir: bool,
    pub size: u64,
    /// The target of a symbolic link (Rock Ridge `SL`), as written: `../boot/kernel`, `/x`.
    pub link: Option<String>,
    /// Extents `(first sector, bytes)`: several for files above 4 GiB.
    extents: Vec<(u32, u64)>,
}

/// An El Torito boot entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootEntry {
    /// `BIOS` (0x00), `UEFI` (0xef) or the platform ID in hex.
    pub platform: String,
    pub bootable: bool,
    /// `none` (no emulation) or the emulated floppy / hard disk.
    pub emulation: String,
    pub load_sectors: u16,
    pub lba: u32,
    /// The ISO file at that sector, if any (the EFI image usually lives in partition 2).
    pub file: Option<String>,
}

/// A partition of the MBR or GPT.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Partition {
    pub number: u32,
    /// MBR type in hex, or the GPT type GUID.
    pub kind: String,
    pub name: String,
    pub start_sector: u64,
    pub sectors: u64,
    pub efi_system: bool,
}

/// What the image holds.
pub struct Iso {
    file: File,
    pub label: String,
    pub size: u64,
    pub entries: Vec<Entry>,
    pub boot: Vec<BootEntry>,
    pub mbr: Vec<Partition>,
    /// `true` when the MBR carries boot code (a hybrid image boots from a disk or USB stick).
    pub mbr_boot_code: bool,
    pub gpt: Vec<Partition>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What a directory walk has spent: every directory extent is read once, and the bytes read
/// (directories and Rock Ridge continuation areas) cannot exceed the image, since on an
/// intact image they do not overlap.
struct Walk {
    /// The path of the directory at each extent read.
    visited: HashMap<u32, String>,
    records: usize,
    budget: u64,
}

impl Walk {
    fn spend(&mut self, bytes: u64) -> Result<(), ReadError> {
        self.budget = self.budget.checked_sub(bytes).ok_or_else(|| {
            ReadError::Damaged(
                "directories and Rock Ridge continuation areas add up to more than the image: \
                 they overlap"
                    .into(),
            )
        })?;
        Ok(())
    }
}

/// What the Rock Ridge entries of a record say.
struct RockRidge {
    name: Option<String>,
    link: Option<String>,
}

/// A symbolic link target read from `SL` entries: component records (flags, length, content),
/// a component continuing in the next record when its flag 0x01 is set; 0x02 is `.`, 0x04
/// `..`, 0x08 the root.
#[derive(Default)]
struct Link {
    target: Vec<u8>,
    /// Whether the last component continues in the next record.
    open: bool,
}

impl Link {
    /// Add the component records of one `SL` entry (its bytes after the flags byte).
    fn extend(&mut self, mut records: &[u8]) {
        while let [flags, len, rest @ ..] = records {
            let (content, after) = rest.split_at((*len as usize).min(rest.len()));
            if !self.open && !self.target.is_empty() && !self.target.ends_with(b"/") {
                self.target.push(b'/');
            }
            match flags & 0x0e {
                0x02 => self.target.push(b'.'),
                0x04 => self.target.extend_from_slice(b".."),
                0x08 => self.target = b"/".to_vec(),
                _ => self.target.extend_from_slice(content),
            }
            self.open = flags & 0x01 != 0;
            records = after;
        }
    }
}

impl Iso {
    /// Read the image at `path`, a regular file ([`crate::limits::open`]).
    pub fn open(path: &Path) -> Result<Iso, ReadError> {
        let file = crate::limits::open(path)?;
        let size = file.metadata()?.len();
        let mut iso = Iso {
            file,
            label: String::new(),
            size,
            entries: Vec::new(),
            boot: Vec::new(),
            mbr: Vec::new(),
            mbr_boot_code: false,
            gpt: Vec::new(),
        };
        let mut label = None;
        let mut root = None;
        let mut volume_sectors = 0;
        let mut catalog = None;
        for sector in 16..64 {
            let vd = iso.read_at(
                &format!("the volume descriptor at sector {sector}"),
                sector * SECTOR,
                2048,
            )?;
            if &vd[1..6] != b"CD001" {
                return Err(ReadError::Format(format!(
                    "no volume descriptor at sector {sector}"
                )));
            }
            match vd[0] {
                0 if vd[7..30].starts_with(b"EL TORITO SPECIFICATION") => {
                    catalog = Some(le32(&vd, 71))
                }
                1 => {
                    label = Some(String::from_utf8_lossy(&vd[40..72]).trim_end().to_string());
                    root = Some(vd[156..190].to_vec());
                    volume_sectors = le32(&vd, 80);
                }
                255 => break,
                _ => {}
            }
        }
        let (Some(label), Some(root)) = (label, root) else {
            return Err(ReadError::Format("no primary volume descriptor".into()));
        };
        iso.label = label;
        let root_extent = (le32(&root, 2), u64::from(le32(&root, 10)));
        let mut walk = Walk {
            visited: HashMap::from([(root_extent.0, "/".to_string())]),
            records: 0,
            budget: size,
        };
        iso.walk(&mut walk, "", root_extent, 0)?;
        iso.entries.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(catalog) = catalog {
            iso.boot = iso.catalog(catalog)?;
        }
        iso.system_area()?;
        iso.within("the ISO 9660 volume", 0, u64::from(volume_sectors) * SECTOR)?;
        Ok(iso)
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The whole content of the file at `path`, refused above `max` bytes; `None` when there
    /// is no file there (nothing, a directory or a link).
    pub fn read(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(entry) = self
            .get(path)
            .filter(|e| !e.dir && e.link.is_none())
            .cloned()
        else {
            return Ok(None);
        };
        if entry.size > max {
            return Err(ReadError::Damaged(format!(
                "{path} holds {} bytes, more than the {max} expected",
                entry.size
            )));
        }
        let mut data = Vec::with_capacity(entry.size as usize);
        for (lba, len) in &entry.extents {
            data.extend(self.read_at(path, u64::from(*lba) * SECTOR, *len as usize)?);
        }
        Ok(Some(data))
    }

    /// `Beyond` unless `len` bytes at `offset` lie within the image.
    fn within(&self, what: &str, offset: u64, len: u64) -> Result<(), ReadError> {
        let end = offset.saturating_add(len);
        if end <= self.size {
            return Ok(());
        }
        Err(ReadError::Beyond {
            what: what.to_string(),
            sector: (end - 1) / SECTOR,
            sectors: self.size / SECTOR,
        })
    }

    /// `len` bytes at `offset`, checked against the image's size before anything is allocated.
    fn read_at(&mut self, what: &str, offset: u64, len: usize) -> Result<Vec<u8>, ReadError> {
        self.within(what, offset, len as u64)?;
        let mut buf = vec![0; len];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn walk(
        &mut self,
        walk: &mut Walk,
        dir: &str,
        (lba, len): (u32, u64),
        depth: usize,
    ) -> Result<(), ReadError> {
        if depth > MAX_DEPTH {
            return Err(ReadError::Damaged(format!(
                "directories nested more than {MAX_DEPTH} deep at {dir}"
            )));
        }
        let what = format!("directory {dir}/");
        if len > MAX_DIR_BYTES {
            return Err(ReadError::Damaged(format!("{what} claims {len} bytes")));
        }
        let data = self.read_at(&what, u64::from(lba) * SECTOR, len as usize)?;
        walk.spend(len)?;
        let mut at = 0;
        let mut children: Vec<Entry> = Vec::new();
        while at < data.len() {
            let rec_len = data[at] as usize;
            if rec_len == 0 {
                // Records do not cross sectors: continue at the next one.
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let record = &data[at..(at + rec_len).min(data.len())];
            at += rec_len;
            if record.len() < 34 {
                break;
            }
            walk.records += 1;
            if walk.records > MAX_RECORDS {
                return Err(ReadError::Damaged(format!(
                    "more than {MAX_RECORDS} directory records (at {dir}/)"
                )));
            }
            let name_len = record[32] as usize;
            let Some(raw_name) = record.get(33..33 + name_len) else {
                return Err(ReadError::Damaged(format!(
                    "a record in {dir}/ is shorter than its name"
                )));
            };
            if raw_name == [0] || raw_name == [1] {
                continue;
            }
            let system_use = &record[(33 + name_len + (1 - name_len % 2)).min(record.len())..];
            let rock_ridge = self.rock_ridge(walk, dir, system_use)?;
            let name = rock_ridge.name.unwrap_or_else(|| {
                let n = String::from_utf8_lossy(raw_name);
                n.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('.')
                    .to_lowercase()
            });
            let path = format!("{dir}/{name}");
            if path.len() > MAX_PATH {
                return Err(ReadError::Damaged(format!(
                    "a path in {dir}/ is longer than {MAX_PATH} bytes"
                )));
            }
            let extent = (le32(record, 2), u64::from(le32(record, 10)));
            let is_dir = record[25] & 2 != 0;
            if !is_dir && extent.1 > 0 {
                self.within(&path, u64::from(extent.0) * SECTOR, extent.1)?;
            }
            // A file above 4 GiB is several records of the same name (flag 0x80 on all but the last).
            if let Some(last) = children.last_mut().filter(|c| c.path == path && !c.dir) {
                last.extents.push(extent);
                last.size += extent.1;
                continue;
            }
            children.push(Entry {
                path,
                dir: is_dir,
                size: if is_dir { 0 } else { extent.1 },
                link: rock_ridge.link.filter(|_| !is_dir),
                extents: vec![extent],
            });
        }
        for child in children {
            if child.dir {
                let (path, extent) = (child.path.clone(), child.extents[0]);
                if let Some(first) = walk.visited.insert(extent.0, path.clone()) {
                    return Err(ReadError::Damaged(format!(
                        "directory {path}/ is the directory {first} again (sector {}): a loop or a shared directory",
                        extent.0
                    )));
                }
                self.entries.push(child);
                self.walk(walk, &path, extent, depth + 1)?;
            } else {
                self.entries.push(child);
            }
        }
        Ok(())
    }

    /// The Rock Ridge `NM` name and `SL` link target in a system use area of a record in
    /// `dir`, following `CE` continuations.
    fn rock_ridge(
        &mut self,
        walk: &mut Walk,
        dir: &str,
        area: &[u8],
    ) -> Result<RockRidge, ReadError> {
        let mut name: Option<Vec<u8>> = None;
        let mut link: Option<Link> = None;
        let mut area = area.to_vec();
        for continuation in 0..=MAX_CONTINUATIONS {
            let mut next = None;
            let mut at = 0;
            while at + 4 <= area.len() {
                let (sig, len) = (&area[at..at + 2], area[at + 2] as usize);
                if len < 4 || at + len > area.len() {
                    break;
                }
                let body = &area[at..at + len];
                match sig {
                    b"NM" if len >= 5 => {
                        let name = name.get_or_insert_with(Vec::new);
                        name.extend_from_slice(&body[5..]);
                        if name.len() > MAX_NAME {
                            return Err(ReadError::Damaged(format!(
                                "a Rock Ridge name in {dir}/ is longer than {MAX_NAME} bytes"
                            )));
                        }
                    }
                    b"SL" if len >= 5 => {
                        let link = link.get_or_insert_with(Link::default);
                        link.extend(&body[5..]);
                        if link.target.len() > MAX_PATH {
                            return Err(ReadError::Damaged(format!(
                                "a Rock Ridge link in {dir}/ is longer than {MAX_PATH} bytes"
                            )));
                        }
                    }
                    b"CE" if len >= 28 => {
                        next = Some((le32(body, 4), le32(body, 12), le32(body, 20)));
                    }
                    b"ST" => break,
                    _ => {}
                }
                at += len;
            }
            let Some((block, offset, length)) = next else {
                break;
            };
            let what = format!("a Rock Ridge continuation area in {dir}/");
            if continuation == MAX_CONTINUATIONS {
                return Err(ReadError::Damaged(format!(
                    "{what} chains more than {MAX_CONTINUATIONS} times"
                )));
            }
            // A continuation area lies within one sector.
            if u64::from(offset) + u64::from(length) > SECTOR {
                return Err(ReadError::Damaged(format!(
                    "{what} crosses its sector ({length} bytes at offset {offset})"
                )));
            }
            area = self.read_at(
                &what,
                u64::from(block) * SECTOR + u64::from(offset),
                length as usize,
            )?;
            walk.spend(u64::from(length))?;
        }
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        Ok(RockRidge {
            name: name.map(text),
            link: link.map(|l| text(l.target)),
        })
    }

    fn catalog(&mut self, lba: u32) -> Result<Vec<BootEntry>, ReadError> {
        let data = self.read_at(
            "the El Torito boot catalog",
            u64::from(lba) * SECTOR,
            SECTOR as usize,
        )?;
        if data[0] != 1 || data[30..32] != [0x55, 0xaa] {
            return Err(ReadError::Damaged(
                "the El Torito boot catalog has no validation entry".into(),
            ));
        }
        let mut platform = data[1];
        let mut entries = Vec::new();
        let mut at = 32;
        while at + 32 <= data.len() {
            let e = &data[at..at + 32];
            at += 32;
            match e[0] {
                // An entry: bootable (0x88) or not (0x00); all zeros ends the catalog.
                0x88 | 0x00 if e.iter().any(|b| *b != 0) => {
                    let lba = le32(e, 8);
                    let platform = match platform {
                        0x00 => "BIOS".into(),
                        0xef => "UEFI".into(),
                        p => format!("0x{p:02x}"),
                    };
                    // Sectors of 512 bytes are loaded; at least one is read.
                    let load_sectors = u16::from_le_bytes([e[6], e[7]]);
                    self.within(
                        &format!("the El Torito {platform} boot image"),
                        u64::from(lba) * SECTOR,
                        u64::from(load_sectors.max(1)) * 512,
                    )?;
                    entries.push(BootEntry {
                        platform,
                        bootable: e[0] == 0x88,
                        emulation: match e[1] & 0x0f {
                            0 => "none".into(),
                            4 => "hard disk".into(),
                            _ => "floppy".into(),
                        },
                        load_sectors,
                        lba,
                        file: self
                            .entries
                            .iter()
                            .find(|f| !f.dir && f.extents[0].0 == lba)
                            .map(|f| f.path.clone()),
                    });
                }
                0x90 | 0x91 => platform = e[1],
                _ => break,
            }
        }
        Ok(entries)
    }

    fn system_area(&mut self) -> Result<(), ReadError> {
        let mbr = self.read_at("the MBR", 0, 512)?;
        if mbr[510..512] == [0x55, 0xaa] {
            self.mbr_boot_code = mbr[..440].iter().any(|b| *b != 0);
            for i in 0..4 {
                let p = &mbr[446 + 16 * i..462 + 16 * i];
                if p[4] != 0 {
                    self.mbr.push(Partition {
                        number: i as u32 + 1,
                        kind: format!("0x{:02x}", p[4]),
                        name: String::new(),
                        start_sector: u64::from(le32(p, 8)),
                        sectors: u64::from(le32(p, 12)),
                        efi_system: p[4] == 0xef,
                    });
                }
            }
        }
        let header = self.read_at("the GPT header", 512, 92)?;
        if &header[..8] != b"EFI PART" {
            return Ok(());
        }
        self.within(
            "the backup GPT header",
            le64(&header, 32).saturating_mul(512),
            512,
        )?;
        let (table, count, size) = (
            le64(&header, 72),
            le32(&header, 80),
            le32(&header, 84) as usize,
        );
        if !(128..=4096).contains(&size) || count > 1024 {
            return Err(ReadError::Damaged("malformed GPT header".into()));
        }
        let entries = self.read_at(
            "the GPT partition table",
            table.saturating_mul(512),
            count as usize * size,
        )?;
        for (i, e) in entries.chunks(size).enumerate() {
            if e[..16].iter().all(|b| *b == 0) {
                continue;
            }
            let name: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|c| *c != 0)
                .collect();
            let (first, last) = (le64(e, 32), le64(e, 40));
            let partition = Partition {
                number: i as u32 + 1,
                kind: guid(&e[..16]),
                name: String::from_utf16_lossy(&name),
                start_sector: first,
                sectors: last.saturating_add(1).saturating_sub(first),
                efi_system: e[..16] == ESP_TYPE,
            };
            self.within(
                &format!("GPT partition {}", partition.number),
                first.saturating_mul(512),
                partition.sectors.saturating_mul(512),
            )?;
            self.gpt.push(partition);
        }
        Ok(())
    }
}

/// A GUID in its usual text form (the first three fields are little-endian on disk).
fn guid(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{}-{}",
        le32(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
    .to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::{guid, Iso, ReadError};

    #[test]
    fn damaged_or_foreign_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.iso");
        std::fs::write(&short, vec![0u8; 1000]).unwrap();
        assert_eq!(
            Iso::open(&short).err().map(|e| e.to_string()).as_deref(),
            Some("the volume descriptor at sector 16 extends beyond the end of the image (sector 16, image has 0 sectors)")
        );
        let zeros = dir.path().join("zeros.iso");
        std::fs::write(&zeros, vec![0u8; 64 * 2048]).unwrap();
        assert!(
            matches!(Iso::open(&zeros), Err(ReadError::Format(m)) if m.contains("no volume descriptor"))
        );
    }

    #[test]
    fn guids_read_mixed_endian() {
        assert_eq!(
            guid(&super::ESP_TYPE),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
    }
}

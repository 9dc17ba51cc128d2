//! A read-only FAT12/16/32 reader for the ISO's EFI system partition: its label and its files
//! (long names included), so that `forge inspect` can name the UEFI boot chain. The partition
//! is small (megabytes) and is read whole, within a bound; every cluster chain and directory
//! is bounded too, so a corrupt or hostile image ends in an error, not a loop.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

/// The largest ESP read.
const MAX_BYTES: u64 = 64 << 20;
/// Directory levels followed.
const MAX_DEPTH: usize = 8;
/// Entries listed in all.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("the EFI system partition is {0} bytes; forge reads at most 64 MiB")]
    TooLarge(u64),
    #[error("the EFI system partition is not a FAT file system ({0})")]
    Malformed(&'static str),
    #[error("reading the EFI system partition: {0}")]
    Io(#[from] std::io::Error),
}

/// A FAT file system in memory.
pub struct Fat {
    data: Vec<u8>,
    bytes_per_sector: usize,
    sectors_per_cluster: usize,
    fat_start: usize,
    root: Root,
    first_data: usize,
    kind: Kind,
    clusters: u32,
    pub label: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// Where the root directory is: a fixed region (FAT12/16) or a cluster chain (FAT32).
enum Root {
    Region { start: usize, entries: usize },
    Chain(u32),
}

/// A file of the file system: its path from the root (`EFI/BOOT/bootx64.efi`), size and
/// first cluster.
#[derive(Debug, Clone)]
pub struct FatFile {
    pub path: String,
    pub size: u64,
    cluster: u32,
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Fat {
    /// Read `length` bytes at `offset` of `path` as a FAT file system.
    pub fn open(path: &Path, offset: u64, length: u64) -> Result<Fat, FatError> {
        if length > MAX_BYTES {
            return Err(FatError::TooLarge(length));
        }
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut data = Vec::new();
        file.take(length).read_to_end(&mut data)?;
        Fat::parse(data)
    }

    fn parse(data: Vec<u8>) -> Result<Fat, FatError> {
        if data.len() < 512 || data[510..512] != [0x55, 0xAA] {
            return Err(FatError::Malformed("no boot sector signature"));
        }
        let bytes_per_sector = le16(&data, 11);
        let sectors_per_cluster = usize::from(data[13]);
        let reserved = le16(&data, 14);
        let fats = usize::from(data[16]);
        let root_entries = le16(&data, 17);
        let total = match le16(&data, 19) {
            0 => le32(&data, 32) as usize,
            n => n,
        };
        let fat_size = match le16(&data, 22) {
            0 => le32(&data, 36) as usize,
            n => n,
        };
        if !bytes_per_sector.is_power_of_two()
            || !(512..=4096).contains(&bytes_per_sector)
            || sectors_per_cluster == 0
            || fats == 0
            || fat_size == 0
        {
            return Err(FatError::Malformed("an impossible BIOS parameter block"));
        }
        let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let first_data = reserved + fats * fat_size + root_sectors;
        let clusters = total.saturating_sub(first_data) / sectors_per_cluster;
        let kind = match clusters {
            0..4085 => Kind::Fat12,
            4085..65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        let (root, label_at) = match kind {
            Kind::Fat32 => (Root::Chain(le32(&data, 44)), 71),
            _ => (
                Root::Region {
                    start: (reserved + fats * fat_size) * bytes_per_sector,
                    entries: root_entries,
                },
                43,
            ),
        };
        let label = String::from_utf8_lossy(&data[label_at..label_at + 11])
            .trim_end()
            .to_string();
        Ok(Fat {
            data,
            bytes_per_sector,
            sectors_per_cluster,
            fat_start: reserved * bytes_per_sector,
            root,
            first_data,
            kind,
            clusters: u32::try_from(clusters).unwrap_or(u32::MAX),
            label,
        })
    }

    /// The next cluster of a chain, `None` at its end (or on a bad value).
    fn next(&self, cluster: u32) -> Option<u32> {
        let n = cluster as usize;
        let (value, end) = match self.kind {
            Kind::Fat12 => {
                let raw = le16(self.data.get(self.fat_start + n + n / 2..)?, 0) as u32;
                (if n % 2 == 1 { raw >> 4 } else { raw & 0xFFF }, 0xFF8)
            }
            Kind::Fat16 => (
                le16(self.data.get(self.fat_start + 2 * n..)?, 0) as u32,
                0xFFF8,
            ),
            Kind::Fat32 => (
                le32(self.data.get(self.fat_start + 4 * n..)?, 0) & 0x0FFF_FFFF,
                0x0FFF_FFF8,
            ),
        };
        (value >= 2 && value < end && value <= self.clusters + 1).then_some(value)
    }

    /// The bytes of a cluster chain, at most `limit`.
    fn chain(&self, first: u32, limit: usize) -> Vec<u8> {
        let size = self.sectors_per_cluster * self.bytes_per_sector;
        let mut out = Vec::new();
        let mut cluster = Some(first).filter(|c| *c >= 2);
        let mut hops = 0;
        while let Some(c) = cluster {
            let start = (self.first_data + (c as usize - 2) * self.sectors_per_cluster)
                * self.bytes_per_sector;
            let Some(bytes) = self.data.get(start..start + size) else {
                break;
            };
            out.extend_from_slice(bytes);
            hops += 1;
            if out.len() >= limit || hops > self.clusters as usize {
                break;
            }
            cluster = self.next(c);
        }
        out.truncate(limit);
        out
    }

    /// Every file, depth first, paths from the root.
    pub fn files(&self) -> Vec<FatFile> {
        let mut files = Vec::new();
        let root = match self.root {
            Root::Region { start, entries } => self
                .data
                .get(start..start + entries * 32)
                .unwrap_or_default()
                .to_vec(),
            Root::Chain(first) => self.chain(first, MAX_ENTRIES * 32),
        };
        self.walk(&root, "", 0, &mut files);
        files
    }

    fn walk(&self, dir: &[u8], prefix: &str, depth: usize, files: &mut Vec<FatFile>) {
        let mut long: Vec<(u8, String)> = Vec::new();
        for entry in dir.chunks_exact(32) {
            if files.len() >= MAX_ENTRIES || entry[0] == 0 {
                return;
            }
            let attr = entry[11];
            if entry[0] == 0xE5 {
                long.clear();
                continue;
            }
            if attr == 0x0F {
                let units: Vec<u16> = [1..11, 14..26, 28..32]
                    .into_iter()
                    .flat_map(|r| {
                        entry[r]
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    })
                    .take_while(|u| *u != 0 && *u != 0xFFFF)
                    .collect();
                long.push((entry[0] & 0x1F, String::from_utf16_lossy(&units)));
                continue;
            }
            let name = if long.is_empty() {
                short_name(entry)
            } else {
                long.sort_by_key(|(seq, _)| *seq);
                long.drain(..).map(|(_, part)| part).collect()
            };
            if attr & 0x08 != 0 || name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            let cluster = (le16(entry, 20) << 16 | le16(entry, 26)) as u32;
            if attr & 0x10 != 0 {
                if depth < MAX_DEPTH {
                    let sub = self.chain(cluster, MAX_ENTRIES * 32);
                    self.walk(&sub, &format!("{path}/"), depth + 1, files);
                }
            } else {
                files.push(FatFile {
                    path,
                    size: u64::from(le32(entry, 28)),
                    cluster,
                });
            }
        }
    }

    /// The first `limit` bytes of a file.
    pub fn read(&self, file: &FatFile, limit: usize) -> Vec<u8> {
        self.chain(file.cluster, limit.min(file.size as usize))
    }
}

/// An 8.3 name as `NAME.EXT`, with the lower-case flags Windows and mtools set (byte 12).
fn short_name(entry: &[u8]) -> String {
    let part = |b: &[u8], lower: bool| {
        let text = String::from_utf8_lossy(b).trim_end().to_string();
        if lower {
            text.to_ascii_lowercase()
        } else {
            text
        }
    };
    let (name, ext) = (
        part(&entry[0..8], entry[12] & 0x08 != 0),
        part(&entry[8..11], entry[12] & 0x10 != 0),
    );
    if ext.is_empty() {
        name
    } else {
        format!("{name}.{ext}")
    }
}

/// Whether a PE image carries an Authenticode signature (a certificate table).
pub fn is_signed(pe: &[u8]) -> bool {
    let Some(at) = pe.get(0x3C..0x40).map(|b| le32(b, 0) as usize) else {
        return false;
    };
    if pe.get(at..at + 4) != Some(b"PE\0\0") {
        return false;
    }
    let optional = at + 24;
    // The data directories follow the optional header's fixed part: 96 bytes for PE32,
    // 112 for PE32+; the certificate table is the fifth entry.
    let fixed = match pe.get(optional..optional + 2) {
        Some([0x0B, 0x01]) => 96,
        Some([0x0B, 0x02]) => 112,
        _ => return false,
    };
    let entry = optional + fixed + 4 * 8;
    pe.get(entry..entry + 8)
        .is_some_and(|d| le32(d, 0) != 0 && le32(d, 4) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_partition_is_an_error() {
        assert!(matches!(
            Fat::parse(vec![0; 4096]),
            Err(FatError::Malformed(_))
        ));
    }

    #[test]
    fn unsigned_and_truncated_pe_images_are_not_signed() {
        assert!(!is_signed(b"MZ"));
        let mut pe = vec![0u8; 512];
        pe[0x3C] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x98..0x9A].copy_from_slice(&[0x0B, 0x02]);
        assert!(!is_signed(&pe));
        let entry = 0x98 + 112 + 32;
        pe[entry..entry + 4].copy_from_slice(&0x100u32.to_le_bytes());
        pe[entry + 4..entry + 8].copy_from_slice(&0x40u32.to_le_bytes());
        assert!(is_signed(&pe));
    }
}

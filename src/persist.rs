//! The state file of a room (`waiting_room_zone ... state=FILE`): the room's image
//! ([`crate::core::image`]) saved about once a second and at a graceful stop, so that a
//! restart, or a binary upgrade, finds everyone where they were.
//!
//! ```text
//! page 0: FileHead (magic, format, the room's and the secret's tags, the two slots' records,
//!         the owner, the save under way)  | slot 0: an image | slot 1: an image
//! ```
//!
//! A save writes the slot that is not current, then its length, time and SHA-256, then makes it
//! current: a save cut short (a crash, a full disk) leaves the previous image current and whole.
//! Reading takes the current slot, or the other when the current one does not match its digest.
//!
//! The master opens the file (mode 0600) and maps it shared (`memmap2`); the workers inherit the
//! mapping and write the images through it, under the zone's lock, so they need no permission
//! on the file. The file head's fields are atomics: the master of a binary upgrade reads them
//! while the running room's workers write them. Images are read back with `pread`, never
//! through the mapping, so a reader never races a writer in this process's memory.
//!
//! Nothing here calls nginx: errors are returned, and the caller logs them.

use core::fmt;
use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};
use sha2::{Digest, Sha256};

const FILE_MAGIC: u64 = u64::from_le_bytes(*b"ngxWRsta");
/// Bump whenever [`FileHead`] changes.
pub const FILE_FORMAT: u64 = 1;
const HEAD_LEN: u64 = 4096;
const NO_SLOT: u64 = u64::MAX;
/// A save under way for longer than this was cut short (its worker died): another may start.
const SAVE_STALE_MS: u64 = 10_000;
/// The room is saved at most this often (by whichever worker comes first).
const SAVE_EVERY_MS: u64 = 900;
/// An image claiming more than this is damaged (it would not fit any zone).
const IMAGE_MAX: u64 = 1 << 36;
/// An owner that has not saved for this long is no longer running the room.
pub const OWNER_STALE_MS: u64 = 3_000;

#[repr(C)]
struct SlotMeta {
    seq: AtomicU64,
    len: AtomicU64,
    saved_mono: AtomicU64,
    saved_wall_ms: AtomicU64,
    digest: [AtomicU64; 4],
}

/// The file's first page. Every field is an atomic: processes of two masters may read and
/// write it at once.
#[repr(C)]
struct FileHead {
    magic: AtomicU64,
    format: AtomicU64,
    room_tag: AtomicU64,
    secret_tag: AtomicU64,
    slot_len: AtomicU64,
    current: AtomicU64,
    /// The master whose workers run the room and save it, and when it last saved (wall ms).
    owner_pid: AtomicU64,
    beat_wall_ms: AtomicU64,
    /// Non-zero once the owner stopped after its last save.
    released: AtomicU64,
    /// A save under way: by which process, since when (wall ms); 0 when none.
    saving_pid: AtomicU64,
    saving_since: AtomicU64,
    /// The settings stamp of the newest configuration that saved: an older configuration's
    /// workers (still finishing after a reload) no longer save.
    saver_stamp: AtomicU64,
    slots: [SlotMeta; 2],
}

const _: () = assert!(size_of::<FileHead>() as u64 <= HEAD_LEN);

/// Who a state file belongs to: the room's name, and the secret that signs its cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tags {
    pub room: u64,
    /// 0 for a room without a configured secret.
    pub secret: u64,
}

/// A tag for a secret, that says nothing about it.
pub fn secret_tag(secret: &[u8]) -> u64 {
    let d = Sha256::digest([b"waiting_room state file:".as_slice(), secret].concat());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]).max(1)
}

/// Who runs the room, as the file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u64,
    pub beat_wall_ms: u64,
    pub released: bool,
}

impl Owner {
    /// Whether the owner still runs the room, seen by `me` at `now_wall_ms`: it has not
    /// released it, saved a moment ago, and its process exists.
    pub fn running(&self, me: u64, now_wall_ms: u64) -> bool {
        self.pid != 0
            && self.pid != me
            && !self.released
            && now_wall_ms.abs_diff(self.beat_wall_ms) < OWNER_STALE_MS
            && alive(self.pid)
    }
}

/// Whether process `pid` exists and is not a zombie (killed, not yet reaped by its parent).
fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// An image read from a state file.
pub struct Saved {
    pub image: Vec<u8>,
    /// The saving process's monotonic clock when the image was taken.
    pub saved_mono: u64,
    pub saved_wall_ms: u64,
    pub owner: Owner,
}

/// Why a state file's content was not taken.
#[derive(Debug)]
pub enum Refused {
    Io(io::Error),
    NotAStateFile,
    OtherFormat(u64),
    OtherRoom,
    OtherSecret,
    Truncated,
    Damaged,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Io(e) => write!(f, "it cannot be read ({})", os_error(e)),
            Refused::NotAStateFile => f.write_str("it is not a waiting room state file"),
            Refused::OtherFormat(v) => {
                write!(f, "it has format {v}, this module reads format {FILE_FORMAT}")
            }
            Refused::OtherRoom => f.write_str("it was saved by another room"),
            Refused::OtherSecret => {
                f.write_str("it was saved with another waiting_room_secret, or with none")
            }
            Refused::Truncated => f.write_str("it is truncated"),
            Refused::Damaged => f.write_str("its content does not match its checksum"),
        }
    }
}

/// An I/O error as nginx writes one: "2: No such file or directory".
pub fn os_error(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => {
            let msg = text.split(" (os error").next().unwrap_or(&text);
            format!("{code}: {msg}")
        }
        None => text,
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Offsets of the file head's fields, for reading it from bytes (`pread`) rather than a
/// mapping.
mod at {
    pub const MAGIC: usize = 0;
    pub const FORMAT: usize = 8;
    pub const ROOM: usize = 16;
    pub const SECRET: usize = 24;
    pub const SLOT_LEN: usize = 32;
    pub const CURRENT: usize = 40;
    pub const OWNER: usize = 48;
    pub const BEAT: usize = 56;
    pub const RELEASED: usize = 64;
    pub const SLOTS: usize = 96;
    pub const SLOT_META: usize = 64;
}

fn digest(bytes: &[u8]) -> [u64; 4] {
    let d = Sha256::digest(bytes);
    let mut out = [0u64; 4];
    for (i, o) in out.iter_mut().enumerate() {
        *o = read_u64(&d, i * 8);
    }
    out
}

/// Reads the newest whole image in the state file at `path`: `Ok(None)` when there is no file
/// or it holds no image yet; `Err` when it holds something this room must not take.
pub fn read(path: &Path, tags: Tags) -> Result<Option<Saved>, Refused> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Refused::Io(e)),
    };
    read_file(&file, tags)
}

fn read_file(file: &File, tags: Tags) -> Result<Option<Saved>, Refused> {
    let file_len = file.metadata().map_err(Refused::Io)?.len();
    if file_len == 0 {
        return Ok(None);
    }
    let mut head = vec![0u8; file_len.min(HEAD_LEN) as usize];
    file.read_exact_at(&mut head, 0).map_err(Refused::Io)?;
    if head.len() < 8 || read_u64(&head, at::MAGIC) != FILE_MAGIC {
        return Err(Refused::NotAStateFile);
    }
    if file_len < HEAD_LEN {
        return Err(Refused::Truncated);
    }
    let format = read_u64(&head, at::FORMAT);
    if format != FILE_FORMAT {
        return Err(Refused::OtherFormat(format));
    }
    if read_u64(&head, at::ROOM) != tags.room {
        return Err(Refused::OtherRoom);
    }
    if read_u64(&head, at::SECRET) != tags.secret {
        return Err(Refused::OtherSecret);
    }
    let slot_len = read_u64(&head, at::SLOT_LEN);
    let current = read_u64(&head, at::CURRENT);
    if current == NO_SLOT {
        return Ok(None);
    }
    if current > 1 || slot_len == 0 {
        return Err(Refused::Damaged);
    }
    if file_len < HEAD_LEN.saturating_add(slot_len.saturating_mul(2)) {
        return Err(Refused::Truncated);
    }
    let owner = Owner {
        pid: read_u64(&head, at::OWNER),
        beat_wall_ms: read_u64(&head, at::BEAT),
        released: read_u64(&head, at::RELEASED) != 0,
    };
    // The current slot, or else the other one if it is whole (a save cut short).
    let mut first_error = None;
    for slot in [current, 1 - current] {
        let meta = at::SLOTS + slot as usize * at::SLOT_META;
        let (seq, len) = (read_u64(&head, meta), read_u64(&head, meta + 8));
        if seq == 0 || len > slot_len || len > IMAGE_MAX {
            first_error.get_or_insert(Refused::Damaged);
            continue;
        }
        let mut image = vec![0u8; len as usize];
        let off = HEAD_LEN + slot * slot_len;
        if let Err(e) = file.read_exact_at(&mut image, off) {
            first_error.get_or_insert(Refused::Io(e));
            continue;
        }
        let want = [0, 1, 2, 3].map(|i| read_u64(&head, meta + 32 + i * 8));
        if digest(&image) != want {
            first_error.get_or_insert(Refused::Damaged);
            continue;
        }
        return Ok(Some(Saved {
            image,
            saved_mono: read_u64(&head, meta + 16),
            saved_wall_ms: read_u64(&head, meta + 24),
            owner,
        }));
    }
    Err(first_error.unwrap_or(Refused::Damaged))
}

/// Who the state file at `path` says runs its room, read from its head whatever else it holds
/// (so that a file this nginx refuses is not taken from one that still uses it).
pub fn owner_at(path: &Path) -> Option<Owner> {
    let file = File::open(path).ok()?;
    let mut head = vec![0u8; HEAD_LEN as usize];
    file.read_exact_at(&mut head, 0).ok()?;
    (read_u64(&head, at::MAGIC) == FILE_MAGIC).then(|| Owner {
        pid: read_u64(&head, at::OWNER),
        beat_wall_ms: read_u64(&head, at::BEAT),
        released: read_u64(&head, at::RELEASED) != 0,
    })
}

/// Moves a refused state file aside (`FILE.refused`), so that the room can start with a new
/// one and the old is kept for a look. Returns where it went.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut to = path.as_os_str().to_owned();
    to.push(".refused");
    let to = PathBuf::from(to);
    std::fs::rename(path, &to)?;
    Ok(to)
}

/// Maps the file's head page, shared.
fn map_head(file: &File) -> io::Result<MmapMut> {
    // SAFETY: a shared mapping of the room's own file, as everyone who maps it means it to be;
    // it is only reached through `StateFile::head`, which checks that the file still covers it.
    unsafe { MmapOptions::new().len(HEAD_LEN as usize).map_mut(file) }
}

/// A room's state file, open, with its head page mapped.
pub struct StateFile {
    map: MmapMut,
    file: File,
    slot_len: u64,
}

impl StateFile {
    /// Opens the state file at `path` for a room whose images take at most `slot_len` bytes:
    /// the file as it is when it was made for this room (with slots at least that large when
    /// `grow`); otherwise a new, empty one in its place. `grow` is for a start, after what the
    /// old file held was read; a reload, or an nginx standing by for another, never replaces
    /// the file that running workers save to.
    pub fn open(path: &Path, tags: Tags, slot_len: u64, grow: bool) -> io::Result<StateFile> {
        let slot_len = slot_len.div_ceil(4096) * 4096;
        if let Ok(file) = OpenOptions::new().read(true).write(true).open(path) {
            let least = if grow { slot_len } else { 1 };
            if let Some(sf) = StateFile::map_existing(file, tags, least)? {
                return Ok(sf);
            }
            if !grow {
                // Running workers may save to it, or it is somebody else's: never replaced
                // while a configuration that may still fail is read.
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "it exists and was not made for this room as configured",
                ));
            }
        }
        // A new file beside the old, then renamed over it: whoever reads the path sees the
        // old file or the new one, whole.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&tmp)?;
        // The head's page written (so allocated: a full disk cannot fault it later), the
        // slots left sparse: they are written with `pwrite`.
        file.write_all_at(&[0u8; HEAD_LEN as usize], 0)?;
        file.set_len(HEAD_LEN + 2 * slot_len)?;
        let map = map_head(&file)?;
        let sf = StateFile { map, file, slot_len };
        let Some(h) = sf.head() else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the new file was cut short"));
        };
        h.magic.store(FILE_MAGIC, Relaxed);
        h.format.store(FILE_FORMAT, Relaxed);
        h.room_tag.store(tags.room, Relaxed);
        h.secret_tag.store(tags.secret, Relaxed);
        h.slot_len.store(slot_len, Relaxed);
        h.current.store(NO_SLOT, Relaxed);
        std::fs::rename(&tmp, path)?;
        Ok(sf)
    }

    fn map_existing(file: File, tags: Tags, slot_len: u64) -> io::Result<Option<StateFile>> {
        let len = file.metadata()?.len();
        let mut head = vec![0u8; HEAD_LEN as usize];
        if len < HEAD_LEN || file.read_exact_at(&mut head, 0).is_err() {
            return Ok(None);
        }
        let have = read_u64(&head, at::SLOT_LEN);
        let fits = read_u64(&head, at::MAGIC) == FILE_MAGIC
            && read_u64(&head, at::FORMAT) == FILE_FORMAT
            && read_u64(&head, at::ROOM) == tags.room
            && read_u64(&head, at::SECRET) == tags.secret
            && have >= slot_len
            && have % 4096 == 0
            && len == HEAD_LEN + 2 * have;
        if !fits {
            return Ok(None);
        }
        let map = map_head(&file)?;
        Ok(Some(StateFile { map, file, slot_len: have }))
    }

    /// The file head, in the mapping; `None` when the file has been cut shorter than its head
    /// meanwhile (by hand): touching the mapping beyond the file's end would fault.
    fn head(&self) -> Option<&FileHead> {
        if self.file.metadata().map_or(true, |m| m.len() < HEAD_LEN) {
            return None;
        }
        // SAFETY: the mapping is page-aligned and `HEAD_LEN` long, over as many bytes of the
        // file (checked just now); `FileHead` fits in it and is made of atomics, valid for any
        // bit pattern and safe to share with every process that maps the file.
        Some(unsafe { &*(self.map.as_ptr() as *const FileHead) })
    }

    /// The most bytes an image may take in this file.
    pub fn slot_len(&self) -> u64 {
        self.slot_len
    }

    pub fn owner(&self) -> Owner {
        let Some(h) = self.head() else {
            return Owner { pid: 0, beat_wall_ms: 0, released: true };
        };
        Owner {
            pid: h.owner_pid.load(Relaxed),
            beat_wall_ms: h.beat_wall_ms.load(Relaxed),
            released: h.released.load(Relaxed) != 0,
        }
    }

    /// Makes `pid` the room's owner, running it from now. A new owner's configurations save
    /// whatever the stamps of another's were.
    pub fn take(&self, pid: u64, now_wall_ms: u64) {
        let Some(h) = self.head() else { return };
        if h.owner_pid.swap(pid, Relaxed) != pid {
            h.saver_stamp.store(0, Relaxed);
        }
        h.beat_wall_ms.store(now_wall_ms.saturating_sub(SAVE_EVERY_MS), Relaxed);
        h.released.store(0, Relaxed);
    }

    /// The owner stops running the room (after its last save).
    pub fn release(&self, pid: u64) {
        let Some(h) = self.head() else { return };
        if h.owner_pid.load(Relaxed) == pid {
            h.released.store(1, Relaxed);
        }
    }

    /// Forgets which configuration saved last (at a start: the clock the stamps come from may
    /// have started again).
    pub fn reset_saver(&self) {
        if let Some(h) = self.head() {
            h.saver_stamp.store(0, Relaxed);
        }
    }

    /// Begins a save by the process `pid` of the configuration stamped `stamp`: the slot to
    /// write the image into, unless another save is under way, a newer configuration saves
    /// now, or (unless `force`) the room was saved less than a second ago. Call with the
    /// zone's lock held.
    pub fn begin(&self, pid: u64, stamp: u64, now_wall_ms: u64, force: bool) -> Option<u64> {
        let h = self.head()?;
        if stamp < h.saver_stamp.load(Relaxed) {
            return None;
        }
        if !force && now_wall_ms.abs_diff(h.beat_wall_ms.load(Relaxed)) < SAVE_EVERY_MS {
            return None;
        }
        // Claimed by one process at a time, also across the zones of two nginx.
        let saving = h.saving_pid.load(Relaxed);
        let stale = now_wall_ms.abs_diff(h.saving_since.load(Relaxed)) >= SAVE_STALE_MS;
        if saving != 0 && !stale {
            return None;
        }
        h.saving_pid.compare_exchange(saving, pid, Relaxed, Relaxed).ok()?;
        h.saving_since.store(now_wall_ms, Relaxed);
        h.saver_stamp.store(stamp, Relaxed);
        Some(match h.current.load(Relaxed) {
            0 => 1,
            _ => 0,
        })
    }

    /// Writes `image` into `slot` with `pwrite` (a full disk is an error, never a fault), and
    /// returns its digest; runs without the lock (the slot is this save's alone).
    pub fn write(&self, slot: u64, image: &[u8]) -> io::Result<[u64; 4]> {
        if image.len() as u64 > self.slot_len {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the image is larger than the file's slots",
            ));
        }
        self.file.write_all_at(image, HEAD_LEN + slot * self.slot_len)?;
        Ok(digest(image))
    }

    /// Ends the save begun in `slot` by `pid`: records the image and makes it current, then
    /// asks the kernel to write the file out. `sealed` is `None` for a save given up. Call
    /// with the zone's lock held.
    pub fn commit(&self, pid: u64, slot: u64, sealed: Option<(usize, [u64; 4])>, at: (u64, u64)) {
        let Some(h) = self.head() else { return };
        if h.saving_pid.load(Relaxed) != pid {
            // Taken over as stale meanwhile: the other save decides.
            return;
        }
        if let Some((len, digest)) = sealed {
            let (mono, wall_ms) = at;
            let m = &h.slots[slot as usize & 1];
            let seq = h.slots.iter().map(|s| s.seq.load(Relaxed)).max().unwrap_or(0) + 1;
            m.len.store(len as u64, Relaxed);
            m.saved_mono.store(mono, Relaxed);
            m.saved_wall_ms.store(wall_ms, Relaxed);
            for (d, v) in m.digest.iter().zip(digest) {
                d.store(v, Relaxed);
            }
            m.seq.store(seq, Relaxed);
            h.current.store(slot, Relaxed);
            h.beat_wall_ms.store(wall_ms, Relaxed);
        }
        h.saving_pid.store(0, Relaxed);
        let _ = self.map.flush_async();
    }

    /// The newest whole image in the file, read with `pread`.
    pub fn read(&self, tags: Tags) -> Result<Option<Saved>, Refused> {
        read_file(&self.file, tags)
    }

    /// Writes the file out and waits for it (at a graceful stop).
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }
}

const _: () = {
    assert!(core::mem::offset_of!(FileHead, format) == at::FORMAT);
    assert!(core::mem::offset_of!(FileHead, room_tag) == at::ROOM);
    assert!(core::mem::offset_of!(FileHead, secret_tag) == at::SECRET);
    assert!(core::mem::offset_of!(FileHead, slot_len) == at::SLOT_LEN);
    assert!(core::mem::offset_of!(FileHead, current) == at::CURRENT);
    assert!(core::mem::offset_of!(FileHead, owner_pid) == at::OWNER);
    assert!(core::mem::offset_of!(FileHead, beat_wall_ms) == at::BEAT);
    assert!(core::mem::offset_of!(FileHead, released) == at::RELEASED);
    assert!(core::mem::offset_of!(FileHead, slots) == at::SLOTS);
    assert!(size_of::<SlotMeta>() == at::SLOT_META);
    assert!(at::MAGIC == 0);
};

#[cfg(test)]
mod tests {
    use super::*;

    const TAGS: Tags = Tags { room: 7, secret: 9 };

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wr-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn save(sf: &mut StateFile, image: &[u8], mono: u64) {
        let slot = sf.begin(1, 1, 1000, true).unwrap();
        let sealed = sf.write(slot, image).unwrap();
        sf.commit(1, slot, Some((image.len(), sealed)), (mono, 1000));
    }

    #[test]
    fn images_are_saved_and_read_back_the_newest_first() {
        let d = dir("roundtrip");
        let path = d.join("room.state");
        assert!(read(&path, TAGS).unwrap().is_none());
        let mut sf = StateFile::open(&path, TAGS, 100, true).unwrap();
        assert!(read(&path, TAGS).unwrap().is_none());
        save(&mut sf, b"first image", 5);
        save(&mut sf, b"second", 6);
        let got = read(&path, TAGS).unwrap().unwrap();
        assert_eq!((got.image.as_slice(), got.saved_mono), (b"second".as_slice(), 6));
        // A save under way blocks another, unless it is stale.
        assert!(sf.begin(2, 1, 1000, true).is_some());
        assert!(sf.begin(3, 1, 2000, true).is_none());
        assert!(sf.begin(3, 1, 1000 + SAVE_STALE_MS, true).is_some());
        // An older configuration's workers no longer save, unless the owner changed.
        sf.commit(3, 0, None, (0, 0));
        assert!(sf.begin(4, 0, 1000, true).is_none());
        sf.take(77, 5000);
        let slot = sf.begin(4, 0, 5000, true).unwrap();
        let sealed = sf.write(slot, b"third").unwrap();
        sf.commit(4, slot, Some((5, sealed)), (7, 5000));
        // Saves come at most about once a second, unless forced.
        assert!(sf.begin(5, 0, 5100, false).is_none());
        assert!(sf.begin(5, 0, 6000, false).is_some());
        // Opened again (a reload), the file and its image are kept.
        drop(sf);
        let sf = StateFile::open(&path, TAGS, 50, false).unwrap();
        assert_eq!(sf.read(TAGS).unwrap().unwrap().image, b"third");
    }

    #[test]
    fn a_damaged_slot_falls_back_to_the_other_and_both_damaged_is_refused() {
        let d = dir("damaged");
        let path = d.join("room.state");
        let mut sf = StateFile::open(&path, TAGS, 100, true).unwrap();
        save(&mut sf, b"older", 1);
        save(&mut sf, b"newer", 2);
        drop(sf);
        let flip = |at: u64| {
            let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, at).unwrap();
            f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
        };
        // "newer" went to slot 1.
        flip(HEAD_LEN + 4096);
        assert_eq!(read(&path, TAGS).unwrap().unwrap().image, b"older");
        flip(HEAD_LEN);
        assert!(matches!(read(&path, TAGS), Err(Refused::Damaged)));
    }

    #[test]
    fn foreign_truncated_and_other_files_are_refused() {
        let d = dir("foreign");
        let path = d.join("room.state");
        let mut sf = StateFile::open(&path, TAGS, 100, true).unwrap();
        save(&mut sf, b"image", 1);
        drop(sf);
        assert!(matches!(read(&path, Tags { room: 8, secret: 9 }), Err(Refused::OtherRoom)));
        assert!(matches!(read(&path, Tags { room: 7, secret: 1 }), Err(Refused::OtherSecret)));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(HEAD_LEN + 10).unwrap();
        assert!(matches!(read(&path, TAGS), Err(Refused::Truncated)));
        f.write_all_at(&2u64.to_le_bytes(), at::FORMAT as u64).unwrap();
        assert!(matches!(read(&path, TAGS), Err(Refused::OtherFormat(2))));
        std::fs::write(&path, b"#!/bin/sh\necho not a state file, but long enough to look at\n")
            .unwrap();
        assert!(matches!(read(&path, TAGS), Err(Refused::NotAStateFile)));
        let aside = set_aside(&path).unwrap();
        assert!(aside.ends_with("room.state.refused") && !path.exists());
        // A file for a larger room replaces it when asked to, and keeps a larger one.
        let sf = StateFile::open(&path, TAGS, 100, true).unwrap();
        assert_eq!(sf.slot_len(), 4096);
        drop(sf);
        let sf = StateFile::open(&path, TAGS, 10_000, false).unwrap();
        assert_eq!(sf.slot_len(), 4096);
        drop(sf);
        let sf = StateFile::open(&path, TAGS, 10_000, true).unwrap();
        assert_eq!(sf.slot_len(), 12_288);
    }
}

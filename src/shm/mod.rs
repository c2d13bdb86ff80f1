//! One room's shared memory zone: where its tables are placed, how they are found again after
//! a reload, and the lock around every use.
//!
//! The zone's slab pool holds two allocations: a small root record (`shpool->data`) saying
//! where the region is, and the region itself, every page the pool had left, laid out by
//! [`crate::core::layout`]. The lock is the slab pool's own `ngx_shmtx` (through `ngx`'s
//! [`SlabPool`]), which the master frees if a worker dies holding it.
//!
//! Soundness: the region is never borrowed as a whole. Under the lock, [`Locked::room`] gives a
//! [`Room`] whose `&mut` parts nobody else touches while the lock is held; without the lock,
//! [`Zone::touch_session`] reaches only the session slots, which everyone accesses atomically.

use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use std::io::Read;

use nginx_sys::{
    ngx_conf_t, ngx_log_t, ngx_shared_memory_add, ngx_shm_zone_init_pt, ngx_shm_zone_t,
    ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t, NGX_LOG_EMERG,
};
use ngx::core::slab::{LockedSlabPool, SlabPool};
use ngx::ngx_log_error;

use crate::core::layout::{AttachError, Layout, Timing};
use crate::core::room::{touch_session_unlocked, Room, SessionRef};

/// The zone's root record, in the slab pool.
#[repr(C)]
struct ZoneRoot {
    region: *mut u8,
    len: usize,
}

/// Where one room's region is. Set by [`Zone::init`] in the master; the workers inherit it.
pub struct Zone {
    shm_zone: *mut ngx_shm_zone_t,
    region: Option<NonNull<u8>>,
    len: usize,
}

/// What the zone's init found or made.
pub struct Ready {
    /// The room was laid out now (a new zone, or one that had to start again).
    pub fresh: bool,
}

/// Why a zone could not be set up; logged by [`Zone::init`] itself.
#[derive(Debug)]
pub struct InitFailed;

/// 32 random bytes for the zone's key, and 8 more for its epoch.
fn random_key() -> Option<([u8; 32], u64)> {
    let mut bytes = [0u8; 40];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).ok()?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[..32]);
    let mut epoch = [0u8; 8];
    epoch.copy_from_slice(&bytes[32..]);
    Some((key, u64::from_le_bytes(epoch)))
}

impl Zone {
    /// Asks nginx for the zone `name` of `size` bytes; `init` is called with `data` when nginx
    /// maps it. `None` when nginx refused (it has logged why).
    ///
    /// `name` must live as long as the configuration (nginx keeps the pointer).
    pub fn add(
        cf: *mut ngx_conf_t,
        name: &str,
        size: usize,
        init: ngx_shm_zone_init_pt,
        data: *mut c_void,
    ) -> Option<Zone> {
        let mut zname = ngx_str_t { len: name.len(), data: name.as_ptr() as *mut u8 };
        // SAFETY: `cf` is the configuration being parsed; nginx copies nothing of `zname` but
        // keeps its data pointer, which the caller keeps alive; the tag is our module.
        let shm_zone = unsafe {
            ngx_shared_memory_add(
                cf,
                &mut zname,
                size,
                ptr::addr_of_mut!(crate::ngx_http_waiting_room_module) as *mut c_void,
            )
        };
        // SAFETY: nginx returned a live zone record or null.
        let z = unsafe { shm_zone.as_mut() }?;
        z.init = init;
        z.data = data;
        Some(Zone { shm_zone, region: None, len: 0 })
    }

    /// The zone's init: finds the room a reload left in the zone, or lays out a new one.
    /// Runs in the master (at start, at every reload, and for `nginx -t`), with nobody else
    /// holding the lock but the workers of the running configuration.
    ///
    /// A reused zone keeps its room, sessions and line: the new `max_active` is put in force by
    /// the new workers ([`Room::adopt_settings`]), never here, so a reload that fails later
    /// changes nothing. What cannot be carried over (a `max_active` beyond the session
    /// table's capacity, a room laid out by another version of the module) is refused: the
    /// reload fails and the running room goes on as it was.
    ///
    /// # Safety
    /// `shm_zone` is this zone's record, as nginx passes it to the init callback: mapped, and
    /// starting with the slab pool nginx initialised.
    pub unsafe fn init(
        &mut self,
        shm_zone: &mut ngx_shm_zone_t,
        reused: bool,
        name: &str,
        max_active: u32,
    ) -> Result<Ready, InitFailed> {
        let log = shm_zone.shm.log;
        // SAFETY: the caller's promise: the zone is mapped and starts with the slab pool.
        let Some(pool) = (unsafe { SlabPool::from_shm_zone(shm_zone) }) else {
            return Err(InitFailed);
        };
        let shpool = shm_zone.shm.addr as *mut ngx_slab_pool_t;
        // SAFETY: the slab pool nginx initialised; its `data` is ours (null or our root).
        let mut root = unsafe { (*shpool).data } as *mut ZoneRoot;
        let reused = reused && !root.is_null();
        if !reused {
            // SAFETY: a new zone nobody else uses yet.
            root = unsafe { allocate(shpool, name, log) }?;
        }
        // SAFETY: our root record, written when the zone was new.
        let (region, len) = unsafe { ((*root).region, (*root).len) };
        let region = NonNull::new(region).ok_or(InitFailed)?;
        self.region = Some(region);
        self.len = len;
        self.shm_zone = shm_zone;

        let mut locked = Locked { _lock: pool.lock(), region, len, _zone: PhantomData };
        if reused {
            // Nothing of the running room is changed here: this runs before the reload can
            // still fail, while the running configuration's workers use the room.
            let why = match locked.room() {
                Ok(room) if max_active <= room.session_capacity() => {
                    return Ok(Ready { fresh: false });
                }
                Ok(room) => format!(
                    "max_active={max_active} is more than the zone's session table holds ({})",
                    room.session_capacity()
                ),
                Err(e) => e.to_string(),
            };
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "waiting room zone \"{name}\": {why}; the running room is kept as it is: to \
                 start it anew, restart nginx or give the zone another size or name"
            );
            return Err(InitFailed);
        }
        let Some(layout) = Layout::for_max_active(len, max_active) else {
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "waiting room zone \"{name}\" is too small for max_active={max_active}"
            );
            return Err(InitFailed);
        };
        let Some((key, epoch)) = random_key() else {
            ngx_log_error!(NGX_LOG_EMERG, log, "waiting room \"{name}\": cannot read /dev/urandom");
            return Err(InitFailed);
        };
        // SAFETY: we hold the lock; the region is `len` bytes from `region`, new: nobody has
        // seen a layout of it yet.
        let room = unsafe { Room::create_shared(region, &layout, max_active, &key, epoch) };
        room.map_err(|_| InitFailed)?;
        drop(locked);
        Ok(Ready { fresh: true })
    }

    /// Takes the zone's lock. `None` before the zone was initialised (not in a started nginx).
    pub fn lock(&self) -> Option<Locked<'_>> {
        let region = self.region?;
        // SAFETY: `init` set `shm_zone` to our zone, mapped for the life of the cycle.
        let pool = unsafe { SlabPool::from_shm_zone(&*self.shm_zone) }?;
        Some(Locked { _lock: pool.lock(), region, len: self.len, _zone: PhantomData })
    }

    /// Whether `r` is a live session, checked without the lock against a `layout` this process
    /// saw under the lock; if so it is seen now. `false` means "ask under the lock".
    pub fn touch_session(&self, layout: &Layout, r: SessionRef, now: u64, t: &Timing) -> bool {
        let Some(region) = self.region else { return false };
        if layout.region_len != self.len {
            return false;
        }
        // SAFETY: the region is mapped for the life of the cycle, `len` bytes, 8-aligned, and
        // laid out once (a reused zone is never laid out again), as `layout` says; everyone
        // accesses its session slots atomically.
        unsafe { touch_session_unlocked(region.as_ptr(), layout, r, now, t) }
    }
}

/// Allocates the root record and the region in a new zone.
///
/// # Safety
/// `shpool` is the new zone's slab pool, which nobody else uses yet.
unsafe fn allocate(
    shpool: *mut ngx_slab_pool_t,
    name: &str,
    log: *mut ngx_log_t,
) -> Result<*mut ZoneRoot, InitFailed> {
    // SAFETY: the caller's promise; what the pool allocates stays in the zone.
    unsafe {
        let root = ngx_slab_alloc(shpool, core::mem::size_of::<ZoneRoot>()) as *mut ZoneRoot;
        let ctx = format!(" in waiting room zone \"{name}\"\0");
        let log_ctx = ngx_slab_alloc(shpool, ctx.len()) as *mut u8;
        if root.is_null() || log_ctx.is_null() {
            ngx_log_error!(NGX_LOG_EMERG, log, "waiting room zone \"{name}\" is too small");
            return Err(InitFailed);
        }
        ptr::copy_nonoverlapping(ctx.as_ptr(), log_ctx, ctx.len());
        (*shpool).log_ctx = log_ctx;
        (*shpool).set_log_nomem(0);
        // Every page left, in one piece: the queue gets all the room the zone has.
        let page = nginx_sys::ngx_pagesize;
        let mut pages = (*shpool).pfree;
        let mut region: *mut u8 = ptr::null_mut();
        while region.is_null() && pages > 0 {
            region = ngx_slab_alloc(shpool, pages * page) as *mut u8;
            pages -= 1;
        }
        if region.is_null() {
            ngx_log_error!(NGX_LOG_EMERG, log, "waiting room zone \"{name}\" is too small");
            return Err(InitFailed);
        }
        *root = ZoneRoot { region, len: (pages + 1) * page };
        (*shpool).data = root as *mut c_void;
        Ok(root)
    }
}

/// The zone's lock, held; released when dropped, also while unwinding.
pub struct Locked<'z> {
    _lock: LockedSlabPool,
    region: NonNull<u8>,
    len: usize,
    _zone: PhantomData<&'z Zone>,
}

impl Locked<'_> {
    /// The room in the zone, borrowed for as long as this guard (and so the lock) is held.
    pub fn room(&mut self) -> Result<Room<'_>, AttachError> {
        // SAFETY: the region is mapped for the life of the cycle; we hold the lock until `self`
        // is dropped, which the borrow of `self` outlives the room's; every process accesses
        // the session slots atomically.
        unsafe { Room::attach_shared(self.region, self.len) }
    }
}

/// The `data` of the running configuration's zone that has `shm_zone`'s name and tag but
/// another size. nginx hands a zone's old data to its init only when the size is the same;
/// for a zone whose size changed on reload, this finds the room to carry over.
///
/// # Safety
/// Runs in the master while a configuration is read (`ngx_cycle` is then the running
/// configuration's cycle, or the bare one of a start, with no zones), with `shm_zone` a zone
/// of the configuration being read.
pub unsafe fn running_zone_of_other_size(shm_zone: &ngx_shm_zone_t) -> Option<*mut c_void> {
    // SAFETY: the caller's promise: `ngx_cycle` is a live cycle whose list of zones nginx
    // built (or left empty); each entry is an `ngx_shm_zone_t`.
    unsafe {
        let cycle = nginx_sys::ngx_cycle.as_ref()?;
        let mut part = &cycle.shared_memory.part;
        loop {
            let zones = part.elts as *const ngx_shm_zone_t;
            for i in 0..part.nelts {
                let z = &*zones.add(i);
                if z.tag == shm_zone.tag
                    && !z.data.is_null()
                    && z.shm.size != shm_zone.shm.size
                    && z.shm.name.as_bytes() == shm_zone.shm.name.as_bytes()
                {
                    return Some(z.data);
                }
            }
            part = part.next.as_ref()?;
        }
    }
}

//! One room's shared memory zone: where its tables are placed, how they are found again after
//! a reload, and the lock around every use.
//!
//! The zone's slab pool holds two allocations: a small root record (`shpool->data`) saying
//! where the region is, and the region itself, every page the pool had left, laid out by
//! [`crate::core::room`]. The lock is the slab pool's own `ngx_shmtx`, which the master
//! frees if a worker dies holding it.

use core::ffi::c_void;
use core::ptr;
use std::io::Read;

use nginx_sys::{
    ngx_cycle, ngx_int_t, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc,
    ngx_slab_pool_t, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::core::Status;
use ngx::ngx_log_error;

use crate::conf::Room as RoomConf;
use crate::core::room::{AttachError, Room};
use crate::core::token::Signer;

#[repr(C)]
struct ZoneRoot {
    region: *mut u8,
    len: usize,
}

fn cycle_log() -> *mut nginx_sys::ngx_log_t {
    // SAFETY: `ngx_cycle` is set before any module code runs and its log lives as long.
    unsafe { (*ngx_cycle).log }
}

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

/// The zone's init callback: runs in the master at start and at every reload (`data` is the
/// previous cycle's room when nginx reuses the zone), and in `nginx -t`.
pub extern "C" fn init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    std::panic::catch_unwind(|| {
        // SAFETY: nginx calls this with the zone we registered, whose `data` is our room
        // configuration (set in `set_zone`), and whose memory is mapped and begins with the
        // slab pool nginx initialised.
        unsafe { init_zone(&mut *shm_zone, data) }
    })
    .unwrap_or(Status::NGX_ERROR.into())
}

/// # Safety
/// `shm_zone` is a zone registered by `set_zone`: its `data` is our room configuration and its
/// memory is mapped and starts with the slab pool nginx initialised.
unsafe fn init_zone(shm_zone: &mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    let room = &mut *(shm_zone.data as *mut RoomConf);
    let shpool = shm_zone.shm.addr as *mut ngx_slab_pool_t;
    let log = cycle_log();
    let name = room.name.clone();

    let mut root = (*shpool).data as *mut ZoneRoot;
    let reused = !root.is_null() && (!old.is_null() || shm_zone.shm.exists != 0);
    if !reused {
        root = ngx_slab_alloc(shpool, core::mem::size_of::<ZoneRoot>()) as *mut ZoneRoot;
        let ctx = format!(" in waiting room zone \"{name}\"\0");
        let log_ctx = ngx_slab_alloc(shpool, ctx.len()) as *mut u8;
        if root.is_null() || log_ctx.is_null() {
            ngx_log_error!(NGX_LOG_EMERG, log, "waiting room zone \"{name}\" is too small");
            return Status::NGX_ERROR.into();
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
            return Status::NGX_ERROR.into();
        }
        *root = ZoneRoot { region, len: (pages + 1) * page };
        (*shpool).data = root as *mut c_void;
    }
    room.shpool = shpool;
    room.region = (*root).region;
    room.region_len = (*root).len;

    let lock = Lock::new(shpool);
    let region = core::slice::from_raw_parts_mut(room.region, room.region_len);
    // The state a reload finds, if it is a room of the same shape.
    let kept: Result<Vec<u8>, Option<AttachError>> = match Room::attach(&mut *region) {
        Ok(mut r) if r.session_capacity() == room.max_active => {
            r.set_max_active(room.max_active);
            Ok(r.key().to_vec())
        }
        Ok(_) => Err(None),
        Err(e) => Err(Some(e)),
    };
    let key = match kept {
        Ok(key) => key,
        Err(why) => {
            match why {
                None => {
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        log,
                        "waiting room \"{name}\": max_active changed to {}, the zone is laid \
                         out anew and its queue and sessions start empty",
                        room.max_active
                    );
                }
                Some(AttachError::LayoutChanged | AttachError::BadRegion) if reused => {
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        log,
                        "waiting room \"{name}\": the zone's layout changed, its queue and \
                         sessions start empty"
                    );
                }
                Some(_) => {}
            }
            let Some((key, epoch)) = random_key() else {
                drop(lock);
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "waiting room \"{name}\": cannot read /dev/urandom"
                );
                return Status::NGX_ERROR.into();
            };
            if Room::create(region, room.max_active, room.max_active, &key, epoch).is_err() {
                drop(lock);
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "waiting room zone \"{name}\" is too small for max_active={}",
                    room.max_active
                );
                return Status::NGX_ERROR.into();
            }
            if room.secret.is_none() {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "waiting room \"{name}\": no waiting_room_secret, cookies are signed with a \
                     random key kept in the zone"
                );
            }
            key.to_vec()
        }
    };
    drop(lock);
    room.signer = Signer::new(room.secret.as_deref().unwrap_or(&key), &name);
    if room.signer.is_none() {
        return Status::NGX_ERROR.into();
    }
    Status::NGX_OK.into()
}

/// Holds the zone's mutex; released when dropped, also while unwinding.
pub struct Lock(*mut ngx_slab_pool_t);

impl Lock {
    /// SAFETY (of the caller): `shpool` is a live, initialised slab pool.
    unsafe fn new(shpool: *mut ngx_slab_pool_t) -> Lock {
        ngx_shmtx_lock(&mut (*shpool).mutex);
        Lock(shpool)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: we took this mutex in `Lock::new` and have not released it.
        unsafe { ngx_shmtx_unlock(&mut (*self.0).mutex) }
    }
}

/// Why a room could not be used (shown in the log through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
pub enum ZoneError {
    /// The zone was never initialised (cannot happen in a started nginx).
    Uninitialised,
    /// The region's header is not a room's.
    Corrupt(AttachError),
}

/// Runs `f` on the room's tables, under the zone's lock.
pub fn with_room<R>(room: &RoomConf, f: impl FnOnce(&mut Room) -> R) -> Result<R, ZoneError> {
    if room.shpool.is_null() || room.region.is_null() {
        return Err(ZoneError::Uninitialised);
    }
    // SAFETY: the zone's init set `shpool` to its live slab pool.
    let _lock = unsafe { Lock::new(room.shpool) };
    // SAFETY: `region` and `region_len` describe the one allocation our init made in the
    // shared zone, mapped at this address in every process; holding the zone's mutex, nobody
    // else touches it until `_lock` is dropped, after `f` returns.
    let region = unsafe { core::slice::from_raw_parts_mut(room.region, room.region_len) };
    let mut r = Room::attach(region).map_err(ZoneError::Corrupt)?;
    room.seen_layout.set(Some((r.layout(), r.epoch())));
    Ok(f(&mut r))
}

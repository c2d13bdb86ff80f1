//! The sweep: a timer in every worker process, one per room, that ends expired sessions, drops
//! timed-out and unclaimed tickets, calls the next tickets and samples the queue's pace; and
//! then saves the room to its state file, if it has one (one save a second among the workers).
//!
//! Every worker runs one, so the sweep goes on when a worker dies; a worker skips its turn when
//! another swept less than half an interval ago, so the work is not doubled. Each sweep looks
//! at a bounded number of sessions and tickets, under the zone's lock. The wiring starts it in
//! worker processes only (not in the cache manager or loader).

use core::ffi::c_void;

use nginx_sys::{
    ngx_add_timer, ngx_cycle_t, ngx_event_t, ngx_exiting, ngx_pcalloc, ngx_quit, ngx_terminate,
    NGX_LOG_ALERT, NGX_LOG_INFO,
};
use ngx::ngx_log_error;

use crate::conf;
use crate::core::guard;
use crate::http;
use crate::service::{Room, Save};

const INTERVAL_MS: u64 = 1000;
/// Sessions and tickets one sweep may look at.
const BUDGET: u32 = 4096;

/// The event and what it sweeps. nginx's debug log reads a file descriptor from the fourth
/// word of an event's `data` (as if it were a connection), so `data` points at this record,
/// whose fourth word is an invalid descriptor.
#[repr(C)]
struct Sweeper {
    _unused: [usize; 3],
    fd: isize,
    event: ngx_event_t,
    room: *const Room,
}

pub fn start(cycle: *mut ngx_cycle_t) {
    let Some(mcf) = conf::of_cycle(cycle) else { return };
    for room in mcf.rooms() {
        // SAFETY: `cycle` is the worker's running cycle; the sweeper is allocated zeroed from
        // its pool, so it lives as long as the worker's timers can fire.
        unsafe {
            let s = ngx_pcalloc((*cycle).pool, core::mem::size_of::<Sweeper>()) as *mut Sweeper;
            let Some(s) = s.as_mut() else {
                ngx_log_error!(
                    NGX_LOG_ALERT,
                    (*cycle).log,
                    "waiting room \"{}\": cannot allocate the sweep timer",
                    room.name
                );
                continue;
            };
            s.fd = -1;
            s.room = room;
            s.event.data = s as *mut Sweeper as *mut c_void;
            s.event.handler = Some(sweep);
            s.event.log = (*cycle).log;
            s.event.set_cancelable(1);
            // Spread the workers' first sweeps over the interval.
            let jitter = (nginx_sys::ngx_pid as u64 * 97) % INTERVAL_MS;
            ngx_add_timer(&mut s.event, (INTERVAL_MS + jitter) as _);
            ngx_log_error!(
                NGX_LOG_INFO,
                (*cycle).log,
                "waiting room \"{}\": sweep timer started",
                room.name
            );
            // A first save at once: it writes this nginx's master in the state file as the
            // room's owner, before a binary upgrade could start another.
            let log = (*cycle).log;
            let _ = guard::catch(|| room.save(log, Save::Tick));
        }
    }
}

/// Saves every room with a state file: a worker (`Save::Exit`) or the master (`Save::Stop`)
/// stopping.
pub fn save_all(cycle: *mut ngx_cycle_t, why: Save) {
    let Some(mcf) = conf::of_cycle(cycle) else { return };
    for room in mcf.rooms() {
        // SAFETY: the cycle being left, alive until the process exits.
        let log = unsafe { (*cycle).log };
        let _ = guard::catch(|| room.save(log, why));
    }
}

extern "C" fn sweep(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the event `start` armed, whose data is the sweeper
    // that holds it, with a room of the worker's configuration.
    let (ev, room) = unsafe { (&mut *ev, &*(*((*ev).data as *const Sweeper)).room) };
    // SAFETY: process-wide flags nginx sets from its signal handling, read in this process.
    let stopping = unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 };
    let fired = guard::periodic(
        || {
            let now = http::now().mono_ms;
            let _ = room.sweep(now, INTERVAL_MS, BUDGET);
            room.log_people(room.people_due(now));
            if !stopping {
                room.save(ev.log, Save::Tick);
            }
        },
        stopping,
    );
    if fired.panicked {
        ngx_log_error!(NGX_LOG_ALERT, ev.log, "waiting room \"{}\": the sweep failed", room.name);
    }
    if fired.again {
        // SAFETY: the event is ours and not in the timer tree while its handler runs.
        unsafe { ngx_add_timer(ev, INTERVAL_MS as _) };
    }
}

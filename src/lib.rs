//! ngx waiting room: a virtual waiting room for nginx.
//!
//! Dependencies run one way, from the top of this list to the bottom; no module uses one
//! above it (the module's static, `ngx_http_waiting_room_module`, aside: everyone may name
//! it, as nginx's own modules do):
//!
//! * this file: the module's wiring only: `ngx_module_t`, its context, its hooks;
//! * [`handlers`]: what nginx calls for a request: the access gate, the API, the status;
//! * `timer`: the sweep, in worker processes;
//! * `conf`: the directives, turned into typed configuration, and the checks that let
//!   `nginx -t` catch mistakes;
//! * `service`: one room's runtime handle: decide, join, heartbeat, leave, snapshot,
//!   cookies;
//! * `http`: request helpers: cookies, responses, the per-request verdict, variables;
//! * `shm`: the shared memory zone: init and reuse, the lock, a sound view of the room;
//! * [`persist`]: the state file (`memmap2`): images of the room saved and read back;
//! * [`pages`]: the queue page and heartbeat script, pure text;
//! * [`core`]: the room's logic and tables, with no nginx in it (unit and property tested).
//!
//! Everything from `handlers` to `shm` calls nginx, so it is left out of `cargo test` builds,
//! which do not link against nginx.

// The status JSON is one `json!` object, longer than the macro expands by default.
#![recursion_limit = "256"]

pub mod core;
pub mod pages;
pub mod persist;

#[cfg(not(test))]
mod conf;
#[cfg(not(test))]
mod handlers;
#[cfg(not(test))]
mod http;
#[cfg(not(test))]
mod service;
#[cfg(not(test))]
mod shm;
#[cfg(not(test))]
mod timer;

#[cfg(not(test))]
pub use wiring::ngx_http_waiting_room_module;

#[cfg(not(test))]
mod wiring {
    use core::ffi::{c_char, c_void};
    use core::ptr;

    use nginx_sys::{
        ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_process,
        NGX_HTTP_MODULE, NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER,
    };
    use ngx::core::{Status, NGX_CONF_OK};
    use ngx::http::{HttpModule, HttpModuleMainConf};

    use crate::conf::{self, Endpoint, LocConf, Module};
    use crate::handlers;

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        crate::http::variables::register(cf)
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        let rc = handlers::access::register(cf);
        if rc != nginx_sys::NGX_OK as ngx_int_t {
            return rc;
        }
        // Without a room, no response is looked at.
        // SAFETY: postconfiguration's `cf` is the http block's.
        match Module::main_conf(unsafe { &*cf }) {
            Some(mcf) if mcf.rooms().next().is_some() => {
                handlers::inject::register();
                handlers::origin::register()
            }
            _ => nginx_sys::NGX_OK as ngx_int_t,
        }
    }

    /// Merges a location's configuration and checks it, then gives the locations of
    /// `waiting_room_api` and `waiting_room_status` their content handler: the wiring joins
    /// the configuration to the handlers, so that neither needs the other.
    unsafe extern "C" fn merge_loc_conf(
        cf: *mut ngx_conf_t,
        prev: *mut c_void,
        conf: *mut c_void,
    ) -> *mut c_char {
        // SAFETY: nginx passes our location configurations, as to any merge callback.
        let rv = unsafe { Module::merge_loc_conf(cf, prev, conf) };
        if rv != NGX_CONF_OK {
            return rv;
        }
        // SAFETY: `conf` is the location configuration just merged.
        let lcf = unsafe { &mut *(conf as *mut LocConf) };
        let rv = conf::check_location(cf, lcf);
        if rv != NGX_CONF_OK {
            return rv;
        }
        let endpoint = lcf.endpoint;
        if let Some((endpoint, clcf)) = endpoint.zip(lcf.core_conf()) {
            clcf.handler = Some(match endpoint {
                Endpoint::Api => handlers::api::handler,
                Endpoint::Status => handlers::status::handler,
                Endpoint::Control => handlers::control::handler,
            });
        }
        NGX_CONF_OK
    }

    static CTX: ngx_http_module_t = ngx_http_module_t {
        preconfiguration: Some(preconfiguration),
        postconfiguration: Some(postconfiguration),
        create_main_conf: Some(Module::create_main_conf),
        init_main_conf: Some(conf::init_main_conf),
        create_srv_conf: None,
        merge_srv_conf: None,
        create_loc_conf: Some(Module::create_loc_conf),
        merge_loc_conf: Some(merge_loc_conf),
    };

    extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
        // nginx also calls this in the cache manager and loader processes, which serve no
        // request and must not sweep.
        // SAFETY: `ngx_process` is set before the process's modules are initialised.
        let process = unsafe { ngx_process } as u32;
        if process == NGX_PROCESS_WORKER || process == NGX_PROCESS_SINGLE {
            crate::timer::start(cycle);
        }
        // A failure to start the sweep is logged and never fatal: returning an error here
        // would make the master respawn the worker in a loop.
        Status::NGX_OK.into()
    }

    /// A worker stops: it saves the rooms with a state file, so that what it did last is in
    /// the file for the nginx that takes over (after a binary upgrade's WINCH, for one).
    extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
        // SAFETY: as in `init_process`.
        let process = unsafe { ngx_process } as u32;
        if process == NGX_PROCESS_WORKER {
            crate::timer::save_all(cycle, crate::service::Save::Exit);
        }
    }

    /// The master stops (or nginx without a master): every worker has gone; the rooms are saved
    /// one last time and released to whoever starts next.
    extern "C" fn exit_master(cycle: *mut ngx_cycle_t) {
        crate::timer::save_all(cycle, crate::service::Save::Stop);
    }

    #[cfg(feature = "export-modules")]
    ngx::ngx_modules!(ngx_http_waiting_room_module);

    #[used]
    #[allow(non_upper_case_globals)]
    #[cfg_attr(not(feature = "export-modules"), no_mangle)]
    pub static mut ngx_http_waiting_room_module: ngx_module_t = ngx_module_t {
        ctx: ptr::addr_of!(CTX) as *mut c_void,
        // SAFETY: only the address of the commands table is taken here.
        commands: unsafe { ptr::addr_of_mut!(conf::COMMANDS[0]) },
        type_: NGX_HTTP_MODULE as _,
        init_process: Some(init_process),
        exit_process: Some(exit_process),
        exit_master: Some(exit_master),
        ..ngx_module_t::default()
    };
}

//! ngx waiting room: a virtual waiting room for nginx.
//!
//! * [`core`]: the room's logic and tables, with no nginx in it (unit and property tested).
//! * [`page`]: the queue page and heartbeat script nginx sends itself.
//! * `conf`, `zone`, `access`, `api`, `http`, `timer`, `variables`: the nginx side, thin
//!   translation between nginx and the core. It is left out of `cargo test` builds, which do
//!   not link against nginx.
//!
//! This file is only the module's wiring: the `ngx_module_t`, its context and its hooks.

pub mod core;
pub mod page;

#[cfg(not(test))]
mod access;
#[cfg(not(test))]
mod api;
#[cfg(not(test))]
mod conf;
#[cfg(not(test))]
mod http;
#[cfg(not(test))]
mod timer;
#[cfg(not(test))]
mod variables;
#[cfg(not(test))]
mod zone;

#[cfg(not(test))]
pub use wiring::ngx_http_waiting_room_module;

#[cfg(not(test))]
mod wiring {
    use core::ffi::c_void;
    use core::ptr;

    use nginx_sys::{
        ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, NGX_HTTP_MODULE,
    };
    use ngx::core::Status;
    use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

    use crate::conf::{self, LocConf, MainConf};

    pub struct Module;

    impl HttpModule for Module {
        fn module() -> &'static ngx_module_t {
            // SAFETY: the module is a static that nginx only writes to while loading it, before
            // any of our code runs.
            unsafe { &*ptr::addr_of!(ngx_http_waiting_room_module) }
        }

        unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            crate::variables::register(cf)
        }

        unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            crate::access::register(cf)
        }
    }

    // SAFETY: `MainConf` and `LocConf` are the types our create_*_conf functions allocate.
    unsafe impl HttpModuleMainConf for Module {
        type MainConf = MainConf;
    }
    // SAFETY: as above.
    unsafe impl HttpModuleLocationConf for Module {
        type LocationConf = LocConf;
    }

    static CTX: ngx_http_module_t = ngx_http_module_t {
        preconfiguration: Some(Module::preconfiguration),
        postconfiguration: Some(Module::postconfiguration),
        create_main_conf: Some(Module::create_main_conf),
        init_main_conf: Some(conf::init_main_conf),
        create_srv_conf: None,
        merge_srv_conf: None,
        create_loc_conf: Some(Module::create_loc_conf),
        merge_loc_conf: Some(Module::merge_loc_conf),
    };

    extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
        crate::timer::start(cycle);
        // A failure to start the sweep is logged and never fatal: returning an error here
        // would make the master respawn the worker in a loop.
        Status::NGX_OK.into()
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
        ..ngx_module_t::default()
    };
}

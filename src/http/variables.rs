//! `$waiting_room_status`, `$waiting_room_position`, `$waiting_room_wait`: what the waiting
//! room decided for the request; `$waiting_room_mode`, `$waiting_room_model`,
//! `$waiting_room_rate`, `$waiting_room_phase`: what the room guarding the location is steered
//! by. For access logs and headers.

use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_pnalloc, ngx_str_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::ngx_string;

use super::verdict::{self, Verdict};
use crate::conf::Module;
use crate::service::setting_text;
use ngx::http::HttpModuleLocationConf;

const STATUS: usize = 0;
const POSITION: usize = 1;
const WAIT: usize = 2;
const MODE: usize = 3;
const MODEL: usize = 4;
const RATE: usize = 5;
const PHASE: usize = 6;

pub fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    let vars: [(ngx_str_t, usize); 7] = [
        (ngx_string!("waiting_room_status"), STATUS),
        (ngx_string!("waiting_room_position"), POSITION),
        (ngx_string!("waiting_room_wait"), WAIT),
        (ngx_string!("waiting_room_mode"), MODE),
        (ngx_string!("waiting_room_model"), MODEL),
        (ngx_string!("waiting_room_rate"), RATE),
        (ngx_string!("waiting_room_phase"), PHASE),
    ];
    for (mut name, which) in vars {
        // SAFETY: called from preconfiguration with a live `cf`; nginx copies the name.
        let v = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as _) };
        // SAFETY: a variable record nginx just made for us.
        let Some(v) = (unsafe { v.as_mut() }) else { return NGX_ERROR as ngx_int_t };
        v.get_handler = Some(get);
        v.data = which;
    }
    NGX_OK as ngx_int_t
}

fn value(r: &ngx_http_request_t, which: usize) -> Option<String> {
    if which >= MODE {
        let lcf = Module::location_conf(r)?;
        let (s, phase) = lcf.room()?.steer_seen()?;
        return match which {
            MODE => Some(s.mode().name().to_owned()),
            MODEL => Some(s.model().name().to_owned()),
            RATE => (s.rate_per_minute != 0).then(|| setting_text(&s, "rate")),
            _ => Some(phase.name().to_owned()),
        };
    }
    let v: &Verdict = verdict::get(r)?;
    match which {
        STATUS => v.status.map(str::to_owned),
        POSITION => v.position.map(|p| p.to_string()),
        _ => v.wait.map(|w| w.to_string()),
    }
}

unsafe extern "C" fn get(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    data: usize,
) -> ngx_int_t {
    std::panic::catch_unwind(|| {
        // SAFETY: nginx passes a live request and the value record to fill.
        let (r, v) = unsafe { (&*r, &mut *v) };
        let Some(text) = value(r, data) else {
            v.set_not_found(1);
            return NGX_OK as ngx_int_t;
        };
        // SAFETY: the copy lives in the request pool, as long as nginx may read it.
        let p = unsafe { ngx_pnalloc(r.pool, text.len()) } as *mut u8;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `p` has room for `text`.
        unsafe { ptr::copy_nonoverlapping(text.as_ptr(), p, text.len()) };
        v.data = p;
        v.set_len(text.len() as _);
        v.set_valid(1);
        v.set_no_cacheable(1);
        v.set_not_found(0);
        NGX_OK as ngx_int_t
    })
    .unwrap_or(NGX_ERROR as ngx_int_t)
}

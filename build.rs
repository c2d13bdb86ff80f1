//! Turns the `DEP_NGINX_*` metadata of the nginx we build against into `cfg`s:
//! `ngx_feature = "..."` for each feature of that build, `ngx_os = "..."`, and
//! `nginx_header_next` on nginx 1.23.0 and later, where a header's `next` field exists.

fn main() {
    let features_check =
        std::env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "\"any\"".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_feature, values({features_check}))");
    if let Ok(features) = std::env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }
    let os_check = std::env::var("DEP_NGINX_OS_CHECK").unwrap_or_else(|_| "\"any\"".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_os, values({os_check}))");
    if let Ok(os) = std::env::var("DEP_NGINX_OS") {
        println!("cargo::rustc-cfg=ngx_os=\"{os}\"");
    }
    println!("cargo::rustc-check-cfg=cfg(nginx_header_next)");
    let version: u64 =
        std::env::var("DEP_NGINX_VERSION_NUMBER").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if version >= 1_023_000 {
        println!("cargo::rustc-cfg=nginx_header_next");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
}

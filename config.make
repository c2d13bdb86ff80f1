# nginx's configure reads this once the Makefile is written: the rule that builds the module's
# static library with cargo (see auto/rust).

. "$ngx_addon_dir/auto/rust"
wr_make_rule

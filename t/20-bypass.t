#!/usr/bin/perl

# Tests for who skips the line and what the origin may say: the example
# nginx-conf/bypass.conf as it is (office network, monitor, VIP cookie, the
# API, static assets, the origin ending a session), then waiting_room_bypass
# by address and range behind the realip module (IPv4 and IPv6), dry run and
# log levels, and what nginx -t refuses.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http http_get /;
use Test::Nginx::WaitingRoom qw/ example get first code body wr cookie status
	conf_test req /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy map realip access/)->plan(49);
my $d = $t->testdir();
$t->write_file('waiting_room.key', '0123456789abcdef' x 4 . "\n");
mkdir "$d/logs";
chmod 0755, $d if $> == 0;

# what nginx -t refuses

my @bad = (
	['waiting_room_bypass 10.0.0.0/33;',
		'invalid parameter "10.0.0.0/33", it must be an address, a CIDR '
		. 'range, or a condition with variables'],
	['waiting_room_bypass office;', 'invalid parameter "office"'],
	['waiting_room_bypass ${cookie_vip;',
		'the closing bracket in "cookie_vip" variable is missing'],
	['waiting_room_dry_run yes;', 'invalid value "yes" in '
		. '"waiting_room_dry_run" directive, it must be "on" or "off"'],
	['waiting_room_dry_run on; waiting_room_dry_run off;',
		'"waiting_room_dry_run" directive is duplicate'],
	['waiting_room_log_level debug;', 'invalid value "debug", it must be '
		. '"info", "notice", "warn" or "error"'],
);
for my $case (@bad) {
	my ($directive, $want) = @$case;
	my ($ok, $out) = conf_test($t, "waiting_room_zone zone=z:1m;\n"
		. "server { listen 127.0.0.1:%%PORT_8080%%;\n"
		. "location / { waiting_room z; $directive }\n"
		. "location /_wr/ { waiting_room_api z; } }");
	ok(!$ok && index($out, $want) >= 0, "nginx -t: $directive")
		or diag($out);
}

###############################################################################

# the example: one place inside, so that everyone else would wait

my $example = example('bypass.conf');
$example =~ s/max_active=500/max_active=1/;
$t->write_file_expand('nginx.conf', $example);
$t->run();

my $in = get('/shop');
ok(code($in) == 200 && body($in) eq "origin /shop\n"
	&& xwr($in) eq 'ADMITTED', 'example: the first visitor is let in');
my $inside = cookie($in, 'site');
my $r = get('/shop');
ok(xwr($r) eq 'QUEUED' && $r =~ /<strong id="pos">1</, 'example: the next waits');

$r = http(req('/shop') =~ s/\n\n$/\nUser-Agent: UptimeRobot\/2.0\n\n/r);
ok(code($r) == 200 && body($r) eq "origin /shop\n" && xwr($r) eq 'BYPASSED'
	&& $r !~ /^Set-Cookie/mi, 'example: the monitor, by user agent');

$r = http(req('/shop', 'vip=d5b1c3f0a7e24b6a9c8e1f2d3b4a5c6e'));
ok(code($r) == 200 && xwr($r) eq 'BYPASSED', 'example: a VIP, by cookie');
$r = get('/shop', 'vip=1');
is(xwr($r), 'QUEUED', 'example: a VIP cookie of the wrong value waits');

$r = http(req('/api/cart'));
ok(code($r) == 200 && body($r) eq "origin /api/cart\n"
	&& xwr($r) eq 'BYPASSED', 'example: the API, by path');

$r = http(req('/img/logo.png'));
ok(code($r) == 200 && xwr($r) eq '' && $r !~ /^Set-Cookie/mi,
	'example: static assets, in a location with no room');

$r = http(req('/shop'), LocalAddr => '127.0.0.2');
ok(code($r) == 200 && xwr($r) eq 'BYPASSED',
	'example: the office, by address');

my $st = wait_status('/_wr_status', sub { $_[0]{bypassed} >= 4 });
ok($st->{bypassed} == 4 && $st->{active_sessions} == 1
	&& $st->{queue_length} == 2, 'example: bypasses counted, not active')
	or diag(explain($st));
like(http_get('/_wr_status?format=prometheus'),
	qr/^waiting_room_bypassed_total\{room="site"\} 4\s*$/m,
	'example: bypasses in Prometheus');

# the origin ends the session after the order; the header never leaves nginx

$r = http(req('/checkout/done', $inside));
ok(code($r) == 200 && $r =~ /thank you/ && $r !~ /X-Waiting-Room-Command/i,
	'example: the command header is removed');
like($r, qr/^Set-Cookie: wr_site=; Path=\/; Max-Age=0/m,
	'example: the cookie is cleared');
$st = wait_status('/_wr_status', sub { $_[0]{ended_by_origin} >= 1 });
ok($st->{active_sessions} == 0 && $st->{ended_by_origin} == 1
	&& $st->{sessions_left} == 1, 'example: the session ended by the origin')
	or diag(explain($st));
$r = get('/shop', $inside);
isnt(xwr($r), 'PASSED', 'example: the ended session does not pass');
like($t->read_file('error.log'),
	qr/\[info\].*waiting room "site": the origin ended a session/,
	'example: the end logged');

$t->stop();

###############################################################################

# by address behind the realip module, dry run, log levels, commands

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret waiting_room.key;
    waiting_room_zone zone=b:1m max_active=1;
    waiting_room_zone zone=d:1m max_active=1;
    waiting_room_zone zone=l:1m max_active=1;

    map $http_x_test $b_flag {
        default  "";
        zero     0;
        yes      1;
        word     anything;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        set_real_ip_from  127.0.0.1;
        real_ip_header    X-Real-IP;

        add_header X-WR $waiting_room_status always;

        location /b/ {
            waiting_room b api=/b/_wr/;
            waiting_room_bypass 10.1.0.0/16 192.0.2.7 2001:db8::/32;
            waiting_room_bypass $b_flag;
            proxy_pass http://127.0.0.1:8081/;
        }
        location /b/_wr/ { waiting_room_api b; }
        location = /b/status { waiting_room_status b; }

        location /d/ {
            waiting_room d api=/d/_wr/;
            waiting_room_dry_run on;
            waiting_room_log_level warn;
            proxy_pass http://127.0.0.1:8081/;
        }
        location /d/_wr/ { waiting_room_api d; }
        location = /d/status { waiting_room_status d; }

        location /l/ {
            waiting_room l api=/l/_wr/;
            waiting_room_log_level error;
            proxy_pass http://127.0.0.1:8081/;
        }
        location /l/_wr/ { waiting_room_api l; }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        location / {
            add_header X-Waiting-Room-Command $arg_command;
            return 200 "origin $uri\n";
        }
    }
}

EOF

$t->run();

# by address: IPv4, a range of each family, as the realip module sets it

$in = get('/b/p');
ok(code($in) == 200 && xwr($in) eq 'ADMITTED', 'bypass: one inside');
my $b_in = cookie($in, 'b');
is(xwr(get('/b/p')), 'QUEUED', 'bypass: the room is full');
is(xwr(from('192.0.2.7', '/b/p')), 'BYPASSED', 'bypass: an address');
is(xwr(from('192.0.2.8', '/b/p')), 'ARRIVED', 'bypass: the next address waits');
is(xwr(from('10.1.200.3', '/b/p')), 'BYPASSED', 'bypass: an IPv4 range');
is(xwr(from('10.2.0.1', '/b/p')), 'ARRIVED', 'bypass: outside the range');
is(xwr(from('2001:db8:ffff::1', '/b/p')), 'BYPASSED', 'bypass: an IPv6 range');
is(xwr(from('2001:db9::1', '/b/p')), 'ARRIVED', 'bypass: outside it');

# by condition: anything but "" and "0"

is(xwr(with_test('yes')), 'BYPASSED', 'bypass: condition "1"');
is(xwr(with_test('word')), 'BYPASSED', 'bypass: condition "anything"');
is(xwr(with_test('zero')), 'ARRIVED', 'bypass: condition "0" does not');
is(xwr(with_test('none')), 'ARRIVED', 'bypass: condition "" does not');

# a bypassed request that is not a page load goes through too, and a
# bypassed visitor never takes a place

$r = http("GET /b/img.png HTTP/1.0\nHost: localhost\nX-Test: yes\n\n");
ok(code($r) == 200 && xwr($r) eq 'BYPASSED' && $r !~ /^Set-Cookie/mi,
	'bypass: not a page load');
$st = wait_status('/b/status', sub { $_[0]{bypassed} >= 6 });
ok($st->{bypassed} == 6 && $st->{active_sessions} == 1,
	'bypass: counted, never active') or diag(explain($st));

# the origin's commands: an unknown one is logged and removed; "end" frees
# the slot, and the first in line is called

$r = http(req('/b/p?command=later', $b_in));
ok(xwr($r) eq 'PASSED' && $r !~ /X-Waiting-Room-Command/i,
	'command: unknown, removed');
like($t->read_file('error.log'), qr/\[warn\].*unknown command "later"/,
	'command: unknown, logged');
$r = http(req('/b/p?command=END', $b_in));
ok($r =~ /^Set-Cookie: wr_b=; Path=\/; Max-Age=0/m
	&& $r !~ /X-Waiting-Room-Command/i, 'command: end');
$st = wait_status('/b/status', sub { $_[0]{ended_by_origin} >= 1 });
ok($st->{ended_by_origin} == 1 && $st->{called_unclaimed} == 1,
	'command: the slot goes to the first in line') or diag(explain($st));

# dry run: the room decides and counts, everyone passes

$in = get('/d/p');
ok(code($in) == 200 && xwr($in) eq 'ADMITTED', 'dry run: one inside');
$r = get('/d/p');
ok(code($r) == 200 && body($r) eq "origin /p\n" && xwr($r) eq 'QUEUED_DRY_RUN'
	&& cookie($r, 'd'), 'dry run: the next passes, with a ticket');
my $d_ticket = cookie($r, 'd');
$r = get('/d/p', $d_ticket);
is(xwr($r), 'QUEUED_DRY_RUN', 'dry run: still in line');
$r = http("GET /d/img.png HTTP/1.0\nHost: localhost\n\n");
ok(code($r) == 200 && xwr($r) eq 'REFUSED_DRY_RUN', 'dry run: a refusal');
$st = wait_status('/d/status', sub { $_[0]{dry_run} >= 3 });
ok($st->{dry_run} >= 3 && $st->{queue_length} == 1
	&& $st->{active_sessions} == 1, 'dry run: the line as it would be')
	or diag(explain($st));
my $log = $t->read_file('error.log');
like($log, qr/\[notice\].*waiting room "d" holds the request in line at 1, dry run/,
	'dry run: the place logged one level below warn');
like($log, qr/\[warn\].*waiting room "d" refuses a request without a place that is not a page load, dry run/,
	'dry run: the refusal logged at warn');

# log level error: refusals at error, places in line at warn

get('/l/p');
get('/l/p');
http("GET /l/img.png HTTP/1.0\nHost: localhost\n\n");
$log = $t->read_file('error.log');
like($log, qr/\[warn\].*waiting room "l" (?:holds the request in line|sends a newcomer to the line) at 1(?!, dry run)/,
	'log level: the place at warn');
like($log, qr/\[error\].*waiting room "l" refuses a request without a place that is not a page load(?!, dry run)/,
	'log level: the refusal at error');

$t->stop();

# (nginx -t's [emerg] lines above are in the same log)
unlike($t->read_file('error.log'), qr/\[(?:alert|crit)\]/, 'no alerts');

###############################################################################

# $waiting_room_status, as the test's "add_header X-WR" or the example's
# "add_header X-Waiting-Room" sends it

sub xwr {
	my ($r) = @_;
	return defined $r && $r =~ /^X-(?:WR|Waiting-Room): (\w+)/m ? $1 : '';
}

# a page load of a visitor at $addr, as the realip module is told

sub from {
	my ($addr, $uri) = @_;
	return http(req($uri) =~ s/\n\n$/\nX-Real-IP: $addr\n\n/r);
}

sub with_test {
	my ($value) = @_;
	return http(req('/b/p') =~ s/\n\n$/\nX-Test: $value\n\n/r);
}

# the status once $ready says so (counts reach it within a sweep), at most 5 s

sub wait_status {
	my ($uri, $ready) = @_;
	my $st;
	for (1 .. 50) {
		$st = status($uri);
		return $st if $ready->($st);
		select undef, undef, undef, 0.1;
	}
	return $st;
}

###############################################################################

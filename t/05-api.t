#!/usr/bin/perl

# Tests for the waiting room API (position, heartbeat, leave, heartbeat.js)
# and the status page: bad requests get 4xx answers, leave frees a slot at
# once, and the status figures follow a scripted scenario exactly.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get code body cookie json log_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(98);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=r:1m max_active=2 heartbeat=7s;
    waiting_room_zone zone=s:1m max_active=2;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room r api=/queue-api/;
        }

        location /s/ {
            alias %%TESTDIR%%/;
            waiting_room s;
        }

        location /queue-api/ {
            waiting_room_api r;
        }

        location /_wr/ {
            waiting_room_api s;
        }

        location /api-noslash {
            waiting_room_api s;
        }

        location ~ ^/api-re/ {
            waiting_room_api s;
        }

        location = /status {
            waiting_room_status r;
        }

        location = /status/s {
            waiting_room_status s;
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

# the status before anything happened: all zero, the rates not measured yet

my $st = json(http_get('/status/s'));
is_deeply([ map { $st->{$_} } qw/ avg_wait_seconds admitted_per_minute
	called_per_minute / ], [ undef, undef, undef ], 'status: not measured');
is($st->{room}, 's', 'status: room');
ok($st->{queue_capacity} >= 1000, 'status: queue capacity');
is(join(' ', map { $st->{$_} } qw/ active_sessions max_sessions queue_length
	called_unclaimed admitted_total admitted_from_queue joined_total
	sessions_left sessions_expired tickets_abandoned tickets_missed
	tickets_left rejected_full /), '0 2 0 0 0 0 0 0 0 0 0 0 0',
	'status: all zero');

my $r = http_get('/status');
like($r, qr!^Content-Type: application/json!mi, 'status: json');
like($r, qr!^Cache-Control: no-store!mi, 'status: no-store');
$r = http_head('/status');
ok(code($r) == 200 && body($r) eq '', 'status: HEAD');
$r = http("POST /status HTTP/1.0\nHost: localhost\nContent-Length: 0\n\n");
is(code($r), 405, 'status: POST 405');
like($r, qr/^Allow: GET, HEAD\x0d?$/mi, 'status: Allow');

# visitors for the rest: A, B let in; C, D, E waiting

my %v;
for my $n (qw/ A B C D E /) {
	$r = get('/page.html');
	$v{$n} = cookie($r, 'r');
}
is(json(api('GET', 'position', $v{E}))->{position}, 3, 'E is third');

# methods

for my $m (qw/ POST PUT DELETE /) {
	$r = api($m, 'position', $v{C});
	is(code($r), 405, "position $m: 405");
	like($r, qr/^Allow: GET, HEAD\x0d?$/mi, "position $m: Allow");
}
for my $e (qw/ heartbeat leave /) {
	for my $m (qw/ GET HEAD PUT /) {
		$r = api($m, $e, $v{A});
		is(code($r), 405, "$e $m: 405");
		like($r, qr/^Allow: POST\x0d?$/mi, "$e $m: Allow");
	}
}
is(code(api('POST', 'heartbeat.js')), 405, 'heartbeat.js POST: 405');

# no cookie, bad cookies

for my $e (qw/ heartbeat leave /) {
	is(code(api('POST', $e)), 403, "$e no cookie: 403");
	is(code(api('POST', $e, 'wr_r=' . flip(val($v{A})))), 403,
		"$e forged session: 403");
	is(code(api('POST', $e, 'wr_r=' . flip(val($v{C})))), 403,
		"$e forged ticket: 403");
	is(code(api('POST', $e, 'wr_r=junk')), 403, "$e junk: 403");
	is(code(api('POST', $e, 'wr_s=' . val($v{A}))), 403,
		"$e other cookie name: 403");
}

$r = api('GET', 'position');
is(code($r), 403, 'position no cookie: 403');
is(json($r)->{state}, 'none', 'position no cookie: none');
is(json($r)->{queue_length}, 3, 'position no cookie: queue length');
like($r, qr!^Content-Type: application/json!mi, 'position: json');
like($r, qr!^Cache-Control: no-store!mi, 'position: no-store');
ok(!defined cookie($r, 'r'), 'position no cookie: no cookie set');

$r = api('GET', 'position', 'wr_r=' . flip(val($v{C})));
is(code($r), 403, 'position forged: 403');
is(json($r)->{state}, 'none', 'position forged: none');

# the wrong room's API knows nothing of this room's cookies

is(code(http("POST /_wr/heartbeat HTTP/1.0\nHost: localhost\n"
	. "Cookie: $v{A}\nContent-Length: 0\n\n")), 403,
	'other room api: 403');

# bodies

$r = http("POST /queue-api/heartbeat HTTP/1.0\nHost: localhost\n"
	. "Cookie: $v{A}\nContent-Length: 5000\n\n", body => 'x' x 5000);
is(code($r), 413, 'body over 4k: 413');

$r = http("POST /queue-api/heartbeat HTTP/1.0\nHost: localhost\n"
	. "Cookie: $v{A}\nContent-Length: 4096\n\n", body => 'x' x 4096);
is(code($r), 204, 'body of 4k: 204');

$r = http("POST /queue-api/heartbeat HTTP/1.1\nHost: localhost\n"
	. "Cookie: $v{A}\nTransfer-Encoding: chunked\nConnection: close\n\n"
	. "5\nhello\n0\n\n");
is(code($r), 413, 'chunked body: 413, its size is not declared');

# unknown endpoints

for my $e ('', 'foo', 'positions', 'position/x', 'heartbeat.jsx', 'Leave') {
	is(code(api('GET', $e, $v{C})), 404, "GET /queue-api/$e: 404");
}
is(code(api('POST', 'foo', $v{A})), 404, 'POST unknown: 404');

# heartbeat.js, with the API's own prefix and the room's heartbeat

$r = api('GET', 'heartbeat.js');
is(code($r), 200, 'heartbeat.js');
like($r, qr!^Content-Type: application/javascript!mi, 'heartbeat.js: type');
like(body($r), qr!'/queue-api/'!, 'heartbeat.js: api prefix');
like(body($r), qr!7000!, 'heartbeat.js: interval');
unlike(body($r), qr/\{\{/, 'heartbeat.js: filled');

# the script calls the location's own prefix, whatever the request's URI: a
# line break in it must not break the script, nor a quote end its string

$r = http_get("/queue-api/a%0Ab'c/heartbeat.js");
is(code($r), 200, 'heartbeat.js under a longer URI');
like(body($r), qr!var api = '/queue-api/',!, 'heartbeat.js: the location\'s prefix');
unlike(body($r), qr!a\x0ab|b'c!, 'heartbeat.js: nothing of the URI');

# a location whose name does not end with "/", and a regex location: the
# script calls the prefix of the request's URI, where the endpoints are

like(http_get('/api-noslash/heartbeat.js'), qr!var api = '/api-noslash/',!,
	'heartbeat.js: a location name without a slash');
like(http_get('/api-re/heartbeat.js'), qr!var api = '/api-re/',!,
	'heartbeat.js: a regex location');
like(body(http_get('/_wr/heartbeat.js')), qr!'/_wr/'!,
	'heartbeat.js: other prefix');
$r = api('HEAD', 'heartbeat.js');
ok(code($r) == 200 && body($r) eq '', 'heartbeat.js: HEAD');

# the queue page polls the configured api=

like(get('/page.html', $v{C}), qr!"api":"/queue-api/"!, 'page api');

# heartbeats and positions with good cookies

$r = api('POST', 'heartbeat', $v{A});
is(code($r), 204, 'heartbeat session: 204');
ok(!defined cookie($r, 'r'), 'heartbeat session: no cookie');
is(code(api('POST', 'heartbeat', $v{C})), 204, 'heartbeat ticket: 204');

$r = api('GET', 'position', $v{A});
is(code($r), 200, 'position session: 200');
is(json($r)->{state}, 'admitted', 'position session: admitted');

$r = api('GET', 'position', $v{D});
my $j = json($r);
ok($j->{state} eq 'queued' && $j->{position} == 2 && $j->{queue_length} == 3
	&& ($j->{eta_seconds} // 0) >= 100 && $j->{eta_seconds} <= 300,
	'position ticket, with an estimate from the configuration')
	or diag(explain($j));
ok($j->{refresh_seconds} >= 1 && $j->{refresh_seconds} <= 30,
	'position refresh');
$r = api('HEAD', 'position', $v{D});
ok(code($r) == 200 && body($r) eq '', 'position HEAD');

# leave frees the slot at once: C, polling right after, is let in

$r = api('POST', 'leave', $v{A});
is(code($r), 204, 'leave session: 204');
like($r, qr/^Set-Cookie: wr_r=;.*Max-Age=0/mi, 'leave clears the cookie');

$r = api('GET', 'position', $v{C});
is(json($r)->{state}, 'admitted', 'C let in at once');
my $c = cookie($r, 'r');
ok($c && $c ne $v{C}, 'C session cookie');
like(get('/page.html', $c), qr/^X-WR: PASSED/m, 'C passes');
$v{C} = $c;

is(code(api('POST', 'leave', $v{A})), 403, 'leave twice: 403');
is(code(api('POST', 'heartbeat', $v{A})), 403, 'heartbeat after leave: 403');
is(json(api('GET', 'position', $v{A}))->{state}, 'none',
	'position after leave: none');

# a waiting visitor leaves the queue

$r = api('POST', 'leave', $v{D});
is(code($r), 204, 'leave ticket: 204');
like($r, qr/^Set-Cookie: wr_r=;.*Max-Age=0/mi, 'leave ticket clears cookie');
is(code(api('GET', 'position', $v{D})), 403, 'left ticket: 403');
is(json(api('GET', 'position', $v{E}))->{position}, 1, 'E moves up');

# nothing bad was logged

my $errors = log_errors($t);
is($errors, '', 'no errors logged');

###############################################################################

# the status page, against a scripted scenario in room "s"
#  1. V1, V2 are let in; V3, V4, V5, V6 wait
#  2. V1 leaves: V3 is called; V3 polls and is let in
#  3. V2 leaves: V4 is called, and has not come back yet
#  4. V5 leaves the queue

my %s;
for my $n (1 .. 6) {
	$s{$n} = cookie(get('/s/page.html'), 's');
}

$st = json(http_get('/status/s'));
is(join(' ', @$st{qw/ active_sessions queue_length called_unclaimed
	admitted_total joined_total /}), '2 4 0 2 4', 'status: step 1');

sapi('leave', $s{1});
$st = json(http_get('/status/s'));
is(join(' ', @$st{qw/ active_sessions queue_length called_unclaimed
	sessions_left /}), '1 4 1 1', 'status: V3 called');

is(json(sapi('position', $s{3}))->{state}, 'admitted', 'V3 let in');
sapi('leave', $s{2});
sapi('leave', $s{5});

$st = json(http_get('/status/s'));
my %want = (
	room => 's',
	active_sessions => 1,
	max_sessions => 2,
	queue_length => 2,
	called_unclaimed => 1,
	admitted_total => 3,
	admitted_from_queue => 1,
	joined_total => 4,
	sessions_left => 2,
	sessions_expired => 0,
	tickets_abandoned => 0,
	tickets_missed => 0,
	tickets_left => 1,
	rejected_full => 0,
);
is_deeply({ map { $_ => $st->{$_} } keys %want }, \%want, 'status: final');
ok(defined $st->{avg_wait_seconds} && $st->{avg_wait_seconds} >= 0
	&& $st->{avg_wait_seconds} < 10, 'status: wait measured');
ok(exists $st->{admitted_per_minute} && exists $st->{called_per_minute},
	'status: rates present');

###############################################################################

# a call of room "r"'s API, at "/queue-api/"

sub api {
	my ($method, $what, $cookie) = @_;
	return Test::Nginx::WaitingRoom::api($method, $what, $cookie,
		'/queue-api/');
}

sub sapi {
	my ($what, $cookie) = @_;
	my $m = $what eq 'position' ? 'GET' : 'POST';
	return http("$m /_wr/$what HTTP/1.0\nHost: localhost\nCookie: $cookie\n"
		. "Content-Length: 0\n\n");
}

sub val {
	my ($c) = @_;
	return (split /=/, $c, 2)[1];
}

sub flip {
	my ($s) = @_;
	my $i = length($s) - 3;
	substr($s, $i, 1) = substr($s, $i, 1) eq 'A' ? 'B' : 'A';
	return $s;
}

###############################################################################

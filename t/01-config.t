#!/usr/bin/perl

# Tests for the waiting room directives: every configuration error is caught
# by "nginx -t" with a message naming the bad value, good configurations
# pass, and the secret file is what signs the cookies.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);
my $d = $t->testdir();

# the error log the checks below write to; it must exist for the final
# "no alerts" check even if no test runs nginx

$t->write_file('error.log', '');
$t->write_file('key32', 'k' x 32);
$t->write_file('key32nl', 'k' x 32 . "\n\n");
$t->write_file('key31nl', 'k' x 31 . "\n");
$t->write_file('key_a', 'a' x 64 . "\n");
$t->write_file('key_b', 'b' x 64 . "\n");
$t->write_file('page.html', "<p>{{ room }} {{ position }}</p>\n");
$t->write_file('index.html', "inside\n");
chmod 0755, $d if $> == 0;

my $Z = 'waiting_room_zone zone=r:1m;';
my $short = 'is too short: 31 bytes, at least 32 needed';
my $notice = qr/no waiting_room_secret, cookies are signed with a random key/;

# name, http block contents, the error expected ('' for a good config)

my @cases = (
	['zone without size', 'waiting_room_zone zone=r;',
		'invalid zone size "r"'],
	['zone bad size', 'waiting_room_zone zone=r:abc;',
		'invalid zone size "r:abc"'],
	['zone zero size', 'waiting_room_zone zone=r:0;',
		'invalid zone size "r:0"'],
	['zone too small', 'waiting_room_zone zone=r:16k;',
		'zone "r" is too small'],
	['zone too small for max_active',
		'waiting_room_zone zone=r:64k max_active=100000;',
		qr/zone "r" is too small for max_active=100000, it needs at least \d+k/],
	['zone bad name', 'waiting_room_zone zone=a.b:1m;',
		'invalid zone name "a.b"'],
	['zone empty name', 'waiting_room_zone zone=:1m;',
		'invalid zone name ""'],
	['max_active zero', 'waiting_room_zone zone=r:1m max_active=0;',
		'invalid max_active value "0"'],
	['max_active text', 'waiting_room_zone zone=r:1m max_active=many;',
		'invalid max_active value "many"'],
	['max_active negative', 'waiting_room_zone zone=r:1m max_active=-1;',
		'invalid max_active value "-1"'],
	['max_active empty', 'waiting_room_zone zone=r:1m max_active=;',
		'invalid max_active value ""'],
	['session', 'waiting_room_zone zone=r:1m session=forever;',
		'invalid session value "forever"'],
	['session zero', 'waiting_room_zone zone=r:1m session=0;',
		'invalid session value "0"'],
	['idle', 'waiting_room_zone zone=r:1m idle=1x;',
		'invalid idle value "1x"'],
	['queue_timeout', 'waiting_room_zone zone=r:1m queue_timeout=-5s;',
		'invalid queue_timeout value "-5s"'],
	['claim_window', 'waiting_room_zone zone=r:1m claim_window=;',
		'invalid claim_window value ""'],
	['heartbeat', 'waiting_room_zone zone=r:1m heartbeat=often;',
		'invalid heartbeat value "often"'],
	['unknown parameter', 'waiting_room_zone zone=r:1m burst=5;',
		'invalid parameter "burst=5"'],
	['bare parameter', 'waiting_room_zone zone=r:1m lottery;',
		'invalid parameter "lottery"'],
	['no zone', 'waiting_room_zone max_active=5;',
		'"waiting_room_zone" must have "zone" parameter'],
	['duplicate zone', "$Z waiting_room_zone zone=r:2m;",
		'duplicate zone "r"'],
	['heartbeat vs default idle', 'waiting_room_zone zone=r:1m idle=10s;',
		'"heartbeat=30s" must be shorter than "idle=10s"'],
	['heartbeat equal to idle',
		'waiting_room_zone zone=r:1m idle=5s heartbeat=5s;',
		'"heartbeat=5s" must be shorter than "idle=5s"'],
	['zone in server', 'server { waiting_room_zone zone=r:1m; }',
		'"waiting_room_zone" directive is not allowed here'],

	['secret missing', "$Z waiting_room_secret nokey;",
		qr/waiting_room_secret: cannot read "\Q$d\E\/nokey": /],
	['secret short', "$Z waiting_room_secret key31nl;",
		qr/waiting_room_secret "\Q$d\E\/key31nl" \Q$short\E/],
	['secret duplicate',
		"$Z waiting_room_secret key32; waiting_room_secret key32;",
		'"waiting_room_secret" directive is duplicate'],

	['unknown room', "$Z server { location / { waiting_room x; } }",
		'unknown waiting room "x"'],
	['unknown room for api',
		"$Z server { location /_wr/ { waiting_room_api y; } }",
		'unknown waiting room "y"'],
	['unknown room for status',
		"$Z server { location /s { waiting_room_status z; } }",
		'unknown waiting room "z"'],
	['unknown room in http', "$Z waiting_room q;",
		'unknown waiting room "q"'],
	['room bad api', "$Z server { location / { waiting_room r api=_wr; } }",
		'invalid api value "_wr"'],
	['room bad parameter',
		"$Z server { location / { waiting_room r bypass=1; } }",
		'invalid parameter "bypass=1"'],
	['room off with parameter',
		"$Z server { location / { waiting_room off api=/x/; } }",
		'invalid parameter "api=/x/"'],
	['room duplicate',
		"$Z server { location / { waiting_room r; waiting_room r; } }",
		'"waiting_room" directive is duplicate'],
	['room no arguments', "$Z server { location / { waiting_room; } }",
		'invalid number of arguments in "waiting_room" directive'],
	['queue status', "$Z server { waiting_room_queue_status 204; }",
		'invalid value "204"'],
	['page missing', "$Z server { waiting_room_page nopage.html; }",
		qr/waiting_room_page: cannot read "\Q$d\E\/nopage.html"/],
	['api in server', "$Z server { waiting_room_api r; }",
		'"waiting_room_api" directive is not allowed here'],

	['good: minimal', $Z, ''],
	['good: all parameters',
		'waiting_room_zone zone=shop-1_x:2m max_active=50 session=10m '
		. 'idle=1m queue_timeout=1h claim_window=20s heartbeat=15s;', ''],
	['good: secret with newlines stripped',
		"$Z waiting_room_secret key32nl;", ''],
	['good: everything',
		"$Z waiting_room_secret key32; waiting_room r; "
		. "waiting_room_queue_status 503; "
		. "server { listen 127.0.0.1:8080; "
		. "location / { waiting_room r api=/q/; waiting_room_page page.html; "
		. "waiting_room_queue_status 429; } "
		. "location /off/ { waiting_room off; } "
		. "location /q/ { waiting_room_api r; } "
		. "location = /st { waiting_room_status r; } }", ''],
	['good: room used before defined',
		'server { listen 127.0.0.1:8080; location / { waiting_room late; } '
		. 'location /_wr/ { waiting_room_api late; } } '
		. 'waiting_room_zone zone=late:1m;', ''],
	['good: max_active that needs a large zone',
		'waiting_room_zone zone=r:2m max_active=20000;', ''],
);

$t->plan(2 * @cases + scalar(grep { $_->[2] eq '' } @cases) + 12);

for my $c (@cases) {
	my ($name, $http, $expect) = @$c;
	my ($ok, $out) = conf_test($t, $http);

	if ($expect eq '') {
		ok($ok, "$name: passes");
		like($out, qr/test is successful/, "$name: successful");

		# without waiting_room_secret, a notice says the key is random

		if ($http =~ /waiting_room_secret/) {
			unlike($out, qr/no waiting_room_secret/, "$name: no notice");
		} else {
			like($out, qr/\[notice\] .*waiting room "[-\w]+": $notice/,
				"$name: notice");
		}
		next;
	}

	ok(!$ok, "$name: fails");
	$expect = qr/\[emerg\] .*\Q$expect\E/ unless ref $expect;
	like($out, $expect, "$name: message") or diag($out);
}

# the size the "too small" message asks for is enough

my (undef, $small) = conf_test($t,
	'waiting_room_zone zone=r:64k max_active=5000;');
my ($need) = $small =~ /it needs at least (\d+)k/;
ok($need && (conf_test($t,
	"waiting_room_zone zone=r:${need}k max_active=5000;"))[0],
	'the size asked for is enough') or diag($small);

# the message points at the file and line

my (undef, $out) = conf_test($t,
	"\n\nwaiting_room_zone zone=r:1m max_active=0;");
like($out, qr/invalid max_active value "0" in \Q$d\E\/test\.conf:\d+/,
	'message names file and line');

###############################################################################

# A running nginx with the secret file: cookies are signed with it, so a
# reload to another secret voids them and a reload back validates them again
# (the zone, and the session in it, is kept over reloads).

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=r:1m max_active=1;
    waiting_room_secret KEY;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room r;
        }

        location /_wr/ {
            waiting_room_api r;
        }

        location = /key {
            return 200 "KEY";
        }
    }
}

EOF

(my $ca = $conf) =~ s/KEY/key_a/g;
(my $cb = $conf) =~ s/KEY/key_b/g;

$t->write_file_expand('nginx.conf', $ca);
$t->run();

my $v1 = cookie(get('/index.html'));
ok($v1, 'key a: admitted');
like(get('/index.html', $v1), qr/^X-WR: PASSED/m, 'key a: passes');

$t->write_file_expand('nginx.conf', $cb);
reload_to($t, 'key_b');

like(get('/index.html', $v1), qr/^X-WR: QUEUED/m,
	'key b: cookie of key a void');

$t->write_file_expand('nginx.conf', $ca);
reload_to($t, 'key_a');

like(get('/index.html', $v1), qr/^X-WR: PASSED/m,
	'key a again: cookie valid, session kept');

# A restart empties the room.  The cookies from before it are still signed
# right, but they must not stand for the sessions and tickets of the new
# visitors, which the room numbers afresh.

my $v2 = cookie(get('/index.html'));
like(get('/_wr/position', $v2), qr/"position":2/, 'v2 waits, second');

$t->stop();
$t->run();

my $x = get('/index.html');
like($x, qr/^X-WR: ADMITTED/m, 'after restart: X in');
my $y = cookie(get('/index.html'));
like(get('/_wr/position', $y), qr/"position":1/, 'after restart: Y waits');
my $z = cookie(get('/index.html'));
like(get('/_wr/position', $z), qr/"position":2/, 'after restart: Z waits');

unlike(get('/index.html', $v1), qr/^X-WR: PASSED/m,
	'after restart: old session cookie is not X\'s session');
unlike(get('/_wr/position', $v2), qr/"state":"queued"/,
	'after restart: old ticket cookie is not Z\'s ticket');

###############################################################################

# the cookie of room "r", undef if none

sub cookie {
	my ($r) = @_;
	return Test::Nginx::WaitingRoom::cookie($r, 'r');
}

# wait for the reload to the configuration with the secret $key, which
# "/key" names

sub reload_to {
	my ($t, $key) = @_;
	Test::Nginx::WaitingRoom::reload_to($t, $key, '/key')
		or diag("reload to $key not seen");
}

###############################################################################

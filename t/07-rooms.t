#!/usr/bin/perl

# Tests for several rooms in one nginx: each has its own capacity, queue and
# cookie, and a cookie of one room counts for nothing in another, even with
# the same secret; "waiting_room" is inherited from the server level and can
# be switched off or changed per location.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ req code body wr pos_of json come_back /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(37);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=a:1m max_active=1;
    waiting_room_zone zone=b:1m max_active=2;
    waiting_room_zone zone=c:1m max_active=1;
    waiting_room_secret secret.key;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location /a/ {
            alias %%TESTDIR%%/;
            waiting_room a api=/_wr_a/;
        }

        location /b/ {
            alias %%TESTDIR%%/;
            waiting_room b api=/_wr_b/;
        }

        # a fallback into another room's location

        location /a2/ {
            alias %%TESTDIR%%/;
            waiting_room a api=/_wr_a/;
            try_files $uri /c/page.html;
        }

        location /c/ {
            alias %%TESTDIR%%/;
            waiting_room c api=/_wr_c/;
        }

        location /_wr_a/ {
            waiting_room_api a;
        }

        location /_wr_b/ {
            waiting_room_api b;
        }

        location /_wr_c/ {
            waiting_room_api c;
        }

        location = /status/a {
            waiting_room_status a;
        }

        location = /status/b {
            waiting_room_status b;
        }
    }

    # the room set for the whole server

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;
        waiting_room a;

        location / {
        }

        location /open/ {
            alias %%TESTDIR%%/;
            waiting_room off;
        }

        location /b/ {
            alias %%TESTDIR%%/;
            waiting_room b api=/_wr_b/;
        }

        location /_wr/ {
            waiting_room_api a;
        }

        location /_wr_b/ {
            waiting_room_api b;
        }

        location = /status {
            waiting_room_status a;
        }
    }
}

EOF

$t->write_file('secret.key', 's' x 32);
$t->write_file('page.html', "a page\n");
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

my %v;

# X is let into a, and then, as a newcomer, into b

my $r = get('/a/page.html');
is(wr($r), 'ADMITTED', 'X in a');
$v{Xa} = cookie($r, 'a');
ok(!cookie($r, 'b'), 'X: no cookie of b');

$r = get('/b/page.html', $v{Xa});
is(wr($r), 'ADMITTED', 'X with a cookie of a is new in b');
$v{Xb} = cookie($r, 'b');

like(get('/a/page.html', "$v{Xa}; $v{Xb}"), qr/^X-WR: PASSED/m,
	'X passes a with both cookies');
like(get('/b/page.html', "$v{Xb}; $v{Xa}"), qr/^X-WR: PASSED/m,
	'X passes b with both cookies');

# capacities are apart: a is full with X, b still has room for Y

$r = get('/a/page.html');
ok(wr($r) eq 'QUEUED' && pos_of($r) == 1, 'Y waits in a');
$v{Ya} = cookie($r, 'a');

$r = get('/b/page.html', $v{Ya});
is(wr($r), 'ADMITTED', 'Y in b');
$v{Yb} = cookie($r, 'b');

$r = get('/b/page.html');
ok(wr($r) eq 'QUEUED' && pos_of($r) == 1, 'Z waits in b');
$v{Zb} = cookie($r, 'b');

$r = get('/a/page.html', $v{Zb});
ok(wr($r) eq 'QUEUED' && pos_of($r) == 2, 'Z waits in a, second');
$v{Za} = cookie($r, 'a');

# a cookie of a under the name of b: another room's token, same secret

(my $forged = $v{Xa}) =~ s/^wr_a=/wr_b=/;
$r = get('/b/page.html', $forged);
ok(wr($r) eq 'QUEUED' && pos_of($r) == 2, 'a token as wr_b: newcomer');
(my $forged2 = $v{Ya}) =~ s/^wr_a=/wr_b=/;
is(code(http("GET /_wr_b/position HTTP/1.0\nHost: localhost\n"
	. "Cookie: $forged2\n\n")), 403, 'a ticket as wr_b: position 403');

my $sa = json(http_get('/status/a'));
my $sb = json(http_get('/status/b'));
is("$sa->{active_sessions} $sa->{queue_length}", '1 2', 'status a');
is("$sb->{active_sessions} $sb->{queue_length}", '2 2', 'status b');
is("$sa->{room} $sb->{room}", 'a b', 'status rooms');

# one room's API does not act on the other's cookies

is(code(api('b', 'POST', 'leave', $v{Xa})), 403, 'leave a via api b: 403');
is(code(api('a', 'POST', 'heartbeat', $v{Yb})), 403,
	'heartbeat b via api a: 403');

# X leaves a: Y, first in a, is let in; X stays in b

like(api('a', 'POST', 'leave', $v{Xa}), qr/^HTTP\/1\.\d 204/, 'X leaves a');
like(get('/b/page.html', $v{Xb}), qr/^X-WR: PASSED/m, 'X still in b');
$r = api('b', 'GET', 'position', $v{Zb});
is(json($r)->{state}, 'queued', 'b queue did not move');
$r = api('a', 'GET', 'position', $v{Ya});
is(json($r)->{state}, 'admitted', 'Y let into a');
$v{Ya} = cookie($r, 'a');
like(get('/a/page.html', $v{Ya}), qr/^X-WR: PASSED/m, 'Y passes a');
is(json(api('a', 'GET', 'position', $v{Za}))->{position}, 1, 'Z first in a');

# an internal redirect into another room's location: that room decides too

like(get('/c/page.html'), qr/^X-WR: ADMITTED/m, 'c: one in, c is full');
$r = get('/a2/nothing', $v{Ya});
like($r, qr/^X-WR: QUEUED/m, 'redirect from a into c: c decides');
unlike($r, qr/a page/, 'redirect from a into c: page not served');

###############################################################################

# the server-level room; a is full (Y), Z waits in it

$r = get('/page.html', undef, 8081);
ok(wr($r) eq 'QUEUED' && pos_of($r) == 2, 'server level: W waits in a');
$v{Wa} = cookie($r, 'a');

like(get('/page.html', $v{Ya}, 8081), qr/^X-WR: PASSED/m,
	'server level: Y passes');

$r = get('/open/page.html', undef, 8081);
ok(body($r) eq "a page\n" && wr($r) eq '' && !cookie($r, 'a'),
	'server level: off');

$r = get('/b/page.html', $v{Xb}, 8081);
is(wr($r), 'PASSED', 'server level: location with b');

# the room's own API and status in that server are not stopped by the room:
# a waiting visitor's poll gets its position, the operator the figures

$r = http("GET /_wr/position HTTP/1.0\nHost: localhost\nCookie: $v{Wa}\n\n",
	PeerAddr => '127.0.0.1:' . port(8081));
like($r, qr!^Content-Type: application/json!mi, 'server level: poll is json');
is(json($r)->{position}, 2, 'server level: poll position');

$r = http("POST /_wr/leave HTTP/1.0\nHost: localhost\nCookie: $v{Za}\n"
	. "Content-Length: 0\n\n", PeerAddr => '127.0.0.1:' . port(8081));
is(code($r), 204, 'server level: waiting visitor leaves');

$r = http("GET /status HTTP/1.0\nHost: localhost\n\n",
	PeerAddr => '127.0.0.1:' . port(8081));
like($r, qr!^Content-Type: application/json!mi, 'server level: status json');
ok(!cookie($r, 'a'), 'server level: status gives no ticket');

$r = http("GET /_wr/heartbeat.js HTTP/1.0\nHost: localhost\n\n",
	PeerAddr => '127.0.0.1:' . port(8081));
like($r, qr!^Content-Type: application/javascript!mi,
	'server level: heartbeat.js');

$sa = json(http_get('/status/a'));
is($sa->{joined_total}, 3, 'server level: API and status joined nobody');
is($sa->{queue_length}, 1, 'server level: W alone in line');

###############################################################################

# a browser's visit, on $port (8080 unless given): see WaitingRoom::get

sub get {
	my ($uri, $cookie, $port) = @_;
	my @peer = (PeerAddr => '127.0.0.1:' . port($port || 8080));
	return come_back(http(req($uri, $cookie), @peer), $uri, $cookie, undef,
		@peer);
}

# a call of the API of $room, at "/_wr_$room/"

sub api {
	my ($room, $method, $what, $cookie) = @_;
	return Test::Nginx::WaitingRoom::api($method, $what, $cookie,
		"/_wr_$room/");
}

# the room's cookie, '' if none

sub cookie {
	my ($r, $room) = @_;
	return Test::Nginx::WaitingRoom::cookie($r, $room) // '';
}

###############################################################################

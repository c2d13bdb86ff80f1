#!/usr/bin/perl

# Tests for the queue: visitors are let in in the order they joined, as
# slots are freed; the called visitor gets in on a position poll or on a page
# load, in place; positions shrink; a newcomer never gets ahead of those
# waiting.  Also the queue page: default, a custom template, its status.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get post code body wr pos_of json status /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(66);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=q:1m max_active=2;
    waiting_room_zone zone=tpl:1m max_active=1 claim_window=30s;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room q;
        }

        location /_wr/ {
            waiting_room_api q;
        }

        location = /status {
            waiting_room_status q;
        }

        location /tpl/ {
            alias %%TESTDIR%%/;
            waiting_room tpl api=/tpl-api/;
            waiting_room_page page.tpl;
            waiting_room_queue_status 429;

            location /tpl/503/ {
                alias %%TESTDIR%%/;
                waiting_room_queue_status 503;
            }
        }

        location /tpl-api/ {
            waiting_room_api tpl;
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
$t->write_file('index.html', "the index\n");
$t->write_file('page.tpl', 'ROOM={{ room }} POS={{ position }} '
	. 'LEN={{ queue_length }} ETA={{ eta_text }}|{{ eta_seconds }} '
	. 'REFRESH={{ refresh }} API={{ api }} RAW={% raw %}{{NOPE}}{% endraw %} '
	. '{{ "<&>" }}' . "\n");
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

my %v;

# A and B are let in; C, D, E, F join the queue in this order

for my $n (qw/ A B /) {
	my $r = get('/page.html');
	is(wr($r), 'ADMITTED', "$n admitted");
	$v{$n} = cookie($r);
}

my $i = 0;
for my $n (qw/ C D E F /) {
	my $r = get('/page.html');
	$i++;
	ok(wr($r) eq 'QUEUED' && pos_of($r) == $i, "$n queued at $i");
	$v{$n} = cookie($r);
}

is(positions(qw/ C D E F /), 'C:1 D:2 E:3 F:4', 'positions by poll');
is(json(position('C'))->{queue_length}, 4, 'queue length in poll');

# A leaves: C is called, and holds the slot until it comes back.  Those
# behind C keep their positions; a newcomer joins the end, even though the
# slot is not taken yet

like(post('/_wr/leave', $v{A}), qr/^HTTP\/1\.\d 204/, 'A leaves');
is(status()->{called_unclaimed}, 1, 'C called');
is(positions(qw/ D E F /), 'D:2 E:3 F:4', 'positions while C is called');

my $r = get('/page.html');
ok(wr($r) eq 'QUEUED' && pos_of($r) == 5, 'newcomer G behind C');
$v{G} = cookie($r);

is(positions(qw/ D E F G /), 'D:2 E:3 F:4 G:5', 'nobody else let in');

# C's poll lets it in and gives it a session cookie, which then passes

$r = position('C');
is(code($r), 200, 'C poll 200');
is(json($r)->{state}, 'admitted', 'C poll: admitted');
my $c = cookie($r);
ok($c && $c ne $v{C}, 'C gets a session cookie');
$v{C} = $c;

$r = get('/page.html', $v{C});
ok(wr($r) eq 'PASSED' && body($r) eq "a page\n", 'C passes');

is(positions(qw/ D E F G /), 'D:1 E:2 F:3 G:4', 'positions shrink');

# a page load keeps the ticket and the place

$r = get('/page.html', $v{E});
ok(pos_of($r) == 2 && !cookie($r), 'E reloads: same place, same ticket');

# B leaves: D is called and gets in on a page load, in place: the content is
# served, no redirect

like(post('/_wr/leave', $v{B}), qr/^HTTP\/1\.\d 204/, 'B leaves');

$r = position('E');
ok(json($r)->{state} eq 'queued' && json($r)->{position} == 2,
	'E not let in past D');

# ("/" is served through an internal redirect to /index.html: the gate
# decides once, with one cookie)

$r = get('/', $v{D});
is(code($r), 200, 'D page load: 200');
is(body($r), "the index\n", 'D page load: content');
is(wr($r), 'ADMITTED', 'D page load: ADMITTED');
$c = cookie($r);
ok($c && $c ne $v{D}, 'D gets a session cookie');
is(scalar(() = $r =~ /^Set-Cookie:/mig), 1, 'D gets one cookie');
$v{D} = $c;
like(get('/page.html', $v{D}), qr/^X-WR: PASSED/m, 'D passes');

is(positions(qw/ E F G /), 'E:1 F:2 G:3', 'positions shrink again');

# C leaves: E is called; F and G, polling or loading pages, stay behind

like(post('/_wr/leave', $v{C}), qr/^HTTP\/1\.\d 204/, 'C leaves');

$r = get('/page.html', $v{F});
ok(wr($r) eq 'QUEUED' && pos_of($r) == 2, 'F page load: still 2nd');
$r = position('G');
ok(json($r)->{state} eq 'queued' && json($r)->{position} == 3,
	'G poll: still 3rd');
$r = get('/page.html');
ok(wr($r) eq 'QUEUED' && pos_of($r) == 4, 'newcomer H last');
$v{H} = cookie($r);

$r = position('E');
is(json($r)->{state}, 'admitted', 'E let in');
$v{E} = cookie($r);

is(positions(qw/ F G H /), 'F:1 G:2 H:3', 'F G H in order');

# the counts add up

my $st = status();
is($st->{active_sessions}, 2, 'active');
is($st->{queue_length}, 3, 'queue length');
is($st->{called_unclaimed}, 0, 'none called');
is($st->{admitted_total}, 5, 'admitted total');
is($st->{admitted_from_queue}, 3, 'admitted from queue');
is($st->{joined_total}, 6, 'joined');
is($st->{sessions_left}, 3, 'left');

# an old session cookie, after leaving, is no cookie: a new ticket at the end

$r = get('/page.html', $v{A});
ok(wr($r) eq 'QUEUED' && pos_of($r) == 4 && cookie($r) ne $v{A},
	'A after leaving: new ticket');

# a queued visitor's form (a page load) gets the page; its body is
# discarded, the connection is fine

my $form = "Sec-Fetch-Mode: navigate\nSec-Fetch-Dest: document\n";
$r = http("POST /page.html HTTP/1.0\nHost: localhost\nCookie: $v{F}\n"
	. "${form}Content-Length: 10\n\n0123456789");
ok(code($r) == 200 && pos_of($r) == 1, 'queued POST with body');

# a big body is discarded too, and the connection is kept for the next
# request: both get their answers

$r = http("POST /page.html HTTP/1.1\nHost: localhost\nCookie: $v{F}\n"
	. "${form}Content-Length: 200000\n\n" . ('x' x 200000)
	. "GET /page.html HTTP/1.1\nHost: localhost\nCookie: $v{D}\n"
	. "Connection: close\n\n");
ok(defined $r && $r =~ m!^HTTP/1\.1 200 .*<strong id="pos">1</strong>.*!s
	&& $r =~ m!\x0d\x0a\x0d\x0aa page\n\z!s, 'big body discarded, keepalive');

# HEAD is no page load: a short 503, the headers only, the place kept

$r = http("HEAD /page.html HTTP/1.0\nHost: localhost\nCookie: $v{F}\n\n");
ok(code($r) == 503 && wr($r) eq 'QUEUED' && body($r) eq ''
	&& $r =~ /^Retry-After: \d+/mi, 'queued HEAD');

# the default queue page

$r = get('/page.html', $v{G});
like($r, qr!^Content-Type: text/html; charset=utf-8!mi, 'page: type');
like($r, qr!^Cache-Control: no-store!mi, 'page: no-store');
my ($retry) = $r =~ /^Retry-After: (\d+)/mi;
ok($retry && $retry >= 1 && $retry <= 30, 'page: Retry-After');
like($r, qr!You are number <strong id="pos">2</strong> in line!, 'page: text');
like($r, qr!<dd id="len">4</dd>!, 'page: queue length');
like($r, qr!<dd id="eta">about \d+ minutes?<!,
	'page: a wait estimated from the configuration');
like($r, qr!"api":"/_wr/"!, 'page: api');
like($r, qr!^Refresh: $retry\s*$!m, 'page: refresh matches Retry-After');
unlike($r, qr/\{\{/, 'page: all placeholders filled');

###############################################################################

# a custom template, the queue status, the api= prefix

$r = get('/tpl/page.html');
is(wr($r), 'ADMITTED', 'tpl: first in');

$r = get('/tpl/page.html');
is(code($r), 429, 'tpl: queue status 429');
# before anyone has left, the estimate comes from the configuration: a visit of
# 1.5 x idle (90s) and a sixth of claim_window (30s), for the one slot: 140s
like(body($r), qr{^ROOM=tpl\ POS=1\ LEN=1\ ETA=about\ 2\ minutes\|1[45]\d\ REFRESH=10
	\ API=/tpl-api/\ RAW=\{\{NOPE\}\}\ &lt;&amp;&gt;\n\z}x,
	'tpl: variables, escaped for HTML');
like($r, qr/^Retry-After: 10\x0d?$/mi, 'tpl: Retry-After');
like($r, qr/^Cache-Control: no-store/mi, 'tpl: no-store');
my $tc = cookie($r, 'tpl');
ok($tc, 'tpl: ticket');

$r = get('/tpl/503/page.html', $tc);
is(code($r), 503, 'tpl: nested location status 503');
like(body($r), qr/^ROOM=tpl POS=1 /, 'tpl: nested location, same ticket');
ok(!cookie($r, 'tpl'), 'tpl: nested location, no new ticket');

$r = get('/tpl/page.html');
like(body($r), qr/^ROOM=tpl POS=2 LEN=2 /, 'tpl: second in line');

$r = http("GET /tpl-api/position HTTP/1.0\nHost: localhost\n"
	. "Cookie: $tc\n\n");
is(json($r)->{position}, 1, 'tpl: api position');

# the rooms are apart: q's cookies are unknown to tpl

$r = get('/tpl/page.html', $v{D});
like(body($r), qr/^ROOM=tpl POS=3 /, 'tpl: q cookie is no cookie');

###############################################################################

sub position {
	my ($n) = @_;
	return get('/_wr/position', $v{$n});
}

sub positions {
	return join ' ', map {
		my $j = json(position($_));
		"$_:" . ($j->{state} eq 'queued' ? $j->{position} : $j->{state})
	} @_;
}

# the room's cookie, of "q" unless named; '' if none

sub cookie {
	my ($r, $room) = @_;
	$room = 'q' unless defined $room;
	return Test::Nginx::WaitingRoom::cookie($r, $room) // '';
}

###############################################################################

#!/usr/bin/perl

# Tests for the time limits, swept by the workers' timers: an idle session
# frees its slot; heartbeats keep a session alive past "idle", but not past
# "session"; a called visitor who does not come back within "claim_window"
# loses the slot to the next, and keeps a place at the front once more; a
# waiting visitor not seen for "queue_timeout" is dropped, while polls, page
# loads and heartbeats keep a ticket alive.
#
# The five scenarios run side by side, one room each, in one timeline.

###############################################################################

use warnings;
use strict;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get code wr cookie /;

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

    waiting_room_zone zone=idle:1m max_active=1 idle=2s heartbeat=1s;
    waiting_room_zone zone=hb:1m max_active=1 idle=2s heartbeat=1s;
    waiting_room_zone zone=life:1m max_active=1 session=2s idle=1s
                      heartbeat=500ms;
    waiting_room_zone zone=claim:1m max_active=1 claim_window=2s;
    waiting_room_zone zone=qt:1m max_active=1 queue_timeout=2s
                      claim_window=2s;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location /idle/ { waiting_room idle api=/_wr/idle/; }
        location /hb/ { waiting_room hb api=/_wr/hb/; }
        location /life/ { waiting_room life api=/_wr/life/; }
        location /claim/ { waiting_room claim api=/_wr/claim/; }
        location /qt/ { waiting_room qt api=/_wr/qt/; }

        location /_wr/idle/ { waiting_room_api idle; }
        location /_wr/hb/ { waiting_room_api hb; }
        location /_wr/life/ { waiting_room_api life; }
        location /_wr/claim/ { waiting_room_api claim; }
        location /_wr/qt/ { waiting_room_api qt; }

        location /status/idle { waiting_room_status idle; }
        location /status/hb { waiting_room_status hb; }
        location /status/life { waiting_room_status life; }
        location /status/claim { waiting_room_status claim; }
        location /status/qt { waiting_room_status qt; }
    }
}

EOF

for my $room (qw/ idle hb life claim qt /) {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/page.html", "$room page\n");
}
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

my %v;

# idle: A is let in and goes quiet; B waits and polls

$v{idle_A} = enter('idle', 'ADMITTED');
my %start = (idle => time());
$v{idle_B} = enter('idle', 'QUEUED');

# hb: A is let in and sends heartbeats; B waits and polls

$v{hb_A} = enter('hb', 'ADMITTED');
$v{hb_B} = enter('hb', 'QUEUED');

# life: A is let in and sends heartbeats, but the session has a lifetime

$v{life_A} = enter('life', 'ADMITTED');
$start{life} = time();
$v{life_B} = enter('life', 'QUEUED');

# claim: A is let in, B and C wait; A leaves, B is called and never returns

$v{claim_A} = enter('claim', 'ADMITTED');
$v{claim_B} = enter('claim', 'QUEUED');
$v{claim_C} = enter('claim', 'QUEUED');

# qt: A is let in; B waits and is never seen again; C polls, D loads pages,
# E sends heartbeats

$v{qt_A} = enter('qt', 'ADMITTED');
$v{qt_B} = enter('qt', 'QUEUED');
$start{qt} = time();
$v{qt_C} = enter('qt', 'QUEUED');
$v{qt_D} = enter('qt', 'QUEUED');
$v{qt_E} = enter('qt', 'QUEUED');

my $t0 = time();

like(post('claim', 'leave', $v{claim_A}), qr/^HTTP\/1\.\d 204/,
	'claim: A leaves');
$start{claim} = time();
$start{hb} = $t0;

# times are measured from the moment the clock of each scenario started:
# A let in (idle, life), A left (claim), B joined (qt)

my (%at, %bad, %res, $qt_done);

while (time() - $t0 < 7) {
	my $now = time() - $t0;

	# idle: B polls until let in

	if (!$at{idle}) {
		my $j = json(get('/_wr/idle/position', $v{idle_B}));
		if ($j->{state} eq 'admitted') {
			$at{idle} = time() - $start{idle};
		} elsif ($j->{state} ne 'queued') {
			$bad{idle} = $j->{state};
		}
	}

	# hb: A beats, B polls, for 4 seconds, twice "idle"

	if ($now < 4) {
		$bad{hb_beat}++ unless code(post('hb', 'heartbeat', $v{hb_A})) == 204;
		my $j = json(get('/_wr/hb/position', $v{hb_B}));
		$bad{hb} = "$j->{state} at $now" unless $j->{state} eq 'queued';
	} else {
		$at{hb} //= $now;
	}

	# life: A beats, B polls until let in

	if (!$at{life}) {
		my $hb = code(post('life', 'heartbeat', $v{life_A}));
		my $j = json(get('/_wr/life/position', $v{life_B}));
		$at{life_beat_refused} //= $now if $hb == 403;
		if ($j->{state} eq 'admitted') {
			$at{life} = time() - $start{life};

			# at once, before B's own session ends in turn

			my $b = cookie($j->{response}, 'life');
			$res{life_B} = wr(get('/life/page.html', $b));
			$res{life_A_beat} = code(post('life', 'heartbeat', $v{life_A}));
			$res{life_A} = wr(get('/life/page.html', $v{life_A}));
			$res{life_expired} = status('life')->{sessions_expired};
		}
	}

	# claim: C polls until let in

	if (!$at{claim}) {
		my $j = json(get('/_wr/claim/position', $v{claim_C}));
		if ($j->{state} eq 'admitted') {
			$at{claim} = time() - $start{claim};

			# B, late by a moment: back within one more claim window

			$res{claim_B} = get('/_wr/claim/position', $v{claim_B});
		} elsif ($j->{state} ne 'queued') {
			$bad{claim} = $j->{state};
		}
	}

	# qt: C polls, D loads pages, E beats; B is gone when C is first

	if (!$at{qt} || $now < $qt_done + 1) {
		my $j = json(get('/_wr/qt/position', $v{qt_C}));
		$at{qt} //= time() - $start{qt}
			if $j->{state} eq 'queued' && $j->{position} == 1;
		$bad{qt_C} = $j->{state} unless $j->{state} eq 'queued';
		$bad{qt_D}++ unless wr(get('/qt/page.html', $v{qt_D})) eq 'QUEUED';
		$bad{qt_E}++ unless code(post('qt', 'heartbeat', $v{qt_E})) == 204;
	}

	$qt_done //= $now if $at{qt};
	last if $at{idle} && $at{hb} && $at{life} && $at{claim} && $at{qt}
		&& $now > $qt_done + 1;

	select undef, undef, undef, 0.2;
}

diag(join ' ', map { sprintf "%s=%.2f", $_, $at{$_} } sort keys %at)
	if $ENV{TEST_NGINX_VERBOSE};

###############################################################################

# idle

ok(!$bad{idle}, 'idle: B waits until let in') or diag($bad{idle});
ok(in_range($at{idle}, 1.9, 4), 'idle: slot freed after idle')
	or diag("at " . ($at{idle} // 'never'));
is(status('idle')->{sessions_expired}, 1, 'idle: counted');
like(get('/idle/page.html', $v{idle_A}), qr/^X-WR: QUEUED/m,
	'idle: A is a newcomer');

# hb

ok(!$bad{hb_beat}, 'hb: heartbeats 204');
ok(!$bad{hb}, 'hb: B kept waiting') or diag($bad{hb});
ok($at{hb}, 'hb: ran 4 s');
like(get('/hb/page.html', $v{hb_A}), qr/^X-WR: PASSED/m, 'hb: A still in');
is(status('hb')->{sessions_expired}, 0, 'hb: nothing expired');

# life

ok(in_range($at{life}, 1.9, 4), 'life: session ends despite heartbeats')
	or diag("at " . ($at{life} // 'never'));
ok(defined $at{life_beat_refused}, 'life: heartbeat refused after end');
is($res{life_A_beat}, 403, 'life: A heartbeat 403');
is($res{life_A}, 'QUEUED', 'life: A is a newcomer');
is($res{life_B}, 'PASSED', 'life: B in');
is($res{life_expired}, 1, 'life: counted');

# claim

ok(!$bad{claim}, 'claim: C waits until let in') or diag($bad{claim});
ok(in_range($at{claim}, 1.9, 4), 'claim: C let in after claim window')
	or diag("at " . ($at{claim} // 'never'));
my $r = $res{claim_B};
is(code($r), 200, 'claim: B, late, keeps a place');
is(json($r)->{position}, 1, 'claim: B first in line, once more');
like(get('/claim/page.html', $v{claim_B}), qr/^X-WR: QUEUED/m,
	'claim: B waits for the next slot');
my $st = status('claim');
is($st->{tickets_missed}, 0, 'claim: none missed for good');
is($st->{active_sessions}, 1, 'claim: one active');
is($st->{admitted_from_queue}, 1, 'claim: one from the queue');

# qt

ok(in_range($at{qt}, 1.9, 4), 'qt: B dropped after queue_timeout')
	or diag("at " . ($at{qt} // 'never'));
ok(!$bad{qt_C}, 'qt: polls keep a ticket');
ok(!$bad{qt_D}, 'qt: page loads keep a ticket');
ok(!$bad{qt_E}, 'qt: heartbeats keep a ticket');
$r = get('/_wr/qt/position', $v{qt_B});
is(code($r), 403, 'qt: B position 403');
is(json($r)->{state}, 'none', 'qt: B state none');
is(json(get('/_wr/qt/position', $v{qt_D}))->{position}, 2, 'qt: D 2nd');
is(json(get('/_wr/qt/position', $v{qt_E}))->{position}, 3, 'qt: E 3rd');
$st = status('qt');
is($st->{tickets_abandoned}, 1, 'qt: counted abandoned');
is($st->{queue_length}, 3, 'qt: 3 waiting');

# when A leaves, C is called, not B

like(post('qt', 'leave', $v{qt_A}), qr/^HTTP\/1\.\d 204/, 'qt: A leaves');
is(json(get('/_wr/qt/position', $v{qt_C}))->{state}, 'admitted',
	'qt: C let in');
is(json(get('/_wr/qt/position', $v{qt_D}))->{position}, 1, 'qt: D first');

###############################################################################

sub enter {
	my ($room, $want) = @_;
	my $r = get("/$room/page.html");
	my $c = cookie($r, $room);
	ok(0, "$room: entering $want, got " . wr($r)) unless wr($r) eq $want;
	return $c;
}

sub in_range {
	my ($v, $lo, $hi) = @_;
	return defined $v && $v >= $lo && $v <= $hi;
}

sub post {
	my ($room, $what, $cookie) = @_;
	return Test::Nginx::WaitingRoom::post("/_wr/$room/$what", $cookie);
}

# the JSON, and the answer it came in as "response"

sub json {
	my ($r) = @_;
	my $j = Test::Nginx::WaitingRoom::json($r);
	$j->{response} = $r;
	return $j;
}

sub status {
	my ($room) = @_;
	return json(http_get("/status/$room"));
}

###############################################################################
